/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <inttypes.h>
#include <stdint.h>
#include <sys/random.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fs.h"
#include "killpoint.h"
#include "log.h"
#include "macro.h"

#define MAX_SYMLINK_HOPS SYMLINK_MAX_FOLLOW
/* Directories deep, as the fallback walk allowed before path_walk. */
#define WALK_DEPTH_MAX (PATH_MAX / 2)

static int openat2_raw(int dirfd, const char *path, struct open_how *how) {
        long r = syscall(SYS_openat2, dirfd, path, how, sizeof(*how));
        return r < 0 ? negative_errno() : (int) r;
}

static bool use_fallback(void) {
        const char *e = getenv("RCI_FORCE_RESOLVE_FALLBACK");
        return e && streq(e, "1");
}

/*
 * The fallback walk. Keeps a stack of the directories entered so ".." never
 * climbs above the start, and resolves symlinks (IN_ROOT) by reading them and
 * restarting from the root for absolute targets.
 */
static int walk_fallback(int dirfd, const char *path, int open_flags, mode_t mode, ResolvePolicy policy) {
        _cleanup_free_ char *todo = NULL;
        int stack[PATH_MAX / 2];
        size_t depth = 0;
        unsigned hops = 0;
        int r;

        /* As openat2(RESOLVE_BENEATH): an absolute path leaves dirfd as surely as "..". */
        if (policy == RESOLVE_POLICY_NO_SYMLINKS && path[0] == '/')
                return -EXDEV;

        todo = strdup(path);
        if (!todo)
                return -ENOMEM;

        stack[0] = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
        if (stack[0] < 0)
                return negative_errno();

        for (;;) {
                char *p = todo, *slash, *name;
                bool last;

                while (*p == '/')
                        p++;
                if (*p == 0) {
                        /* Path was the start directory itself (or ended in '/'). */
                        r = openat(stack[depth], ".", (open_flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW)) | O_CLOEXEC);
                        if (r < 0)
                                r = negative_errno();
                        goto finish;
                }
                slash = strchr(p, '/');
                if (slash)
                        *slash = 0;
                name = p;
                /* Trailing slashes make the last component a directory, not "not last". */
                last = !slash || slash[1 + strspn(slash + 1, "/")] == 0;

                if (streq(name, ".")) {
                        /* nothing */
                } else if (streq(name, "..")) {
                        if (depth == 0) {
                                if (policy == RESOLVE_POLICY_NO_SYMLINKS) {
                                        r = -EXDEV;
                                        goto finish;
                                }
                                /* IN_ROOT: ".." of the root is the root. */
                        } else {
                                safe_close(stack[depth]);
                                depth--;
                        }
                } else {
                        struct stat st;

                        if (fstatat(stack[depth], name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                                if (errno == ENOENT && last && (open_flags & O_CREAT)) {
                                        r = openat(stack[depth], name, open_flags | O_NOFOLLOW | O_CLOEXEC, mode);
                                        if (r < 0)
                                                r = negative_errno();
                                        goto finish;
                                }
                                r = negative_errno();
                                goto finish;
                        }

                        if (S_ISLNK(st.st_mode)) {
                                char target[PATH_MAX];
                                ssize_t n;
                                char *rest;

                                if (policy == RESOLVE_POLICY_NO_SYMLINKS) {
                                        r = -ELOOP;
                                        goto finish;
                                }
                                if (last && ((open_flags & O_NOFOLLOW) ||
                                             (open_flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL))) {
                                        /*
                                         * A final link that open(2) would not follow: let it answer for
                                         * the link itself (the link with O_PATH, else ELOOP or EEXIST),
                                         * as openat2 does. Never create through it.
                                         */
                                        r = openat(stack[depth], name, open_flags | O_NOFOLLOW | O_CLOEXEC, mode);
                                        if (r < 0)
                                                r = negative_errno();
                                        goto finish;
                                }
                                if (++hops > MAX_SYMLINK_HOPS) {
                                        r = -ELOOP;
                                        goto finish;
                                }
                                n = readlinkat(stack[depth], name, target, sizeof(target) - 1);
                                if (n < 0) {
                                        r = negative_errno();
                                        goto finish;
                                }
                                target[n] = 0;
                                if (target[0] == '/')
                                        for (; depth > 0; depth--)
                                                safe_close(stack[depth]);
                                if (asprintf(&rest, "%s/%s", target, slash ? slash + 1 : "") < 0) {
                                        r = -ENOMEM;
                                        goto finish;
                                }
                                free(todo);
                                todo = rest;
                                continue;
                        }

                        if (last) {
                                if ((open_flags & O_CREAT) && (open_flags & O_EXCL)) {
                                        r = -EEXIST;
                                        goto finish;
                                }
                                r = openat(stack[depth], name, (open_flags & ~O_CREAT) | O_NOFOLLOW | O_CLOEXEC, mode);
                                if (r < 0)
                                        r = negative_errno();
                                goto finish;
                        }

                        if (!S_ISDIR(st.st_mode)) {
                                r = -ENOTDIR;
                                goto finish;
                        }
                        if (depth + 1 >= ELEMENTSOF(stack)) {
                                r = -ENAMETOOLONG;
                                goto finish;
                        }
                        r = openat(stack[depth], name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (r < 0) {
                                r = negative_errno();
                                goto finish;
                        }
                        stack[++depth] = r;
                }

                if (!slash) {
                        r = openat(stack[depth], ".", (open_flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW)) | O_CLOEXEC);
                        if (r < 0)
                                r = negative_errno();
                        goto finish;
                }
                memmove(todo, slash + 1, strlen(slash + 1) + 1);
        }

finish:
        for (size_t i = 0; i <= depth; i++)
                safe_close(stack[i]);
        return r;
}

