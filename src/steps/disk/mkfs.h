/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

#include "config.h"

/* The label of every filesystem rootless-ci makes (xfs allows 12 characters). */
#define RCI_FS_LABEL "rootless-ci"

#define UUID_STRING_MAX 37

/* A random (version 4) UUID, lower case, from getrandom(). */
int uuid_new_random(char ret[UUID_STRING_MAX]);
bool uuid_string_valid(const char *s);

/* "mkfs.ext4" or "mkfs.xfs" */
const char *mkfs_program_name(FileSystem fs);

/*
 * The full argv for making fs on node with our label and the given UUID
 * (NULL-terminated; argv[0] is program, the absolute path of mkfs.*).
 * Exported for tests. Returns the number of arguments.
 *
 *   ext4: mkfs.ext4 -q -L rootless-ci -U UUID -E nodiscard NODE
 *   xfs:  mkfs.xfs -q -L rootless-ci -m uuid=UUID -n ftype=1 -K NODE
 *
 * No force flag: the partition was just probed blank, and mkfs.xfs refusing
 * to overwrite something is one more safety net. No discard: the disk is
 * new or was just wiped, and a discard of a large virtual disk can take
 * minutes.
 */
int mkfs_argv(FileSystem fs, const char *program, const char *node, const char *uuid, const char *argv[static 16],
              char *uuid_arg, size_t uuid_arg_size);

/*
 * Run mkfs. Returns 0, or -ERCI_FAILED after logging mkfs's own error
 * message; -ENOENT if the program is missing.
 */
int mkfs_make(FileSystem fs, const char *node, const char *uuid);
