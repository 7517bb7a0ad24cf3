/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "tests.h"
#include "steps/daemon/journal.h"

TEST(hint_names_the_cause_from_the_log) {
        const char *h;

        h = rootless_docker_failure_hint(
                "level=info msg=\"Starting up\"\n"
                "Unable to get the full path to root (/home/b/.local/share/docker): canonical path points to a file\n"
                "[rootlesskit:child ] error: command [/x/dockerd-rootless.sh --storage-driver=overlay2] exited: exit status 1\n");
        ASSERT_TRUE(h && strstr(h, "not a directory"));

        /* The specific cause, not the generic consequence logged after it. */
        h = rootless_docker_failure_hint("level=error msg=\"failed to mount overlay: invalid argument\" storage-driver=overlay2\n"
                                         "failed to start daemon: error initializing graphdriver: driver not supported\n");
        ASSERT_TRUE(h && strstr(h, "overlay2 does not work"));
        h = rootless_docker_failure_hint("failed to start daemon: error initializing graphdriver: driver not supported\n");
        ASSERT_TRUE(h && strstr(h, "storage driver"));

        h = rootless_docker_failure_hint("[rootlesskit:parent] error: failed to setup UID/GID map: newuidmap 42 [0 1000 1 1 100000 65536] failed\n");
        ASSERT_TRUE(h && strstr(h, "subuid"));

        h = rootless_docker_failure_hint("fork/exec /proc/self/exe: permission denied\n");
        ASSERT_TRUE(h && strstr(h, "AppArmor"));
}

TEST(hint_start_limit_comes_first) {
        const char *h = rootless_docker_failure_hint("failed to mount overlay: invalid argument\n"
                                                     "docker.service: Start request repeated too quickly.\n");
        ASSERT_TRUE(h && strstr(h, "start limit"));
}

TEST(hint_is_silent_when_nothing_is_known) {
        ASSERT_TRUE(rootless_docker_failure_hint("all is well\nreally\n") == NULL);
        ASSERT_TRUE(rootless_docker_failure_hint("") == NULL);
        ASSERT_TRUE(rootless_docker_failure_hint(NULL) == NULL);
}
