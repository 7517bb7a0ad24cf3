/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "steps/disk/disk.h"
#include "steps/disk/layout.h"
#include "steps/disk/mkfs.h"
#include "steps/disk/mount.h"
#include "steps/disk/probe.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/killpoint.h"
#include "util/log.h"
#include "util/macro.h"

/*
 * The disk step's make part: what apply does, in this order, after every
 * refusal of the describe part had its chance, so a refused run changes
 * nothing. Each result is probed or looked up again before it is
 * reported. The disk's flock is held from the first write to the mount.
 */

#define PARTITION_WAIT_MS 10000
#define DISK_FLOCK_WAIT_MS 10000

/* flock(LOCK_EX) on the whole disk: udev and others that honour it keep off while we change it. */
static int lock_disk(DiskState *s) {
        unsigned long long t0;
        int fd;

        fd = disk_open(&s->disk, O_RDONLY);
        if (fd < 0)
                return log_error_errno(fd, "Failed to open %s: %m", s->disk.node);
        s->lock_fd = fd;
        s->locked = true;
        t0 = now_usec();
        while (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno != EWOULDBLOCK)
                        return log_error_errno(negative_errno(), "Failed to lock %s: %m", s->disk.node);
                if (ms_since_usec(t0) > DISK_FLOCK_WAIT_MS)
                        return log_error_errno(-ETIMEDOUT, "%s stayed locked by another program for %u s.", s->disk.node,
                                               DISK_FLOCK_WAIT_MS / 1000);
                (void) nanosleep(&(struct timespec) { .tv_nsec = 50 * 1000 * 1000 }, NULL);
        }
        return 0;
}

/* Held from the first write to the mount, so nothing rescans the disk in between; not for fstab alone. */
int make_begin(StepRun *run, Account *a) {
        DiskState *s = run_state(run);

        if (!(s->make_table || s->kernel_sync || s->make_fs || !s->mounted))
                return 0;
        return lock_disk(s);
}

void make_end(StepRun *run, Account *a) {
        DiskState *s = run_state(run);

        if (s->locked) {
                s->lock_fd = safe_close(s->lock_fd);
                s->locked = false;
        }
}

static int wait_partition(DiskState *s) {
        unsigned long long t0;
        int r;

        t0 = now_usec();
        free(s->part_node);
        s->part_node = NULL;
        r = layout_wait_partition(&s->disk, 1, &s->part, PARTITION_WAIT_MS, &s->part_node, &s->part_devnum);
        if (r == -ETIMEDOUT)
                return log_error_errno(r, "The kernel did not show partition 1 of %s within %u s.", s->disk.node,
                                       PARTITION_WAIT_MS / 1000);
        if (r < 0)
                return log_error_errno(r, "Failed to wait for partition 1 of %s: %m", s->disk.node);
        log_debug("Timing: partition node %s after %.1f ms", s->part_node, ms_since_usec(t0));
        return 0;
}

/*
 * Make the kernel's partitions of the disk match our GPT: forget any other,
 * add partition 1 if it does not know it (BLKPG; nothing is written to the
 * disk). Used right after writing the GPT as well as for a disk of ours whose
 * node is missing (a kernel that does not scan partition tables, a reboot).
 */
static int kernel_partitions_match_gpt(DiskState *s, int fd) {
        int r;

        for (size_t i = 0; i < s->disk.n_parts; i++) {
                const KernelPartition *kp = &s->disk.parts[i];
                if (kp->number == 1 && kp->start == s->part.start && kp->size == s->part.size)
                        continue;
                r = layout_kernel_del(fd, kp->number);
                if (r < 0)
                        return log_error_errno(r, "Failed to make the kernel forget /dev/%s (not in the GPT of %s): %m",
                                               kp->name, s->disk.node);
        }
        r = disk_read_partitions(&s->disk);
        if (r < 0)
                return log_error_errno(r, "Failed to read the partitions of %s: %m", s->disk.node);
        if (!disk_kernel_partition(&s->disk, 1)) {
                r = layout_kernel_add(fd, 1, s->part.start, s->part.size);
                if (r < 0)
                        return log_error_errno(r, "Failed to tell the kernel about partition 1 of %s: %m", s->disk.node);
        }
        return 0;
}

