/* SPDX-License-Identifier: MIT */
#pragma once

#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/*
 * Path resolution that never lets a symlink take rootless-ci somewhere it did
 * not mean to go. Two policies:
 *
 *   RESOLVE_POLICY_IN_ROOT      every path is resolved below a root
 *                               directory (--root=DIR, or "/" live); symlinks
 *                               are followed but can never leave the root,
 *                               as if the process were chrooted there.
 *   RESOLVE_POLICY_NO_SYMLINKS  for ground a user controls (a home): any
 *                               symlink on the way, including the last
 *                               component, fails with -ELOOP, and ".." may
 *                               not climb above the starting directory, nor
 *                               may an absolute path start elsewhere (both
 *                               -EXDEV).
 *
 * Implemented with openat2(2); where the kernel lacks it (ENOSYS), with a
 * component-by-component walk using O_PATH|O_NOFOLLOW. The walk is also used
 * when RCI_FORCE_RESOLVE_FALLBACK=1 is set, so tests cover both.
 */
typedef enum ResolvePolicy {
        RESOLVE_POLICY_IN_ROOT,
        RESOLVE_POLICY_NO_SYMLINKS,
} ResolvePolicy;

/* How many symlinks one resolution follows at most (the kernel's limit, for every walk of ours). */
#define SYMLINK_MAX_FOLLOW 40

/*
 * The one path walker: component by component below dirfd, each looked at
 * with fstatat(AT_SYMLINK_NOFOLLOW) and entered with O_PATH|O_NOFOLLOW, so a
 * visitor sees every directory passed and every entry (symlinks included)
 * as it is, and judges it. safe_openat()'s fallback, path_check() and the
 * other walks of a path are visitors of it.
 */
typedef enum WalkFlags {
        /*
         * Follow symlinks as RESOLVE_IN_ROOT does: an absolute target starts
         * again at dirfd, a relative one where the link is, at most
         * SYMLINK_MAX_FOLLOW of them (-ELOOP). Without: a symlink is -ELOOP
         * (on_entry sees it first, and may stop the walk there).
         */
        WALK_FOLLOW = 1 << 0,
        /* With WALK_FOLLOW: a symlink as the last component is not followed; the walk ends at the link. */
        WALK_NOFOLLOW_LAST = 1 << 1,
        /*
         * As RESOLVE_BENEATH: an absolute path, or ".." above dirfd, is
         * -EXDEV. Without: an absolute path starts at dirfd and ".." of
         * dirfd is dirfd, as in a chroot.
         */
        WALK_BENEATH = 1 << 2,
        /* A ".." component is -EINVAL. */
        WALK_NO_DOTDOT = 1 << 3,
} WalkFlags;

typedef struct PathWalkStep {
        int dir_fd;                     /* the directory the walk stands in (O_PATH) */
        const struct stat *dir_st;      /* its fstat() */
        const char *dir_path;           /* its path below dirfd as reached: "/" for dirfd, "/usr/lib" */
        const char *name;               /* the entry looked at; NULL at the end of a path that names dir_fd */
        const struct stat *st;          /* its lstat(), NULL when it does not exist (name NULL: dir_st) */
        const char *target;             /* a symlink's target (with WALK_FOLLOW or on_entry), else NULL */
        bool last;                      /* name is the path's last component (trailing slashes aside) */
} PathWalkStep;

/*
 * Each returns < 0 to stop the walk with that error, > 0 to stop it with that
 * value (path_walk() returns it), 0 to go on. Every pointer in the step is
 * valid during the call only.
 */
typedef struct PathWalkVisitor {
        /* Every entry looked up (not "." or ".."), missing ones too, before the walk does anything with it. */
        int (*on_entry)(void *userdata, const PathWalkStep *s);
        /*
         * What the path names, at the end: the last entry (a symlink only when
         * not followed; st NULL when missing) or, name NULL, dir_fd itself.
         * Returning 0 leaves the end to path_walk(): an O_PATH fd of it in
         * *ret_fd, -ENOENT when it is missing.
         */
        int (*on_last)(void *userdata, const PathWalkStep *s);
} PathWalkVisitor;

/*
 * Walk path below dirfd as flags say, calling v (may be NULL). Returns 0
 * with *ret_fd (may be NULL; else -1 on every other return) an O_PATH fd of
 * what the path names (never following a last symlink the walk did not
 * follow); a visitor's value > 0; -ENOENT (a missing component), -ENOTDIR (a
 * component in the middle that is not a directory), -ELOOP, -EXDEV, -EINVAL
 * (as flags say), or another negative errno.
 */
int path_walk(int dirfd, const char *path, WalkFlags flags, const PathWalkVisitor *v, void *userdata, int *ret_fd);

/* Open path below dirfd (IN_ROOT: absolute paths too, taken relative to dirfd). */
int safe_openat(int dirfd, const char *path, int open_flags, mode_t mode, ResolvePolicy policy);

