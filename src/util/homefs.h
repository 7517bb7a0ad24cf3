/* SPDX-License-Identifier: MIT */
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

/*
 * The one piece of the storage step's home helpers (steps/storage/homefs.h)
 * the agent uses too. Transition: it moves to util/fs next to safe_openat
 * (issue 15's plan); until then it stays here where both can include it.
 */

/*
 * Open the home directory below root_fd: its last component must not be a
 * symlink (-ELOOP), it must be a directory (-ENOTDIR) owned by uid (-EPERM).
 * Returns an O_PATH directory fd.
 */
int home_open(int root_fd, const char *home, uid_t uid, struct stat *ret_st);

