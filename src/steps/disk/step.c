/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "steps/disk/contents.h"
#include "steps/disk/format.h"
#include "steps/disk/fstab.h"
#include "steps/disk/identify.h"
#include "steps/disk/layout.h"
#include "steps/disk/mkfs.h"
#include "steps/disk/mount.h"
#include "steps/disk/probe.h"
#include "steps/steps.h"
#include "util/bus.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/exec.h"
#include "util/fs.h"
#include "util/killpoint.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/manager.h"

/*
 * The data disk (DESIGN.md step 2). Look: identify Device=, probe every
 * signature on it and in its partitions, and sort it into blank, ours or
 * someone else's. Describe: what apply would do, item by item. Make:
 * only after every refusal has had its chance, so a refused run changes
 * nothing. Verify: each result is probed or looked up again.
 *
 * Ours means: a GPT with exactly one partition, named RCI_PARTITION_NAME,
 * of the Linux data type, holding nothing or our filesystem (ext4 or xfs
 * labelled RCI_FS_LABEL). A half-made disk of ours is completed where it
 * stopped, never made again.
 */

#define PARTITION_WAIT_MS 10000
#define DISK_FLOCK_WAIT_MS 10000
#define FIX_APPLY "rootless-ci apply"
/* Refusals no option overrides: what the operator does by hand. */
#define FIX_DISK_BUSY                                                                                          \
        "stop what uses the disk (lsblk and findmnt show it: unmount it, swapoff, stop its RAID, LVM or "     \
        "LUKS), or set Device= to another disk; then run rootless-ci apply"
#define FIX_DISK_CHANGED                                                                                       \
        "find what else writes to the disk and stop it, then run rootless-ci apply again (it looks anew; "   \
        "--wipe only if what is there now may be destroyed)"

typedef struct DiskState {
        Disk disk;
        char *display;                  /* "/dev/disk/by-id/x (/dev/loop3)" */
        char size[FORMAT_BYTES_MAX];
        DiskContents c;                 /* what is on it: blank, ours or foreign */

        PartitionGeometry part;         /* ours: from the table; otherwise where ours would go */
        char *part_node;                /* "/dev/loop3p1" */
        dev_t part_devnum;              /* 0 while the kernel has no such partition */
        bool kernel_sync;               /* the kernel's partitions differ from the table */
        char *fs_type;                  /* ours: our filesystem's type, NULL while there is none */
        char *fs_uuid;                  /* ours: its UUID; to make: the UUID mkfs will be given */
        bool fs_mismatch;               /* ours, but of another type than FileSystem= */

        bool wipe, make_table, make_fs; /* what apply does */
        char **busy;                    /* why the disk cannot be touched */
        size_t n_busy;
        char **elsewhere;               /* our filesystem also mounted there */
        size_t n_elsewhere;
        bool mounted;                   /* at MountPoint */
        bool mount_point_exists;
        FstabPlan fstab;
        struct stat fstab_st;           /* st_mode 0: no fstab yet */
} DiskState;

static void disk_state_done(DiskState *s) {
        disk_done(&s->disk);
        free(s->display);
        disk_contents_done(&s->c);
        free(s->part_node);
        free(s->fs_type);
        free(s->fs_uuid);
        strv_free(s->busy);
        strv_free(s->elsewhere);
        fstab_plan_done(&s->fstab);
}

static int strv_add_printf(char ***l, size_t *n, const char *fmt, ...) _printf_(3, 4);
static int strv_add_printf(char ***l, size_t *n, const char *fmt, ...) {
        char **nl, *s;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        nl = reallocarray(*l, *n + 2, sizeof(char *));
        if (!nl) {
                free(s);
                return -ENOMEM;
        }
        *l = nl;
        (*l)[(*n)++] = s;
        (*l)[*n] = NULL;
        return 0;
}

