/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "homefs.h"
#include "killpoint.h"
#include "macro.h"

void home_entry_done(HomeEntry *e) {
        free(e->target);
        *e = (HomeEntry) {};
}

const char *home_entry_type_to_string(const HomeEntry *e) {
        switch (e->type) {
        case HOME_ENTRY_MISSING:
                return "missing";
        case HOME_ENTRY_DIRECTORY:
                return "a directory";
        case HOME_ENTRY_SYMLINK:
                return "a symlink";
        case HOME_ENTRY_OTHER:
                if (S_ISREG(e->st.st_mode))
                        return e->st.st_nlink > 1 ? "a regular file with other hard links" : "a regular file";
                if (S_ISSOCK(e->st.st_mode))
                        return "a socket";
                if (S_ISFIFO(e->st.st_mode))
                        return "a FIFO";
                return "a device node";
        }
        return "unknown";
}

int home_entry_inspect(int dirfd, const char *name, HomeEntry *ret) {
        HomeEntry e = {};

        if (fstatat(dirfd, name, &e.st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno != ENOENT)
                        return negative_errno();
                e.type = HOME_ENTRY_MISSING;
                *ret = e;
                return 0;
        }
        if (S_ISDIR(e.st.st_mode))
                e.type = HOME_ENTRY_DIRECTORY;
        else if (S_ISLNK(e.st.st_mode)) {
                int r = readlinkat_malloc(dirfd, name, &e.target);
                if (r < 0)
                        return r;
                e.type = HOME_ENTRY_SYMLINK;
        } else
                e.type = HOME_ENTRY_OTHER;
        *ret = e;
        return 0;
}

/* safe_openat() of the entry name with O_DIRECTORY; a symlink there is always -ELOOP (openat2 says ENOTDIR). */
static int open_entry_dir(int dirfd, const char *name, int flags) {
        struct stat st;
        int fd = safe_openat(dirfd, name, flags | O_DIRECTORY | O_NOFOLLOW, 0, RESOLVE_POLICY_NO_SYMLINKS);

        if (fd == -ENOTDIR && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) >= 0 && S_ISLNK(st.st_mode))
                return -ELOOP;
        return fd;
}

int home_open_dir(int dirfd, const char *name) {
        return open_entry_dir(dirfd, name, O_PATH);
}

/* Hand the directory open at fd to uid:gid with mode; returns an fd for it. */
static int give_dir(int fd, mode_t mode, uid_t uid, gid_t gid) {
        struct stat st;
        int r;

        if (fstat(fd, &st) < 0)
                return negative_errno();
        if ((st.st_uid != uid || st.st_gid != gid) && fchown(fd, uid, gid) < 0)
                return negative_errno();
        if (fchmod(fd, mode) < 0)
                return negative_errno();
        r = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        return r < 0 ? negative_errno() : r;
}

int home_make_dir(int dirfd, const char *name, mode_t mode, uid_t uid, gid_t gid) {
        _cleanup_close_ int fd = -1;
        struct stat st;

        if (strchr(name, '/'))
                return -EINVAL;
        if (mkdirat(dirfd, name, 0700) < 0)
                return negative_errno();
        killpoint_at("home-mkdir-before-chown", name);

        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOTDIR || errno == ELOOP ? -EBUSY : negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        /*
         * Ours: a directory owned by us. The user can swap in a directory of its
         * own, never one owned by us (moving a directory to another parent needs
         * write access to it, and ours is 0700 root).
         */
        if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid())
                return -EBUSY;
        return give_dir(fd, mode, uid, gid);
}

int home_finish_dir(int dirfd, const char *name, mode_t mode, uid_t uid, gid_t gid) {
        _cleanup_close_ int fd = -1;
        struct stat st;
        int r;

        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOTDIR || errno == ELOOP ? -EBUSY : negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        /* What home_make_dir() leaves when killed before the chown: ours, 0700, empty. */
        if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 07777) != 0700)
                return -EBUSY;
        r = dir_fd_is_empty(fd);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENOTEMPTY;
        return give_dir(fd, mode, uid, gid);
}

int home_put_symlink(int dirfd, const char *name, const char *target, uid_t uid, gid_t gid) {
        return symlink_atomic_at(dirfd, name, target, uid, gid, "home-symlink-before-rename");
}

int home_dir_is_empty(int dirfd, const char *name) {
        _cleanup_close_ int fd = open_entry_dir(dirfd, name, O_RDONLY);

        if (fd < 0)
                return fd;
        return dir_fd_is_empty(fd);
}
