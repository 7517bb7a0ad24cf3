/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "steps/disk/disk.h"
#include "steps/disk/mkfs.h"
#include "steps/disk/mount.h"
#include "steps/disk/probe.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/exec.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"

/*
 * The disk step's look (the describe part): identify Device=, probe every
 * signature on it and in its partitions, sort it into blank, ours or
 * someone else's, and find what else apply needs to know (what uses the
 * disk, fstab, the mount point). It changes nothing; what stops apply is
 * refused here, before anything is made.
 */

int disk_stop(StepRun *run, DiskState *s, const Stop *stop) {
        s->failed = true;
        return item_stop_ex(run, stop);
}

/* A refusal: exit 3 in apply and plan, a failed check in check. The step's refusal line says what happened. */
static int refuse(StepRun *run, DiskState *s, const char *id, const char *fix, const char *msg) {
        return disk_stop(run, s, &(Stop) { id, STOP_NOT_CHECK, -ERCI_REFUSED, fix, msg, NULL });
}

int disk_mounts(DiskState *s, struct libmnt_table **ret) {
        int r;

        if (!s->mounts && (r = mount_table_read(&s->mounts)) < 0)
                return r;
        *ret = s->mounts;
        return 0;
}

static int look_usage(StepRun *run, DiskState *s) {
        const char *mp = run_config(run)->mount_point;
        _cleanup_(disk_usage_done) DiskUsage u = {};
        /* Our own filesystem may be mounted, unless it is about to be wiped. */
        bool allow_ours = s->c.verdict == DISK_OURS && !s->wipe && s->part_devnum != 0;
        struct libmnt_table *mounts;
        int r;

        r = disk_mounts(s, &mounts);
        if (r >= 0)
                r = disk_usage(&s->disk, mounts, &u);
        if (r < 0)
                return log_error_errno(r, "Failed to find out what uses %s: %m", s->disk.node);
        for (size_t i = 0; i < u.n_busy; i++)
                if ((r = strv_add_printf(&s->busy, &s->n_busy, "%s", u.busy[i])) < 0)
                        return r;
        for (size_t i = 0; i < u.n_mounts; i++) {
                const DiskMount *m = &u.mounts[i];

                if (allow_ours && m->devnum == s->part_devnum) {
                        if (streq(m->target, mp))
                                s->mounted = true;
                        else if ((r = strv_add_printf(&s->elsewhere, &s->n_elsewhere, "%s", m->target)) < 0)
                                return r;
                } else if ((r = strv_add_printf(&s->busy, &s->n_busy, "%s is mounted on %s", m->device, m->target)) < 0)
                        return r;
        }
        /* Mounted at MountPoint, but the top mount there is something else: then it is not "mounted". */
        if (s->mounted) {
                r = mount_is_mounted_at(mounts, s->part_devnum, mp);
                if (r < 0)
                        return log_error_errno(r, "Failed to read the mount table: %m");
                s->mounted = r > 0;
        }
        return 0;
}

int look_fstab(StepRun *run, DiskState *s) {
        const Config *c = run_config(run);
        _cleanup_free_ char *text = NULL, *name = NULL, *err = NULL;
        _cleanup_close_ int dirfd = -1;
        size_t size = 0;
        FstabWant want = {
                .uuid = s->fs_uuid,
                .target = c->mount_point,
                .fstype = filesystem_to_string(c->filesystem),
        };
        int r;

        dirfd = safe_open_parent(run_root_fd(run), FSTAB_PATH, RESOLVE_POLICY_IN_ROOT, &name);
        if (dirfd < 0)
                return log_error_errno(dirfd, "Failed to open the directory of %s: %m", FSTAB_PATH);
        if (fstatat(dirfd, name, &s->fstab_st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno != ENOENT)
                        return log_error_errno(negative_errno(), "Failed to look at %s: %m", FSTAB_PATH);
                s->fstab_st = (struct stat) {};
        } else if (!S_ISREG(s->fstab_st.st_mode))
                return disk_stop(run, s, &(Stop) {
                        .id = "disk.fstab",
                        .when = STOP_NOT_CHECK,
                        .error = -ERCI_FAILED,
                        .fix = "make " FSTAB_PATH " a regular file with the same lines (cp --remove-destination "
                               "\"$(readlink -f " FSTAB_PATH ")\" " FSTAB_PATH "), then run rootless-ci apply",
                        .message = FSTAB_PATH " is not a regular file (a symlink?); rootless-ci only replaces a "
                                   "regular file",
                        .log = FSTAB_PATH " is not a regular file.",
                });
        else {
                r = read_file_at(run_root_fd(run), FSTAB_PATH, RESOLVE_POLICY_IN_ROOT, FSTAB_MAX_SIZE, &text, &size);
                if (r < 0)
                        return log_error_errno(r, "Failed to read %s whole: %m", FSTAB_PATH);
        }

        r = fstab_plan(FSTAB_PATH, text ? text : "", size, &want, &s->fstab, &err);
        if (r == -ERCI_REFUSED)
                return refuse(run, s, "disk.fstab",
                              "remove the line named from " FSTAB_PATH " or choose another MountPoint=, as the message "
                              "says, then run rootless-ci apply", err);
        if (r == -ERCI_FAILED)
                return disk_stop(run, s, &(Stop) {
                        .id = "disk.fstab",
                        .when = STOP_NOT_CHECK,
                        .error = r,
                        .fix = "repair " FSTAB_PATH " by hand where the message says, then run rootless-ci apply",
                        .message = err,
                        .log = err,
                });
        if (r < 0)
                return log_error_errno(r, "Failed to parse %s: %m", FSTAB_PATH);
        for (size_t i = 0; i < s->fstab.n_unparsable; i++) {
                char id[64];
                snprintf(id, sizeof(id), "disk.fstab-unparsable:%u", s->fstab.unparsable[i]);
                item_finding(run, id, ITEM_WARN, NULL, "%s:%u: libmount cannot parse this line, so mount and "
                             "systemd ignore it; rootless-ci leaves it as it is", FSTAB_PATH, s->fstab.unparsable[i]);
        }
        return 0;
}

