/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "fs.h"
#include "lock.h"
#include "log.h"
#include "macro.h"

#define LOCK_PATH "run/rootless-ci.lock"

static void describe_holder(int fd, char *buf, size_t size) {
        char pidbuf[32] = {}, comm[64] = {}, path[64];
        ssize_t n;
        long pid;

        snprintf(buf, size, "another rootless-ci run");
        n = pread(fd, pidbuf, sizeof(pidbuf) - 1, 0);
        if (n <= 0 || sscanf(pidbuf, "%ld", &pid) != 1 || pid <= 0)
                return;

        snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (f && fgets(comm, sizeof(comm), f))
                comm[strcspn(comm, "\n")] = 0;
        snprintf(buf, size, "PID %ld (%s)", pid, comm[0] ? comm : "?");
}

int lock_acquire(int rootfd, bool exclusive, unsigned timeout_ms, int *ret_fd) {
        _cleanup_close_ int fd = -1;
        unsigned long long deadline = now_usec() + timeout_ms * 1000ULL;
        bool announced = false;

        fd = safe_openat(rootfd, LOCK_PATH, O_RDWR | O_CREAT | O_NOFOLLOW, 0600, RESOLVE_POLICY_IN_ROOT);
        if (fd == -ENOENT || fd == -EACCES || fd == -EROFS) {
                /* No writable /run below the root (an image tree): lock the root itself. */
                fd = safe_openat(rootfd, ".", O_RDONLY | O_DIRECTORY, 0, RESOLVE_POLICY_IN_ROOT);
        }
        if (fd < 0)
                return log_error_errno(fd, "Failed to open the lock file: %m");

        for (;;) {
                char holder[128];

                if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0)
                        break;
                if (errno != EWOULDBLOCK)
                        return log_error_errno(negative_errno(), "Failed to take the lock: %m");

                describe_holder(fd, holder, sizeof(holder));
                if (now_usec() >= deadline)
                        return log_error_errno(-EWOULDBLOCK,
                                               "Gave up after %u s waiting for the lock held by %s.",
                                               timeout_ms / 1000, holder);
                if (!announced) {
                        log_info("Waiting up to %u s for the lock held by %s...", timeout_ms / 1000, holder);
                        announced = true;
                }
                (void) WAITING(usleep(50 * 1000));
        }

        /* Best effort: name ourselves for whoever waits next. */
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
                char pidbuf[32];
                int l = snprintf(pidbuf, sizeof(pidbuf), "%-20ld\n", (long) getpid());
                (void) !pwrite(fd, pidbuf, (size_t) l, 0);
        }

        *ret_fd = TAKE_FD(fd);
        return 0;
}
