/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/subid.h"

/*
 * rootless-ci explain: run by rootless-ci's pre-command agent hook as the
 * CI user. Reads the job's plugin list (BUILDKITE_PLUGINS, the JSON the
 * agent gives every hook; a plugin's own options reach only its own hooks)
 * and writes to the job log, in a "+++" section, each docker or
 * docker-compose plugin option that means something else under rootless
 * Docker: what happens here, and what to write instead. Changes nothing.
 */

/*
 * The IDs the explanation names: the CI user's, and its subordinate UID
 * ranges in any order (none: unknown). Container UID n is the host ID the
 * rootless daemon's map gives it (userns_map_build: the ranges sorted by
 * start, one after the other).
 */
typedef struct ExplainIds {
        uid_t uid;
        gid_t gid;
        const SubIdRange *subuids;
        size_t n_subuids;
} ExplainIds;

/*
 * The plugin's name as the agent derives it from its location (the key in
 * BUILDKITE_PLUGINS): the last path component without "#version", lower
 * case, every other character than a letter or digit a '-', the
 * "-buildkite-plugin" suffix dropped. "docker#v5.12.0" and
 * "github.com/buildkite-plugins/docker-buildkite-plugin#v5.12.0" are both
 * "docker". NULL on ENOMEM.
 */
char *explain_plugin_name(const char *location);

/*
 * The explanation for plugins_json: 0 and *ret_text (malloc'd; "" when
 * nothing needs saying), or -EINVAL with *ret_error (malloc'd) when the
 * JSON is malformed or not the agent's shape (an array of plugin names and
 * {location: options} objects), -E2BIG, -ENOMEM.
 */
int explain_plugins(const char *plugins_json, const ExplainIds *ids, char **ret_text, char **ret_error);

/* The verb: argv[0] is "explain". Returns an exit status. */
int explain_main(int argc, char *argv[]);