/* Identify the disk and sort its contents. Reports only a device that is not usable. */
int look_disk(StepRun *run, DiskState *s) {
        const Config *c = run_config(run);
        _cleanup_free_ char *reason = NULL;
        _cleanup_close_ int fd = -1;
        unsigned long long t0;
        int r;

        t0 = now_usec();
        r = disk_identify(c->disk_device, &s->disk, &reason);
        if (r == -ERCI_USAGE)
                return disk_stop(run, s, &(Stop) {
                        .id = "disk.device",
                        .when = STOP_ALWAYS,
                        .error = r,
                        .fix = "set [Disk] Device= (or --disk=) to a whole, unused disk",
                        .message = reason,
                        .log = reason,
                });
        if (r < 0)
                return log_error_errno(r, "Failed to identify %s: %m", c->disk_device);
        s->display = disk_display_name(&s->disk);
        s->part_node = disk_partition_node(&s->disk, 1);
        if (!s->display || !s->part_node)
                return -ENOMEM;
        format_bytes(s->size, sizeof(s->size), s->disk.size);

        fd = disk_open(&s->disk, O_RDONLY);
        if (fd < 0)
                return log_error_errno(fd, "Failed to open %s: %m", s->disk.node);
        r = disk_contents_probe(fd, s->disk.node, s->disk.parts, s->disk.n_parts, &s->c);
        if (r < 0)
                return log_error_errno(r, "Failed to probe %s: %m", s->disk.node);
        s->kernel_sync = s->c.kernel_stale;
        if (s->c.verdict == DISK_OURS) {
                s->part = s->c.part;
                if (s->c.fs_type) {
                        if ((r = free_and_strdup(&s->fs_type, s->c.fs_type)) < 0 ||
                            (r = free_and_strdup(&s->fs_uuid, s->c.fs_uuid)) < 0)
                                return r;
                        s->fs_mismatch = filesystem_from_string(s->fs_type) != c->filesystem;
                }
        }

        s->wipe = c->wipe && (s->c.verdict == DISK_FOREIGN || (s->c.verdict == DISK_OURS && s->fs_mismatch));
        s->make_table = s->c.verdict == DISK_BLANK || s->wipe;
        if (s->make_table) {
                /* Where libparted will put the partition; anything there makes the disk not blank. */
                r = layout_plan(s->disk.node, c->filesystem, &s->part);
                if (r < 0)
                        return r;
                r = disk_contents_probe_area(fd, &s->part, &s->c);
                if (r < 0)
                        return log_error_errno(r, "Failed to probe %s: %m", s->disk.node);
                s->wipe = c->wipe && (s->c.verdict == DISK_FOREIGN || s->wipe);
        } else if (s->c.verdict == DISK_OURS) {
                const KernelPartition *kp = disk_kernel_partition(&s->disk, 1);
                if (kp && kp->start == s->part.start && kp->size == s->part.size)
                        s->part_devnum = kp->devnum;
                else
                        s->kernel_sync = true;
        }
        s->make_fs = s->make_table || (s->c.verdict == DISK_OURS && !s->fs_type);
        log_debug("Timing: identify and probe %.1f ms", ms_since_usec(t0));
        return 0;
}

