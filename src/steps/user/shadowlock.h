/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

/*
 * The locks shadow's tools (useradd, usermod, gpasswd, ...) take before they
 * edit an account file, so rootless-ci's edits never interleave with theirs:
 *
 *   /etc/.pwd.lock   lckpwdf(3): a write lock on the whole file (we take it
 *                    as an open file description lock, which conflicts with
 *                    the POSIX lock glibc takes)
 *   /etc/FILE.lock   shadow's commonio lock: a file holding the owner's PID,
 *                    made by link(2) so it appears atomically; a lock whose
 *                    PID no longer runs is stale and is removed
 *
 * Both are waited for up to 15 seconds, like shadow does, then -EBUSY.
 */

#define SHADOW_LOCK_MAX_FILES 4

typedef struct ShadowLock {
        int etc_fd;
        int pwd_lock_fd;
        char *locked[SHADOW_LOCK_MAX_FILES];   /* "group.lock", ... relative to etc_fd */
        size_t n_locked;
} ShadowLock;

#define SHADOW_LOCK_INIT { .etc_fd = -1, .pwd_lock_fd = -1 }

/* files: names in /etc ("group", "gshadow", "subuid", ...). */
int shadow_lock_acquire(int root_fd, const char *const *files, size_t n_files, ShadowLock *l);
void shadow_lock_release(ShadowLock *l);

/*
 * Remove /etc/FILE.lock of each file whose owner no longer runs (a run of
 * ours, or of shadow's tools, killed while holding it), as taking the lock
 * would; for a run that has nothing to edit. Returns how many were removed.
 */
int shadow_lock_remove_stale(int root_fd, const char *const *files, size_t n_files);