/* "a; b; c" */
static char *join(char **l, size_t n, const char *sep) {
        size_t len = 1;
        char *s;

        for (size_t i = 0; i < n; i++)
                len += strlen(l[i]) + strlen(sep);
        s = malloc(len);
        if (!s)
                return NULL;
        s[0] = 0;
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        strcat(s, sep);
                strcat(s, l[i]);
        }
        return s;
}

/* Plan shows the change, check fails with the problem; apply reports once it is done. */
static void report_todo(Context *ctx, const char *id, ItemStatus change, const char *problem, const char *action) {
        if (ctx->verb == VERB_PLAN)
                report_item(ctx, id, change, NULL, "%s", action);
        else if (ctx->verb == VERB_CHECK)
                report_item(ctx, id, ITEM_FAIL, FIX_APPLY, "%s", problem);
}

static void report_good(Context *ctx, const char *id, const char *msg) {
        report_item(ctx, id, ctx->verb == VERB_CHECK ? ITEM_PASS : ITEM_OK, NULL, "%s", msg);
}

/* A refusal: reported, logged, exit 3 for apply and plan; a failed check for check. */
static int refuse(Context *ctx, const char *id, const char *fix, const char *msg) {
        report_item(ctx, id, ITEM_FAIL, fix, "%s", msg);
        if (ctx->verb == VERB_CHECK)
                return 0;
        /* The item says why; stderr just says what happened. */
        return log_error_errno(-ERCI_REFUSED, "Refusing to touch the data disk (see %s); nothing was changed.", id);
}

static int look_usage(Context *ctx, DiskState *s) {
        _cleanup_(disk_usage_done) DiskUsage u = {};
        /* Our own filesystem may be mounted, unless it is about to be wiped. */
        bool allow_ours = s->c.verdict == DISK_OURS && !s->wipe && s->part_devnum != 0;
        int r;

        r = disk_usage(&s->disk, &u);
        if (r < 0)
                return log_error_errno(r, "Failed to find out what uses %s: %m", s->disk.node);
        for (size_t i = 0; i < u.n_busy; i++)
                if ((r = strv_add_printf(&s->busy, &s->n_busy, "%s", u.busy[i])) < 0)
                        return r;
        for (size_t i = 0; i < u.n_mounts; i++) {
                const DiskMount *m = &u.mounts[i];

                if (allow_ours && m->devnum == s->part_devnum) {
                        if (streq(m->target, ctx->config->mount_point))
                                s->mounted = true;
                        else if ((r = strv_add_printf(&s->elsewhere, &s->n_elsewhere, "%s", m->target)) < 0)
                                return r;
                } else if ((r = strv_add_printf(&s->busy, &s->n_busy, "%s is mounted on %s", m->device, m->target)) < 0)
                        return r;
        }
        /* Mounted at MountPoint, but the top mount there is something else: then it is not "mounted". */
        if (s->mounted) {
                r = mount_is_mounted_at(s->part_devnum, ctx->config->mount_point);
                if (r < 0)
                        return log_error_errno(r, "Failed to read the mount table: %m");
                s->mounted = r > 0;
        }
        return 0;
}

