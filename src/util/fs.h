/* SPDX-License-Identifier: MIT */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
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

/*
 * Is any component of path (below dirfd, absolute paths taken relative to
 * it) a symlink? Returns 1 and the path up to and including the first one
 * in *ret_prefix, 0 when none is (the walk ends at the first missing or
 * non-directory component), or a negative errno.
 */
int path_find_symlink(int dirfd, const char *path, char **ret_prefix);

/* Open the root directory (NULL means "/"). */
int open_root(const char *root);

/* "root" + "/path" for messages, "/path" when root is "/". */
char *path_join_root(const char *root, const char *path);

/* Fsync a directory by fd. */
int fsync_dir(int dirfd);
