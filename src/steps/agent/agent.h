/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "config.h"
#include "engine/step.h"
#include "util/bus.h"

/* The agent step (step.c) and its pieces; the ones tests look at directly are said so. */

#define AGENT_CONFIG_FILE AGENT_CONFIG_DIR "/buildkite-agent.cfg"
#define AGENT_DROPIN_NAME "zz-rootless-ci.conf"
#define MARKER_AGENT_RESTART "agent-restart-pending"

/* The step's state, one per run (per account). */
typedef struct AgentState {
        bool dropin_changed;    /* the dropin part described a change of the drop-in */
        bool tree_changed;      /* the config part described a change of an entry */
        UnitState unit;         /* the agent unit's state, read once: apply reads it in the reload part */
        bool have_unit;
        bool service_looked;    /* the service part looked (apply: the restart marker is paid after it) */
} AgentState;

/* ---- dropin.c ---- */

/* /etc/systemd/system/<unit>.d/zz-rootless-ci.conf (malloc'd). */
char *agent_dropin_path(const char *unit);

/*
 * The drop-in's text for the account a (a known user with its builds
 * directory) and config. Returns 0, -EINVAL when a value cannot stand in a
 * unit file (logged), or -ENOMEM. Tests call it.
 */
int agent_dropin_render(const Config *config, const Account *a, char **ret);

/* The dropin part: agent.dropin, a file item owing the agent's restart. */
int agent_dropin_look(StepRun *run, Account *a);

/* ---- config-tree.c: /etc/buildkite-agent ---- */

/*
 * The mode an entry of /etc/buildkite-agent gets (owner root, group the CI
 * user's): the CI user, through the group, keeps the access the package's
 * agent user had through the owner bits, minus write; others lose write;
 * setuid, setgid and sticky bits go. The agent's configuration file, which
 * holds the registration token, is 0640 whatever it was. Tests call it.
 */
mode_t agent_config_wanted_mode(mode_t have, bool is_config_file);

/*
 * The config part: agent.config, agent.config:PATH per entry to secure, agent.config-link:PATH. About
 * the host (Part.host_wide): with tenants the tree is root's group's, and each tenant's own
 * configuration file in it is left to that tenant's config-file part.
 */
int agent_config_look(StepRun *run, Account *a);
int agent_config_settle(StepRun *run, Account *a);

/*
 * The open fd of a directory or regular file (checked by the caller) as id: 0 when it is root:gid with
 * agent_config_wanted_mode() already, else 1 and a Change that brings it there through the fd (it takes
 * *fd; *ret_fix, may be NULL, is the Change's data, a directory's entries are added to it). < 0 on error.
 */
int agent_config_describe_fd(StepRun *run, const char *id, int *fd, const char *shown, gid_t gid,
                              bool is_config_file, void **ret_fix);

/* ---- config-file.c: a tenant's own configuration file ---- */

/*
 * The config-file part, tenants only (Account.agent_config): agent.config-group (another tenant's user
 * in this tenant's group) and agent.config-file (AgentConfig= root:<group> 0640; missing: a warning,
 * never created).
 */
int agent_config_file_look(StepRun *run, Account *a);

/* ---- service.c: the running agent ---- */

/* The reload part (apply: daemon-reload when owed, before the service is looked at) and the service part. */
int agent_reload_look(StepRun *run, Account *a);
int agent_reload_settle(StepRun *run, Account *a);
int agent_service_look(StepRun *run, Account *a);
int agent_service_settle(StepRun *run, Account *a);

/* ---- hooks.c: what rootless-ci gives every job through the agent ---- */

/* The hooks rootless-ci installs into HOOKS_DIR, NULL-terminated. */
extern const char *const agent_hook_names[];

/*
 * Why the CI user can change an entry on the way to rootless-ci's hooks
 * (owned by it, writable by everyone, or by a group other than root's), or
 * NULL when it cannot.
 */
const char *agent_hooks_writable_by(const struct stat *st, uid_t ci_uid);

/*
 * The hooks part: agent.hooks (HOOKS_DIR, each component and each hook root's and unwritable by the
 * account's user or others; every tenant's drop-in names the same HOOKS_DIR), then the version part,
 * about the host: agent.version (the installed agent, by dpkg's record, reads
 * BUILDKITE_ADDITIONAL_HOOKS_PATHS).
 */
int agent_hooks_look(StepRun *run, Account *a);
int agent_version_look(StepRun *run, Account *a);

/* Compare two Debian-style versions by epoch, the first three numbers and a "~" pre-release: <0, 0, >0. */
int agent_version_compare(const char *a, const char *b);

/*
 * The Version of package in dpkg's status text when its Status is
 * "installed": 1 and *ret (malloc'd), 0 and NULL when it is not, -ENOMEM.
 */
int dpkg_status_installed_version(const char *text, const char *package, char **ret);
