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

#include "steps/storage/homefs.h"
#include "util/fs.h"
#include "util/killpoint.h"
#include "util/macro.h"

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

static int read_link_at(int dirfd, const char *name, char **ret) {
        char buf[PATH_MAX];
        ssize_t n = readlinkat(dirfd, name, buf, sizeof(buf) - 1);

        if (n < 0)
                return negative_errno();
        buf[n] = 0;
        *ret = strdup(buf);
        return *ret ? 0 : -ENOMEM;
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
                int r = read_link_at(dirfd, name, &e.target);
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

/* 1 if the directory open at fd has no entries, 0 if it has, < 0 on error. */
static int fd_dir_is_empty(int fd) {
        DIR *d;
        struct dirent *de;
        int r;

        r = opendir_at(fd, &d);
        if (r < 0)
                return r;
        r = 1;
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, "..")) {
                        r = 0;
                        break;
                }
        closedir(d);
        return r;
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
        r = fd_dir_is_empty(fd);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENOTEMPTY;
        return give_dir(fd, mode, uid, gid);
}

/* Open the symlink itself and check it is the one we just made: ours, one link, pointing at target. */
static int open_own_symlink(int dirfd, const char *name, const char *target) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *t = NULL;
        struct stat st;
        int r;

        fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISLNK(st.st_mode) || st.st_uid != geteuid() || st.st_nlink != 1)
                return -EBUSY;
        r = read_link_at(fd, "", &t);
        if (r < 0)
                return r;
        if (!streq(t, target))
                return -EBUSY;
        return TAKE_FD(fd);
}

int home_put_symlink(int dirfd, const char *name, const char *target, uid_t uid, gid_t gid) {
        _cleanup_close_ int fd = -1;
        HomeEntry old = {};
        char tmp[NAME_MAX + 1];
        int r;

        if (strchr(name, '/') || strlen(name) > NAME_MAX - 32)
                return -EINVAL;

        r = home_entry_inspect(dirfd, name, &old);
        if (r < 0)
                return r;
        if (old.type != HOME_ENTRY_MISSING && old.type != HOME_ENTRY_SYMLINK) {
                home_entry_done(&old);
                return -EEXIST;
        }
        /* Left by a killed run: ours (root's, or given to the user already), symlinks only. */
        (void) remove_stale_temp_files(dirfd, name, S_IFLNK, uid);

        for (unsigned attempt = 0;; attempt++) {
                r = temp_name_random(name, tmp);
                if (r < 0) {
                        home_entry_done(&old);
                        return r;
                }
                if (symlinkat(target, dirfd, tmp) >= 0)
                        break;
                if (errno != EEXIST || attempt > 16) {
                        home_entry_done(&old);
                        return negative_errno();
                }
        }

        fd = open_own_symlink(dirfd, tmp, target);
        if (fd < 0) {
                r = fd;
                goto fail;
        }
        if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
                r = negative_errno();
                goto fail;
        }
        killpoint_at("home-symlink-before-rename", name);

        if (old.type == HOME_ENTRY_MISSING)
                r = renameat2(dirfd, tmp, dirfd, name, RENAME_NOREPLACE) < 0 ? negative_errno() : 0;
        else {
                /* Swap, then look at what came out: a symlink is dropped, anything else swapped in is kept. */
                r = renameat2(dirfd, tmp, dirfd, name, RENAME_EXCHANGE) < 0 ? negative_errno() : 0;
                if (r >= 0) {
                        HomeEntry out = {};
                        if (home_entry_inspect(dirfd, tmp, &out) >= 0 && out.type == HOME_ENTRY_SYMLINK)
                                (void) unlinkat(dirfd, tmp, 0);
                        else
                                r = -EBUSY;  /* raced: something else was there; it stays, under tmp */
                        home_entry_done(&out);
                        if (r < 0) {
                                home_entry_done(&old);
                                return r;
                        }
                }
        }
        if (r < 0)
                goto fail;
        home_entry_done(&old);
        return fsync_dir(dirfd);

fail:
        /* Only our temporary name goes, and only while it is still our symlink. */
        {
                HomeEntry t = {};
                if (home_entry_inspect(dirfd, tmp, &t) >= 0 && t.type == HOME_ENTRY_SYMLINK)
                        (void) unlinkat(dirfd, tmp, 0);
                home_entry_done(&t);
        }
        home_entry_done(&old);
        return r;
}

int home_dir_is_empty(int dirfd, const char *name) {
        _cleanup_close_ int fd = -1;
        DIR *d;
        struct dirent *de;
        int r = 1;

        fd = open_entry_dir(dirfd, name, O_RDONLY);
        if (fd < 0)
                return fd;
        d = fdopendir(fd);
        if (!d)
                return negative_errno();
        fd = -1;
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, "..")) {
                        r = 0;
                        break;
                }
        closedir(d);
        return r;
}
