/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <libmount.h>
#include <string.h>
#include <sys/stat.h>

#include "disk/mount.h"
#include "util/error.h"
#include "util/log.h"
#include "util/macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct libmnt_table *, mnt_unref_table)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct libmnt_iter *, mnt_free_iter)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct libmnt_context *, mnt_free_context)

int mount_is_mounted_at(dev_t devnum, const char *target) {
        _cleanup_(mnt_unref_tablep) struct libmnt_table *tb = NULL;
        _cleanup_(mnt_free_iterp) struct libmnt_iter *it = NULL;
        struct libmnt_fs *fs;
        int r;

        tb = mnt_new_table();
        it = mnt_new_iter(MNT_ITER_BACKWARD);  /* the last mount on a target is the visible one */
        if (!tb || !it)
                return -ENOMEM;
        r = mnt_table_parse_file(tb, "/proc/self/mountinfo");
        if (r < 0)
                return r;

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

int mount_device(const char *node, const char *target, const char *fstype, const char *options) {
        _cleanup_(mnt_free_contextp) struct libmnt_context *cxt = NULL;
        char msg[1024] = "";
        int r, rc;

        cxt = mnt_new_context();
        if (!cxt)
                return -ENOMEM;
        if ((r = mnt_context_set_source(cxt, node)) < 0 ||
            (r = mnt_context_set_target(cxt, target)) < 0 ||
            (r = mnt_context_set_fstype(cxt, fstype)) < 0 ||
            (r = mnt_context_set_options(cxt, options)) < 0 ||
            /* Everything is given here; do not merge options from fstab. */
            (r = mnt_context_set_optsmode(cxt, MNT_OMODE_IGNORE | MNT_OMODE_NOTAB)) < 0 ||
            /* No /sbin/mount.* helper: the kernel mounts ext4 and xfs itself. */
            (r = mnt_context_disable_helpers(cxt, 1)) < 0)
                return log_error_errno(r, "Failed to prepare mounting %s: %m", node);

        rc = mnt_context_mount(cxt);
        rc = mnt_context_get_excode(cxt, rc, msg, sizeof(msg));
        if (rc != MNT_EX_SUCCESS)
                return log_error_errno(-ERCI_FAILED, "Failed to mount %s on %s: %s", node, target,
                                       msg[0] ? msg : "libmount gave no reason");
        return 0;
}
