/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests.h"
#include "util/fs.h"
#include "util/lock.h"
#include "util/macro.h"

static long long now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* lock_acquire() with what it logs captured; *ret_fd is -1 unless it succeeded. */
static int acquire(const char *root, bool exclusive, unsigned timeout_ms, int *ret_fd, char **ret_log) {
        _cleanup_close_ int rootfd = open_root(root);
        char *log;
        int r;

        *ret_fd = -1;
        if (rootfd < 0)
                return rootfd;
        test_capture_stderr_begin();
        r = lock_acquire(rootfd, exclusive, timeout_ms, ret_fd);
        log = test_capture_stderr_end();
        if (ret_log)
                *ret_log = log;
        else
                free(log);
        return r;
}

static const char *make_root(bool with_run) {
        const char *root = test_tmpdir();
        if (with_run)
                test_write(root, "run/.keep", "");
        else
                test_write(root, "etc/.keep", "");
        return root;
}

TEST(lock_exclusive_blocks_exclusive_and_shared) {
        const char *root = make_root(true);
        _cleanup_close_ int a = -1, b = -1, c = -1;
        struct stat st;

        ASSERT_EQ(acquire(root, true, 0, &a, NULL), 0);
        ASSERT_OK(a);
        ASSERT_EQ(acquire(root, true, 0, &b, NULL), -EWOULDBLOCK);
        ASSERT_EQ(b, -1);
        ASSERT_EQ(acquire(root, false, 0, &c, NULL), -EWOULDBLOCK);
        ASSERT_EQ(c, -1);

        /* The lock file lives in the tree's run/, closed to others. */
        ASSERT_OK(lstat(test_path(root, "run/rootless-ci.lock"), &st));
        ASSERT_TRUE(S_ISREG(st.st_mode));
        ASSERT_EQ(st.st_mode & 07777, 0600);

        /* Released with its fd. */
        a = safe_close(a);
        ASSERT_EQ(acquire(root, true, 0, &b, NULL), 0);
        ASSERT_OK(b);
}

TEST(lock_shared_allows_shared_and_blocks_exclusive) {
        const char *root = make_root(true);
        _cleanup_close_ int a = -1, b = -1, c = -1;

        ASSERT_EQ(acquire(root, false, 0, &a, NULL), 0);
        ASSERT_EQ(acquire(root, false, 0, &b, NULL), 0);
        ASSERT_OK(a);
        ASSERT_OK(b);
        ASSERT_EQ(acquire(root, true, 0, &c, NULL), -EWOULDBLOCK);
        a = safe_close(a);
        ASSERT_EQ(acquire(root, true, 0, &c, NULL), -EWOULDBLOCK);
        b = safe_close(b);
        ASSERT_EQ(acquire(root, true, 0, &c, NULL), 0);
}

TEST(lock_records_the_holder_pid) {
        const char *root = make_root(true);
        _cleanup_close_ int a = -1;
        _cleanup_free_ char *content = NULL;
        char want[32];

        ASSERT_EQ(acquire(root, true, 0, &a, NULL), 0);
        content = test_read(root, "run/rootless-ci.lock");
        snprintf(want, sizeof(want), "%ld", (long) getpid());
        ASSERT_TRUE(content != NULL);
        ASSERT_TRUE(strncmp(content, want, strlen(want)) == 0);
}

/*
 * A child takes the lock and says so on a pipe; it holds it until the parent
 * closes the other pipe. Returns the child's PID.
 */
static pid_t fork_holder(const char *root, bool exclusive, int *ret_release_fd) {
        int ready[2], release[2];
        pid_t pid;
        char c;

        if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(release, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int rootfd = open_root(root), fd = -1;

                close(ready[0]);
                close(release[1]);
                if (rootfd < 0 || lock_acquire(rootfd, exclusive, 0, &fd) < 0)
                        _exit(1);
                if (write(ready[1], "x", 1) != 1)
                        _exit(1);
                /* Hold the lock until the parent closes its end. */
                (void) !read(release[0], &c, 1);
                _exit(0);
        }
        close(ready[1]);
        close(release[0]);
        if (read(ready[0], &c, 1) != 1) {
                close(ready[0]);
                close(release[1]);
                (void) waitpid(pid, NULL, 0);
                return -EIO;
        }
        close(ready[0]);
        *ret_release_fd = release[1];
        return pid;
}

static int reap(pid_t pid, int release_fd) {
        int status;

        close(release_fd);
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -ECHILD;
}

TEST(lock_timeout_zero_fails_at_once_and_names_the_holder) {
        const char *root = make_root(true);
        _cleanup_free_ char *log = NULL;
        char want[64];
        int fd = -1, release = -1, r;
        long long start, elapsed;
        pid_t pid;

        pid = fork_holder(root, true, &release);
        ASSERT_OK(pid);

        start = now_ms();
        r = acquire(root, false, 0, &fd, &log);
        elapsed = now_ms() - start;
        ASSERT_EQ(reap(pid, release), 0);

        ASSERT_EQ(r, -EWOULDBLOCK);
        ASSERT_EQ(fd, -1);
        /* "At once": no waiting loop (it polls every 50 ms), with slack for a loaded machine. */
        ASSERT_TRUE(elapsed < 1000);
        snprintf(want, sizeof(want), "held by PID %ld (", (long) pid);
        ASSERT_CONTAINS(log, want);
        ASSERT_CONTAINS(log, "Gave up after 0 s waiting for the lock");
}

TEST(lock_waits_for_the_timeout) {
        const char *root = make_root(true);
        _cleanup_free_ char *log = NULL;
        int fd = -1, release = -1, r;
        long long start, elapsed;
        pid_t pid;

        pid = fork_holder(root, false, &release);
        ASSERT_OK(pid);

        start = now_ms();
        r = acquire(root, true, 150, &fd, &log);
        elapsed = now_ms() - start;
        ASSERT_EQ(reap(pid, release), 0);

        ASSERT_EQ(r, -EWOULDBLOCK);
        ASSERT_TRUE(elapsed >= 150);
        ASSERT_TRUE(elapsed < 5000);

        /* Once the holder is gone, it is ours. */
        ASSERT_EQ(acquire(root, true, 0, &fd, NULL), 0);
        safe_close(fd);
}

TEST(lock_without_run_locks_the_root_directory) {
        const char *root = make_root(false);
        _cleanup_close_ int a = -1, b = -1, dirfd = -1;
        struct stat st;

        ASSERT_EQ(acquire(root, true, 0, &a, NULL), 0);
        ASSERT_OK(a);
        /* Nothing was created in the tree... */
        ASSERT_TRUE(lstat(test_path(root, "run"), &st) < 0 && errno == ENOENT);
        /* ...the lock is on the root directory itself, */
        ASSERT_OK(fstat(a, &st));
        ASSERT_TRUE(S_ISDIR(st.st_mode));
        dirfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT_OK(dirfd);
        ASSERT_TRUE(flock(dirfd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK);
        /* ...and it excludes a second run all the same. */
        ASSERT_EQ(acquire(root, false, 0, &b, NULL), -EWOULDBLOCK);
}

TEST(lock_never_writes_through_a_planted_symlink) {
        const char *root = make_root(true);
        _cleanup_free_ char *victim = NULL;
        _cleanup_close_ int a = -1;

        test_write(root, "etc/victim", "victim\n");
        ASSERT_OK(symlink("/etc/victim", test_path(root, "run/rootless-ci.lock")));
        ASSERT_TRUE(acquire(root, true, 0, &a, NULL) < 0);
        victim = test_read(root, "etc/victim");
        ASSERT_STREQ(victim, "victim\n");
}
