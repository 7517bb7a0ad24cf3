/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/*
 * Could a process running as uid, with the groups given (its primary group
 * included), connect() to the Unix socket at path? Decided the way the
 * kernel decides it, without becoming the user: search permission on every
 * directory the lookup passes through (symlinks followed, as connect()
 * follows them, each link's own directory included), then write permission
 * on the socket's inode; each from the owner, group and mode, and the POSIX
 * ACL where there is one. An LSM can only refuse more, so "reachable" may
 * overstate what such a policy allows, never understate it; the user holds
 * no capability over root's inodes (a user namespace grants none there).
 *
 * path is absolute and looked up below root_fd (the host's "/" on a live
 * run). Returns 1 reachable, 0 not (including: nothing there, not a
 * socket), < 0 a negative errno when the lookup itself failed.
 */
int unix_socket_reachable(int root_fd, const char *path, uid_t uid, const gid_t *groups, size_t n_groups);

/*
 * May uid (with groups) access the inode described by st, whose POSIX
 * access ACL (the raw system.posix_acl_access value) is acl/acl_size (NULL
 * and 0 when it has none), for want (a mask of 4 read, 2 write, 1 search)?
 * Exported for tests.
 */
bool inode_permits(const struct stat *st, const void *acl, size_t acl_size, uid_t uid, const gid_t *groups,
                   size_t n_groups, unsigned want);
