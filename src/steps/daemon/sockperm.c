/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/macro.h"
#include "sockperm.h"

/* The on-disk (xattr) form of a POSIX ACL: a header, then 8-byte entries. */
#define ACL_XATTR_VERSION 2
#define ACL_USER_OBJ 0x01
#define ACL_USER 0x02
#define ACL_GROUP_OBJ 0x04
#define ACL_GROUP 0x08
#define ACL_MASK 0x10
#define ACL_OTHER 0x20

static bool in_groups(gid_t gid, const gid_t *groups, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (groups[i] == gid)
                        return true;
        return false;
}

static uint16_t le16(const uint8_t *p) {
        return (uint16_t) (p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p) {
        return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

bool inode_permits(const struct stat *st, const void *acl, size_t acl_size, uid_t uid, const gid_t *groups,
                   size_t n_groups, unsigned want) {
        const uint8_t *a = acl;
        unsigned mask = 7, other = st->st_mode & 7;
        bool group_matched = false, group_grants = false;
        size_t n;

        if (uid == st->st_uid)
                return ((st->st_mode >> 6) & want) == want;

        if (!a || acl_size < 4 || le32(a) != ACL_XATTR_VERSION || (acl_size - 4) % 8 != 0) {
                /* No (usable) ACL: the mode alone. A malformed one is read as none: the kernel would refuse it. */
                if (in_groups(st->st_gid, groups, n_groups))
                        return ((st->st_mode >> 3) & want) == want;
                return (other & want) == want;
        }

        n = (acl_size - 4) / 8;
        for (size_t i = 0; i < n; i++)
                if (le16(a + 4 + 8 * i) == ACL_MASK)
                        mask = le16(a + 4 + 8 * i + 2) & 7;

        /* A named user entry decides alone, through the mask. */
        for (size_t i = 0; i < n; i++) {
                const uint8_t *e = a + 4 + 8 * i;
                if (le16(e) == ACL_USER && le32(e + 4) == uid)
                        return (le16(e + 2) & mask & want) == want;
        }
        /* The group class: any matching entry that grants it, through the mask; matching but none granting: no. */
        for (size_t i = 0; i < n; i++) {
                const uint8_t *e = a + 4 + 8 * i;
                uint16_t tag = le16(e);
                unsigned perm = le16(e + 2) & 7;
                bool match = (tag == ACL_GROUP_OBJ && in_groups(st->st_gid, groups, n_groups)) ||
                             (tag == ACL_GROUP && in_groups((gid_t) le32(e + 4), groups, n_groups));

                if (!match)
                        continue;
                group_matched = true;
                /* GROUP_OBJ goes through the mask too when there is one (without one, mask is 7). */
                if ((perm & mask & want) == want)
                        group_grants = true;
        }
        if (group_matched)
                return group_grants;
        for (size_t i = 0; i < n; i++)
                if (le16(a + 4 + 8 * i) == ACL_OTHER)
                        other = le16(a + 4 + 8 * i + 2) & 7;
        return (other & want) == want;
}

/* Is want permitted on the inode open (O_PATH) at fd? */
static int fd_permits(int fd, uid_t uid, const gid_t *groups, size_t n_groups, unsigned want) {
        char proc[64], acl[4 + 8 * 64];
        struct stat st;
        ssize_t n;

        if (fstat(fd, &st) < 0)
                return negative_errno();
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        n = getxattr(proc, "system.posix_acl_access", acl, sizeof(acl));
        if (n < 0) {
                if (errno == ERANGE)
                        return -E2BIG; /* more entries than anyone writes by hand: say so rather than guess */
                if (errno != ENODATA && errno != EOPNOTSUPP)
                        return negative_errno();
                n = 0;
        }
        return inode_permits(&st, n > 0 ? acl : NULL, (size_t) n, uid, groups, n_groups, want);
}

typedef struct Reach {
        uid_t uid;
        const gid_t *groups;
        size_t n_groups;
} Reach;

/* The walk stops with REACH_NO or REACH_YES (path_walk's "> 0: stop with that value"). */
enum { REACH_NO = 1, REACH_YES = 2 };

/* Looking a name up in a directory needs search permission on it; a missing entry ends the walk. */
static int reach_entry(void *userdata, const PathWalkStep *s) {
        const Reach *x = userdata;
        int r = fd_permits(s->dir_fd, x->uid, x->groups, x->n_groups, 1);

        if (r < 0)
                return r;
        return r == 0 || !s->st ? REACH_NO : 0;
}

/* The end: a socket the user may write to. */
static int reach_last(void *userdata, const PathWalkStep *s) {
        const Reach *x = userdata;
        _cleanup_close_ int fd = -1;
        int r;

        if (!s->name || !s->st || !S_ISSOCK(s->st->st_mode))
                return REACH_NO;
        fd = openat(s->dir_fd, s->name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? REACH_NO : negative_errno();
        r = fd_permits(fd, x->uid, x->groups, x->n_groups, 2);
        if (r < 0)
                return r;
        return r > 0 ? REACH_YES : REACH_NO;
}

int unix_socket_reachable(int root_fd, const char *path, uid_t uid, const gid_t *groups, size_t n_groups) {
        Reach x = { .uid = uid, .groups = groups, .n_groups = n_groups };
        int r;

        if (path[0] != '/' || strlen(path) >= PATH_MAX)
                return -EINVAL;
        if (path[strlen(path) - 1] == '/') /* a directory, not a socket */
                return 0;
        /* As connect() looks it up: every symlink followed, an absolute target from the root again. */
        r = path_walk(root_fd, path, WALK_FOLLOW, &(PathWalkVisitor) { .on_entry = reach_entry, .on_last = reach_last },
                      &x, NULL);
        if (r == -ENOENT || r == -ENOTDIR || r == REACH_NO)
                return 0;
        return r == REACH_YES ? 1 : r < 0 ? r : 0;
}
