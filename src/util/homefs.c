/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>

#include "fs.h"
#include "homefs.h"
#include "macro.h"

int home_open(int root_fd, const char *home, uid_t uid, struct stat *ret_st) {
        _cleanup_close_ int fd = -1;
        struct stat st;

        /* The path up to the home belongs to root: resolved in the root. The home itself must be no symlink. */
        fd = safe_openat(root_fd, home, O_PATH | O_NOFOLLOW, 0, RESOLVE_POLICY_IN_ROOT);
        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (S_ISLNK(st.st_mode))
                return -ELOOP;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        if (st.st_uid != uid)
                return -EPERM;
        if (ret_st)
                *ret_st = st;
        return TAKE_FD(fd);
}