/* The mount point is a directory, or nothing yet; never a file or a symlink to follow. */
int look_mount_point(StepRun *run, DiskState *s) {
        const char *mp = run_config(run)->mount_point;
        _cleanup_free_ char *name = NULL, *msg = NULL;
        _cleanup_close_ int dfd = -1;
        struct stat st;
        int r;

        /*
         * Never through a symlink anywhere on the way: the kernel would mount on
         * its target while fstab, mountinfo and RequiresMountsFor= name the
         * literal path (and a link to /etc would put the disk there). The
         * engine refused such a MountPoint= before any step; this is the same
         * judgement again, right before the disk is touched.
         */
        r = config_check_mount_point_path(run_config(run), run_root_fd(run), run_root(run), &msg);
        if (r == -ERCI_USAGE)
                return disk_stop(run, s, &(Stop) { "disk.mount", STOP_ALWAYS, r, FIX_MOUNT_POINT_PATH, msg, msg });
        if (r < 0)
                return log_error_errno(r, "Failed to look at the mount point %s: %m", mp);

        dfd = safe_open_parent(run_root_fd(run), mp, RESOLVE_POLICY_IN_ROOT, &name);
        if (dfd == -ENOENT)
                return 0;  /* made by apply */
        if (dfd < 0 || fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                r = dfd < 0 ? dfd : negative_errno();
                if (r == -ENOENT)
                        return 0;
                return log_error_errno(r, "Failed to look at the mount point %s: %m", mp);
        }
        s->mount_point_exists = true;
        if (!S_ISDIR(st.st_mode)) {
                _cleanup_free_ char *what = NULL, *log = NULL;

                if (asprintf(&what, "the mount point %s exists and is %s, not a directory", mp,
                             S_ISLNK(st.st_mode) ? "a symlink" : "something else") < 0 ||
                    asprintf(&log, "%s is not a directory.", mp) < 0)
                        return -ENOMEM;
                return disk_stop(run, s, &(Stop) { "disk.mount", STOP_NOT_CHECK, -ERCI_FAILED,
                                                   "remove it, or choose another MountPoint=", what, log });
        }
        if (!s->mounted) {
                _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
                struct dirent *de;
                bool empty = true;

                if (d) {
                        fd = -1;  /* owned by d now */
                        while (empty && (de = readdir(d)))
                                empty = streq(de->d_name, ".") || streq(de->d_name, "..");
                        closedir(d);
                }
                if (!empty)
                        item_finding(run, "disk.mount", ITEM_WARN, NULL, "%s is not empty: what is in it now will be "
                                     "hidden under the data disk (not deleted)", mp);
        }
        return 0;
}

/* What else apply needs to know: mkfs, what uses the disk, fstab, the mount. */
int look_host(StepRun *run, DiskState *s) {
        const Config *c = run_config(run);
        int r;

        if (s->make_fs) {
                _cleanup_free_ char *program = NULL;
                char uuid[UUID_STRING_MAX];

                if (exec_find_program(mkfs_program_name(c->filesystem), &program) < 0) {
                        _cleanup_free_ char *what = NULL, *log = NULL;

                        if (asprintf(&what, "%s is needed to make the filesystem and is not installed",
                                     mkfs_program_name(c->filesystem)) < 0 ||
                            asprintf(&log, "%s is not installed.", mkfs_program_name(c->filesystem)) < 0)
                                return -ENOMEM;
                        return disk_stop(run, s, &(Stop) {
                                .id = "disk.filesystem",
                                .when = STOP_NOT_CHECK,
                                .error = -ERCI_FAILED,
                                .fix = c->filesystem == FILESYSTEM_XFS ? "apt-get install xfsprogs"
                                                                       : "apt-get install e2fsprogs",
                                .message = what,
                                .log = log,
                        });
                }
                /* Chosen now, so the fstab line can be checked before anything is written. */
                r = uuid_new_random(uuid);
                if (r < 0)
                        return log_error_errno(r, "Failed to make a UUID: %m");
                r = free_and_strdup(&s->fs_uuid, uuid);
                if (r < 0)
                        return r;
        }

        r = look_usage(run, s);
        if (r < 0)
                return r;
        r = look_fstab(run, s);
        if (r < 0)
                return r;
        return look_mount_point(run, s);
}

/*
 * The converged disk, verified without the full signature hunt. Returns 1
 * when Device= holds our GPT (exactly one partition, ours by number, name
 * and type, where the kernel has it), it is the top mount at MountPoint,
 * and it holds a filesystem of FileSystem= labelled ours (found by that
 * type's prober alone: the kernel mounted it as that type); s is then
 * filled as look_disk() and look_host() fill it, fstab included (a drifted
 * fstab line is still repaired from here). 0: anything else, and the
 * caller starts over with the full look.
 *
 * What is not redone here is the hunt for every other signature on the
 * disk (look_disk()), which exists to refuse writing over someone else's
 * data. On this path nothing is written to the disk: our filesystem is
 * mounted, so apply has at most the fstab line to repair. Every item it
 * reports is still checked against the disk, the kernel and fstab.
 */