/* Blank, or --wipe: the destructive window, under O_EXCL and the disk lock. Reports disk.wipe and disk.partition-table. */
static int make_table(StepRun *run, Change *change) {
        DiskState *s = run_state(run);
        _cleanup_(signature_list_done) SignatureList now = {}, destroyed = {};
        _cleanup_close_ int excl = -1;
        unsigned long long t0;
        int r;

        excl = disk_open(&s->disk, O_RDWR | O_EXCL);
        if (excl == -EBUSY) {
                change_failed(run, "disk.device", FIX_DISK_BUSY, "%s is in use (the kernel refuses exclusive access)",
                              s->display);
                return log_error_errno(-ERCI_REFUSED, "Refusing to touch the data disk: %s is in use (the kernel "
                                       "refuses exclusive access: mounted, swap, RAID, LVM or another holder).", s->display);
        }
        if (excl < 0)
                return log_error_errno(excl, "Failed to open %s for writing: %m", s->disk.node);

        /* Under the lock, the disk must still be what it was when we looked. */
        r = probe_signatures(excl, 0, 0, s->disk.node, &now);
        if (r >= 0)
                r = probe_signatures(excl, s->part.start, s->part.size, "the area of the new partition", &now);
        if (r < 0)
                return log_error_errno(r, "Failed to probe %s: %m", s->disk.node);
        if (!s->wipe && now.n > 0) {
                _cleanup_free_ char *found = signature_list_describe(&now), *msg = NULL;
                if (asprintf(&msg, "%s changed while rootless-ci looked at it; it now holds: %s", s->display,
                             strempty(found)) < 0)
                        return -ENOMEM;
                return item_stop(run, "disk.device", STOP_APPLY, -ERCI_REFUSED, FIX_DISK_CHANGED, "%s", msg);
        }

        if (s->wipe) {
                _cleanup_free_ char *list = NULL;
                t0 = now_usec();
                /* Inside out: the partitions' contents (and the new partition's area), then the disk. */
                for (size_t i = 0; i < s->c.table.n_parts && r >= 0; i++) {
                        char where[PATH_MAX];
                        snprintf(where, sizeof(where), "partition %u of %s", s->c.table.parts[i].number, s->disk.node);
                        r = wipe_signatures(excl, s->c.table.parts[i].start, s->c.table.parts[i].size, where, &destroyed);
                }
                for (size_t i = 0; i < s->disk.n_parts && r >= 0; i++) {
                        char where[PATH_MAX];
                        snprintf(where, sizeof(where), "/dev/%s", s->disk.parts[i].name);
                        r = wipe_signatures(excl, s->disk.parts[i].start, s->disk.parts[i].size, where, &destroyed);
                }
                if (r >= 0)
                        r = wipe_signatures(excl, s->part.start, s->part.size, "the area of the new partition", &destroyed);
                if (r >= 0)
                        r = wipe_signatures(excl, 0, 0, s->disk.node, &destroyed);
                if (r < 0)
                        return log_error_errno(r, "Failed to wipe %s: %m", s->disk.node);

                signature_list_done(&now);
                r = probe_signatures(excl, 0, 0, s->disk.node, &now);
                if (r >= 0)
                        r = probe_signatures(excl, s->part.start, s->part.size, "the area of the new partition", &now);
                if (r < 0 || now.n > 0)
                        return log_error_errno(r < 0 ? r : -ERCI_FAILED, "%s still has signatures after wiping; stopping.",
                                               s->disk.node);
                list = signature_list_describe(&destroyed);
                change_done(run, "disk.wipe", ITEM_REMOVE, "wiped %s (%zu signatures erased); destroyed: %s",
                            s->disk.node, destroyed.n, strempty(list));
                log_debug("Timing: wipe %.1f ms", ms_since_usec(t0));
                killpoint("disk-wiped");
        }

        t0 = now_usec();
        r = layout_write(s->disk.node, run_config(run)->filesystem, &s->part);
        if (r < 0)
                return r;
        log_debug("Timing: GPT written %.1f ms", ms_since_usec(t0));
        killpoint("disk-gpt-written");
        change_done(run, "disk.partition-table", ITEM_CREATE, "created GPT on %s (%s) with partition 1 \"%s\" (Linux data)",
                    s->disk.node, s->size, RCI_PARTITION_NAME);

        /*
         * We tell the kernel about the partition ourselves rather than through libparted's
         * commit_to_os(): Debian's libparted runs `udevadm settle` through a shell there,
         * which waits for udev, which waits for our flock on the disk — two 120 s timeouts
         * on a host with udev (found by the vm tier).
         */
        r = kernel_partitions_match_gpt(s, excl);
        if (r < 0)
                return r;

        /* mkfs and mount open the partition exclusively; our claim on the whole disk would stop them. */
        excl = safe_close(excl);
        r = wait_partition(s);
        if (r < 0)
                return r;
        killpoint("disk-partition-ready");
        return 0;
}

