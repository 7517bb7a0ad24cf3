/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "clock.h"
#include "exec.h"
#include "killpoint.h"
#include "macro.h"

#define STDERR_KEEP (8 * 1024)

static const char *const system_dirs[] = { "/usr/sbin", "/usr/bin", "/sbin", "/bin" };

static char *const clean_environment[] = {
        (char *) "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        (char *) "LC_ALL=C",
        NULL,
};

int exec_find_program(const char *name, char **ret_path) {
        if (strchr(name, '/'))
                return -EINVAL;

        for (size_t i = 0; i < ELEMENTSOF(system_dirs); i++) {
                struct stat st;
                char *p;

                if (asprintf(&p, "%s/%s", system_dirs[i], name) < 0)
                        return -ENOMEM;
                if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111)) {
                        *ret_path = p;
                        return 0;
                }
                free(p);
        }
        return -ENOENT;
}

static void posix_spawn_file_actions_destroyp(posix_spawn_file_actions_t **a) {
        if (*a)
                posix_spawn_file_actions_destroy(*a);
}

static void posix_spawnattr_destroyp(posix_spawnattr_t **a) {
        if (*a)
                posix_spawnattr_destroy(*a);
}

/* Keep the tail of the child's stderr: the error is usually at the end. n <= STDERR_KEEP. */
static void buffer_append_tail(char *buf, size_t *len, const char *data, size_t n) {
        if (*len + n > STDERR_KEEP) {
                size_t drop = *len + n - STDERR_KEEP;
                memmove(buf, buf + drop, *len - drop);
                *len -= drop;
        }
        memcpy(buf + *len, data, n);
        *len += n;
}

int exec_run(const char *const *argv, int *ret_status, char **ret_stderr) {
        posix_spawn_file_actions_t actions_storage, *actions = NULL;
        posix_spawnattr_t attr_storage, *attr = NULL;
        _cleanup_(posix_spawn_file_actions_destroyp) posix_spawn_file_actions_t *actions_cleanup = NULL;
        _cleanup_(posix_spawnattr_destroyp) posix_spawnattr_t *attr_cleanup = NULL;
        _cleanup_close_ int pipe_r = -1, pipe_w = -1;
        _cleanup_free_ char *captured = NULL;
        size_t captured_len = 0;
        sigset_t none, all_default;
        int pipefd[2], status, r;
        unsigned long long t0;
        pid_t pid;

        if (!argv || !argv[0] || argv[0][0] != '/')
                return -EINVAL;

        captured = malloc(STDERR_KEEP + 1);
        if (!captured)
                return -ENOMEM;

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return negative_errno();
        pipe_r = pipefd[0];
        pipe_w = pipefd[1];

        r = posix_spawn_file_actions_init(&actions_storage);
        if (r != 0)
                return -r;
        actions = actions_cleanup = &actions_storage;
        if ((r = posix_spawn_file_actions_addopen(actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0)) != 0 ||
            (r = posix_spawn_file_actions_addopen(actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0)) != 0 ||
            (r = posix_spawn_file_actions_adddup2(actions, pipe_w, STDERR_FILENO)) != 0)
                return -r;

        /* The child starts with no blocked signals and default dispositions, whatever we have. */
        r = posix_spawnattr_init(&attr_storage);
        if (r != 0)
                return -r;
        attr = attr_cleanup = &attr_storage;
        sigemptyset(&none);
        sigfillset(&all_default);
        if ((r = posix_spawnattr_setsigmask(attr, &none)) != 0 ||
            (r = posix_spawnattr_setsigdefault(attr, &all_default)) != 0 ||
            (r = posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)) != 0)
                return -r;

        t0 = now_usec();
        r = posix_spawn(&pid, argv[0], actions, attr, (char *const *) argv, clean_environment);
        if (r != 0)
                return -r;
        pipe_w = safe_close(pipe_w);
        /* With the child running (mkfs, useradd …): a kill here leaves it half done. */
        killpoint_at("exec-spawned", strrchr(argv[0], '/') + 1);

        for (;;) {
                char buf[STDERR_KEEP / 2];
                ssize_t n = read(pipe_r, buf, sizeof(buf));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        break;  /* still reap the child below */
                }
                if (n == 0)
                        break;
                buffer_append_tail(captured, &captured_len, buf, (size_t) n);
        }

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return negative_errno();
        waited_since(t0);

        if (WIFEXITED(status))
                *ret_status = WEXITSTATUS(status);
        else if (WIFSIGNALED(status))
                *ret_status = 128 + WTERMSIG(status);
        else
                *ret_status = 255;

        if (ret_stderr) {
                while (captured_len > 0 && (captured[captured_len - 1] == '\n' || captured[captured_len - 1] == '\r'))
                        captured_len--;
                captured[captured_len] = 0;
                *ret_stderr = TAKE_PTR(captured);
        }
        return 0;
}
