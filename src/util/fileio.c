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

#include "fileio.h"
#include "killpoint.h"
#include "macro.h"

int memstream_finish(FILE *f, char **buf) {
        bool ok = fflush(f) == 0 && !ferror(f);

        if (fclose(f) != 0 || !ok) {
                free(*buf);
                *buf = NULL;
                return -ENOMEM;
        }
        return 0;
}

int dir_fd_is_empty(int fd) {
        _cleanup_closedir_ DIR *d = NULL;
        struct dirent *de;
        int r;

        r = opendir_at(fd, &d);
        if (r < 0)
                return r;
        while ((errno = 0, de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        return 0;
        return errno != 0 ? negative_errno() : 1;
}

int readlinkat_malloc(int dirfd, const char *name, char **ret) {
        char buf[PATH_MAX];
        ssize_t n = readlinkat(dirfd, name, buf, sizeof(buf) - 1);

        if (n < 0)
                return negative_errno();
        buf[n] = 0;
        *ret = strdup(buf);
        return *ret ? 0 : -ENOMEM;
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
        r = readlinkat_malloc(fd, "", &t);
        if (r < 0)
                return r;
        if (!streq(t, target))
                return -EBUSY;
        return TAKE_FD(fd);
}

/* 1 if dirfd/name is a symlink, 0 if missing, -EEXIST if it is something else, < 0 on error. */
static int symlink_or_missing(int dirfd, const char *name) {
        struct stat st;

        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : negative_errno();
        return S_ISLNK(st.st_mode) ? 1 : -EEXIST;
}

int symlink_atomic_at(int dirfd, const char *name, const char *target, uid_t uid, gid_t gid,
                      const char *killpoint_name) {
        _cleanup_close_ int fd = -1;
        char tmp[NAME_MAX + 1];
        int r, old;

        if (strchr(name, '/') || strlen(name) > NAME_MAX - 32)
                return -EINVAL;

        old = symlink_or_missing(dirfd, name);
        if (old < 0)
                return old;
        /* Left by a killed run: ours (root's, or given to uid already), symlinks only. */
        (void) remove_stale_temp_files(dirfd, name, S_IFLNK, uid);

        for (unsigned attempt = 0;; attempt++) {
                r = temp_name_random(name, tmp);
                if (r < 0)
                        return r;
                if (symlinkat(target, dirfd, tmp) >= 0)
                        break;
                if (errno != EEXIST || attempt > 16)
                        return negative_errno();
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
        killpoint_at(killpoint_name, name);

        if (old == 0)
                r = renameat2(dirfd, tmp, dirfd, name, RENAME_NOREPLACE) < 0 ? negative_errno() : 0;
        else {
                /* Swap, then look at what came out: a symlink is dropped, anything else swapped in is kept. */
                r = renameat2(dirfd, tmp, dirfd, name, RENAME_EXCHANGE) < 0 ? negative_errno() : 0;
                if (r >= 0) {
                        if (symlink_or_missing(dirfd, tmp) != 1)
                                return -EBUSY;  /* raced: something else was there; it stays, under tmp */
                        (void) unlinkat(dirfd, tmp, 0);
                }
        }
        if (r < 0)
                goto fail;
        return fsync_dir(dirfd);

fail:
        /* Only our temporary name goes, and only while it is still a symlink. */
        if (symlink_or_missing(dirfd, tmp) == 1)
                (void) unlinkat(dirfd, tmp, 0);
        return r;
}
