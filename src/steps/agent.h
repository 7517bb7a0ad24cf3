/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "engine.h"

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
