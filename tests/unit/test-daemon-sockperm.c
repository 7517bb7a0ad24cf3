/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "tests.h"
#include "steps/daemon/sockperm.h"

#define UID_A 4242
#define GID_A 4242
#define GID_B 4343

/* A raw system.posix_acl_access value: version 2, then (tag, perm, id) entries. */
typedef struct AclBuf {
        uint8_t b[4 + 8 * 16];
        size_t n;
} AclBuf;

static void acl_begin(AclBuf *a) {
        memset(a, 0, sizeof(*a));
        a->b[0] = 2;
        a->n = 4;
}

static void acl_add(AclBuf *a, unsigned tag, unsigned perm, uint32_t id) {
        uint8_t *e = a->b + a->n;
        e[0] = tag & 0xff;
        e[1] = tag >> 8;
        e[2] = perm & 0xff;
        e[4] = id & 0xff;
        e[5] = (id >> 8) & 0xff;
        e[6] = (id >> 16) & 0xff;
        e[7] = id >> 24;
        a->n += 8;
}

static struct stat st_of(uid_t uid, gid_t gid, mode_t mode) {
        struct stat st = { .st_uid = uid, .st_gid = gid, .st_mode = S_IFSOCK | mode };
        return st;
}

TEST(mode_bits_decide_by_owner_then_group_then_other) {
        gid_t g[] = { GID_A };
        gid_t gb[] = { GID_A, GID_B };
        struct stat st = st_of(0, GID_B, 0660);

        ASSERT_FALSE(inode_permits(&st, NULL, 0, UID_A, g, 1, 2));
        ASSERT_TRUE(inode_permits(&st, NULL, 0, UID_A, gb, 2, 2)); /* in the socket's group: that is the docker group case */
        st = st_of(0, 0, 0666);
        ASSERT_TRUE(inode_permits(&st, NULL, 0, UID_A, g, 1, 2));
        /* The owner's bits decide for the owner, even when "other" would allow more. */
        st = st_of(UID_A, 0, 0066);
        ASSERT_FALSE(inode_permits(&st, NULL, 0, UID_A, g, 1, 2));
        /* A member of the owning group gets the group bits, not "other". */
        st = st_of(0, GID_A, 0606);
        ASSERT_FALSE(inode_permits(&st, NULL, 0, UID_A, g, 1, 2));
}

TEST(acl_named_user_and_group_entries_go_through_the_mask) {
        gid_t g[] = { GID_A };
        struct stat st = st_of(0, 0, 0660);
        AclBuf a;

        acl_begin(&a);
        acl_add(&a, 0x01, 6, 0);       /* USER_OBJ rw */
        acl_add(&a, 0x02, 6, UID_A);   /* USER uid_a rw */
        acl_add(&a, 0x04, 6, 0);       /* GROUP_OBJ rw */
        acl_add(&a, 0x10, 6, 0);       /* MASK rw */
        acl_add(&a, 0x20, 0, 0);       /* OTHER none */
        ASSERT_TRUE(inode_permits(&st, a.b, a.n, UID_A, g, 1, 2));

        acl_begin(&a);
        acl_add(&a, 0x01, 6, 0);
        acl_add(&a, 0x02, 6, UID_A);
        acl_add(&a, 0x04, 6, 0);
        acl_add(&a, 0x10, 4, 0);       /* the mask takes write away */
        acl_add(&a, 0x20, 0, 0);
        ASSERT_FALSE(inode_permits(&st, a.b, a.n, UID_A, g, 1, 2));

        acl_begin(&a);
        acl_add(&a, 0x01, 6, 0);
        acl_add(&a, 0x04, 0, 0);
        acl_add(&a, 0x08, 2, GID_A);   /* GROUP gid_a w */
        acl_add(&a, 0x10, 6, 0);
        acl_add(&a, 0x20, 0, 0);
        ASSERT_TRUE(inode_permits(&st, a.b, a.n, UID_A, g, 1, 2));

        /* A matching group entry that does not grant it: no, even though "other" would. */
        acl_begin(&a);
        acl_add(&a, 0x01, 6, 0);
        acl_add(&a, 0x04, 0, 0);
        acl_add(&a, 0x08, 4, GID_A);
        acl_add(&a, 0x10, 6, 0);
        acl_add(&a, 0x20, 6, 0);
        ASSERT_FALSE(inode_permits(&st, a.b, a.n, UID_A, g, 1, 2));
}

/* Does a child that has become UID_A with groups really connect? */
static int real_connect(const char *path, const gid_t *groups, size_t n) {
        int status;
        pid_t pid = fork();

        if (pid < 0)
                return -errno;
        if (pid == 0) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                int fd;
                if (strlen(path) >= sizeof(sa.sun_path))
                        _exit(2);
                memcpy(sa.sun_path, path, strlen(path) + 1);
                if (setgroups(n, groups) < 0 || setresgid(GID_A, GID_A, GID_A) < 0 || setresuid(UID_A, UID_A, UID_A) < 0)
                        _exit(2);
                fd = socket(AF_UNIX, SOCK_STREAM, 0);
                _exit(fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0 ? 0 : 1);
        }
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) == 2)
                return -EPERM;
        return WEXITSTATUS(status) == 0;
}

