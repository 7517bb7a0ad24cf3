/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "steps/daemon/daemon.h"
#include "tests.h"
#include "util/idmap.h"
#include "util/macro.h"

/*
 * Invariant I2's judge (steps/daemon/userns-check.c): a process's IDs and
 * maps → a verdict on the rootless layout (container root → the CI user
 * alone, every other mapped ID inside its subordinate range), on given maps
 * and on a real user namespace.
 */

/* The CI user of these tests: UID/GID 1000, subordinate IDs 100000..165535. */
static const SubIdRange range_100000[] = { { 100000, 65536 } };
static const SubIdRange range_200000[] = { { 200000, 65536 } };
static const SubIdRange range_300000[] = { { 300000, 65536 } };
static const RootlessIds ci = {
        .uid = 1000, .gid = 1000,
        .subuids = range_100000, .n_subuids = 1,
        .subgids = range_100000, .n_subgids = 1,
};

/* As the kernel prints a map: "%10u %10u %10u\n" per line. */
#define ROOTLESS_MAP "         0       1000          1\n         1     100000      65536\n"

static int parse(const char *text, IdMap *m, unsigned *line) {
        return idmap_parse(text, strlen(text), m, line);
}

/*
 * Judge a process with the given maps and the CI user's UIDs/GIDs; the
 * message stays valid until the next call.
 */
static char *last_message;
static int judge_with(const char *uid_map, const char *gid_map, uint32_t uid, uint32_t gid, const RootlessIds *id) {
        static ProcessIds p;

        free(last_message);
        last_message = NULL;
        p = (ProcessIds) { .uids = { uid, uid, uid, uid }, .gids = { gid, gid, gid, gid } };
        if (parse(uid_map, &p.uid_map, NULL) < 0 || parse(gid_map, &p.gid_map, NULL) < 0)
                return -100;
        return rootless_ids_judge(&p, "buildkite", id, &last_message);
}

static int judge(const char *uid_map) {
        return judge_with(uid_map, ROOTLESS_MAP, 1000, 1000, &ci);
}

TEST(judge_accepts_the_rootless_layout) {
        ASSERT_EQ(judge(ROOTLESS_MAP), 1);
        ASSERT_STREQ(last_message, "runs in a user namespace: 0 → 1000, 1..65536 → 100000..165535 (UIDs and GIDs alike)");

        /* A part of the range, or several parts, is as good as all of it. */
        ASSERT_EQ(judge("0 1000 1\n1 100000 1000\n2000 150000 10\n"), 1);
        /* The last ID of the range, not one past it. */
        ASSERT_EQ(judge("0 1000 1\n65535 165535 1\n"), 1);
        /* Root alone: nothing else is mapped, nothing escapes. */
        ASSERT_EQ(judge("0 1000 1\n"), 1);
}

TEST(judge_refuses_the_identity_map) {
        ASSERT_EQ(judge("         0          0 4294967295\n"), 0);
        ASSERT_STREQ(last_message, "is in no user namespace: its UID map is the host's own (0 0 4294967295)");
        ASSERT_EQ(judge_with(ROOTLESS_MAP, "0 0 4294967295\n", 1000, 1000, &ci), 0);
        ASSERT_STREQ(last_message, "is in no user namespace: its GID map is the host's own (0 0 4294967295)");
}

TEST(judge_refuses_root_not_mapped_to_the_user) {
        ASSERT_EQ(judge("0 0 1\n1 100000 65536\n"), 0);
        ASSERT_STREQ(last_message,
                     "maps container UID 0 to host UID 0: container root must map to buildkite's UID 1000 alone");
        ASSERT_EQ(judge("0 1001 1\n1 100000 65536\n"), 0);
        ASSERT_CONTAINS(last_message, "maps container UID 0 to host UID 1001");
        /* Root's extent may not carry container UID 1 onto host UID 1001, another account. */
        ASSERT_EQ(judge("0 1000 2\n2 100000 65536\n"), 0);
        ASSERT_STREQ(last_message, "maps container UID 0..1 to host UID 1000..1001: container root must map to "
                                   "buildkite's UID 1000 alone");
        ASSERT_EQ(judge("1 100000 65536\n"), 0);
        ASSERT_STREQ(last_message, "does not map container UID 0 (root) at all");
        ASSERT_EQ(judge(""), 0);
        ASSERT_STREQ(last_message, "maps no UID at all (its UID map is empty)");
        /* The GID map is held to the same rule, with the user's GID. */
        ASSERT_EQ(judge_with(ROOTLESS_MAP, "0 1000 1\n1 100000 65536\n", 1000, 1001,
                             &(RootlessIds) { .uid = 1000, .gid = 1001, .subuids = range_100000, .n_subuids = 1,
                                              .subgids = range_100000, .n_subgids = 1 }),
                  0);
        ASSERT_STREQ(last_message,
                     "maps container GID 0 to host GID 1000: container root must map to buildkite's GID 1001 alone");
}