static int look_fstab(Context *ctx, DiskState *s) {
        _cleanup_free_ char *text = NULL, *name = NULL, *err = NULL;
        _cleanup_close_ int dirfd = -1;
        size_t size = 0;
        FstabWant want = {
                .uuid = s->fs_uuid,
                .target = ctx->config->mount_point,
                .fstype = filesystem_to_string(ctx->config->filesystem),
        };
        int r;

        dirfd = safe_open_parent(ctx->root_fd, FSTAB_PATH, RESOLVE_POLICY_IN_ROOT, &name);
        if (dirfd < 0)
                return log_error_errno(dirfd, "Failed to open the directory of %s: %m", FSTAB_PATH);
        if (fstatat(dirfd, name, &s->fstab_st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno != ENOENT)
                        return log_error_errno(negative_errno(), "Failed to look at %s: %m", FSTAB_PATH);
                s->fstab_st = (struct stat) {};
        } else if (!S_ISREG(s->fstab_st.st_mode)) {
                report_item(ctx, "disk.fstab", ITEM_FAIL,
                            "make " FSTAB_PATH " a regular file with the same lines (cp --remove-destination "
                            "\"$(readlink -f " FSTAB_PATH ")\" " FSTAB_PATH "), then run rootless-ci apply",
                            "%s is not a regular file (a symlink?); rootless-ci only replaces a regular file", FSTAB_PATH);
                return ctx->verb == VERB_CHECK ? 0 : log_error_errno(-ERCI_FAILED, "%s is not a regular file.", FSTAB_PATH);
        } else {
                r = read_file_at(ctx->root_fd, FSTAB_PATH, RESOLVE_POLICY_IN_ROOT, FSTAB_MAX_SIZE, &text, &size);
                if (r < 0)
                        return log_error_errno(r, "Failed to read %s whole: %m", FSTAB_PATH);
        }

        r = fstab_plan(FSTAB_PATH, text ? text : "", size, &want, &s->fstab, &err);
        if (r == -ERCI_REFUSED)
                return refuse(ctx, "disk.fstab",
                              "remove the line named from " FSTAB_PATH " or choose another MountPoint=, as the message "
                              "says, then run rootless-ci apply", err);
        if (r == -ERCI_FAILED) {
                report_item(ctx, "disk.fstab", ITEM_FAIL,
                            "repair " FSTAB_PATH " by hand where the message says, then run rootless-ci apply", "%s", err);
                return ctx->verb == VERB_CHECK ? 0 : log_error_errno(r, "%s", err);
        }
        if (r < 0)
                return log_error_errno(r, "Failed to parse %s: %m", FSTAB_PATH);
        for (size_t i = 0; i < s->fstab.n_unparsable; i++) {
                char id[64];
                snprintf(id, sizeof(id), "disk.fstab-unparsable:%u", s->fstab.unparsable[i]);
                report_item(ctx, id, ITEM_WARN, NULL, "%s:%u: libmount cannot parse this line, so mount and "
                            "systemd ignore it; rootless-ci leaves it as it is", FSTAB_PATH, s->fstab.unparsable[i]);
        }
        return 0;
}

/* Identify the disk and sort its contents. Reports only a device that is not usable. */
static int look_disk(Context *ctx, DiskState *s) {
        const Config *c = ctx->config;
        _cleanup_free_ char *reason = NULL;
        _cleanup_close_ int fd = -1;
        unsigned long long t0;
        int r;

        t0 = now_usec();
        r = disk_identify(c->disk_device, &s->disk, &reason);
        if (r == -ERCI_USAGE) {
                report_item(ctx, "disk.device", ITEM_FAIL, "set [Disk] Device= (or --disk=) to a whole, unused disk",
                            "%s", reason);
                return log_error_errno(r, "%s", reason);
        }
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
static int look_mount_point(Context *ctx, DiskState *s) {
        const char *mp = ctx->config->mount_point;
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
        r = config_check_mount_point_path(ctx->config, ctx->root_fd, ctx->root, &msg);
        if (r == -ERCI_USAGE) {
                report_item(ctx, "disk.mount", ITEM_FAIL, FIX_MOUNT_POINT_PATH, "%s", msg);
                return log_error_errno(r, "%s", msg);
        }
        if (r < 0)
                return log_error_errno(r, "Failed to look at the mount point %s: %m", mp);

        dfd = safe_open_parent(ctx->root_fd, mp, RESOLVE_POLICY_IN_ROOT, &name);
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
                report_item(ctx, "disk.mount", ITEM_FAIL, "remove it, or choose another MountPoint=",
                            "the mount point %s exists and is %s, not a directory", mp,
                            S_ISLNK(st.st_mode) ? "a symlink" : "something else");
                return ctx->verb == VERB_CHECK ? 0 : log_error_errno(-ERCI_FAILED, "%s is not a directory.", mp);
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
                        report_item(ctx, "disk.mount", ITEM_WARN, NULL, "%s is not empty: what is in it now will be "
                                    "hidden under the data disk (not deleted)", mp);
        }
        return 0;
}

