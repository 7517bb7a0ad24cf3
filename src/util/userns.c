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
#include "exec.h"
#include "log.h"
#include "macro.h"
#include "userns.h"

static char *const clean_env[] = {
        (char *) "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        (char *) "LC_ALL=C",
        NULL,
};

static int compare_ranges(const void *a, const void *b) {
        const SubIdRange *x = a, *y = b;
        return x->start < y->start ? -1 : x->start > y->start ? 1 : 0;
}

/* Append outside IDs [start, end) at the next free inside ID. */
static int map_append(IdMap *m, uint64_t *next_inside, uint64_t start, uint64_t end) {
        if (end <= start)
                return 0;
        if (m->n == IDMAP_EXTENTS_MAX)
                return -E2BIG;
        m->extents[m->n++] = (IdMapExtent) {
                .inside = (uint32_t) *next_inside, .outside = (uint32_t) start, .count = (uint32_t) (end - start),
        };
        *next_inside += end - start;
        return 0;
}

/* Append [start, end) less self, which is mapped to 0 already. */
static int map_append_without(IdMap *m, uint64_t *next_inside, uint64_t start, uint64_t end, uint32_t self) {
        int r;

        if (self < start || self >= end)
                return map_append(m, next_inside, start, end);
        r = map_append(m, next_inside, start, self);
        return r < 0 ? r : map_append(m, next_inside, (uint64_t) self + 1, end);
}

int userns_map_build(uint32_t self, const SubIdRange *ranges, size_t n, IdMap *ret, uint32_t *ret_inside_max) {
        _cleanup_free_ SubIdRange *sorted = NULL;
        uint64_t next_inside = 1, cur_start = 0, cur_end = 0;
        int r;

        ret->n = 0;
        ret->extents[ret->n++] = (IdMapExtent) { .inside = 0, .outside = self, .count = 1 };
        if (n > 0) {
                sorted = reallocarray(NULL, n, sizeof(SubIdRange));
                if (!sorted)
                        return -ENOMEM;
                memcpy(sorted, ranges, n * sizeof(SubIdRange));
                qsort(sorted, n, sizeof(SubIdRange), compare_ranges);
        }
        for (size_t i = 0; i < n; i++) {
                uint64_t s = sorted[i].start, e = sorted[i].start + sorted[i].count;

                if (e > SUBID_ID_MAX + 1)
                        e = SUBID_ID_MAX + 1;
                if (s >= e)
                        continue;
                if (cur_end > cur_start && s <= cur_end) {
                        if (e > cur_end)
                                cur_end = e;
                        continue;
                }
                r = map_append_without(ret, &next_inside, cur_start, cur_end, self);
                if (r < 0)
                        return r;
                cur_start = s;
                cur_end = e;
        }
        r = map_append_without(ret, &next_inside, cur_start, cur_end, self);
        if (r < 0)
                return r;
        if (ret_inside_max)
                *ret_inside_max = (uint32_t) (next_inside - 1);
        return 0;
}

/* As root: write the map ourselves ("inside outside count" per line, at once, as the kernel wants it). */
static int write_map_file(pid_t pid, const char *file, const IdMap *m) {
        char path[64], text[IDMAP_TEXT_MAX + 1];
        _cleanup_close_ int fd = -1;
        size_t l = 0;

        for (size_t i = 0; i < m->n; i++)
                l += (size_t) snprintf(text + l, sizeof(text) - l, "%u %u %u\n", m->extents[i].inside,
                                       m->extents[i].outside, m->extents[i].count);
        snprintf(path, sizeof(path), "/proc/%ld/%s", (long) pid, file);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return log_error_errno(negative_errno(), "Failed to open %s: %m", path);
        if (write(fd, text, l) != (ssize_t) l)
                return log_error_errno(negative_errno(), "Failed to write %s: %m", path);
        return 0;
}

/* As the user: newuidmap/newgidmap PID inside outside count ..., which check each range against /etc/sub[ug]id. */
static int run_id_mapper(const char *name, pid_t pid, const IdMap *m) {
        _cleanup_free_ char *path = NULL, *err = NULL;
        char (*numbers)[12] = NULL;
        const char **argv = NULL;
        size_t k = 0;
        int r, status;

        r = exec_find_program(name, &path);
        if (r < 0)
                return log_error_errno(r, "%s not found in /usr/sbin, /usr/bin, /sbin or /bin (install uidmap): %m",
                                       name);
        numbers = calloc(1 + 3 * m->n, sizeof(*numbers));
        argv = calloc(3 + 3 * m->n, sizeof(char *));
        if (!numbers || !argv) {
                r = -ENOMEM;
                goto out;
        }
        argv[k++] = path;
        snprintf(numbers[0], sizeof(numbers[0]), "%ld", (long) pid);
        argv[k++] = numbers[0];
        for (size_t i = 0; i < m->n; i++) {
                const uint32_t v[3] = { m->extents[i].inside, m->extents[i].outside, m->extents[i].count };
                for (size_t j = 0; j < 3; j++) {
                        snprintf(numbers[1 + 3 * i + j], sizeof(numbers[0]), "%u", v[j]);
                        argv[k++] = numbers[1 + 3 * i + j];
                }
        }
        argv[k] = NULL;

        r = exec_run(argv, &status, &err);
        if (r < 0)
                log_error_errno(r, "Failed to run %s: %m", path);
        else if (status != 0)
                r = log_error_errno(-EPERM, "%s refused the map of process %ld (exit %d): %s", name, (long) pid,
                                    status, err && *err ? err : "no message");
out:
        free(numbers);
        free(argv);
        return r;
}

