/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "macro.h"
#include "userns.h"

static char *const clean_env[] = {
        (char *) "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        (char *) "LC_ALL=C",
        NULL,
};

static int write_map(pid_t pid, const char *file, const char *map) {
        char path[64];
        _cleanup_close_ int fd = -1;
        size_t l = strlen(map);

        snprintf(path, sizeof(path), "/proc/%ld/%s", (long) pid, file);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        if (write(fd, map, l) != (ssize_t) l)
                return negative_errno();
        return 0;
}

_noreturn_ static void child(const UserNsIdentity *id, int to_parent, int from_parent, const char *path,
                             char *const argv[]) {
        char c;
        int null;

        /*
         * Nothing of ours reaches the program: every fd above stdio is closed on
         * exec (the process is not dumpable until then, so the user cannot
         * ptrace it meanwhile).
         */
        null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
                _exit(120);
        if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
                for (int fd = 3; fd < 65536; fd++)
                        if (fd != to_parent && fd != from_parent)
                                (void) fcntl(fd, F_SETFD, FD_CLOEXEC);
        if (chdir("/") < 0)
                _exit(121);

        if (setgroups(0, NULL) < 0 || setresgid(id->gid, id->gid, id->gid) < 0 ||
            setresuid(id->uid, id->uid, id->uid) < 0)
                _exit(122);
        if (unshare(CLONE_NEWUSER) < 0)
                _exit(123);
        if (write(to_parent, "u", 1) != 1)
                _exit(124);
        if (read(from_parent, &c, 1) != 1 || c != 'm')
                _exit(125);
        close(to_parent);
        close(from_parent);
        if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0 || setgroups(0, NULL) < 0)
                _exit(126);

        (void) signal(SIGPIPE, SIG_DFL);
        execve(path, argv, clean_env);
        _exit(127);
}

int userns_run(const UserNsIdentity *id, const char *path, char *const argv[]) {
        int up[2] = { -1, -1 }, down[2] = { -1, -1 };
        char uid_map[128], gid_map[128], c;
        unsigned long long t0;
        pid_t pid;
        int status, r = 0;

        if (id->subuid_count == 0 || id->subgid_count == 0)
                return -EINVAL;
        snprintf(uid_map, sizeof(uid_map), "0 %u 1\n1 %u %u\n", (unsigned) id->uid, id->subuid_start, id->subuid_count);
        snprintf(gid_map, sizeof(gid_map), "0 %u 1\n1 %u %u\n", (unsigned) id->gid, id->subgid_start, id->subgid_count);

        if (pipe2(up, O_CLOEXEC) < 0 || pipe2(down, O_CLOEXEC) < 0) {
                r = negative_errno();
                goto out;
        }
        fflush(stdout);
        fflush(stderr);
        t0 = now_usec();
        pid = fork();
        if (pid < 0) {
                r = negative_errno();
                goto out;
        }
        if (pid == 0)
                child(id, up[1], down[0], path, argv);

        up[1] = safe_close(up[1]);
        down[0] = safe_close(down[0]);

        if (read(up[0], &c, 1) != 1) {
                /* The child died before unsharing; its exit status says where. */
                r = -ECHILD;
        } else {
                r = write_map(pid, "uid_map", uid_map);
                if (r >= 0)
                        r = write_map(pid, "gid_map", gid_map);
                if (r >= 0 && write(down[1], "m", 1) != 1)
                        r = negative_errno();
                if (r < 0)
                        log_error_errno(r, "Failed to set up the user namespace of process %ld: %m", (long) pid);
        }
        down[1] = safe_close(down[1]);

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR) {
                        r = negative_errno();
                        goto out;
                }
        waited_since(t0);
        if (r == -ECHILD && WIFEXITED(status))
                log_error("The user-namespace child for %s failed to start (status %d).", path, WEXITSTATUS(status));
        if (r < 0)
                goto out;
        if (WIFEXITED(status))
                r = WEXITSTATUS(status);
        else
                r = log_error_errno(-EINTR, "%s was killed by signal %d.", path, WTERMSIG(status));
out:
        safe_close(up[0]);
        safe_close(up[1]);
        safe_close(down[0]);
        safe_close(down[1]);
        return r;
}
