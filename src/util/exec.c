/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "clock.h"
#include "exec.h"
#include "killpoint.h"
#include "macro.h"

#define STDERR_KEEP (8 * 1024)
#define OUTPUT_KEEP (64 * 1024)

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

/* Reap pid; its exit status, or 128 + N when killed by signal N. */
static int wait_exit_status(pid_t pid, int *ret_status) {
        int status;

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return negative_errno();
        if (WIFEXITED(status))
                *ret_status = WEXITSTATUS(status);
        else if (WIFSIGNALED(status))
                *ret_status = 128 + WTERMSIG(status);
        else
                *ret_status = 255;
        return 0;
}

/*
 * What both runners need first: an absolute argv[0], a buffer for keep bytes
 * of the child's output and its NUL, and the close-on-exec pipe it comes
 * through.
 */
static int spawn_prepare(const char *const *argv, size_t keep, char **ret_buf, int *ret_pipe_r, int *ret_pipe_w) {
        _cleanup_free_ char *buf = NULL;
        int pipefd[2];

        if (!argv || !argv[0] || argv[0][0] != '/')
                return -EINVAL;
        buf = malloc(keep + 1);
        if (!buf)
                return -ENOMEM;
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return negative_errno();
        *ret_buf = TAKE_PTR(buf);
        *ret_pipe_r = pipefd[0];
        *ret_pipe_w = pipefd[1];
        return 0;
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
        unsigned long long t0;
        pid_t pid;
        int r;

        r = spawn_prepare(argv, STDERR_KEEP, &captured, &pipe_r, &pipe_w);
        if (r < 0)
                return r;

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

        r = wait_exit_status(pid, ret_status);
        if (r < 0)
                return r;
        waited_since(t0);

        if (ret_stderr) {
                while (captured_len > 0 && (captured[captured_len - 1] == '\n' || captured[captured_len - 1] == '\r'))
                        captured_len--;
                captured[captured_len] = 0;
                *ret_stderr = TAKE_PTR(captured);
        }
        return 0;
}

/* The child of exec_capture_as(): never returns. */
_noreturn_ static void capture_child(const char *const *argv, uid_t uid, gid_t gid, int out_fd) {
        sigset_t none;
        int null_fd;

        for (int sig = 1; sig < _NSIG; sig++)
                (void) signal(sig, SIG_DFL);
        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);
        null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0 ||
            dup2(out_fd, STDERR_FILENO) < 0)
                _exit(126);
        /*
         * Groups first, then the GID, then the UID: each later step gives up
         * the right to the earlier ones. A caller that is not root has no
         * privilege to give up, and could not.
         */
        if (geteuid() == 0 && (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0))
                _exit(126);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                _exit(126);
        execve(argv[0], (char *const *) argv, clean_environment);
        _exit(127);
}

int exec_capture_as(const char *const *argv, uid_t uid, gid_t gid, unsigned timeout_ms, int *ret_status,
                    char **ret_output) {
        _cleanup_close_ int pipe_r = -1, pipe_w = -1;
        _cleanup_free_ char *out = NULL;
        unsigned long long deadline;
        size_t len = 0;
        bool killed = false;
        pid_t pid;
        int r;

        r = spawn_prepare(argv, OUTPUT_KEEP, &out, &pipe_r, &pipe_w);
        if (r < 0)
                return r;

        deadline = now_usec() + (unsigned long long) timeout_ms * 1000ULL;
        pid = fork();
        if (pid < 0)
                return negative_errno();
        if (pid == 0)
                capture_child(argv, uid, gid, pipe_w);
        pipe_w = safe_close(pipe_w);

        for (;;) {
                struct pollfd p = { .fd = pipe_r, .events = POLLIN };
                unsigned long long now = now_usec();
                char buf[4096];
                ssize_t n;

                if (!killed && now >= deadline) {
                        /* Hung: kill it, then read on to its end of the pipe (or to a child it left holding it). */
                        (void) kill(pid, SIGKILL);
                        killed = true;
                }
                r = poll(&p, 1, killed ? 1000 : (int) ((deadline - now + 999) / 1000));
                if (r < 0 && errno != EINTR)
                        break;
                if (r <= 0) {
                        if (killed)
                                break;
                        continue;
                }
                n = read(pipe_r, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                if (len < OUTPUT_KEEP) {
                        size_t take = (size_t) n < OUTPUT_KEEP - len ? (size_t) n : OUTPUT_KEEP - len;
                        memcpy(out + len, buf, take);
                        len += take;
                }
        }
        r = wait_exit_status(pid, ret_status);
        if (r < 0)
                return r;
        out[len] = 0;
        *ret_output = TAKE_PTR(out);
        return 0;
}