typedef struct ChildTask {
        const char *path;              /* exec path with argv, or call func(userdata) */
        char *const *argv;
        int (*func)(void *userdata);
        void *userdata;
} ChildTask;

_noreturn_ static void child(const UserNsIdentity *id, bool privileged, int to_parent, int from_parent,
                             const ChildTask *t) {
        char c;

        if (t->path) {
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
        }
        if (chdir("/") < 0)
                _exit(121);

        /* Started by root: become the user first (the user needs no change). */
        if (privileged && (setgroups(0, NULL) < 0 || setresgid(id->gid, id->gid, id->gid) < 0 ||
                           setresuid(id->uid, id->uid, id->uid) < 0))
                _exit(122);
        if (unshare(CLONE_NEWUSER) < 0)
                _exit(123);
        if (write(to_parent, "u", 1) != 1)
                _exit(124);
        if (read(from_parent, &c, 1) != 1 || c != 'm')
                _exit(125);
        close(to_parent);
        close(from_parent);
        /*
         * Root inside. newgidmap denies setgroups() when no subordinate GID is
         * mapped: the user's own groups then stay, harmlessly (they are its).
         */
        if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0 || (setgroups(0, NULL) < 0 && privileged))
                _exit(126);

        if (t->func) {
                int r = t->func(t->userdata);
                fflush(stdout);
                fflush(stderr);
                _exit(r < 0 || r > 255 ? 1 : r);
        }
        (void) signal(SIGPIPE, SIG_DFL);
        execve(t->path, t->argv, clean_env);
        _exit(127);
}

static int userns_spawn(const UserNsIdentity *id, const ChildTask *t) {
        int up[2] = { -1, -1 }, down[2] = { -1, -1 };
        bool privileged = geteuid() == 0;
        const char *what = t->path ?: "the user-namespace child";
        IdMap uid_map, gid_map;
        unsigned long long t0;
        pid_t pid;
        int status, r = 0;
        char c;

        /* Unprivileged, newuidmap maps only the caller's own ranges: it must be the user. */
        if (!privileged && (getuid() != id->uid || geteuid() != id->uid))
                return log_error_errno(-EPERM, "Only root or UID %u itself can map UID %u's IDs.", (unsigned) id->uid,
                                       (unsigned) id->uid);
        r = userns_map_build(id->uid, id->subuids, id->n_subuids, &uid_map, NULL);
        if (r >= 0)
                r = userns_map_build(id->gid, id->subgids, id->n_subgids, &gid_map, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to build the ID maps of UID %u: %m", (unsigned) id->uid);

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
                child(id, privileged, up[1], down[0], t);

        up[1] = safe_close(up[1]);
        down[0] = safe_close(down[0]);

        if (read(up[0], &c, 1) != 1) {
                /* The child died before unsharing; its exit status says where. */
                r = -ECHILD;
        } else {
                if (privileged) {
                        r = write_map_file(pid, "uid_map", &uid_map);
                        if (r >= 0)
                                r = write_map_file(pid, "gid_map", &gid_map);
                } else {
                        r = run_id_mapper("newuidmap", pid, &uid_map);
                        if (r >= 0)
                                r = run_id_mapper("newgidmap", pid, &gid_map);
                }
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
                log_error("The user-namespace child for %s failed to start (status %d).", what, WEXITSTATUS(status));
        if (r < 0)
                goto out;
        if (WIFEXITED(status))
                r = WEXITSTATUS(status);
        else
                r = log_error_errno(-EINTR, "%s was killed by signal %d.", what, WTERMSIG(status));
out:
        safe_close(up[0]);
        safe_close(up[1]);
        safe_close(down[0]);
        safe_close(down[1]);
        return r;
}

int userns_run(const UserNsIdentity *id, const char *path, char *const argv[]) {
        return userns_spawn(id, &(const ChildTask) { .path = path, .argv = argv });
}

int userns_call(const UserNsIdentity *id, int (*func)(void *userdata), void *userdata) {
        return userns_spawn(id, &(const ChildTask) { .func = func, .userdata = userdata });
}