int look_converged(StepRun *run, DiskState *s) {
        const Config *c = run_config(run);
        _cleanup_free_ char *reason = NULL, *type = NULL, *label = NULL, *uuid = NULL;
        _cleanup_(partition_table_done) PartitionTable t = {};
        _cleanup_close_ int fd = -1;
        const KernelPartition *kp;
        struct libmnt_table *mounts;
        unsigned long long t0;
        int r;

        t0 = now_usec();
        if (disk_identify(c->disk_device, &s->disk, &reason) < 0)
                return 0;
        kp = disk_kernel_partition(&s->disk, 1);
        if (!kp || disk_mounts(s, &mounts) < 0 || mount_is_mounted_at(mounts, kp->devnum, c->mount_point) <= 0)
                return 0;
        fd = disk_open(&s->disk, O_RDONLY);
        if (fd < 0)
                return 0;
        if (probe_partition_table(fd, &t) < 0 || !streq_ptr(t.type, "gpt") || t.n_parts != 1 ||
            !disk_partition_is_ours(&t.parts[0]) || t.parts[0].start != kp->start || t.parts[0].size != kp->size)
                return 0;
        /* It is mounted at MountPoint (above): only FileSystem='s own prober needs to look. */
        if (probe_filesystem(fd, kp->start, kp->size, filesystem_to_string(c->filesystem), &type, &label, &uuid) < 0 ||
            !streq_ptr(label, RCI_FS_LABEL) ||
            !uuid || filesystem_from_string(type) != c->filesystem)
                return 0;

        s->display = disk_display_name(&s->disk);
        s->part_node = disk_partition_node(&s->disk, 1);
        if (!s->display || !s->part_node)
                return -ENOMEM;
        format_bytes(s->size, sizeof(s->size), s->disk.size);
        s->c.verdict = DISK_OURS;
        s->part = (PartitionGeometry) { .start = kp->start, .size = kp->size };
        s->part_devnum = kp->devnum;
        s->fs_type = TAKE_PTR(type);
        s->fs_uuid = TAKE_PTR(uuid);

        r = look_usage(run, s);
        if (r < 0)
                return r;
        if (!s->mounted || s->n_busy > 0)
                return 0;
        log_debug("Timing: identify and probe %.1f ms (converged: partition table and filesystem only)", ms_since_usec(t0));
        return 1;
}

/* Contents that stop apply, before anything is changed. Returns 1 to go on. */
int refuse_contents(StepRun *run, DiskState *s) {
        const Config *c = run_config(run);

        if (s->c.verdict == DISK_FOREIGN && !c->wipe) {
                _cleanup_free_ char *found = signature_list_describe(&s->c.found), *msg = NULL, *fix = NULL;
                if (!found ||
                    asprintf(&msg, "%s (%s) is not blank and rootless-ci did not make it (%s). Found: %s. "
                             "--wipe would destroy all of this.", s->display, s->size, s->c.foreign_reason, found) < 0 ||
                    asprintf(&fix, "rootless-ci apply --wipe, only if everything found on %s may be destroyed",
                             s->disk.node) < 0)
                        return -ENOMEM;
                return refuse(run, s, "disk.device", fix, msg);
        }
        if (s->c.verdict == DISK_OURS && s->fs_mismatch && !c->wipe) {
                _cleanup_free_ char *msg = NULL, *fix = NULL;
                if (asprintf(&msg, "%s holds rootless-ci's %s filesystem (UUID %s), but FileSystem=%s is configured; "
                             "nothing is changed. Set FileSystem=%s to keep it, or --wipe to make it again as %s "
                             "(destroying its data).", s->display, s->fs_type, strempty(s->fs_uuid),
                             filesystem_to_string(c->filesystem), s->fs_type, filesystem_to_string(c->filesystem)) < 0 ||
                    asprintf(&fix, "set FileSystem=%s to keep the data, or run rootless-ci apply --wipe to make it "
                             "again as %s (destroys its data)", s->fs_type, filesystem_to_string(c->filesystem)) < 0)
                        return -ENOMEM;
                return refuse(run, s, "disk.filesystem", fix, msg);
        }
        return 1;
}

/* A disk in use is never touched, --wipe or not. Returns 1 to go on. */
int refuse_busy(StepRun *run, DiskState *s) {
        if (s->n_busy > 0) {
                _cleanup_free_ char *why = strv_join(s->busy, s->n_busy, "; "), *msg = NULL;
                if (!why || asprintf(&msg, "%s is in use: %s.", s->display, why) < 0)
                        return -ENOMEM;
                return refuse(run, s, "disk.device", FIX_DISK_BUSY, msg);
        }
        return 1;  /* go on */
}