static int sync_kernel_partitions(StepRun *run, Change *change) {
        DiskState *s = run_state(run);
        _cleanup_close_ int fd = disk_open(&s->disk, O_RDONLY);
        int r;

        if (fd < 0)
                return log_error_errno(fd, "Failed to open %s: %m", s->disk.node);
        r = kernel_partitions_match_gpt(s, fd);
        if (r < 0)
                return r;
        r = wait_partition(s);
        if (r < 0)
                return r;
        killpoint("disk-partition-ready");
        change_done(run, "disk.partition-node", ITEM_CHANGE, "told the kernel about %s (partition 1 as in the GPT)",
                    s->part_node);
        return 0;
}

static int make_filesystem(StepRun *run, Change *change) {
        DiskState *s = run_state(run);
        const FileSystem fs = run_config(run)->filesystem;
        _cleanup_(signature_list_done) SignatureList now = {};
        _cleanup_free_ char *type = NULL, *label = NULL, *uuid = NULL;
        unsigned long long t0;
        int r;

        /* Right before mkfs: the partition itself must be blank (mke2fs would not ask). */
        {
                _cleanup_close_ int pfd = open_block_device(s->part_node, s->part_devnum, O_RDONLY);
                if (pfd < 0)
                        return log_error_errno(pfd, "Failed to open %s: %m", s->part_node);
                r = probe_signatures(pfd, 0, 0, s->part_node, &now);
                if (r < 0)
                        return log_error_errno(r, "Failed to probe %s: %m", s->part_node);
        }
        if (now.n > 0) {
                _cleanup_free_ char *found = signature_list_describe(&now), *msg = NULL;
                if (asprintf(&msg, "%s is not blank right before mkfs: %s", s->part_node, strempty(found)) < 0)
                        return -ENOMEM;
                return item_stop(run, "disk.filesystem", STOP_APPLY, -ERCI_REFUSED, FIX_DISK_CHANGED, "%s", msg);
        }

        t0 = now_usec();
        r = mkfs_make(fs, s->part_node, s->fs_uuid);
        if (r < 0)
                return r;
        log_debug("Timing: %s %.1f ms", mkfs_program_name(fs), ms_since_usec(t0));
        killpoint("disk-mkfs-done");

        {
                _cleanup_close_ int pfd = open_block_device(s->part_node, s->part_devnum, O_RDONLY);
                r = pfd < 0 ? pfd : probe_filesystem(pfd, 0, 0, NULL, &type, &label, &uuid);
        }
        if (r < 0 || !streq_ptr(type, filesystem_to_string(fs)) || !streq_ptr(label, RCI_FS_LABEL) ||
            !uuid || strcasecmp(uuid, s->fs_uuid) != 0)
                return log_error_errno(-ERCI_FAILED, "%s ran, but %s does not show the expected filesystem "
                                       "(found %s, label %s, UUID %s).", mkfs_program_name(fs), s->part_node,
                                       strempty(type), strempty(label), strempty(uuid));
        free(s->fs_type);
        s->fs_type = TAKE_PTR(type);
        change_done(run, "disk.filesystem", ITEM_CREATE, "made %s on %s, label %s, UUID %s", s->fs_type,
                    s->part_node, RCI_FS_LABEL, s->fs_uuid);
        return 0;
}

/* systemd learns the line at its next reload, made once for every step's changes (EFFECT_SYSTEM_RELOAD). */
static int write_fstab(StepRun *run, Change *change) {
        DiskState *s = run_state(run);
        const FstabPlan *p = &s->fstab;
        int r;

        r = write_file_atomic(run_root_fd(run), FSTAB_PATH, p->text, p->size,
                              s->fstab_st.st_mode ? (s->fstab_st.st_mode & 07777) : 0644,
                              s->fstab_st.st_mode ? s->fstab_st.st_uid : (uid_t) -1,
                              s->fstab_st.st_mode ? s->fstab_st.st_gid : (gid_t) -1, RESOLVE_POLICY_IN_ROOT);
        if (r < 0)
                return log_error_errno(r, "Failed to write %s: %m", FSTAB_PATH);
        killpoint("disk-fstab-written");
        if (p->action == FSTAB_ADD)
                change_done(run, "disk.fstab", ITEM_CREATE, "added to %s: %s", FSTAB_PATH, p->new_line);
        else
                change_done(run, "disk.fstab", ITEM_CHANGE, "replaced %s:%u (%s) with: %s%s", FSTAB_PATH, p->line,
                            strempty(p->old_line), p->new_line, p->n_removed ? " (and dropped copies of it)" : "");
        return 0;
}