static int listen_at(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (strlen(path) >= sizeof(sa.sun_path))
                return -1;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 16) < 0)
                return -1;
        return fd;
}

/*
 * The prediction against the kernel's own answer: a child that becomes the
 * user and tries, over directory modes, socket modes and groups, and a
 * symlinked directory on the way.
 */
TEST(reachability_matches_a_real_connect) {
        const char *dir;
        char sock[512], link[512], sub[512];
        gid_t g1[] = { GID_A }, g2[] = { GID_A, GID_B };
        int root_fd, lfd, n = 0;

        if (geteuid() != 0) {
                test_skip("needs root to become another user and compare");
                return;
        }
        dir = test_tmpdir();
        ASSERT_TRUE(chmod(dir, 0755) == 0);
        snprintf(sub, sizeof(sub), "%s/run", dir);
        ASSERT_TRUE(mkdir(sub, 0755) == 0);
        snprintf(sock, sizeof(sock), "%s/run/api.sock", dir);
        lfd = listen_at(sock);
        ASSERT_TRUE(lfd >= 0);
        snprintf(link, sizeof(link), "%s/varrun", dir);
        ASSERT_TRUE(symlink("run", link) == 0);
        root_fd = open("/", O_PATH | O_DIRECTORY);
        ASSERT_TRUE(root_fd >= 0);

        static const struct { mode_t dir, sock; gid_t sock_gid; } cases[] = {
                { 0755, 0660, 0 },     { 0755, 0666, 0 },    { 0700, 0666, 0 },    { 0755, 0660, GID_B },
                { 0750, 0666, GID_B }, { 0711, 0666, 0 },    { 0754, 0666, 0 },    { 0755, 0600, GID_B },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char via[512];
                ASSERT_TRUE(chmod(sub, cases[i].dir) == 0);
                ASSERT_TRUE(chown(sub, 0, cases[i].sock_gid) == 0);
                ASSERT_TRUE(chmod(sock, cases[i].sock) == 0);
                ASSERT_TRUE(chown(sock, 0, cases[i].sock_gid) == 0);
                for (int k = 0; k < 2; k++) {
                        const gid_t *g = k ? g2 : g1;
                        size_t ng = k ? 2 : 1;
                        int want = real_connect(sock, g, ng);
                        ASSERT_TRUE(want >= 0);
                        ASSERT_EQ(unix_socket_reachable(root_fd, sock, UID_A, g, ng), want);
                        snprintf(via, sizeof(via), "%s/varrun/api.sock", dir);
                        ASSERT_EQ(unix_socket_reachable(root_fd, via, UID_A, g, ng), real_connect(via, g, ng));
                        n += want;
                }
        }
        ASSERT_TRUE(n > 0); /* both answers occur, or the comparison proves little */

        ASSERT_EQ(unix_socket_reachable(root_fd, "/nonexistent/x.sock", UID_A, g1, 1), 0);
        close(lfd);
        close(root_fd);
}

/* The same with an ACL granting UID_A write on a 0600 socket, where the filesystem has ACLs. */
TEST(reachability_through_an_acl_matches_a_real_connect) {
        const char *dir;
        char sock[512], reason[600];
        gid_t g1[] = { GID_A };
        int root_fd, lfd;
        AclBuf a;

        if (geteuid() != 0) {
                test_skip("needs root to become another user and compare");
                return;
        }
        dir = test_tmpdir();
        ASSERT_TRUE(chmod(dir, 0755) == 0);
        snprintf(sock, sizeof(sock), "%s/api.sock", dir);
        lfd = listen_at(sock);
        ASSERT_TRUE(lfd >= 0);
        ASSERT_TRUE(chmod(sock, 0600) == 0 && chown(sock, 0, 0) == 0);
        acl_begin(&a);
        acl_add(&a, 0x01, 6, 0);
        acl_add(&a, 0x02, 6, UID_A);
        acl_add(&a, 0x04, 0, 0);
        acl_add(&a, 0x10, 6, 0);
        acl_add(&a, 0x20, 0, 0);
        if (setxattr(sock, "system.posix_acl_access", a.b, a.n, 0) < 0) {
                snprintf(reason, sizeof(reason), "no POSIX ACLs on %s (%s): the pure ACL tests above cover the logic",
                         dir, strerror(errno));
                close(lfd);
                test_skip(reason);
                return;
        }
        root_fd = open("/", O_PATH | O_DIRECTORY);
        ASSERT_TRUE(root_fd >= 0);
        ASSERT_EQ(real_connect(sock, g1, 1), 1);
        ASSERT_EQ(unix_socket_reachable(root_fd, sock, UID_A, g1, 1), 1);
        /* Without the ACL the same socket is closed to UID_A, by both. */
        ASSERT_TRUE(removexattr(sock, "system.posix_acl_access") == 0 && chmod(sock, 0600) == 0);
        ASSERT_EQ(real_connect(sock, g1, 1), 0);
        ASSERT_EQ(unix_socket_reachable(root_fd, sock, UID_A, g1, 1), 0);
        close(lfd);
        close(root_fd);
}
