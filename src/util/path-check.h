/* SPDX-License-Identifier: MIT */
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

/* Who could swap a component of a path: the walk of util/fs.h's path_walk(), judging owner and mode. */
#include "fs.h"

/* What path_check() found wrong with one component of a path. */
typedef enum PathProblem {
        PATH_PROBLEM_NONE,
        PATH_PROBLEM_SYMLINK,   /* a symlink, where none may be (without PATH_CHECK_FOLLOW) */
        PATH_PROBLEM_OWNER,     /* owned by neither root nor the trusted UID */
        PATH_PROBLEM_WRITABLE,  /* writable by its group or by others */
} PathProblem;

typedef enum PathCheckFlags {
        /* Resolve symlinks below dirfd (as RESOLVE_IN_ROOT does), checking where they lead; else one is a finding. */
        PATH_CHECK_FOLLOW = 1 << 0,
        /*
         * Every directory passed (dirfd itself included) and what path names:
         * owned by root or the trusted UID, and not writable by group or
         * others, so nobody else can swap a component. Where the walk ends at
         * a missing component, the directory it would be made in counts too.
         */
        PATH_CHECK_TRUST = 1 << 1,
        /*
         * With PATH_CHECK_TRUST: a sticky directory writable by others may be
         * passed to an entry of a trusted owner (nobody else can rename or
         * remove that entry). Without it, sticky /tmp is writable by others.
         */
        PATH_CHECK_STICKY_PROTECTS = 1 << 2,
} PathCheckFlags;

typedef struct PathFinding {
        PathProblem problem;
        char *path;             /* the component, below dirfd as reached: "/srv/link", "/usr/lib" (malloc'd) */
        struct stat st;         /* what it is (lstat) */
} PathFinding;

void path_finding_done(PathFinding *f);

/*
 * Walk path below dirfd (absolute paths taken relative to it) with
 * path_walk(), and check each component as flags say. Returns 1
 * with *ret filled at the first finding, 0 when there is none (the walk ends
 * at the first missing or non-directory component), or a negative errno.
 * With ret_fd, a walk that reached path's end gives an O_PATH fd of it
 * (else -1). Without PATH_CHECK_FOLLOW ".." is -EINVAL.
 */
int path_check(int dirfd, const char *path, PathCheckFlags flags, uid_t trusted_uid, PathFinding *ret, int *ret_fd);

/*
 * The same judgement for the entries of the directory dirfd (and of its
 * subdirectories, depth levels down): each that is not a symlink must be
 * owned by root or trusted_uid and not writable by group or others. prefix
 * (the directory's path, for *ret) is prepended to each entry's name.
 * 1 with *ret at the first finding, 0 when none, or a negative errno.
 */
int dir_check_entries(int dirfd, const char *prefix, unsigned depth, uid_t trusted_uid, PathFinding *ret);