/* The directories a walk has entered: dirs[0] is its start, dirs[depth] where it stands. */
typedef struct WalkDir {
        int fd;
        struct stat st;         /* when a visitor wants it */
        size_t path_len;        /* the length of Walk.path while this is where the walk stands */
} WalkDir;

typedef struct Walk {
        WalkDir *dirs;
        size_t depth, n_alloc;
        char *path;             /* where the walk stands, below its start: "/", "/usr/lib" */
        size_t path_alloc;
        bool want_stat;
} Walk;

static void walk_done(Walk *w) {
        for (size_t i = 0; w->dirs && i <= w->depth; i++)
                safe_close(w->dirs[i].fd);
        free(w->dirs);
        free(w->path);
}

/* Enter the directory fd (taken) called name (NULL: the start). */
static int walk_push(Walk *w, int fd, const char *name) {
        size_t len = name ? w->dirs[w->depth].path_len : 0, need;
        size_t level = name ? w->depth + 1 : 0;

        if (level >= WALK_DEPTH_MAX) {
                safe_close(fd);
                return -ENAMETOOLONG;
        }
        if (level >= w->n_alloc) {
                size_t n = w->n_alloc ? w->n_alloc * 2 : 16;
                WalkDir *d = reallocarray(w->dirs, n, sizeof(WalkDir));
                if (!d) {
                        safe_close(fd);
                        return -ENOMEM;
                }
                w->dirs = d;
                w->n_alloc = n;
        }
        need = len + 1 + (name ? strlen(name) : 0) + 1;
        if (need > w->path_alloc) {
                char *p = realloc(w->path, need * 2);
                if (!p) {
                        safe_close(fd);
                        return -ENOMEM;
                }
                w->path = p;
                w->path_alloc = need * 2;
        }
        if (!name)
                strcpy(w->path, "/");
        else
                sprintf(w->path + len, "%s%s", len > 1 ? "/" : "", name);
        w->dirs[level] = (WalkDir) { .fd = fd, .path_len = strlen(w->path) };
        w->depth = level;
        if (w->want_stat && fstat(fd, &w->dirs[level].st) < 0)
                return negative_errno();
        return 0;
}

static void walk_pop(Walk *w) {
        safe_close(w->dirs[w->depth].fd);
        w->depth--;
        w->path[w->dirs[w->depth].path_len] = 0;
}

/* The end of the walk: on_last, or an O_PATH fd of what the path names. */
static int walk_last(const PathWalkStep *s, const PathWalkVisitor *v, void *userdata, int *ret_fd) {
        int r;

        if (v && v->on_last) {
                r = v->on_last(userdata, s);
                if (r != 0)
                        return r;
        }
        if (!s->st)
                return -ENOENT;
        if (ret_fd) {
                *ret_fd = s->name ? openat(s->dir_fd, s->name, O_PATH | O_NOFOLLOW | O_CLOEXEC)
                                  : fcntl(s->dir_fd, F_DUPFD_CLOEXEC, 3);
                if (*ret_fd < 0)
                        return negative_errno();
        }
        return 0;
}

