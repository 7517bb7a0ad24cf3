/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "macro.h"
#include "path-check.h"

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

/* What path_check()'s visitor returns besides a finding (1): the walk ends short, nothing found. */
#define CHECK_ENDED 2

typedef struct Check {
        PathCheckFlags flags;
        uid_t trusted_uid;
        PathFinding *ret;
} Check;

static int check_entry(void *userdata, const PathWalkStep *s) {
        Check *c = userdata;
        bool trust = c->flags & PATH_CHECK_TRUST;
        PathProblem p;

        if (!s->st) {
                /* Missing: made later in the directory, which nobody else may be able to write then. */
                if (trust && (p = judge(s->dir_st, NULL, c->flags, c->trusted_uid)) != PATH_PROBLEM_NONE)
                        return finding(c->ret, p, s->dir_path, NULL, s->dir_st);
                return CHECK_ENDED;
        }
        if (trust && (p = judge(s->dir_st, s->st, c->flags, c->trusted_uid)) != PATH_PROBLEM_NONE)
                return finding(c->ret, p, s->dir_path, NULL, s->dir_st);
        if (S_ISLNK(s->st->st_mode))
                /* Followed below dirfd (an absolute target starts at it, a relative one here), or a finding. */
                return c->flags & PATH_CHECK_FOLLOW ? 0 : finding(c->ret, PATH_PROBLEM_SYMLINK, s->dir_path, s->name, s->st);
        if (trust && !uid_trusted(s->st->st_uid, c->trusted_uid))
                return finding(c->ret, PATH_PROBLEM_OWNER, s->dir_path, s->name, s->st);
        if (!S_ISDIR(s->st->st_mode) && !s->last)
                return CHECK_ENDED;  /* not a directory, yet the path goes on: the walk ends */
        return 0;
}

/* The end: what the path names. */
static int check_last(void *userdata, const PathWalkStep *s) {
        Check *c = userdata;
        PathProblem p;

        if ((c->flags & PATH_CHECK_TRUST) && (p = judge(s->st, NULL, c->flags, c->trusted_uid)) != PATH_PROBLEM_NONE)
                return finding(c->ret, p, s->dir_path, s->name, s->st);
        return 0;
}

int path_check(int dirfd, const char *path, PathCheckFlags flags, uid_t trusted_uid, PathFinding *ret, int *ret_fd) {
        static const PathWalkVisitor v = { .on_entry = check_entry, .on_last = check_last };
        Check c = { .flags = flags, .trusted_uid = trusted_uid, .ret = ret };
        struct stat st;
        int r;

        *ret = (PathFinding) {};
        if (ret_fd)
                *ret_fd = -1;
        /* dirfd first, whatever the path holds (its ".." included). */
        if (fstat(dirfd, &st) < 0)
                return negative_errno();
        if ((flags & PATH_CHECK_TRUST) && !uid_trusted(st.st_uid, trusted_uid))
                return finding(ret, PATH_PROBLEM_OWNER, "/", NULL, &st);

        r = path_walk(dirfd, path, flags & PATH_CHECK_FOLLOW ? WALK_FOLLOW : WALK_NO_DOTDOT, &v, &c, ret_fd);
        return r == CHECK_ENDED ? 0 : r;
}

int dir_check_entries(int dirfd, const char *prefix, unsigned depth, uid_t trusted_uid, PathFinding *ret) {
        _cleanup_closedir_ DIR *d = NULL;
        struct dirent *de;
        int r;

        *ret = (PathFinding) {};
        r = opendir_at(dirfd, &d);
        if (r < 0)
                return r;
        while (r == 0 && (de = readdir_no_dot(d))) {
                struct stat st;
                PathProblem p;

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
