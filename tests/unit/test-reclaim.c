/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "reclaim/reclaim.h"
#include "tests.h"
#include "util/error.h"
#include "util/macro.h"

/*
 * reclaim without a user namespace: which PATHs it takes, whose entries it
 * gives back, and its walk over trees of the test's own user (the IDs it
 * gives back to are the caller's, as root inside the namespace is the CI
 * user). The chown of subordinate IDs, other mounts and the real CI user
 * are the machine test's (tests/machine/reclaim.sh).
 */

static int below(const char *dir, const char *path, char **ret_rel, char **ret_log) {
        int r;

        *ret_rel = NULL;
        test_capture_stderr_begin();
        r = reclaim_path_below(dir, path, ret_rel);
        *ret_log = test_capture_stderr_end();
        return r;
}

#define ASSERT_BELOW(dir, path, want)                                           \
        do {                                                                    \
                char *_rel, *_log;                                              \
                int _r = below((dir), (path), &_rel, &_log);                    \
                free(_log);                                                     \
                ASSERT_EQ(_r, 0);                                               \
                ASSERT_STREQ(_rel, (want));                                     \
                free(_rel);                                                     \
        } while (0)

#define ASSERT_NOT_BELOW(dir, path, want_message)                               \
        do {                                                                    \
                char *_rel, *_log;                                              \
                int _r = below((dir), (path), &_rel, &_log);                    \
                ASSERT_TRUE(_rel == NULL);                                      \
                ASSERT_EQ(_r, -ERCI_USAGE);                                     \
                ASSERT_CONTAINS(_log, (want_message));                          \
                free(_log);                                                     \
        } while (0)

TEST(reclaim_takes_only_paths_strictly_below_the_builds_dir) {
        ASSERT_BELOW("/srv/ci/builds", "/srv/ci/builds/agent-1/org/pipeline", "agent-1/org/pipeline");
        ASSERT_BELOW("/srv/ci/builds/", "/srv/ci/builds//agent-1/org/pipeline/", "agent-1/org/pipeline");
        ASSERT_BELOW("/", "/x", "x");

        ASSERT_NOT_BELOW("/srv/ci/builds", "/srv/ci/builds", "is not below the builds directory /srv/ci/builds");
        ASSERT_NOT_BELOW("/srv/ci/builds", "/srv/ci/builds/", "is not below the builds directory");
        ASSERT_NOT_BELOW("/srv/ci/builds", "/srv/ci/builds-other/x", "Refusing /srv/ci/builds-other/x: it is not below");
        ASSERT_NOT_BELOW("/srv/ci/builds", "/home/buildkite", "it is not below the builds directory");
        ASSERT_NOT_BELOW("/srv/ci/builds", "/srv/ci", "it is not below");
        ASSERT_NOT_BELOW("/srv/ci/builds", "/srv/ci/builds/../../../etc", "without . or .. components");
        ASSERT_NOT_BELOW("/srv/ci/builds", "/srv/ci/builds/a/./b", "without . or .. components");
        ASSERT_NOT_BELOW("/srv/ci/builds", "agent/org/pipeline", "an absolute path");
        ASSERT_NOT_BELOW("builds", "/srv/ci/builds/a", "The builds directory 'builds' must be an absolute path");
        ASSERT_NOT_BELOW("/srv/ci/../builds", "/srv/ci/../builds/a", "must be an absolute path without");
}