TEST(judge_refuses_a_range_outside_the_subordinate_range) {
        ASSERT_EQ(judge("0 1000 1\n1 200000 65536\n"), 0);
        ASSERT_STREQ(last_message, "maps container UID 1..65536 to host UID 200000..265535, outside buildkite's "
                                   "subordinate UID range 100000..165535 (/etc/subuid)");
        /* One ID past the end, or before the start. */
        ASSERT_EQ(judge("0 1000 1\n1 100000 65537\n"), 0);
        ASSERT_CONTAINS(last_message, "host UID 100000..165536, outside");
        ASSERT_EQ(judge("0 1000 1\n1 99999 10\n"), 0);
        /* A second extent onto host root. */
        ASSERT_EQ(judge("0 1000 1\n1 100000 65536\n70000 0 1\n"), 0);
        ASSERT_CONTAINS(last_message, "maps container UID 70000 to host UID 0, outside");
        /* Without a subordinate range nothing but root may be mapped. */
        RootlessIds none = ci;
        none.n_subgids = 0;
        ASSERT_EQ(judge_with(ROOTLESS_MAP, ROOTLESS_MAP, 1000, 1000, &none), 0);
        ASSERT_STREQ(last_message, "maps container GID 1..65536 to host GID 100000..165535, but buildkite has no "
                                   "subordinate GID range in /etc/subgid");
        ASSERT_EQ(judge_with(ROOTLESS_MAP, "0 1000 1\n", 1000, 1000, &none), 1);
}

/* A user with two lines in /etc/subuid: newuidmap maps both, one after the other. */
TEST(judge_takes_every_range_of_the_user) {
        static const SubIdRange two[] = { { 100000, 65536 }, { 300000, 65536 } };
        static const SubIdRange adjacent[] = { { 100000, 65536 }, { 165536, 65536 } };
        RootlessIds id = ci;
        id.subuids = two;
        id.n_subuids = 2;

        ASSERT_EQ(judge_with("0 1000 1\n1 100000 65536\n65537 300000 65536\n", ROOTLESS_MAP, 1000, 1000, &id), 1);
        ASSERT_STREQ(last_message, "runs in a user namespace: UIDs 0 → 1000, 1..65536 → 100000..165535, "
                                   "65537..131072 → 300000..365535; GIDs 0 → 1000, 1..65536 → 100000..165535");
        /* With only the first range, the second extent is outside. */
        ASSERT_EQ(judge("0 1000 1\n1 100000 65536\n65537 300000 65536\n"), 0);
        ASSERT_STREQ(last_message, "maps container UID 65537..131072 to host UID 300000..365535, outside buildkite's "
                                   "subordinate UID range 100000..165535 (/etc/subuid)");
        /* The gap between the two ranges is no one's to use. */
        ASSERT_EQ(judge_with("0 1000 1\n1 165536 10\n", ROOTLESS_MAP, 1000, 1000, &id), 0);
        ASSERT_STREQ(last_message, "maps container UID 1..10 to host UID 165536..165545, outside buildkite's "
                                   "subordinate UID ranges 100000..165535, 300000..365535 (/etc/subuid)");
        /* One extent across two adjacent ranges lies inside their union. */
        id.subuids = adjacent;
        ASSERT_EQ(judge_with("0 1000 1\n1 100000 131072\n", ROOTLESS_MAP, 1000, 1000, &id), 1);
        ASSERT_EQ(judge_with("0 1000 1\n1 100000 131073\n", ROOTLESS_MAP, 1000, 1000, &id), 0);
}

