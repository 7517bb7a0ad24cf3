/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "killpoint.h"
#include "log.h"
#include "macro.h"
#include "spawn.h"

static char *const clean_env[] = {
        (char *) "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        (char *) "LC_ALL=C",
        NULL,
};

int spawn_wait(const char *path, char *const argv[]) {
        pid_t pid;
        int status;

        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid < 0)
                return log_error_errno(negative_errno(), "Failed to fork for %s: %m", path);
        if (pid == 0) {
                int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
                        _exit(127);
                (void) signal(SIGPIPE, SIG_DFL);
                /* Nothing of ours leaks into the child. */
                if (close_range(3, ~0U, 0) < 0)
                        for (int fd = 3; fd < 65536; fd++)
                                (void) close(fd);
                execve(path, argv, clean_env);
                _exit(127);
        }
        /* With the child running (useradd …): a kill here leaves it half done. */
        killpoint_at("exec-spawned", strrchr(path, '/') ? strrchr(path, '/') + 1 : path);

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return log_error_errno(negative_errno(), "Failed to wait for %s: %m", path);
        if (WIFEXITED(status)) {
                if (WEXITSTATUS(status) == 127)
                        log_debug("%s exited with 127 (could not be executed?)", path);
                return WEXITSTATUS(status);
        }
        return log_error_errno(-EINTR, "%s was killed by signal %d.", path, WTERMSIG(status));
}
