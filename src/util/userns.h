/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "idmap.h"
#include "subid.h"

/*
 * Run code with the CI user's powers and no more, as rootless Docker sees
 * its files: a child of the user's UID and GID (started by root, it drops to
 * them, with no supplementary groups) enters a new user namespace and
 * becomes root there with the map the rootless daemon uses: 0 -> the user,
 * 1.. -> every subordinate range it has, one after the other. Inside, it can
 * read and chown exactly the files owned by the user and its subordinate
 * IDs; anything else (a hard link to a root file, a device) stays out of
 * reach, enforced by the kernel.
 *
 * Who writes the maps: started by root, the parent writes /proc/PID/uid_map
 * and gid_map itself; started by the user, newuidmap and newgidmap (setuid
 * root: a map of several ranges needs them) write them, after checking each
 * range against /etc/subuid and /etc/subgid as they always do.
 */
typedef struct UserNsIdentity {
        uid_t uid;
        gid_t gid;
        const SubIdRange *subuids;    /* every subordinate range of the user, in any order (none: 0) */
        size_t n_subuids;
        const SubIdRange *subgids;
        size_t n_subgids;
} UserNsIdentity;

/*
 * The map for self and its ranges: 0 -> self (count 1), then the ranges
 * sorted and merged where they touch or overlap (the kernel refuses
 * overlapping extents; newuidmap accepts a request that spans adjacent
 * lines), without self and without IDs past 4294967294, at 1, 2, ... in
 * turn. *ret_inside_max is the highest ID mapped inside (0: only self).
 * -E2BIG beyond the kernel's 340 extents.
 */
int userns_map_build(uint32_t self, const SubIdRange *ranges, size_t n, IdMap *ret, uint32_t *ret_inside_max);

/*
 * Run path with argv in such a child (clean environment, cwd "/", stdin
 * /dev/null, stdout to our stderr, no fds of ours). Returns its exit status,
 * or a negative errno when it could not be started.
 */
int userns_run(const UserNsIdentity *id, const char *path, char *const argv[]);

/*
 * Call func(userdata) in such a child (a fork of this process: same fds,
 * stdio and memory; cwd "/") and return what it returned, as its exit status
 * (0..255), or a negative errno when the child could not be set up (logged).
 */
int userns_call(const UserNsIdentity *id, int (*func)(void *userdata), void *userdata);
