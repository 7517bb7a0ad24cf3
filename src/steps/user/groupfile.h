/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/*
 * Editing group membership in /etc/group and /etc/gshadow as text: one user
 * is taken out of the member lists (and, in gshadow, the administrator list,
 * since a group administrator can add itself back with gpasswd) of the named
 * groups. Every other line, and every other byte of an edited line, is kept
 * as it was. Pure functions: the caller reads, locks and writes the file.
 */

typedef enum GroupFileKind {
        GROUP_FILE_GROUP,    /* name:password:GID:members */
        GROUP_FILE_GSHADOW,  /* name:password:administrators:members */
} GroupFileKind;

/* Does the line of group in text list user (as a member, or a gshadow administrator)? */
bool group_file_lists_user(const char *text, GroupFileKind kind, const char *group, const char *user);

/*
 * Return in *ret (malloc'd, NUL-terminated, *ret_size bytes) text with user
 * removed from the lists of every group in groups[]. *ret_changed counts the
 * lines that changed.
 */
int group_file_remove_user(const char *text, size_t size, GroupFileKind kind,
                           const char *const *groups, size_t n_groups, const char *user,
                           char **ret, size_t *ret_size, unsigned *ret_changed);
