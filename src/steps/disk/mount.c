/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <libmount.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>
#include <sys/stat.h>

#include "steps/disk/mount.h"
#include "util/error.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/testhooks.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct libmnt_context *, mnt_free_context)

int mount_table_read(struct libmnt_table **ret) {
        _cleanup_(mnt_unref_tablep) struct libmnt_table *tb = mnt_new_table();
        int r;

        if (!tb)
                return -ENOMEM;
        r = mnt_table_parse_file(tb, "/proc/self/mountinfo");
        if (r < 0)
                return r;
        *ret = TAKE_PTR(tb);
        return 0;
}

int mount_is_mounted_at(struct libmnt_table *tb, dev_t devnum, const char *target) {
        /* Backward: the last mount on a target is the visible one. */
        _cleanup_(mnt_free_iterp) struct libmnt_iter *it = mnt_new_iter(MNT_ITER_BACKWARD);
        struct libmnt_fs *fs;

        if (!it)
                return -ENOMEM;
        while (mnt_table_next_fs(tb, it, &fs) == 0) {
                const char *src;
                struct stat st;

                if (!streq_ptr(mnt_fs_get_target(fs), target))
                        continue;
                /* Only the top mount counts: something mounted over ours hides it. */
                if (mnt_fs_get_devno(fs) == devnum)
                        return 1;
                src = mnt_fs_get_srcpath(fs);
                return src && stat(src, &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == devnum;
        }
        return 0;
}

/* The kernel's own words for a failed fsconfig()/fsmount(): lines "e ext4: ..." read from the context. */
static void fs_context_message(int fsfd, char *buf, size_t size) {
        size_t used = 0;

        buf[0] = 0;
        while (used + 2 < size) {
                ssize_t n = read(fsfd, buf + used, size - used - 1);
                if (n <= 0)
                        break;
                buf[used + (size_t) n] = 0;
                used += (size_t) n;
                if (used + 2 < size)
                        buf[used++] = ' ';
                buf[used] = 0;
        }
}

/*
 * The new mount API: a filesystem context, a detached mount, moved onto
 * dir_fd itself (MOVE_MOUNT_T_EMPTY_PATH). -ENOSYS (or -EPERM from a seccomp
 * filter) when the kernel has none of it: the caller falls back.
 */
static int mount_new_api(const char *node, int dir_fd, const char *target, const char *fstype, const char *fs_opts) {
        _cleanup_close_ int fsfd = -1, mfd = -1;
        _cleanup_free_ char *opts = fs_opts ? strdup(fs_opts) : NULL;
        char msg[512];
        char *save = NULL;

        if (fs_opts && !opts)
                return -ENOMEM;
        fsfd = fsopen(fstype, FSOPEN_CLOEXEC);
        if (fsfd < 0)
                return negative_errno();
        if (fsconfig(fsfd, FSCONFIG_SET_STRING, "source", node, 0) < 0)
                goto fail;
        for (char *o = opts ? strtok_r(opts, ",", &save) : NULL; o; o = strtok_r(NULL, ",", &save)) {
                char *eq = strchr(o, '=');
                if (eq)
                        *eq = 0;
                if ((eq ? fsconfig(fsfd, FSCONFIG_SET_STRING, o, eq + 1, 0)
                        : fsconfig(fsfd, FSCONFIG_SET_FLAG, o, NULL, 0)) < 0)
                        goto fail;
        }
        if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
                goto fail;
        mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, 0);
        if (mfd < 0)
                goto fail;
        if (move_mount(mfd, "", dir_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
                return log_error_errno(negative_errno(), "Failed to mount %s on %s: %m", node, target);
        return 0;

fail:
        {
                int r = negative_errno();
                fs_context_message(fsfd, msg, sizeof(msg));
                return log_error_errno(r, "Failed to mount %s on %s: %m%s%s", node, target, msg[0] ? ": " : "", msg);
        }
}

/* libmount, with the target given as /proc/self/fd/N: the kernel follows that link to dir_fd's own directory. */
static int mount_libmount(const char *node, int dir_fd, const char *target, const char *fstype, const char *options) {
        _cleanup_(mnt_free_contextp) struct libmnt_context *cxt = NULL;
        char fd_target[64], msg[1024] = "";
        int r, rc;

        snprintf(fd_target, sizeof(fd_target), "/proc/self/fd/%d", dir_fd);
        cxt = mnt_new_context();
        if (!cxt)
                return -ENOMEM;
        if ((r = mnt_context_set_source(cxt, node)) < 0 ||
            (r = mnt_context_set_target(cxt, fd_target)) < 0 ||
            (r = mnt_context_set_fstype(cxt, fstype)) < 0 ||
            (r = mnt_context_set_options(cxt, options)) < 0 ||
            /* Everything is given here; do not merge options from fstab. */
            (r = mnt_context_set_optsmode(cxt, MNT_OMODE_IGNORE | MNT_OMODE_NOTAB)) < 0 ||
            /* No /sbin/mount.* helper: the kernel mounts ext4 and xfs itself. */
            (r = mnt_context_disable_helpers(cxt, 1)) < 0 ||
            /* realpath() would turn the fd back into a path to look up again. */
            (r = mnt_context_disable_canonicalize(cxt, 1)) < 0 ||
            /* utab would record /proc/self/fd/N; nothing reads our options there. */
            (r = mnt_context_disable_mtab(cxt, 1)) < 0)
                return log_error_errno(r, "Failed to prepare mounting %s: %m", node);

        rc = mnt_context_mount(cxt);
        rc = mnt_context_get_excode(cxt, rc, msg, sizeof(msg));
        if (rc != MNT_EX_SUCCESS)
                return log_error_errno(-ERCI_FAILED, "Failed to mount %s on %s: %s", node, target,
                                       msg[0] ? msg : "libmount gave no reason");
        return 0;
}

/* A test hook (util/testhooks.h): only test builds can be told to skip the new mount API. */
static bool force_fallback(void) {
        return TEST_HOOK_FLAG("RCI_FORCE_MOUNT_FALLBACK");
}

int mount_device_at(const char *node, int dir_fd, const char *target, const char *fstype, const char *options) {
        _cleanup_free_ char *user = NULL, *vfs = NULL, *fs = NULL;
        unsigned long vfs_flags = 0;
        int r;

        /* libmount sorts the options: x-*, nofail and defaults are userspace's, the rest the kernel's. */
        r = mnt_split_optstr(options, &user, &vfs, &fs, 0, 0);
        if (r < 0)
                return log_error_errno(r, "Failed to parse the mount options %s: %m", options);
        /* Flags for the mount itself (ro, nosuid, noatime...) would need translating to MOUNT_ATTR_*; ours have none. */
        if (vfs && (r = mnt_optstr_get_flags(vfs, &vfs_flags, mnt_get_builtin_optmap(MNT_LINUX_MAP))) < 0)
                return log_error_errno(r, "Failed to parse the mount options %s: %m", options);
        if (!force_fallback() && vfs_flags == 0) {
                r = mount_new_api(node, dir_fd, target, fstype, fs);
                if (r != -ENOSYS && r != -EPERM)
                        return r;
        }
        return mount_libmount(node, dir_fd, target, fstype, options);
}