/* What else apply needs to know: mkfs, what uses the disk, fstab, the mount. */
static int look_host(Context *ctx, DiskState *s) {
        const Config *c = ctx->config;
        int r;

        if (s->make_fs) {
                _cleanup_free_ char *program = NULL;
                char uuid[UUID_STRING_MAX];

                if (exec_find_program(mkfs_program_name(c->filesystem), &program) < 0) {
                        report_item(ctx, "disk.filesystem", ITEM_FAIL,
                                    c->filesystem == FILESYSTEM_XFS ? "apt-get install xfsprogs" : "apt-get install e2fsprogs",
                                    "%s is needed to make the filesystem and is not installed", mkfs_program_name(c->filesystem));
                        return ctx->verb == VERB_CHECK ? 0 : log_error_errno(-ERCI_FAILED, "%s is not installed.",
                                                                             mkfs_program_name(c->filesystem));
                }
                /* Chosen now, so the fstab line can be checked before anything is written. */
                r = uuid_new_random(uuid);
                if (r < 0)
                        return log_error_errno(r, "Failed to make a UUID: %m");
                r = free_and_strdup(&s->fs_uuid, uuid);
                if (r < 0)
                        return r;
        }

        r = look_usage(ctx, s);
        if (r < 0)
                return r;
        r = look_fstab(ctx, s);
        if (r < 0)
                return r;
        return look_mount_point(ctx, s);
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
static int look_converged(Context *ctx, DiskState *s) {
        const Config *c = ctx->config;
        _cleanup_free_ char *reason = NULL, *type = NULL, *label = NULL, *uuid = NULL;
        _cleanup_(partition_table_done) PartitionTable t = {};
        _cleanup_close_ int fd = -1;
        const KernelPartition *kp;
        unsigned long long t0;
        int r;

        t0 = now_usec();
        if (disk_identify(c->disk_device, &s->disk, &reason) < 0)
                return 0;
        kp = disk_kernel_partition(&s->disk, 1);
        if (!kp || mount_is_mounted_at(kp->devnum, c->mount_point) <= 0)
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

        r = look_usage(ctx, s);
        if (r < 0)
                return r;
        if (!s->mounted || s->n_busy > 0)
                return 0;
        log_debug("Timing: identify and probe %.1f ms (converged: partition table and filesystem only)", ms_since_usec(t0));
        return 1;
}

/* Contents that stop apply, before anything is changed. Returns 1 to go on. */
static int refuse_contents(Context *ctx, DiskState *s) {
        const Config *c = ctx->config;

        if (s->c.verdict == DISK_FOREIGN && !c->wipe) {
                _cleanup_free_ char *found = signature_list_describe(&s->c.found), *msg = NULL, *fix = NULL;
                if (!found ||
                    asprintf(&msg, "%s (%s) is not blank and rootless-ci did not make it (%s). Found: %s. "
                             "--wipe would destroy all of this.", s->display, s->size, s->c.foreign_reason, found) < 0 ||
                    asprintf(&fix, "rootless-ci apply --wipe, only if everything found on %s may be destroyed",
                             s->disk.node) < 0)
                        return -ENOMEM;
                return refuse(ctx, "disk.device", fix, msg);
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
                return refuse(ctx, "disk.filesystem", fix, msg);
        }
        return 1;
}

/* A disk in use is never touched, --wipe or not. Returns 1 to go on. */
static int refuse_busy(Context *ctx, DiskState *s) {
        if (s->n_busy > 0) {
                _cleanup_free_ char *why = join(s->busy, s->n_busy, "; "), *msg = NULL;
                if (!why || asprintf(&msg, "%s is in use: %s.", s->display, why) < 0)
                        return -ENOMEM;
                return refuse(ctx, "disk.device", FIX_DISK_BUSY, msg);
        }
        return 1;  /* go on */
}

static void describe(Context *ctx, DiskState *s) {
        const Config *c = ctx->config;
        char msg[2048];

        if (s->c.verdict == DISK_OURS)
                snprintf(msg, sizeof(msg), "%s, %s: rootless-ci's (GPT, partition 1 \"%s\")", s->display, s->size,
                         RCI_PARTITION_NAME);
        else
                snprintf(msg, sizeof(msg), "%s, %s: %s", s->display, s->size,
                         s->c.verdict == DISK_BLANK ? "blank" : "not rootless-ci's; --wipe given");
        report_good(ctx, "disk.device", msg);

        if (s->wipe) {
                _cleanup_free_ char *found = signature_list_describe(&s->c.found);
                snprintf(msg, sizeof(msg), "wipe every signature on %s: %s", s->disk.node, strempty(found));
                report_todo(ctx, "disk.wipe", ITEM_REMOVE, msg, msg);
        }
        if (s->make_table) {
                char start[FORMAT_BYTES_MAX];
                snprintf(msg, sizeof(msg), "create GPT on %s (%s, %s) with partition 1 \"%s\" (Linux data, from %s to the end)",
                         s->disk.node, s->size, s->wipe ? "after wiping" : "blank", RCI_PARTITION_NAME,
                         format_bytes(start, sizeof(start), s->part.start));
                report_todo(ctx, "disk.partition-table", ITEM_CREATE, msg, msg);
        } else {
                char size[FORMAT_BYTES_MAX];
                snprintf(msg, sizeof(msg), "GPT on %s with partition 1 \"%s\" (Linux data, %s)", s->disk.node,
                         RCI_PARTITION_NAME, format_bytes(size, sizeof(size), s->part.size));
                report_good(ctx, "disk.partition-table", msg);
                if (s->kernel_sync) {
                        char problem[512];
                        snprintf(problem, sizeof(problem), "the kernel's partitions of %s differ from its GPT", s->disk.node);
                        snprintf(msg, sizeof(msg), "tell the kernel about %s (partition 1 as in the GPT)", s->part_node);
                        report_todo(ctx, "disk.partition-node", ITEM_CHANGE, problem, msg);
                }
        }

        if (s->make_fs) {
                char problem[512];
                snprintf(problem, sizeof(problem), "no filesystem on %s", s->part_node);
                snprintf(msg, sizeof(msg), "%s %s label %s", mkfs_program_name(c->filesystem), s->part_node, RCI_FS_LABEL);
                report_todo(ctx, "disk.filesystem", ITEM_CREATE, problem, msg);
        } else {
                snprintf(msg, sizeof(msg), "%s: %s, label %s, UUID %s", s->part_node, s->fs_type, RCI_FS_LABEL, strempty(s->fs_uuid));
                report_good(ctx, "disk.filesystem", msg);
        }

        {
                /* The UUID of a filesystem still to be made is not shown: apply chooses its own. */
                FstabWant shown = {
                        .uuid = s->make_fs ? "<new>" : s->fs_uuid,
                        .target = c->mount_point,
                        .fstype = filesystem_to_string(c->filesystem),
                };
                _cleanup_free_ char *line = fstab_line(&shown);

                switch (s->fstab.action) {
                case FSTAB_KEEP:
                        snprintf(msg, sizeof(msg), "%s:%u mounts UUID=%s at %s%s", FSTAB_PATH, s->fstab.line, s->fs_uuid,
                                 c->mount_point, s->fstab.adopted ? " (a line without our marker; left as it is)" : "");
                        report_good(ctx, "disk.fstab", msg);
                        break;
                case FSTAB_ADD:
                        snprintf(msg, sizeof(msg), "add to %s: %s", FSTAB_PATH, strempty(line));
                        report_todo(ctx, "disk.fstab", ITEM_CREATE, "no line in " FSTAB_PATH " for the data disk", msg);
                        break;
                case FSTAB_REPLACE:
                        snprintf(msg, sizeof(msg), "replace %s:%u (%s) with: %s%s", FSTAB_PATH, s->fstab.line,
                                 strempty(s->fstab.old_line), strempty(line),
                                 s->fstab.n_removed ? " (and drop copies of it)" : "");
                        report_todo(ctx, "disk.fstab", ITEM_CHANGE, "rootless-ci's line in " FSTAB_PATH " is out of date", msg);
                        break;
                }
        }

        if (s->mounted) {
                snprintf(msg, sizeof(msg), "%s %s mounted at %s", s->part_node, s->fs_type, c->mount_point);
                report_good(ctx, "disk.mount", msg);
        } else {
                char problem[512];
                snprintf(problem, sizeof(problem), "%s is not mounted at %s", s->part_node, c->mount_point);
                snprintf(msg, sizeof(msg), "mount %s on %s%s", s->part_node, c->mount_point,
                         s->mount_point_exists ? "" : " (creating it, root-owned, 0755)");
                report_todo(ctx, "disk.mount", ITEM_CREATE, problem, msg);
        }
        for (size_t i = 0; i < s->n_elsewhere; i++) {
                char id[PATH_MAX + 32];
                snprintf(id, sizeof(id), "disk.mount-elsewhere:%s", s->elsewhere[i]);
                report_item(ctx, id, ITEM_WARN, NULL, "%s is also mounted at %s; rootless-ci leaves that mount alone",
                            s->part_node, s->elsewhere[i]);
        }
}

/* flock(LOCK_EX) on the whole disk: udev and others that honour it keep off while we change it. */
static int lock_disk(DiskState *s, int *lock_fd) {
        unsigned long long t0;

        if (*lock_fd >= 0)
                return 0;
        *lock_fd = disk_open(&s->disk, O_RDONLY);
        if (*lock_fd < 0)
                return log_error_errno(*lock_fd, "Failed to open %s: %m", s->disk.node);
        t0 = now_usec();
        while (flock(*lock_fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno != EWOULDBLOCK)
                        return log_error_errno(negative_errno(), "Failed to lock %s: %m", s->disk.node);
                if (ms_since_usec(t0) > DISK_FLOCK_WAIT_MS)
                        return log_error_errno(-ETIMEDOUT, "%s stayed locked by another program for %u s.", s->disk.node,
                                               DISK_FLOCK_WAIT_MS / 1000);
                (void) nanosleep(&(struct timespec) { .tv_nsec = 50 * 1000 * 1000 }, NULL);
        }
        return 0;
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

/* Blank, or --wipe: the destructive window, under O_EXCL and the disk lock. */
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

static int make_table(Context *ctx, DiskState *s) {
        _cleanup_(signature_list_done) SignatureList now = {}, destroyed = {};
        _cleanup_close_ int excl = -1;
        unsigned long long t0;
        int r;

        excl = disk_open(&s->disk, O_RDWR | O_EXCL);
        if (excl == -EBUSY) {
                report_item(ctx, "disk.device", ITEM_FAIL, FIX_DISK_BUSY, "%s is in use (the kernel refuses exclusive "
                            "access)", s->display);
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
                if (asprintf(&msg, "%s changed while rootless-ci looked at it; it now holds: %s", s->display, strempty(found)) < 0)
                        return -ENOMEM;
                return refuse(ctx, "disk.device", FIX_DISK_CHANGED, msg);
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
                report_changed(ctx, "disk.wipe", ITEM_REMOVE, "wiped %s (%zu signatures erased); destroyed: %s",
                               s->disk.node, destroyed.n, strempty(list));
                log_debug("Timing: wipe %.1f ms", ms_since_usec(t0));
                killpoint("disk-wiped");
        }

        t0 = now_usec();
        r = layout_write(s->disk.node, ctx->config->filesystem, &s->part);
        if (r < 0)
                return r;
        log_debug("Timing: GPT written %.1f ms", ms_since_usec(t0));
        killpoint("disk-gpt-written");
        report_changed(ctx, "disk.partition-table", ITEM_CREATE, "created GPT on %s (%s) with partition 1 \"%s\" (Linux data)",
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

static int sync_kernel_partitions(Context *ctx, DiskState *s) {
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
        report_changed(ctx, "disk.partition-node", ITEM_CHANGE, "told the kernel about %s (partition 1 as in the GPT)",
                       s->part_node);
        return 0;
}

static int make_filesystem(Context *ctx, DiskState *s) {
        const FileSystem fs = ctx->config->filesystem;
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
                return refuse(ctx, "disk.filesystem", FIX_DISK_CHANGED, msg);
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
        report_changed(ctx, "disk.filesystem", ITEM_CREATE, "made %s on %s, label %s, UUID %s", s->fs_type,
                       s->part_node, RCI_FS_LABEL, s->fs_uuid);
        return 0;
}

static int write_fstab(Context *ctx, DiskState *s) {
        const FstabPlan *p = &s->fstab;
        int r;

        if (p->action == FSTAB_KEEP)
                return 0;
        r = write_file_atomic(ctx->root_fd, FSTAB_PATH, p->text, p->size,
                              s->fstab_st.st_mode ? (s->fstab_st.st_mode & 07777) : 0644,
                              s->fstab_st.st_mode ? s->fstab_st.st_uid : (uid_t) -1,
                              s->fstab_st.st_mode ? s->fstab_st.st_gid : (gid_t) -1, RESOLVE_POLICY_IN_ROOT);
        if (r < 0)
                return log_error_errno(r, "Failed to write %s: %m", FSTAB_PATH);
        killpoint("disk-fstab-written");
        if (p->action == FSTAB_ADD)
                report_changed(ctx, "disk.fstab", ITEM_CREATE, "added to %s: %s", FSTAB_PATH, p->new_line);
        else
                report_changed(ctx, "disk.fstab", ITEM_CHANGE, "replaced %s:%u (%s) with: %s%s", FSTAB_PATH, p->line,
                               strempty(p->old_line), p->new_line, p->n_removed ? " (and dropped copies of it)" : "");

        /* systemd learns the line at its next reload, made once for every step's changes. */
        if (manager_is_running())
                ctx->system_reload_owed = true;
        return 0;
}

static int mount_data(Context *ctx, DiskState *s) {
        const Config *c = ctx->config;
        _cleanup_free_ char *now_at = NULL;
        _cleanup_close_ int dfd = -1;
        unsigned long long t0;
        struct stat st;
        int r;

        if (s->mounted)
                return 0;
        t0 = now_usec();
        /* Each component opened with O_NOFOLLOW: dfd is the directory the walk checked, whatever happens to the path. */
        dfd = safe_mkdir_p(ctx->root_fd, c->mount_point, 0755, RESOLVE_POLICY_IN_ROOT);
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
        r = mount_is_mounted_at(s->part_devnum, c->mount_point);
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
        log_debug("Timing: mount %.1f ms", ms_since_usec(t0));
        killpoint("disk-mounted");
        report_changed(ctx, "disk.mount", ITEM_CREATE, "mounted %s (%s) on %s%s", s->part_node, s->fs_type,
                       c->mount_point, s->mount_point_exists ? "" : " (created it, root-owned, 0755)");
        return 0;
}

static int apply(Context *ctx, DiskState *s) {
        _cleanup_close_ int lock_fd = -1;
        int r;

        /* Held from the first write to the mount, so nothing rescans the disk in between. */
        if (s->make_table || s->kernel_sync || s->make_fs || !s->mounted) {
                r = lock_disk(s, &lock_fd);
                if (r < 0)
                        return r;
        }
        if (s->make_table)
                r = make_table(ctx, s);
        else if (s->kernel_sync)
                r = sync_kernel_partitions(ctx, s);
        else
                r = 0;
        if (r < 0)
                return r;
        if (s->make_fs && (r = make_filesystem(ctx, s)) < 0)
                return r;
        if ((r = write_fstab(ctx, s)) < 0)
                return r;
        return mount_data(ctx, s);
}

static void set_facts(Context *ctx, const DiskState *s) {
        HostFacts *f = &ctx->facts;

        f->data_mounted = s->mounted;
        f->data_mount_planned = !s->mounted && ctx->verb == VERB_PLAN;
        (void) free_and_strdup(&f->data_device, s->part_node);
        (void) free_and_strdup(&f->data_fs_type, s->fs_type ? s->fs_type : filesystem_to_string(ctx->config->filesystem));
        (void) free_and_strdup(&f->data_fs_uuid, s->fs_uuid);
}

/* --root=DIR: the disk is left to first boot; the fstab line can only be there if a live run made it. */
static int run_offline(Context *ctx) {
        const Config *c = ctx->config;
        _cleanup_free_ char *text = NULL, *source = NULL, *target = NULL;
        size_t size = 0;
        unsigned line;
        int r;

        report_item(ctx, "disk.device", ITEM_SKIP, NULL, "--root=%s: %s is set up on the live host (first boot); "
                    "disks are never touched offline", ctx->root, c->disk_device);
        r = read_file_at(ctx->root_fd, FSTAB_PATH, RESOLVE_POLICY_IN_ROOT, FSTAB_MAX_SIZE, &text, &size);
        if (r < 0 && r != -ENOENT)
                return log_error_errno(r, "Failed to read %s below %s: %m", FSTAB_PATH, ctx->root);
        r = text ? fstab_find_ours(text, size, &line, &source, &target) : 0;
        if (r < 0)
                return log_error_errno(r, "Failed to parse %s: %m", FSTAB_PATH);
        if (r > 0 && streq(target, c->mount_point)) {
                char msg[PATH_MAX * 2 + 64];
                snprintf(msg, sizeof(msg), "%s:%u mounts %s at %s (written by an earlier live run)", FSTAB_PATH, line,
                         source, target);
                report_good(ctx, "disk.fstab", msg);
        } else
                report_item(ctx, "disk.fstab", ITEM_SKIP, NULL, "the fstab line for %s is added at first boot, once its "
                            "filesystem exists: it names the filesystem by UUID, which is chosen when it is made",
                            c->mount_point);
        return 0;
}

/* Did this step report a failed check since item first? */
static bool failed_since(const Context *ctx, size_t first) {
        for (size_t i = first; i < ctx->n_items; i++)
                if (ctx->items[i].status == ITEM_FAIL)
                        return true;
        return false;
}

static int disk_run(Context *ctx) {
        _cleanup_(disk_state_done) DiskState s = {};
        size_t first = ctx->n_items;
        int r;

        if (!ctx->config->disk_device) {
                report_item(ctx, "disk.device", ITEM_SKIP, "set [Disk] Device= (or --disk=) to a whole, unused disk",
                            "no Device= configured: Docker's data will stay on the root disk");
                return 0;
        }
        if (!ctx->live)
                return run_offline(ctx);

        r = look_converged(ctx, &s);
        if (r < 0)
                return r;
        if (r > 0) {
                r = look_fstab(ctx, &s);
                if (r >= 0 && !failed_since(ctx, first))
                        r = look_mount_point(ctx, &s);
                if (r < 0 || failed_since(ctx, first))
                        return r;
                goto describe;
        }
        disk_state_done(&s);
        s = (DiskState) {};

        r = look_disk(ctx, &s);
        if (r < 0)
                return r;
        r = refuse_contents(ctx, &s);
        if (r <= 0)
                return r;
        r = look_host(ctx, &s);
        if (r < 0 || failed_since(ctx, first))
                return r;
        r = refuse_busy(ctx, &s);
        if (r <= 0)
                return r;

describe:
        describe(ctx, &s);
        if (ctx->verb == VERB_APPLY) {
                r = apply(ctx, &s);
                if (r < 0)
                        return r;
        }
        set_facts(ctx, &s);
        return 0;
}

const Step step_disk = {
        .name = "disk",
        .run = disk_run,
};