TEST(reclaim_gives_back_subordinate_owners_only) {
        /* Inside the namespace: 0 the user, 1..131072 its two ranges, 65534 also what an unmapped ID reads as. */
        const ReclaimIds ids = { .uid_max = 131072, .gid_max = 131072, .overflow_uid = 65534, .overflow_gid = 65534 };
        const ReclaimIds small = { .uid_max = 1000, .gid_max = 1000, .overflow_uid = 65534, .overflow_gid = 65534 };

        ASSERT_EQ(reclaim_judge_owner(&ids, 0, 0), RECLAIM_KEEP);
        ASSERT_EQ(reclaim_judge_owner(&ids, 1000, 1000), RECLAIM_CHOWN);    /* container UID 1001 */
        ASSERT_EQ(reclaim_judge_owner(&ids, 70000, 70000), RECLAIM_CHOWN);  /* the second range */
        ASSERT_EQ(reclaim_judge_owner(&ids, 1000, 0), RECLAIM_CHOWN);
        ASSERT_EQ(reclaim_judge_owner(&ids, 0, 1000), RECLAIM_CHOWN);
        /* 65534: a subordinate ID or an unmapped one; chown is tried, the kernel refuses the latter. */
        ASSERT_EQ(reclaim_judge_owner(&ids, 65534, 65534), RECLAIM_CHOWN);
        /* The user's own entry with a group that may be another of its groups: left as it is. */
        ASSERT_EQ(reclaim_judge_owner(&ids, 0, 65534), RECLAIM_KEEP);
        /* Past the ranges (only possible as the overflow ID, or without a namespace): foreign. */
        ASSERT_EQ(reclaim_judge_owner(&ids, 200000, 0), RECLAIM_FOREIGN);
        ASSERT_EQ(reclaim_judge_owner(&ids, 1000, 200000), RECLAIM_FOREIGN);
        ASSERT_EQ(reclaim_judge_owner(&small, 65534, 65534), RECLAIM_FOREIGN);
        ASSERT_EQ(reclaim_judge_owner(&small, 5, 65534), RECLAIM_FOREIGN);
}

static int open_checkout(const char *dir, const char *rel, int *ret_fd, char **ret_log) {
        _cleanup_close_ int builds_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        char path[4096];
        int r;

        snprintf(path, sizeof(path), "%s/%s", dir, rel);
        test_capture_stderr_begin();
        r = reclaim_open_checkout(builds_fd, path, rel, ret_fd);
        *ret_log = test_capture_stderr_end();
        return r;
}

TEST(reclaim_refuses_a_symlink_on_the_way_and_what_is_not_a_directory) {
        const char *d = test_tmpdir();
        char *log;
        int fd;

        ASSERT_OK(mkdir(test_path(d, "builds"), 0700));
        ASSERT_OK(mkdir(test_path(d, "builds/agent"), 0755));
        ASSERT_OK(mkdir(test_path(d, "builds/agent/org"), 0755));
        ASSERT_OK(mkdir(test_path(d, "builds/agent/org/pipe"), 0755));
        ASSERT_OK(mkdir(test_path(d, "elsewhere"), 0755));
        ASSERT_OK(mkdir(test_path(d, "elsewhere/pipe"), 0755));
        ASSERT_OK(symlink("../../elsewhere", test_path(d, "builds/agent/linked")));
        ASSERT_OK(symlink("../../../elsewhere/pipe", test_path(d, "builds/agent/org/pipe-link")));
        ASSERT_OK(symlink("../../../nowhere", test_path(d, "builds/agent/org/dangling")));
        test_write(d, "builds/agent/org/file", "x");

        ASSERT_OK(open_checkout(test_path(d, "builds"), "agent/org/pipe", &fd, &log));
        ASSERT_TRUE(fd >= 0);
        close(fd);
        free(log);

        /* Missing: nothing to do. */
        ASSERT_OK(open_checkout(test_path(d, "builds"), "agent/org/new-pipe", &fd, &log));
        ASSERT_EQ(fd, -1);
        free(log);
        ASSERT_OK(open_checkout(test_path(d, "builds"), "agent/missing/pipe", &fd, &log));
        ASSERT_EQ(fd, -1);
        free(log);

        /* The checkout itself a symlink, a component below the builds dir one, a dangling one. */
        ASSERT_EQ(open_checkout(test_path(d, "builds"), "agent/org/pipe-link", &fd, &log), -ERCI_USAGE);
        ASSERT_CONTAINS(log, "builds/agent/org/pipe-link is a symlink, and reclaim never follows one");
        free(log);
        ASSERT_EQ(open_checkout(test_path(d, "builds"), "agent/linked/pipe", &fd, &log), -ERCI_USAGE);
        ASSERT_CONTAINS(log, "Refusing ");
        ASSERT_CONTAINS(log, "builds/agent/linked/pipe: ");
        ASSERT_CONTAINS(log, "builds/agent/linked is a symlink");
        free(log);
        ASSERT_EQ(open_checkout(test_path(d, "builds"), "agent/org/dangling", &fd, &log), -ERCI_USAGE);
        ASSERT_CONTAINS(log, "dangling is a symlink");
        free(log);
        ASSERT_EQ(open_checkout(test_path(d, "builds"), "agent/org/dangling/x", &fd, &log), -ERCI_USAGE);
        free(log);
        ASSERT_EQ(open_checkout(test_path(d, "builds"), "agent/org/file", &fd, &log), -ERCI_USAGE);
        ASSERT_CONTAINS(log, "it is not a directory");
        free(log);
}

