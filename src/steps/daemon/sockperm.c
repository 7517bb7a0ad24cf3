/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
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

#define SYMLINK_MAX_FOLLOW 40

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

int unix_socket_reachable(int root_fd, const char *path, uid_t uid, const gid_t *groups, size_t n_groups) {
        char todo[PATH_MAX * 2];
        _cleanup_close_ int cur = -1;
        unsigned follows = 0;
        size_t pos;

        if (path[0] != '/' || strlen(path) >= PATH_MAX)
                return -EINVAL;
        strcpy(todo, path);
        pos = 0;
        cur = openat(root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (cur < 0)
                return negative_errno();

        for (;;) {
                char name[NAME_MAX + 1];
                _cleanup_close_ int next = -1;
                struct stat st;
                size_t len;
                bool last;
                int r;

                pos += strspn(todo + pos, "/");
                len = strcspn(todo + pos, "/");
                if (len == 0) /* the path ends in "/": a directory, not a socket */
                        return 0;
                if (len > NAME_MAX)
                        return -ENAMETOOLONG;
                memcpy(name, todo + pos, len);
                name[len] = 0;
                pos += len;
                last = todo[pos + strspn(todo + pos, "/")] == 0;

                /* Looking a name up in cur needs search permission on cur. */
                r = fd_permits(cur, uid, groups, n_groups, 1);
                if (r <= 0)
                        return r;

                if (streq(name, "."))
                        continue;
                next = openat(cur, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
                if (next < 0)
                        return errno == ENOENT || errno == ENOTDIR ? 0 : negative_errno();
                if (fstat(next, &st) < 0)
                        return negative_errno();

                if (S_ISLNK(st.st_mode)) {
                        char target[PATH_MAX];
                        ssize_t n;
                        size_t rest_len = strlen(todo + pos);

                        if (++follows > SYMLINK_MAX_FOLLOW)
                                return -ELOOP;
                        n = readlinkat(next, "", target, sizeof(target) - 1);
                        if (n < 0)
                                return negative_errno();
                        target[n] = 0;
                        if ((size_t) n + rest_len + 2 > sizeof(todo))
                                return -ENAMETOOLONG;
                        /* todo becomes target + the rest of the path; an absolute target starts again at the root. */
                        memmove(todo + n, todo + pos, rest_len + 1);
                        memcpy(todo, target, (size_t) n);
                        pos = 0;
                        if (target[0] == '/') {
                                safe_close(cur);
                                cur = openat(root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
                                if (cur < 0)
                                        return negative_errno();
                        }
                        continue;
                }
                if (last) {
                        if (!S_ISSOCK(st.st_mode))
                                return 0;
                        return fd_permits(next, uid, groups, n_groups, 2);
                }
                if (!S_ISDIR(st.st_mode))
                        return 0;
                safe_close(cur);
                cur = TAKE_FD(next);
        }
}
