/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>
#include <sys/types.h>

/*
 * Run a program with the CI user's powers and no more, as rootless Docker
 * sees its files: the child drops to the user's UID and GID (no
 * supplementary groups), enters a new user namespace, and becomes root there
 * with the map the rootless daemon uses (0 -> the user, 1.. -> its
 * subordinate range). Inside, it can read and chown exactly the files owned
 * by the user and its subordinate IDs; anything else (a hard link to a root
 * file, a device) stays out of reach, enforced by the kernel.
 */
typedef struct UserNsIdentity {
        uid_t uid;
        gid_t gid;
        uint32_t subuid_start, subuid_count;
        uint32_t subgid_start, subgid_count;
} UserNsIdentity;

/*
 * Run path with argv in such a child (clean environment, cwd "/", stdin
 * /dev/null, stdout to our stderr, no fds of ours). Returns its exit status,
 * or a negative errno when it could not be started.
 */
int userns_run(const UserNsIdentity *id, const char *path, char *const argv[]);