TEST(reclaim_names_the_symlink_by_the_simplified_path) {
        const char *d = test_tmpdir();
        _cleanup_close_ int builds_fd = -1;
        char builds[4096], path[4096 + 64], want[4096 + 64];
        char *log;
        int fd;

        ASSERT_OK(mkdir(test_path(d, "builds"), 0700));
        ASSERT_OK(mkdir(test_path(d, "builds/agent"), 0755));
        ASSERT_OK(mkdir(test_path(d, "elsewhere"), 0755));
        ASSERT_OK(symlink("../elsewhere", test_path(d, "builds/agent/linked")));
        snprintf(builds, sizeof(builds), "%s", test_path(d, "builds"));
        builds_fd = open(builds, O_PATH | O_DIRECTORY | O_CLOEXEC);
        ASSERT_TRUE(builds_fd >= 0);

        /* PATH with a doubled and a trailing slash: reclaim_path_below() gives rel "agent/linked/pipe". */
        snprintf(path, sizeof(path), "%s//agent//linked/pipe/", builds);
        snprintf(want, sizeof(want), ": %s/agent/linked is a symlink, and reclaim never follows one", builds);
        test_capture_stderr_begin();
        ASSERT_EQ(reclaim_open_checkout(builds_fd, path, "agent/linked/pipe", &fd), -ERCI_USAGE);
        log = test_capture_stderr_end();
        ASSERT_CONTAINS(log, want);
        free(log);
}

static ReclaimIds own_ids(void) {
        return (ReclaimIds) { .self_uid = geteuid(), .self_gid = getegid(), .overflow_uid = 65534, .overflow_gid = 65534 };
}

static mode_t mode_of(const char *p) {
        struct stat st;
        if (lstat(p, &st) < 0)
                return (mode_t) -1;
        return st.st_mode & 07777;
}

