/* SPDX-License-Identifier: MIT */
#pragma once

#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

/*
 * Whole-file work beside util/fs.h's path resolution: atomic writes of files
 * and symlinks, reads, the one temp-name scheme and its sweeper, directory
 * listings. fs.h includes this header, so callers of either get both.
 */
#include "fs.h"

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

/* Read a regular file whole (NUL-terminated; at most max_size bytes). -ENOENT if missing. */
int read_file_at(int dirfd, const char *path, ResolvePolicy policy, size_t max_size,
                 char **ret, size_t *ret_size);

/*
 * read_file_at() (RESOLVE_POLICY_IN_ROOT) with the file's stat in *ret_st,
 * for a rewrite that keeps its mode and owner (write_file_keep_stat()). A
 * missing file reads as "" with *ret_st zeroed (st_mode 0: "no file yet").
 */
int read_file_keep_stat(int dirfd, const char *path, size_t max_size, char **ret, size_t *ret_size,
                        struct stat *ret_st);

/*
 * write_file_atomic() (RESOLVE_POLICY_IN_ROOT) keeping the mode and owner st
 * describes (gshadow stays root:shadow 0640); st_mode 0 (a new file):
 * new_mode, root's.
 */
int write_file_keep_stat(int dirfd, const char *path, const void *data, size_t size, const struct stat *st,
                         mode_t new_mode);

/* Read a small file (sysctl, sysfs) under dirfd, strip the trailing newline. */
int read_one_line_at(int dirfd, const char *path, char **ret);

/* readdir(), "." and ".." skipped. NULL at the end, or on an error with errno set (clear errno first to tell). */
struct dirent *readdir_no_dot(DIR *d);

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

/*
 * Close an open_memstream() stream f (always) and leave what it wrote in
 * *buf (NUL-terminated; its size in the stream's size variable, as
 * open_memstream() keeps it). -ENOMEM when writing failed: *buf is then freed
 * and NULL. Use with TAKE_PTR(f) when f has a cleanup.
 */
int memstream_finish(FILE *f, char **buf);

/* Is the directory fd refers to (an O_PATH fd will do; it stays the caller's) empty? 1 yes, 0 no, < 0 error. */
int dir_fd_is_empty(int fd);

/* The target of the symlink dirfd/name (name "" with an O_PATH fd of the link itself), malloc'd. */
int readlinkat_malloc(int dirfd, const char *name, char **ret);

/*
 * Make dirfd/name (dirfd open for real, not O_PATH) a symlink to target,
 * atomically: a symlink under a temp_name_random() name beside it, checked
 * to be the one we made (ours, one link, pointing at target), handed to
 * uid:gid through its fd ((uid_t) -1 and (gid_t) -1 keep ours), then
 * renamed into place (RENAME_NOREPLACE where name is missing;
 * RENAME_EXCHANGE where it is a symlink, and what came out is removed only
 * if it is still a symlink), and dirfd fsync'ed. Allowed only where name is
 * missing or a symlink: -EEXIST otherwise, so nothing but a symlink is ever
 * replaced; -EBUSY when something else was swapped in meanwhile (it stays,
 * under the temp name). Stale temp links of a killed run are swept first.
 * killpoint_at(killpoint_name, name) is passed just before the rename
 * ("link-before-rename", "home-symlink-before-rename"). -EINVAL for a name
 * with '/' or too long for a temp name.
 */
int symlink_atomic_at(int dirfd, const char *name, const char *target, uid_t uid, gid_t gid,
                      const char *killpoint_name);

/*
 * safe_open_parent(), the directory reopened for real (an O_PATH fd can
 * neither create nor remove entries): a directory fd, and path's last
 * component in *ret_name (malloc'd), or a negative errno.
 */
int open_parent_dir(int dirfd, const char *path, ResolvePolicy policy, char **ret_name);

/*
 * Remove the entry at path below dirfd (its directory resolved by policy;
 * the entry itself is never followed: a symlink there is removed, not its
 * target) and fsync the directory. A directory is not removed (-EISDIR).
 * 0 removed, -ENOENT when there was nothing to remove (nothing synced).
 */
int remove_file_at(int dirfd, const char *path, ResolvePolicy policy);
