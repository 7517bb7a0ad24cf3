/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "engine/engine.h"

/* The agent step's pieces that tests look at directly. */

#define AGENT_CONFIG_DIR "/etc/buildkite-agent"
#define AGENT_CONFIG_FILE AGENT_CONFIG_DIR "/buildkite-agent.cfg"
#define AGENT_DROPIN_NAME "zz-rootless-ci.conf"

/* /etc/systemd/system/<unit>.d/zz-rootless-ci.conf (malloc'd). */
char *agent_dropin_path(const char *unit);

/*
 * The drop-in's text for the CI user in ctx->facts and ctx->config. Returns
 * 0, -EINVAL when a value cannot stand in a unit file (logged), or -ENOMEM.
 */
int agent_dropin_render(const Context *ctx, char **ret);

/*
 * The mode an entry of /etc/buildkite-agent gets (owner root, group the CI
 * user's): the CI user, through the group, keeps the access the package's
 * agent user had through the owner bits, minus write; others lose write;
 * setuid, setgid and sticky bits go. The agent's configuration file, which
 * holds the registration token, is 0640 whatever it was.
 */
mode_t agent_config_wanted_mode(mode_t have, bool is_config_file);

/* ---- hooks.c: what rootless-ci gives every job through the agent ---- */

/* The hooks rootless-ci installs into HOOKS_DIR, NULL-terminated. */
extern const char *const agent_hook_names[];

/*
 * Why the CI user can change an entry on the way to rootless-ci's hooks
 * (owned by it, writable by everyone, or by a group other than root's), or
 * NULL when it cannot.
 */
const char *agent_hooks_writable_by(const struct stat *st, uid_t ci_uid);

/* agent.hooks: HOOKS_DIR, each component and each hook root's and unwritable by others. */
int agent_check_hooks(Context *ctx);

/* agent.version: the installed agent (dpkg's record) reads BUILDKITE_ADDITIONAL_HOOKS_PATHS. */
int agent_check_version(Context *ctx);

/* Compare two Debian-style versions by epoch, the first three numbers and a "~" pre-release: <0, 0, >0. */
int agent_version_compare(const char *a, const char *b);

/*
 * The Version of package in dpkg's status text when its Status is
 * "installed": 1 and *ret (malloc'd), 0 and NULL when it is not, -ENOMEM.
 */
int dpkg_status_installed_version(const char *text, const char *package, char **ret);