static int mount_data(StepRun *run, Change *change) {
        DiskState *s = run_state(run);
        const Config *c = run_config(run);
        _cleanup_free_ char *now_at = NULL;
        _cleanup_close_ int dfd = -1;
        struct libmnt_table *mounts;
        unsigned long long t0;
        struct stat st;
        int r;

        t0 = now_usec();
        /* Each component opened with O_NOFOLLOW: dfd is the directory the walk checked, whatever happens to the path. */
        dfd = safe_mkdir_p(run_root_fd(run), c->mount_point, 0755, RESOLVE_POLICY_IN_ROOT);
        if (dfd < 0)
                return log_error_errno(dfd, "Failed to create the mount point %s: %m", c->mount_point);
        if (fstat(dfd, &st) < 0)
                return log_error_errno(negative_errno(), "Failed to look at the mount point %s: %m", c->mount_point);
        if (!S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & 0022))
                return log_error_errno(-ERCI_FAILED, "The mount point %s changed while rootless-ci looked at it (now "
                                       "UID %u, mode %04o): it must be root's and writable by root only; nothing was "
                                       "mounted.", c->mount_point, (unsigned) st.st_uid, (unsigned) (st.st_mode & 07777));
        killpoint("disk-mount-point-checked");
        /* Onto that directory by its fd: a path looked up again could lead elsewhere by now. */
        r = mount_device_at(s->part_node, dfd, c->mount_point, s->fs_type, RCI_MOUNT_OPTIONS);
        if (r < 0)
                return r;
        /* The look's mount table is from before the mount: read it anew to see what is there now. */
        mnt_unref_table(TAKE_PTR(s->mounts));
        r = disk_mounts(s, &mounts);
        if (r >= 0)
                r = mount_is_mounted_at(mounts, s->part_devnum, c->mount_point);
        if (r < 0)
                return log_error_errno(r, "Failed to read the mount table: %m");
        if (r == 0) {
                (void) fd_get_path(dfd, &now_at);
                return log_error_errno(-ERCI_FAILED, "%s was mounted on the directory checked as %s, but that "
                                       "directory is now %s: something moved it meanwhile. The disk stays there; "
                                       "find out what moved it before running rootless-ci apply again.", s->part_node,
                                       c->mount_point, now_at ? now_at : "elsewhere");
        }
        s->mounted = true;
        run_facts(run)->data_mounted = true;
        log_debug("Timing: mount %.1f ms", ms_since_usec(t0));
        killpoint("disk-mounted");
        change_done(run, "disk.mount", ITEM_CREATE, "mounted %s (%s) on %s%s", s->part_node, s->fs_type,
                    c->mount_point, s->mount_point_exists ? "" : " (created it, root-owned, 0755)");
        return 0;
}

/*
 * The same Changes the describe part described, hidden in plan and check
 * (describe reported them) and made here in apply: their results come
 * after describe's items, as they always have.
 */
int make_look(StepRun *run, Account *a) {
        DiskState *s = run_state(run);
        const unsigned hidden = IN_PLAN | IN_CHECK;

        if (!s->described)
                return 0;
        if (s->make_table)
                item_change(run, &(Change) { .id = "disk.partition-table", .state = ITEM_CREATE, .hidden_in = hidden,
                                             .apply = make_table });
        else if (s->kernel_sync)
                item_change(run, &(Change) { .id = "disk.partition-node", .state = ITEM_CHANGE, .hidden_in = hidden,
                                             .apply = sync_kernel_partitions });
        if (s->make_fs)
                item_change(run, &(Change) { .id = "disk.filesystem", .state = ITEM_CREATE, .hidden_in = hidden,
                                             .apply = make_filesystem });
        if (s->fstab.action != FSTAB_KEEP)
                item_change(run, &(Change) { .id = "disk.fstab",
                                             .state = s->fstab.action == FSTAB_ADD ? ITEM_CREATE : ITEM_CHANGE,
                                             .hidden_in = hidden,
                                             .effects = EFFECT_SYSTEM_RELOAD,
                                             .apply = write_fstab });
        if (!s->mounted)
                item_change(run, &(Change) { .id = "disk.mount", .state = ITEM_CREATE, .hidden_in = hidden,
                                             .apply = mount_data });
        return 0;
}
