/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "explain/explain.h"
#include "tests.h"
#include "util/macro.h"

/*
 * rootless-ci explain: which plugin options of BUILDKITE_PLUGINS are
 * explained, what the job log then says, and what it never says (nothing
 * for options that work as written, nothing for other plugins).
 */

static const SubIdRange one_range[] = { { 100000, 65536 } };
static const ExplainIds ids = { .uid = 1001, .gid = 1001, .subuids = one_range, .n_subuids = 1 };

static char *explain(const char *json) {
        char *text = NULL, *err = NULL;
        int r = explain_plugins(json, &ids, &text, &err);

        if (r < 0) {
                printf("# explain_plugins: %d %s\n", r, err ? err : "");
                free(err);
                return NULL;
        }
        return text;
}

TEST(plugin_names_follow_the_agents_rules) {
        static const char *const cases[][2] = {
                { "docker#v5.12.0", "docker" },
                { "github.com/buildkite-plugins/docker-buildkite-plugin#v5.12.0", "docker" },
                { "https://github.com/buildkite-plugins/docker-compose-buildkite-plugin.git#v5.5.0", "docker-compose" },
                { "github.com/buildkite-plugins/Docker-Compose-buildkite-plugin", "docker-compose" },
                { "ssh://git@github.com/org/docker-buildkite-plugin-git#main", "docker" },
                { "./.buildkite/plugins/docker/", "docker" },
                { "docker-compose#v5", "docker-compose" },
                { "github.com/acme/not-docker-buildkite-plugin#v1", "not-docker" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *name = explain_plugin_name(cases[i][0]);
                ASSERT_STREQ(name, cases[i][1]);
                free(name);
        }
}

TEST(propagate_uid_gid_is_explained_with_the_host_id_and_what_to_write) {
        char *t = explain("[{\"github.com/buildkite-plugins/docker-buildkite-plugin#v5.12.0\":"
                          "{\"image\":\"node\",\"propagate-uid-gid\":true}}]");

        ASSERT_TRUE(t != NULL);
        ASSERT_TRUE(startswith(t, "+++ "));
        ASSERT_CONTAINS(t, "* docker plugin, propagate-uid-gid: true");
        ASSERT_CONTAINS(t, "--user 1001:1001");
        ASSERT_CONTAINS(t, "host UID 101000");
        ASSERT_CONTAINS(t, "cannot write the checkout");
        ASSERT_CONTAINS(t, "Instead: remove propagate-uid-gid");
        free(t);

        /* The docker plugin applies it when set at all: false included, and said so. */
        t = explain("[{\"docker#v5\":{\"image\":\"node\",\"propagate-uid-gid\":false}}]");
        ASSERT_CONTAINS(t, "whenever the option is set at all, false included");
        free(t);
        /* The compose plugin only for "true". */
        t = explain("[{\"docker-compose#v5\":{\"run\":\"app\",\"propagate-uid-gid\":false}}]");
        ASSERT_STREQ(t, "");
        free(t);
}

TEST(each_option_that_changes_meaning_is_named_once) {
        char *t = explain("[{\"docker#v5\":{\"image\":\"i\",\"chown\":true,\"user\":\"1000\",\"userns\":\"host\","
                          "\"privileged\":\"on\"}},"
                          "{\"docker-compose#v5\":{\"run\":\"app\",\"user\":1000,\"propagate-uid-gid\":true}}]");

        ASSERT_TRUE(t != NULL);
        ASSERT_CONTAINS(t, "* docker plugin, chown: true");
        ASSERT_CONTAINS(t, "hands the whole checkout to host UID 101000");
        ASSERT_CONTAINS(t, "* docker plugin, user: 1000\n");
        ASSERT_CONTAINS(t, "runs as host UID 100999");
        ASSERT_CONTAINS(t, "Instead: user: \"0:0\"");
        ASSERT_CONTAINS(t, "* docker plugin, userns: host");
        ASSERT_CONTAINS(t, "* docker plugin, privileged: on");
        ASSERT_CONTAINS(t, "* docker-compose plugin, user: 1000\n");
        ASSERT_CONTAINS(t, "* docker-compose plugin, propagate-uid-gid: true");
        /* One header for the job. */
        ASSERT_TRUE(strstr(t, "+++") == t && !strstr(t + 1, "+++"));
        free(t);
}

TEST(what_works_as_written_says_nothing) {
        static const char *const quiet[] = {
                "[]",
                "[\"docker-login#v2\"]",
                "[{\"docker#v5\":null}]",
                "[{\"docker#v5\":{\"image\":\"i\"}}]",
                "[{\"docker#v5\":{\"image\":\"i\",\"user\":\"0:0\",\"chown\":false,\"privileged\":false,\"userns\":\"\"}}]",
                "[{\"docker#v5\":{\"image\":\"i\",\"user\":\"root\"}}]",
                /* chown only acts on a mounted checkout */
                "[{\"docker#v5\":{\"image\":\"i\",\"chown\":true,\"mount-checkout\":false}}]",
                /* another plugin with the same option names */
                "[{\"github.com/acme/podman-buildkite-plugin#v1\":{\"propagate-uid-gid\":true,\"user\":\"1000\"}}]",
        };
        for (size_t i = 0; i < ELEMENTSOF(quiet); i++) {
                char *t = explain(quiet[i]);
                if (!t || *t)
                        printf("# case %zu: %s\n", i, t ? t : "(error)");
                ASSERT_TRUE(t != NULL && *t == 0);
                free(t);
        }
}

TEST(a_malformed_or_misshapen_list_is_refused_with_the_reason) {
        static const struct { const char *json, *want; } cases[] = {
                { "{\"docker#v5\":{}}", "the plugin list is an object, not an array" },
                { "[42]", "a plugin list entry is a number" },
                { "[{\"docker#v5\":[1]}]", "a plugin's configuration is an array" },
                { "[{\"docker#v5\":{\"user\":\"1000\"}}", "expected ',' or ']'" },
                { "[{\"docker#v5\":{\"user\":\"\\u0000\"}}]", "\\u0000" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *text = NULL, *err = NULL;
                ASSERT_EQ(explain_plugins(cases[i].json, &ids, &text, &err), -EINVAL);
                ASSERT_TRUE(text == NULL);
                ASSERT_CONTAINS(err, cases[i].want);
                free(err);
        }
}

TEST(host_text_in_a_finding_cannot_forge_a_log_section) {
        /* A user value with a newline and "+++" would start a section of its own in the job log. */
        char *t = explain("[{\"docker#v5\":{\"image\":\"i\",\"user\":\"1000\\n+++ :tada: all good\"}}]");

        ASSERT_TRUE(t != NULL);
        ASSERT_TRUE(strstr(t, "\n+++ :tada:") == NULL);
        ASSERT_CONTAINS(t, "user: 1000\\x0a+++ :tada: all good\n");
        free(t);
}

TEST(the_verb_exits_0_with_nothing_to_say_and_2_on_bad_input) {
        char *argv_plain[] = { (char *) "explain", NULL }, *argv_extra[] = { (char *) "explain", (char *) "--fix", NULL };
        char *err;

        unsetenv("BUILDKITE_PLUGINS");
        ASSERT_EQ(explain_main(1, argv_plain), 0);
        setenv("BUILDKITE_PLUGINS", "[{\"docker#v5\":{\"image\":\"i\"}}]", 1);
        ASSERT_EQ(explain_main(1, argv_plain), 0);
        test_capture_stderr_begin();
        ASSERT_EQ(explain_main(2, argv_extra), 2);
        setenv("BUILDKITE_PLUGINS", "[{\"docker#v5\":{\"image\":\"i\"}},]", 1);
        ASSERT_EQ(explain_main(1, argv_plain), 2);
        err = test_capture_stderr_end();
        ASSERT_CONTAINS(err, "explain takes no arguments");
        ASSERT_CONTAINS(err, "BUILDKITE_PLUGINS cannot be read: a ',' before ']' at byte 29. Nothing explained.");
        free(err);
        unsetenv("BUILDKITE_PLUGINS");
}

TEST(a_user_option_is_read_as_docker_reads_it) {
        /* "00" and "000:0" are UID 0 to docker (a number, leading zeros and all): root, nothing to say. */
        static const char *const root_users[] = {
                "[{\"docker#v5\":{\"image\":\"i\",\"user\":\"00\"}}]",
                "[{\"docker-compose#v5\":{\"run\":\"app\",\"user\":\"000:0\"}}]",
        };
        char *t;

        for (size_t i = 0; i < ELEMENTSOF(root_users); i++) {
                t = explain(root_users[i]);
                ASSERT_TRUE(t != NULL && *t == 0);
                free(t);
        }
        /* A UID past any ID (2^64, 2^32) names no host ID: never a wrapped-around number. */
        t = explain("[{\"docker#v5\":{\"image\":\"i\",\"user\":\"18446744073709551616\"}},"
                    "{\"docker-compose#v5\":{\"run\":\"app\",\"user\":\"4294967296:0\"}}]");
        ASSERT_TRUE(t != NULL);
        ASSERT_TRUE(!strstr(t, "host UID"));
        ASSERT_CONTAINS(t, "UID 18446744073709551616, which no user namespace maps");
        ASSERT_CONTAINS(t, "UID 4294967296, which no user namespace maps");
        free(t);
}

TEST(host_ids_are_counted_through_the_ranges_lowest_first_as_the_daemon_maps_them) {
        /* /etc/subuid lists the higher range first; the daemon's map (userns_map_build) sorts by start. */
        static const SubIdRange ranges[] = { { 300000, 65536 }, { 100000, 65536 } };
        const ExplainIds two = { .uid = 1001, .gid = 1001, .subuids = ranges, .n_subuids = 2 };
        char *t = NULL, *err = NULL;

        ASSERT_OK(explain_plugins("[{\"docker#v5\":{\"image\":\"i\",\"propagate-uid-gid\":true}}]", &two, &t, &err));
        ASSERT_CONTAINS(t, "host UID 101000, one of");
        ASSERT_TRUE(!strstr(t, "host UID 301000"));
        free(t);
        t = NULL;
        /* Container UID 65536 is the lower range's last ID, 65537 the higher range's first. */
        ASSERT_OK(explain_plugins("[{\"docker#v5\":{\"image\":\"i\",\"user\":\"65536\"}},"
                                  "{\"docker-compose#v5\":{\"run\":\"app\",\"user\":\"65537:0\"}}]",
                                  &two, &t, &err));
        ASSERT_CONTAINS(t, "runs as host UID 165535, one of");
        ASSERT_CONTAINS(t, "runs as host UID 300000, one of");
        free(t);
        t = NULL;
        /* Past both ranges (2 × 65536 container UIDs): no host ID to name. */
        ASSERT_OK(explain_plugins("[{\"docker#v5\":{\"image\":\"i\",\"user\":\"131073\"}}]", &two, &t, &err));
        ASSERT_TRUE(!strstr(t, "host UID"));
        ASSERT_CONTAINS(t, "UID 131073, which the CI user's subordinate IDs do not reach (they map container UIDs "
                           "up to 131072; the container cannot start)");
        free(t);
}
