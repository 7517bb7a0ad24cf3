/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdio.h>
#include <sys/types.h>

/*
 * Whole-file work beside util/fs.h's path resolution: atomic writes of files
 * and symlinks, reads, the one temp-name scheme and its sweeper, directory
 * listings. fs.h includes this header, so callers of either get both.
 */
#include "fs.h"

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