int path_walk(int dirfd, const char *path, WalkFlags flags, const PathWalkVisitor *v, void *userdata, int *ret_fd) {
        _cleanup_(walk_done) Walk w = { .want_stat = v != NULL };
        _cleanup_free_ char *todo = NULL;
        unsigned follows = 0;
        int fd, r;

        if (ret_fd)
                *ret_fd = -1;
        /* As openat2(RESOLVE_BENEATH): an absolute path leaves dirfd as surely as "..". */
        if ((flags & WALK_BENEATH) && path[0] == '/')
                return -EXDEV;
        todo = strdup(path);
        if (!todo)
                return -ENOMEM;
        fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return negative_errno();
        r = walk_push(&w, fd, NULL);
        if (r < 0)
                return r;

        for (;;) {
                WalkDir *cur = &w.dirs[w.depth];
                PathWalkStep s = { .dir_fd = cur->fd, .dir_st = &cur->st, .dir_path = w.path };
                char *p = todo + strspn(todo, "/"), *slash, target[PATH_MAX];
                struct stat st;

                if (*p == 0) {
                        /* The path names where the walk stands (it was empty, or ended in "/", "." or ".."). */
                        s.st = &cur->st;
                        return walk_last(&s, v, userdata, ret_fd);
                }
                slash = strchr(p, '/');
                if (slash)
                        *slash = 0;
                s.name = p;
                /* Trailing slashes make the last component a directory, not "not last". */
                s.last = !slash || slash[1 + strspn(slash + 1, "/")] == 0;

                if (streq(s.name, ".")) {
                        /* nothing */
                } else if (streq(s.name, "..")) {
                        if (flags & WALK_NO_DOTDOT)
                                return -EINVAL;
                        if (w.depth > 0)
                                walk_pop(&w);
                        else if (flags & WALK_BENEATH)
                                return -EXDEV;
                        /* else ".." of the start is the start, as in a chroot */
                } else {
                        if (fstatat(cur->fd, s.name, &st, AT_SYMLINK_NOFOLLOW) >= 0)
                                s.st = &st;
                        else if (errno != ENOENT)
                                return negative_errno();

                        if (s.st && S_ISLNK(st.st_mode) && ((flags & WALK_FOLLOW) || (v && v->on_entry))) {
                                ssize_t n = readlinkat(cur->fd, s.name, target, sizeof(target) - 1);
                                if (n < 0)
                                        return negative_errno();
                                target[n] = 0;
                                s.target = target;
                        }
                        if (v && v->on_entry) {
                                r = v->on_entry(userdata, &s);
                                if (r != 0)
                                        return r;
                        }
                        if (!s.st)
                                return s.last ? walk_last(&s, v, userdata, ret_fd) : -ENOENT;

                        if (S_ISLNK(st.st_mode) && !(s.last && (flags & WALK_NOFOLLOW_LAST))) {
                                char *rest;

                                if (!(flags & WALK_FOLLOW) || ++follows > SYMLINK_MAX_FOLLOW)
                                        return -ELOOP;
                                /* An absolute target starts again at dirfd; a relative one where the link is. */
                                if (target[0] == '/')
                                        while (w.depth > 0)
                                                walk_pop(&w);
                                if (asprintf(&rest, "%s/%s", target, slash ? slash + 1 : "") < 0)
                                        return -ENOMEM;
                                free(todo);
                                todo = rest;
                                continue;
                        }
                        if (s.last)
                                return walk_last(&s, v, userdata, ret_fd);
                        if (!S_ISDIR(st.st_mode))
                                return -ENOTDIR;
                        fd = openat(cur->fd, s.name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (fd < 0)
                                return negative_errno();
                        r = walk_push(&w, fd, s.name);
                        if (r < 0)
                                return r;
                }

                if (!slash) {
                        s = (PathWalkStep) { .dir_fd = w.dirs[w.depth].fd, .dir_st = &w.dirs[w.depth].st,
                                             .dir_path = w.path, .st = &w.dirs[w.depth].st };
                        return walk_last(&s, v, userdata, ret_fd);
                }
                memmove(todo, slash + 1, strlen(slash + 1) + 1);
        }
}

int safe_openat(int dirfd, const char *path, int open_flags, mode_t mode, ResolvePolicy policy) {
        struct open_how how = {
                .flags = (uint64_t) (open_flags | O_CLOEXEC),
                .mode = (open_flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
                .resolve = policy == RESOLVE_POLICY_IN_ROOT ? RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
                                                            : RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        int r;

        /*
         * RESOLVE_NO_SYMLINKS lets O_PATH|O_NOFOLLOW open a final symlink itself; the policy
         * refuses every symlink, so let the resolution reach the last one and fail with ELOOP.
         */
        if (policy == RESOLVE_POLICY_NO_SYMLINKS)
                how.flags &= ~(uint64_t) O_NOFOLLOW;

        if (!use_fallback()) {
                r = openat2_raw(dirfd, path, &how);
                if (r != -ENOSYS && r != -EPERM)  /* EPERM: a seccomp filter that blocks openat2 */
                        return r;
        }
        return walk_fallback(dirfd, path, open_flags, mode, policy);
}

static int split_parent(const char *path, char **ret_dir, char **ret_name) {
        _cleanup_free_ char *copy = strdup(path);
        char *slash, *name;
        size_t l;

        if (!copy)
                return -ENOMEM;
        l = strlen(copy);
        while (l > 1 && copy[l - 1] == '/')
                copy[--l] = 0;
        slash = strrchr(copy, '/');
        if (slash) {
                name = slash + 1;
                *slash = 0;
        } else
                name = copy;
        if (!*name || streq(name, ".") || streq(name, ".."))
                return -EINVAL;

        *ret_name = strdup(name);
        *ret_dir = strdup(slash ? (copy[0] ? copy : "/") : ".");
        if (!*ret_name || !*ret_dir) {
                free(*ret_name);
                free(*ret_dir);
                return -ENOMEM;
        }
        return 0;
}

int safe_open_parent(int dirfd, const char *path, ResolvePolicy policy, char **ret_name) {
        _cleanup_free_ char *dir = NULL, *name = NULL;
        int fd, r;

        r = split_parent(path, &dir, &name);
        if (r < 0)
                return r;
        fd = safe_openat(dirfd, dir, O_PATH | O_DIRECTORY, 0, policy);
        if (fd < 0)
                return fd;
        *ret_name = TAKE_PTR(name);
        return fd;
}

int safe_mkdir_p(int dirfd, const char *path, mode_t mode, ResolvePolicy policy) {
        _cleanup_free_ char *copy = strdup(path);
        _cleanup_close_ int cur = -1;
        char *p, *save = NULL;

        if (!copy)
                return -ENOMEM;

        cur = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
        if (cur < 0)
                return negative_errno();

        for (p = strtok_r(copy, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
                int next;

                if (streq(p, "."))
                        continue;
                if (streq(p, ".."))
                        return -EINVAL;
                if (mkdirat(cur, p, mode) < 0 && errno != EEXIST)
                        return negative_errno();
                /* Whatever is there now, a symlink is never entered. */
                next = safe_openat(cur, p, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0, policy);
                if (next < 0)
                        return next;
                safe_close(cur);
                cur = next;
        }
        return TAKE_FD(cur);
}

int home_open(int root_fd, const char *home, uid_t uid, struct stat *ret_st) {
        _cleanup_close_ int fd = -1;
        struct stat st;

        /* The path up to the home belongs to root: resolved in the root. The home itself must be no symlink. */
        fd = safe_openat(root_fd, home, O_PATH | O_NOFOLLOW, 0, RESOLVE_POLICY_IN_ROOT);
        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (S_ISLNK(st.st_mode))
                return -ELOOP;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        if (st.st_uid != uid)
                return -EPERM;
        if (ret_st)
                *ret_st = st;
        return TAKE_FD(fd);
}

int fsync_dir(int dirfd) {
        _cleanup_close_ int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        return fsync(fd) < 0 ? negative_errno() : 0;
}

static int write_all(int fd, const void *data, size_t size) {
        const char *p = data;
        while (size > 0) {
                ssize_t n = write(fd, p, size);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                p += n;
                size -= (size_t) n;
        }
        return 0;
}

int temp_name_random(const char *name, char ret[static NAME_MAX + 1]) {
        uint64_t rnd;

        if (strchr(name, '/') || strlen(name) > NAME_MAX - TEMP_NAME_EXTRA)
                return -ENAMETOOLONG;
        /* Unpredictable, so nobody can plant every name we would try. */
        if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t) sizeof(rnd))
                return negative_errno();
        snprintf(ret, NAME_MAX + 1, ".#%s.%0*" PRIx64, name, TEMP_NAME_HEX_DIGITS, rnd);
        return 0;
}

static bool is_our_temp_name(const char *entry, const char *name) {
        size_t len = strlen(name);

        if (strncmp(entry, ".#", 2) != 0 || strncmp(entry + 2, name, len) != 0 || entry[2 + len] != '.')
                return false;
        entry += 3 + len;
        if (strlen(entry) != TEMP_NAME_HEX_DIGITS)
                return false;
        for (; *entry; entry++)
                if (!((*entry >= '0' && *entry <= '9') || (*entry >= 'a' && *entry <= 'f')))
                        return false;
        return true;
}

int opendir_at(int dirfd, DIR **ret) {
        int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0)
                return negative_errno();
        *ret = fdopendir(fd);
        if (!*ret) {
                int r = negative_errno();
                safe_close(fd);
                return r;
        }
        return 0;
}

static int compare_names(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int dir_list_sorted(int dirfd, bool (*keep)(const struct dirent *de), char ***ret, size_t *ret_n) {
        _cleanup_closedir_ DIR *d = NULL;
        _cleanup_strv_free_ char **names = NULL;
        struct dirent *de;
        size_t n = 0;
        int r;

        r = opendir_at(dirfd, &d);
        if (r < 0)
                return r;
        while ((errno = 0, de = readdir(d))) {
                char **nn;

                if (streq(de->d_name, ".") || streq(de->d_name, "..") || (keep && !keep(de)))
                        continue;
                nn = reallocarray(names, n + 2, sizeof(char *));
                if (!nn)
                        return -ENOMEM;
                names = nn;
                names[n] = strdup(de->d_name);
                names[n + 1] = NULL;
                if (!names[n])
                        return -ENOMEM;
                n++;
        }
        if (errno != 0)
                return negative_errno();
        if (n > 1)
                qsort(names, n, sizeof(char *), compare_names);
        if (!names) {
                /* An empty directory: an empty list, never NULL. */
                names = calloc(1, sizeof(char *));
                if (!names)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(names);
        *ret_n = n;
        return 0;
}

int dir_list_sorted_at(int dirfd, const char *path, ResolvePolicy policy, bool (*keep)(const struct dirent *de),
                       char ***ret, size_t *ret_n) {
        _cleanup_close_ int fd = safe_openat(dirfd, path, O_RDONLY | O_DIRECTORY, 0, policy);

        if (fd == -ENOENT || fd == -ENOTDIR) {
                *ret = calloc(1, sizeof(char *));
                *ret_n = 0;
                return *ret ? 0 : -ENOMEM;
        }
        if (fd < 0)
                return fd;
        return dir_list_sorted(fd, keep, ret, ret_n);
}

int remove_stale_temp_files(int dirfd, const char *name, mode_t type, uid_t owner) {
        struct dirent *de;
        int r, removed = 0;
        DIR *d;

        r = opendir_at(dirfd, &d);
        if (r < 0)
                return r;
        while ((de = readdir(d))) {
                struct stat st;

                if (!is_our_temp_name(de->d_name, name))
                        continue;
                if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || (st.st_mode & S_IFMT) != type ||
                    (st.st_uid != 0 && (owner == (uid_t) -1 || st.st_uid != owner)))
                        continue;
                if (unlinkat(dirfd, de->d_name, 0) >= 0) {
                        log_debug("Removed %s, left by a run that was killed", de->d_name);
                        removed++;
                }
        }
        closedir(d);
        return removed;
}

int write_file_atomic_at(int parentfd, const char *name, const void *data, size_t size,
                         mode_t mode, uid_t uid, gid_t gid) {
        _cleanup_close_ int fd = -1;
        char tmp[NAME_MAX + 1];
        int r;

        if (strchr(name, '/') || strlen(name) > NAME_MAX - 20)
                return -EINVAL;

        (void) remove_stale_temp_files(parentfd, name, S_IFREG, uid);

        for (unsigned attempt = 0;; attempt++) {
                r = temp_name_random(name, tmp);
                if (r < 0)
                        return r;
                fd = openat(parentfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd >= 0)
                        break;
                if (errno != EEXIST || attempt > 16)
                        return negative_errno();
        }

        if (fchmod(fd, mode) < 0 ||
            ((uid != (uid_t) -1 || gid != (gid_t) -1) && fchown(fd, uid, gid) < 0)) {
                r = negative_errno();
                goto fail;
        }
        r = write_all(fd, data, size);
        if (r < 0)
                goto fail;
        killpoint_at("write-before-fsync", name);
        if (fsync(fd) < 0) {
                r = negative_errno();
                goto fail;
        }
        if (close(TAKE_FD(fd)) < 0) {
                r = negative_errno();
                goto fail;
        }
        killpoint_at("write-before-rename", name);
        if (renameat(parentfd, tmp, parentfd, name) < 0) {
                r = negative_errno();
                goto fail;
        }
        killpoint_at("write-after-rename", name);
        return fsync_dir(parentfd);

fail:
        (void) unlinkat(parentfd, tmp, 0);
        return r;
}

int write_file_atomic(int dirfd, const char *path, const void *data, size_t size,
                      mode_t mode, uid_t uid, gid_t gid, ResolvePolicy policy) {
        _cleanup_free_ char *name = NULL;
        _cleanup_close_ int parent = -1, dfd = -1;

        parent = safe_open_parent(dirfd, path, policy, &name);
        if (parent < 0)
                return parent;
        /* O_PATH fds cannot create files; reopen the directory for real. */
        dfd = openat(parent, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return negative_errno();
        return write_file_atomic_at(dfd, name, data, size, mode, uid, gid);
}

int read_file_at(int dirfd, const char *path, ResolvePolicy policy, size_t max_size,
                 char **ret, size_t *ret_size) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, alloc = 0;
        struct stat st;

        /* O_NONBLOCK: a FIFO or device planted where a file should be must not hang us in open(). */
        fd = safe_openat(dirfd, path, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0, policy);
        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode))
                return S_ISDIR(st.st_mode) ? -EISDIR : -EBADFD;

        for (;;) {
                ssize_t n;

                if (size + 1 >= alloc) {
                        size_t na = alloc ? alloc * 2 : 4096;
                        char *nb;
                        if (na > max_size + 1)
                                na = max_size + 1;
                        if (na <= size + 1) {
                                /* Full at the limit: fine if the file ends right here. */
                                char extra;
                                ssize_t k;

                                do
                                        k = read(fd, &extra, 1);
                                while (k < 0 && errno == EINTR);
                                if (k < 0)
                                        return negative_errno();
                                if (k == 0)
                                        break;
                                return -EFBIG;
                        }
                        nb = realloc(buf, na);
                        if (!nb)
                                return -ENOMEM;
                        buf = nb;
                        alloc = na;
                }
                n = read(fd, buf + size, alloc - size - 1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        break;
                size += (size_t) n;
        }
        if (!buf && !(buf = malloc(1)))
                return -ENOMEM;
        buf[size] = 0;
        *ret = TAKE_PTR(buf);
        if (ret_size)
                *ret_size = size;
        return 0;
}

int read_one_line_at(int dirfd, const char *path, char **ret) {
        char *buf;
        size_t l;
        int r;

        r = read_file_at(dirfd, path, RESOLVE_POLICY_IN_ROOT, 64 * 1024, &buf, &l);
        if (r < 0)
                return r;
        buf[strcspn(buf, "\n")] = 0;
        *ret = buf;
        return 0;
}

int open_root(const char *root) {
        int fd = open(root ? root : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        return fd < 0 ? negative_errno() : fd;
}

char *path_join_root(const char *root, const char *path) {
        char *s;
        if (!root || streq(root, "/"))
                return strdup(path);
        if (asprintf(&s, "%s%s%s", root, path[0] == '/' ? "" : "/", path) < 0)
                return NULL;
        return s;
}

void path_finding_done(PathFinding *f) {
        free(f->path);
        *f = (PathFinding) {};
}

static bool uid_trusted(uid_t uid, uid_t trusted_uid) {
        return uid == 0 || uid == trusted_uid;
}

static int finding(PathFinding *ret, PathProblem problem, const char *dir, const char *name, const struct stat *st) {
        _cleanup_free_ char *p = NULL;

        if (asprintf(&p, "%s%s%s", dir, name && !streq(dir, "/") ? "/" : "", strempty(name)) < 0)
                return -ENOMEM;
        ret->problem = problem;
        ret->path = TAKE_PTR(p);
        ret->st = *st;
        return 1;
}

/* A component, as the last one of its path (its content counts) or as one passed to next (NULL: the last). */
static PathProblem judge(const struct stat *st, const struct stat *next, PathCheckFlags flags, uid_t trusted_uid) {
        if (!uid_trusted(st->st_uid, trusted_uid))
                return PATH_PROBLEM_OWNER;
        if (!(st->st_mode & 0022))
                return PATH_PROBLEM_NONE;
        /* In a sticky directory only an entry's owner (and the directory's) can rename or remove it. */
        if (next && (flags & PATH_CHECK_STICKY_PROTECTS) && S_ISDIR(st->st_mode) && (st->st_mode & S_ISVTX) &&
            uid_trusted(next->st_uid, trusted_uid))
                return PATH_PROBLEM_NONE;
        return PATH_PROBLEM_WRITABLE;
}

int path_check(int dirfd, const char *path, PathCheckFlags flags, uid_t trusted_uid, PathFinding *ret, int *ret_fd) {
        _cleanup_free_ char *todo = strdup(path), *at = strdup("/");
        _cleanup_close_ int cur = -1;
        bool trust = flags & PATH_CHECK_TRUST;
        struct stat cur_st;
        unsigned hops = 0;
        PathProblem p;

        *ret = (PathFinding) {};
        if (ret_fd)
                *ret_fd = -1;
        if (!todo || !at)
                return -ENOMEM;

restart:
        safe_close(cur);
        cur = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
        if (cur < 0 || fstat(cur, &cur_st) < 0)
                return negative_errno();
        if (trust && !uid_trusted(cur_st.st_uid, trusted_uid))
                return finding(ret, PATH_PROBLEM_OWNER, "/", NULL, &cur_st);
        free(at);
        at = strdup("/");
        if (!at)
                return -ENOMEM;

        for (char *p_ = todo;;) {
                char *slash, *name;
                struct stat st;
                int next;

                p_ += strspn(p_, "/");
                if (*p_ == 0) {
                        /* The end: what the path names. */
                        if (trust && (p = judge(&cur_st, NULL, flags, trusted_uid)) != PATH_PROBLEM_NONE)
                                return finding(ret, p, at, NULL, &cur_st);
                        if (ret_fd)
                                *ret_fd = TAKE_FD(cur);
                        return 0;
                }
                name = p_;
                slash = strchr(p_, '/');
                if (slash)
                        *slash = 0;
                p_ = slash ? slash + 1 : p_ + strlen(p_);

                if (streq(name, "."))
                        continue;
                if (streq(name, "..")) {
                        char *rest, *cut;

                        if (!(flags & PATH_CHECK_FOLLOW))
                                return -EINVAL;
                        /* at has no symlinks (each was a real directory), so its parent is textual. */
                        cut = strrchr(at, '/');
                        cut[cut == at ? 1 : 0] = 0;
                        if (asprintf(&rest, "%s/%s", at, p_) < 0)
                                return -ENOMEM;
                        free(todo);
                        todo = rest;
                        goto restart;
                }

                if (fstatat(cur, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno != ENOENT)
                                return negative_errno();
                        /* Missing: made later in cur, which nobody else may be able to write then. */
                        if (trust && (p = judge(&cur_st, NULL, flags, trusted_uid)) != PATH_PROBLEM_NONE)
                                return finding(ret, p, at, NULL, &cur_st);
                        return 0;
                }
                if (trust && (p = judge(&cur_st, &st, flags, trusted_uid)) != PATH_PROBLEM_NONE)
                        return finding(ret, p, at, NULL, &cur_st);

                if (S_ISLNK(st.st_mode)) {
                        char target[PATH_MAX], *rest;
                        ssize_t n;

                        if (!(flags & PATH_CHECK_FOLLOW))
                                return finding(ret, PATH_PROBLEM_SYMLINK, at, name, &st);
                        if (++hops > MAX_SYMLINK_HOPS)
                                return -ELOOP;
                        n = readlinkat(cur, name, target, sizeof(target) - 1);
                        if (n < 0)
                                return negative_errno();
                        target[n] = 0;
                        /* Resolved below dirfd: an absolute target starts at it, a relative one at cur. */
                        if (asprintf(&rest, "%s/%s/%s", target[0] == '/' ? "" : at, target, p_) < 0)
                                return -ENOMEM;
                        free(todo);
                        todo = rest;
                        goto restart;
                }

                if (trust && !uid_trusted(st.st_uid, trusted_uid))
                        return finding(ret, PATH_PROBLEM_OWNER, at, name, &st);
                if (!S_ISDIR(st.st_mode)) {
                        if (p_[strspn(p_, "/")] != 0)
                                return 0;  /* not a directory, yet the path goes on: the walk ends */
                        if (trust && (p = judge(&st, NULL, flags, trusted_uid)) != PATH_PROBLEM_NONE)
                                return finding(ret, p, at, name, &st);
                        if (ret_fd) {
                                *ret_fd = openat(cur, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
                                if (*ret_fd < 0)
                                        return negative_errno();
                        }
                        return 0;
                }

                next = openat(cur, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (next < 0)
                        return negative_errno();
                safe_close(cur);
                cur = next;
                cur_st = st;
                {
                        char *n_at;
                        if (asprintf(&n_at, "%s%s%s", at, streq(at, "/") ? "" : "/", name) < 0)
                                return -ENOMEM;
                        free(at);
                        at = n_at;
                }
        }
}

int dir_check_entries(int dirfd, const char *prefix, unsigned depth, uid_t trusted_uid, PathFinding *ret) {
        _cleanup_closedir_ DIR *d = NULL;
        struct dirent *de;
        int r;

        *ret = (PathFinding) {};
        r = opendir_at(dirfd, &d);
        if (r < 0)
                return r;
        while (r == 0 && (de = readdir(d))) {
                struct stat st;
                PathProblem p;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno == ENOENT)
                                continue;
                        return negative_errno();
                }
                /* A symlink's own mode means nothing; replacing it needs the directory, checked already. */
                if (S_ISLNK(st.st_mode))
                        continue;
                p = judge(&st, NULL, 0, trusted_uid);
                if (p != PATH_PROBLEM_NONE)
                        return finding(ret, p, prefix, de->d_name, &st);
                if (S_ISDIR(st.st_mode) && depth > 0) {
                        _cleanup_close_ int sub = openat(dirfd, de->d_name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        _cleanup_free_ char *sub_prefix = NULL;

                        if (sub < 0)
                                return negative_errno();
                        if (asprintf(&sub_prefix, "%s/%s", prefix, de->d_name) < 0)
                                return -ENOMEM;
                        r = dir_check_entries(sub, sub_prefix, depth - 1, trusted_uid, ret);
                }
        }
        return r;
}

int fd_get_path(int fd, char **ret) {
        char link[64], buf[PATH_MAX];
        ssize_t n;

        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        n = readlink(link, buf, sizeof(buf) - 1);
        if (n < 0)
                return negative_errno();
        if ((size_t) n >= sizeof(buf) - 1)
                return -ENAMETOOLONG;
        buf[n] = 0;
        *ret = strdup(buf);
        return *ret ? 0 : -ENOMEM;
}

int resolve_in_root(int root_fd, const char *path, char **ret) {
        _cleanup_free_ char *root = NULL, *full = NULL;
        _cleanup_close_ int fd = -1;
        size_t l;
        int r;

        fd = safe_openat(root_fd, path, O_PATH, 0, RESOLVE_POLICY_IN_ROOT);
        if (fd < 0)
                return fd;
        r = fd_get_path(root_fd, &root);
        if (r >= 0)
                r = fd_get_path(fd, &full);
        if (r < 0)
                return r;
        if (streq(root, "/")) {
                *ret = TAKE_PTR(full);
                return 0;
        }
        /* Below the root, by RESOLVE_IN_ROOT: strip it. */
        l = strlen(root);
        if (strncmp(full, root, l) != 0 || (full[l] != '/' && full[l] != 0))
                return -EXDEV;
        *ret = strdup(full[l] ? full + l : "/");
        return *ret ? 0 : -ENOMEM;
}
