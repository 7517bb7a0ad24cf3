/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"
#include "shadowlock.h"

#define LOCK_TRIES 15

static void sleep_a_second(void) {
        struct timespec ts = { .tv_sec = 1 };
        (void) nanosleep(&ts, NULL);
}

static int lock_pwd_file(ShadowLock *l) {
        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

        l->pwd_lock_fd = openat(l->etc_fd, ".pwd.lock", O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (l->pwd_lock_fd < 0)
                return negative_errno();
        for (unsigned i = 0;; i++) {
                if (fcntl(l->pwd_lock_fd, F_OFD_SETLK, &fl) >= 0)
                        return 0;
                if (errno != EAGAIN && errno != EACCES)
                        return negative_errno();
                if (i + 1 >= LOCK_TRIES)
                        return -EBUSY;
                sleep_a_second();
        }
}

/* The PID in an existing lock file, or 0. */
static pid_t lock_owner(int etc_fd, const char *lock) {
        char buf[32] = {};
        _cleanup_close_ int fd = openat(etc_fd, lock, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        ssize_t n;
        long pid;

        if (fd < 0)
                return 0;
        n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return 0;
        pid = strtol(buf, NULL, 10);
        return pid > 0 ? (pid_t) pid : 0;
}

static bool remove_if_stale(int etc_fd, const char *lock) {
        pid_t owner = lock_owner(etc_fd, lock);
        _cleanup_free_ char *source = NULL;

        if (owner <= 0 || kill(owner, 0) >= 0 || errno != ESRCH)
                return false;
        log_warning("Removing stale lock /etc/%s of process %ld, which is gone.", lock, (long) owner);
        /*
         * A locker killed between link() and unlink() (a useradd killed with
         * us) also left the lock's link source, FILE.PID with its PID in it:
         * that goes too, or every later run would find it in /etc.
         */
        if (asprintf(&source, "%.*s.%ld", (int) (strlen(lock) - strlen(".lock")), lock, (long) owner) >= 0 &&
            lock_owner(etc_fd, source) == owner)
                (void) unlinkat(etc_fd, source, 0);
        return unlinkat(etc_fd, lock, 0) >= 0;
}

static int lock_one(ShadowLock *l, const char *file) {
        _cleanup_free_ char *tmp = NULL, *lock = NULL;
        char pid[32];
        int r;

        if (asprintf(&tmp, "%s.%ld", file, (long) getpid()) < 0 || asprintf(&lock, "%s.lock", file) < 0)
                return -ENOMEM;
        snprintf(pid, sizeof(pid), "%ld", (long) getpid());

        for (unsigned i = 0;; i++) {
                _cleanup_close_ int fd = -1;
                struct stat st;
                bool linked;

                (void) unlinkat(l->etc_fd, tmp, 0);
                fd = openat(l->etc_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd < 0)
                        return negative_errno();
                if (write(fd, pid, strlen(pid)) != (ssize_t) strlen(pid)) {
                        r = negative_errno();
                        (void) unlinkat(l->etc_fd, tmp, 0);
                        return r;
                }
                linked = linkat(l->etc_fd, tmp, l->etc_fd, lock, 0) >= 0;
                r = linked ? 0 : negative_errno();
                /* As shadow does: trust the link count, link(2) can report failure on NFS after success. */
                if (!linked && fstat(fd, &st) >= 0 && st.st_nlink == 2)
                        linked = true;
                (void) unlinkat(l->etc_fd, tmp, 0);
                if (linked) {
                        l->locked[l->n_locked++] = TAKE_PTR(lock);
                        return 0;
                }
                if (r != -EEXIST)
                        return r;

                if (remove_if_stale(l->etc_fd, lock))
                        continue;
                if (i + 1 >= LOCK_TRIES)
                        return -EBUSY;
                sleep_a_second();
        }
}

int shadow_lock_remove_stale(int root_fd, const char *const *files, size_t n_files) {
        _cleanup_close_ int etc_fd = safe_openat(root_fd, "/etc", O_RDONLY | O_DIRECTORY, 0, RESOLVE_POLICY_IN_ROOT);
        int removed = 0;

        if (etc_fd < 0)
                return etc_fd;
        for (size_t i = 0; i < n_files; i++) {
                _cleanup_free_ char *lock = NULL;

                if (asprintf(&lock, "%s.lock", files[i]) < 0)
                        return -ENOMEM;
                removed += remove_if_stale(etc_fd, lock);
        }
        return removed;
}

void shadow_lock_release(ShadowLock *l) {
        for (size_t i = l->n_locked; i > 0; i--) {
                (void) unlinkat(l->etc_fd, l->locked[i - 1], 0);
                free(l->locked[i - 1]);
        }
        l->n_locked = 0;
        l->pwd_lock_fd = safe_close(l->pwd_lock_fd);
        l->etc_fd = safe_close(l->etc_fd);
}

int shadow_lock_acquire(int root_fd, const char *const *files, size_t n_files, ShadowLock *l) {
        int r;

        *l = (ShadowLock) SHADOW_LOCK_INIT;
        if (n_files > SHADOW_LOCK_MAX_FILES)
                return -EINVAL;

        l->etc_fd = safe_openat(root_fd, "/etc", O_RDONLY | O_DIRECTORY, 0, RESOLVE_POLICY_IN_ROOT);
        if (l->etc_fd < 0)
                return log_error_errno(l->etc_fd, "Failed to open /etc: %m");

        r = lock_pwd_file(l);
        if (r < 0) {
                shadow_lock_release(l);
                return log_error_errno(r, "Failed to take the account database lock /etc/.pwd.lock: %m%s",
                                       r == -EBUSY ? " (another program is editing the account files)" : "");
        }
        for (size_t i = 0; i < n_files; i++) {
                r = lock_one(l, files[i]);
                if (r < 0) {
                        shadow_lock_release(l);
                        return log_error_errno(r, "Failed to lock /etc/%s: %m%s", files[i],
                                               r == -EBUSY ? " (another program holds its lock file)" : "");
                }
        }
        return 0;
}
