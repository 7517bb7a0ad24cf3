/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>
#include <sys/types.h>

/*
 * rootless-ci explain: run by rootless-ci's pre-command agent hook as the
 * CI user. Reads the job's plugin list (BUILDKITE_PLUGINS, the JSON the
 * agent gives every hook; a plugin's own options reach only its own hooks)
 * and writes to the job log, in a "+++" section, each docker or
 * docker-compose plugin option that means something else under rootless
 * Docker: what happens here, and what to write instead. Changes nothing.
 */

/* The IDs the explanation names: the CI user's, and the first host ID of its subordinate range (0: unknown). */
typedef struct ExplainIds {
        uid_t uid;
        gid_t gid;
        uint64_t subuid_start;
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
