/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fs.h"
#include "macro.h"
#include "testhooks.h"

/* How deep a walk goes (directories entered at once), as the fallback walk allowed before path_walk. */
#define WALK_DEPTH_MAX (PATH_MAX / 2)

static int openat2_raw(int dirfd, const char *path, struct open_how *how) {
        long r = syscall(SYS_openat2, dirfd, path, how, sizeof(*how));
        return r < 0 ? negative_errno() : (int) r;
}

/* The directories a walk has entered: dirs[0] is its start, dirs[depth] where it stands. */
typedef struct WalkDir {
        int fd;
        struct stat st;         /* for on_entry, and at the end (have_st) */
        bool have_st;
        size_t path_len;        /* the length of Walk.path while this is where the walk stands */
} WalkDir;

typedef struct Walk {
        WalkDir *dirs;
        size_t depth, n_alloc;
        char *path;             /* where the walk stands, below its start: "/", "/usr/lib" */
        size_t path_alloc;
        bool want_stat;         /* on_entry sees every directory's stat */
} Walk;

static void walk_done(Walk *w) {
        for (size_t i = 0; w->dirs && i <= w->depth; i++)
                safe_close(w->dirs[i].fd);
        free(w->dirs);
        free(w->path);
}

/* The stat of where the walk stands. */
static const struct stat *walk_cur_st(Walk *w) {
        WalkDir *d = &w->dirs[w->depth];

        if (!d->have_st) {
                if (fstat(d->fd, &d->st) < 0)
                        return NULL;
                d->have_st = true;
        }
        return &d->st;
}

/* Enter the directory fd (taken) called name (NULL: the start), which st (may be NULL) describes. */
static int walk_push(Walk *w, int fd, const char *name, const struct stat *st) {
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
        if (st) {
                /* As lstat()ed just before it was opened, as path_check's own walk judged it. */
                w->dirs[level].st = *st;
                w->dirs[level].have_st = true;
        } else if (w->want_stat && !walk_cur_st(w))
                return negative_errno();
        return 0;
}

static void walk_pop(Walk *w) {
        safe_close(w->dirs[w->depth].fd);
        w->depth--;
        w->path[w->dirs[w->depth].path_len] = 0;
}

/* The end of the walk, where w stands: on_last, or an O_PATH fd of what the path names. */
static int walk_last(Walk *w, PathWalkStep *s, const PathWalkVisitor *v, void *userdata, int *ret_fd) {
        int r;

        /* The directory's stat for on_last, and what the path names when that is the directory itself. */
        if ((v && v->on_last) || !s->name) {
                s->dir_st = walk_cur_st(w);
                if (!s->dir_st)
                        return negative_errno();
                if (!s->name)
                        s->st = s->dir_st;
        }
        if (v && v->on_last) {
                r = v->on_last(userdata, s);
                if (r != 0)
                        return r;
        }
        if (!s->st)
                return -ENOENT;
        if (ret_fd) {
                *ret_fd = s->name ? openat(s->dir_fd, s->name, O_PATH | O_NOFOLLOW | O_CLOEXEC |
                                                   (S_ISDIR(s->st->st_mode) ? O_DIRECTORY : 0))
                                  : fcntl(s->dir_fd, F_DUPFD_CLOEXEC, 3);
                if (*ret_fd < 0)
                        return negative_errno();
        }
        return 0;
}

int path_walk(int dirfd, const char *path, WalkFlags flags, const PathWalkVisitor *v, void *userdata, int *ret_fd) {
        _cleanup_(walk_done) Walk w = { .want_stat = v && v->on_entry };
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
        r = walk_push(&w, fd, NULL, NULL);
        if (r < 0)
                return r;

        for (;;) {
                WalkDir *cur = &w.dirs[w.depth];
                PathWalkStep s = { .dir_fd = cur->fd, .dir_st = &cur->st, .dir_path = w.path };
                char *p = todo + strspn(todo, "/"), *slash, target[PATH_MAX];
                struct stat st;

                if (*p == 0)
                        /* The path names where the walk stands (it was empty, or ended in "/", "." or ".."). */
                        return walk_last(&w, &s, v, userdata, ret_fd);
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
                                return s.last ? walk_last(&w, &s, v, userdata, ret_fd) : -ENOENT;

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
                                return walk_last(&w, &s, v, userdata, ret_fd);
                        if (!S_ISDIR(st.st_mode))
                                return -ENOTDIR;
                        fd = openat(cur->fd, s.name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (fd < 0)
                                return negative_errno();
                        r = walk_push(&w, fd, s.name, &st);
                        if (r < 0)
                                return r;
                }

                if (!slash) {
                        s = (PathWalkStep) { .dir_fd = w.dirs[w.depth].fd, .dir_path = w.path };
                        return walk_last(&w, &s, v, userdata, ret_fd);
                }
                memmove(todo, slash + 1, strlen(slash + 1) + 1);
        }
}

/* safe_openat()'s fallback: path_walk() to the last component, then open it as open(2) would. */
typedef struct OpenLast {
        int open_flags;
        mode_t mode;
        int fd;
} OpenLast;

static int open_last(void *userdata, const PathWalkStep *s) {
        OpenLast *o = userdata;
        int flags = o->open_flags;

        if (!s->name)
                /* The path names the directory the walk stands in (it ended in "/", "." or ".."). */
                o->fd = openat(s->dir_fd, ".", (flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW)) | O_CLOEXEC);
        else if (!s->st) {
                if (!(flags & O_CREAT))
                        return -ENOENT;
                o->fd = openat(s->dir_fd, s->name, flags | O_NOFOLLOW | O_CLOEXEC, o->mode);
        } else if (S_ISLNK(s->st->st_mode))
                /*
                 * A final link that open(2) would not follow (WALK_NOFOLLOW_LAST): let it answer for
                 * the link itself (the link with O_PATH, else ELOOP or EEXIST), as openat2 does.
                 * Never create through it.
                 */
                o->fd = openat(s->dir_fd, s->name, flags | O_NOFOLLOW | O_CLOEXEC, o->mode);
        else if ((flags & O_CREAT) && (flags & O_EXCL))
                return -EEXIST;
        else
                o->fd = openat(s->dir_fd, s->name, (flags & ~O_CREAT) | O_NOFOLLOW | O_CLOEXEC, o->mode);
        return o->fd < 0 ? negative_errno() : 1;
}

static int open_fallback(int dirfd, const char *path, int open_flags, mode_t mode, ResolvePolicy policy) {
        static const PathWalkVisitor v = { .on_last = open_last };
        OpenLast o = { .open_flags = open_flags, .mode = mode, .fd = -1 };
        WalkFlags flags;
        int r;

        if (policy == RESOLVE_POLICY_NO_SYMLINKS)
                flags = WALK_BENEATH;
        else {
                flags = WALK_FOLLOW;
                if ((open_flags & O_NOFOLLOW) || (open_flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL))
                        flags |= WALK_NOFOLLOW_LAST;
        }
        r = path_walk(dirfd, path, flags, &v, &o, NULL);
        return r < 0 ? r : o.fd;
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

        if (!test_hook_resolve_fallback()) {
                r = openat2_raw(dirfd, path, &how);
                if (r != -ENOSYS && r != -EPERM)  /* EPERM: a seccomp filter that blocks openat2 */
                        return r;
        }
        return open_fallback(dirfd, path, open_flags, mode, policy);
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