TEST(judge_refuses_a_process_running_as_someone_else) {
        ASSERT_EQ(judge_with(ROOTLESS_MAP, ROOTLESS_MAP, 0, 1000, &ci), 0);
        ASSERT_STREQ(last_message,
                     "runs with host UIDs 0 0 0 0 (real, effective, saved, filesystem), not as buildkite's UID 1000");
        ASSERT_EQ(judge_with(ROOTLESS_MAP, ROOTLESS_MAP, 1000, 0, &ci), 0);
        ASSERT_CONTAINS(last_message, "runs with host GIDs 0 0 0 0");
}

TEST(judge_describes_different_uid_and_gid_maps_apart) {
        RootlessIds id = ci;
        id.gid = 1001;
        id.subgids = range_300000;
        ASSERT_EQ(judge_with(ROOTLESS_MAP, "0 1001 1\n1 300000 65536\n", 1000, 1001, &id), 1);
        ASSERT_STREQ(last_message, "runs in a user namespace: UIDs 0 → 1000, 1..65536 → 100000..165535; "
                                   "GIDs 0 → 1001, 1..65536 → 300000..365535");
}

static int write_proc(pid_t pid, const char *file, const char *text) {
        char path[64];
        int fd, r = 0;

        snprintf(path, sizeof(path), "/proc/%d/%s", (int) pid, file);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        /* A map must be written in one write(). */
        if (write(fd, text, strlen(text)) != (ssize_t) strlen(text))
                r = -errno;
        close(fd);
        return r;
}

/*
 * A real user namespace, made the way rootlesskit makes dockerd's: a child
 * that runs as UID/GID 1000 unshares, and its maps are written from outside
 * (root may write any map). The reader and the judge see what the kernel shows.
 */
TEST(process_ids_read_judges_a_real_user_namespace) {
        int up[2], down[2];
        char c, path[64];
        pid_t pid;
        int fd, r;
        static ProcessIds p;
        _cleanup_free_ char *msg = NULL;
        RootlessIds id = ci;

        if (geteuid() != 0) {
                test_skip("needs root to write a child's uid_map");
                return;
        }
        ASSERT_EQ(pipe(up), 0);
        ASSERT_EQ(pipe(down), 0);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                c = setgroups(0, NULL) == 0 && setresgid(1000, 1000, 1000) == 0 && setresuid(1000, 1000, 1000) == 0 &&
                                    unshare(CLONE_NEWUSER) == 0
                            ? 'u'
                            : 'x';
                (void) !write(up[1], &c, 1);
                (void) !read(down[0], &c, 1);
                _exit(0);
        }
        ASSERT_EQ(read(up[0], &c, 1), 1);
        if (c != 'u') {
                (void) !write(down[1], "q", 1);
                waitpid(pid, NULL, 0);
                test_skip("unshare(CLONE_NEWUSER) is not allowed here");
                return;
        }
        ASSERT_EQ(write_proc(pid, "uid_map", "0 1000 1\n1 100000 65536\n"), 0);
        ASSERT_EQ(write_proc(pid, "gid_map", "0 1000 1\n1 100000 65536\n"), 0);

        snprintf(path, sizeof(path), "/proc/%d", (int) pid);
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        r = process_ids_read(fd, &p, NULL);
        ASSERT_EQ(r, 0);
        ASSERT_EQ(p.uid_map.n, 2);
        ASSERT_EQ(p.uid_map.extents[1].outside, 100000);

        ASSERT_EQ(p.uids[2], 1000);
        ASSERT_EQ(p.gids[3], 1000);
        ASSERT_EQ(rootless_ids_judge(&p, "buildkite", &id, &msg), 1);
        ASSERT_STREQ(msg, "runs in a user namespace: 0 → 1000, 1..65536 → 100000..165535 (UIDs and GIDs alike)");
        free(msg);
        msg = NULL;
        id.subuids = range_200000;
        ASSERT_EQ(rootless_ids_judge(&p, "buildkite", &id, &msg), 0);
        ASSERT_CONTAINS(msg, "outside buildkite's subordinate UID range 200000..265535");

        /* Once it has exited and been reaped, its directory fd says so. */
        (void) !write(down[1], "q", 1);
        waitpid(pid, NULL, 0);
        ASSERT_EQ(process_ids_read(fd, &p, NULL), -ESRCH);
        close(fd);
        close(up[0]);
        close(up[1]);
        close(down[0]);
        close(down[1]);
}
