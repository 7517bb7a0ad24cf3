/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "fs.h"  /* home_open() */

/*
 * Working as root inside a home the CI user controls. Every pull request runs
 * code as that user, so anything in the home can be a symlink, a hard link or
 * a directory swapped in between two system calls. These helpers:
 *
 *   - never follow a symlink: each entry is looked at with AT_SYMLINK_NOFOLLOW
 *     and opened with O_NOFOLLOW, relative to the fd of its parent, so a
 *     planted link is seen as a link, never as what it points to;
 *   - act through fds (fchown/fchmod/fchownat(fd, "", AT_EMPTY_PATH)), never
 *     by name, and only on what they just created and verified as theirs
 *     (owned by the caller, the expected type, one link), so a name swapped
 *     in between cannot redirect a chown;
 *   - replace only symlinks, by renaming a verified new one over the old one
 *     (with RENAME_EXCHANGE, so a file swapped in at the last moment is kept,
 *     not deleted).
 */

typedef enum HomeEntryType {
        HOME_ENTRY_MISSING,
        HOME_ENTRY_DIRECTORY,
        HOME_ENTRY_SYMLINK,
        HOME_ENTRY_OTHER,        /* regular file, device, socket, ... */
} HomeEntryType;

typedef struct HomeEntry {
        HomeEntryType type;
        struct stat st;          /* not for MISSING */
        char *target;            /* SYMLINK: where it points (never followed) */
} HomeEntry;

void home_entry_done(HomeEntry *e);
const char *home_entry_type_to_string(const HomeEntry *e);

/* Look at dirfd/name without following it. */
int home_entry_inspect(int dirfd, const char *name, HomeEntry *ret);

/* Open the existing directory dirfd/name (O_PATH), never through a symlink (-ELOOP). */
int home_open_dir(int dirfd, const char *name);

/*
 * Create the directory dirfd/name with mode for uid:gid: mkdir as ourselves,
 * reopen it without following, check it is still the empty directory we
 * made, then chown/chmod it through its fd. -EEXIST if something is there,
 * -EBUSY if what we reopened is not what we made. Returns an O_PATH fd.
 */
int home_make_dir(int dirfd, const char *name, mode_t mode, uid_t uid, gid_t gid);

/*
 * Finish what home_make_dir() was doing when a run was killed between its
 * mkdir and its chown: dirfd/name is a directory owned by us, mode 0700, and
 * empty (the user can neither make such a directory nor put anything in it),
 * so it is ours and goes to uid:gid with mode. -EBUSY if it is anything else,
 * -ENOTEMPTY if it has entries. Returns an fd.
 */
int home_finish_dir(int dirfd, const char *name, mode_t mode, uid_t uid, gid_t gid);

/*
 * Make dirfd/name a symlink to target owned by uid:gid. Allowed only where
 * name is missing or a symlink: -EEXIST otherwise, and nothing but a symlink
 * is ever replaced.
 */
int home_put_symlink(int dirfd, const char *name, const char *target, uid_t uid, gid_t gid);

/* Is the directory dirfd/name empty? (opened without following) */
int home_dir_is_empty(int dirfd, const char *name);