TEST(reclaim_opens_up_the_users_directories) {
        const char *d = test_tmpdir();
        ReclaimIds ids = own_ids();
        ReclaimStats stats = {};
        int fd;

        /* What a container running as the user (its root) leaves: closed and read-only directories. */
        ASSERT_OK(mkdir(test_path(d, "co"), 0755));
        ASSERT_OK(mkdir(test_path(d, "co/ro"), 0755));
        ASSERT_OK(mkdir(test_path(d, "co/ro/closed"), 0755));
        ASSERT_OK(mkdir(test_path(d, "co/ro/closed/inner"), 0755));
        test_write(d, "co/ro/closed/inner/f", "x");
        ASSERT_OK(mkfifo(test_path(d, "co/ro/fifo"), 0600));
        ASSERT_OK(chmod(test_path(d, "co/ro/closed/inner"), 0500));
        ASSERT_OK(chmod(test_path(d, "co/ro/closed"), 0000));
        ASSERT_OK(chmod(test_path(d, "co/ro"), 02555));
        ASSERT_OK(chmod(test_path(d, "co"), 0555));

        fd = open(test_path(d, "co"), O_PATH | O_DIRECTORY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        test_capture_stderr_begin();
        ASSERT_OK(reclaim_tree(fd, test_path(d, "co"), &ids, &stats));
        free(test_capture_stderr_end());
        close(fd);

        ASSERT_EQ(mode_of(test_path(d, "co")), 0755);
        ASSERT_EQ(mode_of(test_path(d, "co/ro")), 02755);           /* only u+rwx added */
        ASSERT_EQ(mode_of(test_path(d, "co/ro/closed")), 0700);
        ASSERT_EQ(mode_of(test_path(d, "co/ro/closed/inner")), 0700);
        ASSERT_EQ(mode_of(test_path(d, "co/ro/closed/inner/f")), 0644);  /* files: their directory is what matters */
        ASSERT_EQ(mode_of(test_path(d, "co/ro/fifo")), 0600);
        ASSERT_EQ(stats.opened, 4);
        ASSERT_EQ(stats.entries, 6);
        ASSERT_EQ(stats.reowned, 0);
        ASSERT_EQ(stats.errors, 0);
        ASSERT_EQ(stats.foreign, 0);

        /* Again: nothing left to do. */
        reclaim_stats_done(&stats);
        fd = open(test_path(d, "co"), O_PATH | O_DIRECTORY | O_CLOEXEC);
        ASSERT_OK(reclaim_tree(fd, test_path(d, "co"), &ids, &stats));
        close(fd);
        ASSERT_EQ(stats.opened, 0);
        ASSERT_EQ(stats.entries, 6);
        reclaim_stats_done(&stats);
}

TEST(reclaim_never_follows_a_symlink) {
        const char *d = test_tmpdir();
        ReclaimIds ids = own_ids();
        ReclaimStats stats = {};
        struct stat before, after, link_before, link_after;
        char target[4096];
        int fd;

        /* A closed directory outside the checkout, and links to it a job planted inside. */
        ASSERT_OK(mkdir(test_path(d, "outside"), 0755));
        ASSERT_OK(mkdir(test_path(d, "outside/sub"), 0500));
        ASSERT_OK(chmod(test_path(d, "outside"), 0500));
        ASSERT_OK(mkdir(test_path(d, "co"), 0755));
        /* Absolute, as planted by a job that knows where the checkout is; and relative. */
        snprintf(target, sizeof(target), "%s/outside", d);
        ASSERT_OK(symlink(target, test_path(d, "co/link")));
        ASSERT_OK(symlink("../outside/sub", test_path(d, "co/relative")));
        ASSERT_OK(lstat(test_path(d, "outside"), &before));
        ASSERT_OK(lstat(test_path(d, "co/link"), &link_before));

        fd = open(test_path(d, "co"), O_PATH | O_DIRECTORY | O_CLOEXEC);
        test_capture_stderr_begin();
        ASSERT_OK(reclaim_tree(fd, test_path(d, "co"), &ids, &stats));
        free(test_capture_stderr_end());
        close(fd);

        ASSERT_OK(lstat(test_path(d, "outside"), &after));
        ASSERT_EQ(after.st_mode, before.st_mode);
        ASSERT_EQ(after.st_ctim.tv_sec, before.st_ctim.tv_sec);
        ASSERT_EQ(after.st_ctim.tv_nsec, before.st_ctim.tv_nsec);
        ASSERT_EQ(mode_of(test_path(d, "outside/sub")), 0500);
        ASSERT_OK(lstat(test_path(d, "co/link"), &link_after));
        ASSERT_TRUE(S_ISLNK(link_after.st_mode));
        ASSERT_EQ(stats.entries, 3);
        ASSERT_EQ(stats.opened, 0);
        reclaim_stats_done(&stats);
        ASSERT_OK(chmod(test_path(d, "outside"), 0755));
        ASSERT_OK(chmod(test_path(d, "outside/sub"), 0755));
}

#define DEEP 400

/* A chain of DEEP closed directories "d/d/d/...", made through fds (no path gets resolved twice). */
static int make_deep(const char *top) {
        int fd = open(top, O_PATH | O_DIRECTORY | O_CLOEXEC);

        for (unsigned i = 0; i < DEEP && fd >= 0; i++) {
                int next;
                if (mkdirat(fd, "d", 0755) < 0)
                        return -1;
                next = openat(fd, "d", O_PATH | O_DIRECTORY | O_CLOEXEC);
                /* A file beside each, so every level has something to list. */
                close(openat(next, "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
                close(fd);
                fd = next;
        }
        close(fd);
        /* Then close each (r-x: still searchable, so the way down stays open). */
        fd = open(top, O_PATH | O_DIRECTORY | O_CLOEXEC);
        for (unsigned i = 0; i < DEEP && fd >= 0; i++) {
                int next;
                if (fchmodat(fd, "d", 0500, 0) < 0)
                        return -1;
                next = openat(fd, "d", O_PATH | O_DIRECTORY | O_CLOEXEC);
                close(fd);
                fd = next;
        }
        close(fd);
        return 0;
}

/* How many levels of the chain are open to their owner. */
static unsigned count_open_levels(const char *top) {
        int fd = open(top, O_PATH | O_DIRECTORY | O_CLOEXEC);
        unsigned n = 0;

        for (;;) {
                struct stat st;
                int next;
                if (fstatat(fd, "d", &st, AT_SYMLINK_NOFOLLOW) < 0 || (st.st_mode & 0700) != 0700)
                        break;
                next = openat(fd, "d", O_PATH | O_DIRECTORY | O_CLOEXEC);
                close(fd);
                fd = next;
                n++;
        }
        close(fd);
        return n;
}

TEST(reclaim_walks_a_very_deep_tree_with_few_fds) {
        const char *d = test_tmpdir();
        int status;
        pid_t pid;

        ASSERT_OK(mkdir(test_path(d, "co"), 0755));
        ASSERT_OK(make_deep(test_path(d, "co")));

        /* Far fewer fds than levels: a walk that held one per level would fail with EMFILE. */
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                struct rlimit rl = { RECLAIM_FDS_KEPT + 16, RECLAIM_FDS_KEPT + 16 };
                ReclaimIds ids = own_ids();
                ReclaimStats stats = {};
                int fd, r;

                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        _exit(10);
                fd = open(test_path(d, "co"), O_PATH | O_DIRECTORY | O_CLOEXEC);
                r = reclaim_tree(fd, test_path(d, "co"), &ids, &stats);
                if (r < 0)
                        _exit(11);
                if (stats.errors != 0)
                        _exit(12);
                if (stats.opened != DEEP)
                        _exit(13);
                if (stats.entries != 2 * DEEP + 1)
                        _exit(14);
                _exit(0);
        }
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 0);
        ASSERT_EQ(count_open_levels(test_path(d, "co")), DEEP);
}

#define PAIRS 600

TEST(reclaim_gives_back_a_hard_linked_file_only_once_every_name_was_met) {
        /*
         * The test's own files stand for a subordinate ID's: "self" is another
         * ID. PAIRS files have both names in the checkout (more than the
         * table's first size, so it grows), one has a name outside: only that
         * one is left. Without root the chown is refused (counted foreign);
         * as root it happens, and is checked.
         */
        const char *d = test_tmpdir();
        uid_t owner = geteuid() ? geteuid() : 1000;
        ReclaimIds ids = {
                .self_uid = owner + 1, .self_gid = owner + 1, .uid_max = 4000000000U, .gid_max = 4000000000U,
                .overflow_uid = 65534, .overflow_gid = 65534,
        };
        ReclaimStats stats = {};
        char a[64], b[64];
        struct stat st;
        int fd;

        ASSERT_OK(mkdir(test_path(d, "co"), 0755));
        ASSERT_OK(mkdir(test_path(d, "co/x"), 0755));
        ASSERT_OK(mkdir(test_path(d, "co/y"), 0755));
        fd = open(test_path(d, "co"), O_PATH | O_DIRECTORY | O_CLOEXEC);
        for (unsigned i = 0; i < PAIRS; i++) {
                snprintf(a, sizeof(a), "x/f%u", i);
                snprintf(b, sizeof(b), "y/g%u", i);
                close(openat(fd, a, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
                ASSERT_OK(linkat(fd, a, fd, b, 0));
                ASSERT_OK(fchownat(fd, a, owner, owner, AT_SYMLINK_NOFOLLOW));
        }
        test_write(d, "co/y/shared", "x");
        ASSERT_OK(linkat(fd, "y/shared", AT_FDCWD, test_path(d, "outside"), 0));
        ASSERT_OK(fchownat(fd, "y/shared", owner, owner, AT_SYMLINK_NOFOLLOW));

        test_capture_stderr_begin();
        ASSERT_OK(reclaim_tree(fd, test_path(d, "co"), &ids, &stats));
        free(test_capture_stderr_end());
        ASSERT_EQ(stats.hardlinked, 1);
        ASSERT_CONTAINS(stats.first_hardlinked, "co/y/shared");
        ASSERT_OK(lstat(test_path(d, "outside"), &st));
        ASSERT_EQ(st.st_uid, owner);
        if (geteuid() == 0) {
                ASSERT_EQ(stats.reowned, PAIRS);
                ASSERT_OK(fstatat(fd, "y/g7", &st, AT_SYMLINK_NOFOLLOW));
                ASSERT_EQ(st.st_uid, owner + 1);
        } else
                ASSERT_TRUE(stats.foreign >= PAIRS);  /* every pair was tried: the kernel refused */
        close(fd);
        reclaim_stats_done(&stats);
}