/*
 * Open the directory containing path's last component and return its fd;
 * *ret_name gets the last component (malloc'd). The last component itself is
 * not resolved, so callers can lstat, readlink or replace it.
 */
int safe_open_parent(int dirfd, const char *path, ResolvePolicy policy, char **ret_name);

/*
 * Create the directories of path that are missing, each with mode (ownership
 * root), never following a symlink in any component. Returns an O_DIRECTORY
 * fd for the last one.
 */
int safe_mkdir_p(int dirfd, const char *path, mode_t mode, ResolvePolicy policy);

/*
 * Atomic replace: a temp file beside the target, the mode and owner set, the
 * data written and fsync'ed, renamed over the target, the directory fsync'ed.
 * On failure the temp file is removed and the target is untouched. uid/gid
 * of (uid_t) -1 keep root's.
 */
int write_file_atomic(int dirfd, const char *path, const void *data, size_t size,
                      mode_t mode, uid_t uid, gid_t gid, ResolvePolicy policy);

/*
 * The one scheme for our temp names, beside a target NAME: ".#NAME." and 16
 * lowercase hex digits from getrandom(), so nobody can plant every name we
 * would try. ret must hold NAME_MAX + 1 bytes; -ENAMETOOLONG when NAME is
 * longer than NAME_MAX - TEMP_NAME_EXTRA (or has a '/').
 */
#define TEMP_NAME_HEX_DIGITS 16
#define TEMP_NAME_EXTRA (3 + TEMP_NAME_HEX_DIGITS)
int temp_name_random(const char *name, char ret[static NAME_MAX + 1]);

/*
 * Remove what a killed run of ours left beside name in dirfd: entries named
 * as temp_name_random() names them, of the given type
 * (S_IFREG or S_IFLNK), owned by root or by owner (the owner our temp file
 * is given; (uid_t) -1 for none). Nothing is followed: only names in
 * dirfd are unlinked, which the caller opened under its resolve policy.
 * Best effort; returns how many were removed.
 */
int remove_stale_temp_files(int dirfd, const char *name, mode_t type, uid_t owner);

/* Same, with the parent directory already open and name a plain file name. */
int write_file_atomic_at(int parentfd, const char *name, const void *data, size_t size,
                         mode_t mode, uid_t uid, gid_t gid);

/*
 * The path that path (below root_fd, RESOLVE_POLICY_IN_ROOT) names once every
 * symlink is resolved, as seen from that root: "/usr/bin/x" -> "/usr/lib/x/x".
 * What the kernel reports for an executable (AppArmor attaches profiles by
 * it). -ENOENT if it does not exist.
 */
int resolve_in_root(int root_fd, const char *path, char **ret);

/* Read a regular file whole (NUL-terminated; at most max_size bytes). -ENOENT if missing. */
int read_file_at(int dirfd, const char *path, ResolvePolicy policy, size_t max_size,
                 char **ret, size_t *ret_size);

/* Read a small file (sysctl, sysfs) under dirfd, strip the trailing newline. */
int read_one_line_at(int dirfd, const char *path, char **ret);

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
 * Walk path below dirfd (absolute paths taken relative to it) one component
 * at a time with O_PATH|O_NOFOLLOW, and check each as flags say. Returns 1
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

/* readdir() the directory dirfd (an O_PATH fd will do) refers to, from its start. */
int opendir_at(int dirfd, DIR **ret);

/*
 * The names of the entries of the directory dirfd refers to (an O_PATH fd
 * will do; it stays the caller's) that keep() accepts, "." and ".." never,
 * sorted by strcmp(): a NULL-terminated list in *ret (free with strv_free()),
 * its length in *ret_n. keep NULL: every entry.
 */
int dir_list_sorted(int dirfd, bool (*keep)(const struct dirent *de), char ***ret, size_t *ret_n);

/*
 * The same for the directory path below dirfd (resolved by policy); a path
 * that does not exist or is not a directory gives an empty list.
 */
int dir_list_sorted_at(int dirfd, const char *path, ResolvePolicy policy, bool (*keep)(const struct dirent *de),
                       char ***ret, size_t *ret_n);

/* The path an fd refers to, as /proc/self/fd shows it. */
int fd_get_path(int fd, char **ret);

/* Open the root directory (NULL means "/"). */
int open_root(const char *root);

/* "root" + "/path" for messages, "/path" when root is "/". */
char *path_join_root(const char *root, const char *path);

/*
 * Open the home directory below root_fd: its last component must not be a
 * symlink (-ELOOP), it must be a directory (-ENOTDIR) owned by uid (-EPERM).
 * Returns an O_PATH directory fd.
 */
int home_open(int root_fd, const char *home, uid_t uid, struct stat *ret_st);

/* Fsync a directory by fd. */
int fsync_dir(int dirfd);

/* The whole-file half (atomic writes, reads, temp names, listings). */
#include "fileio.h"
