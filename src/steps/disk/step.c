/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "steps/disk/disk.h"
#include "steps/disk/layout.h"
#include "steps/disk/mkfs.h"
#include "steps/disk/mount.h"
#include "steps/disk/probe.h"
#include "steps/steps.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"

/*
 * The data disk (DESIGN.md step 2). Two parts. describe: identify Device=,
 * probe every signature on it and in its partitions, sort it into blank,
 * ours or someone else's, refuse what must not be touched (look.c), and
 * describe what apply would do, item by item. make (make.c): only after
 * every refusal has had its chance, so a refused run changes nothing; its
 * results are reported after describe's items. Verify: each result is
 * probed or looked up again.
 *
 * Ours means: a GPT with exactly one partition, named RCI_PARTITION_NAME,
 * of the Linux data type, holding nothing or our filesystem (ext4 or xfs
 * labelled RCI_FS_LABEL). A half-made disk of ours is completed where it
 * stopped, never made again.
 */

static void disk_state_free(DiskState *s) {
        disk_done(&s->disk);
        free(s->display);
        disk_contents_done(&s->c);
        free(s->part_node);
        free(s->fs_type);
        free(s->fs_uuid);
        strv_free(s->busy);
        strv_free(s->elsewhere);
        fstab_plan_done(&s->fstab);
        if (s->locked)
                safe_close(s->lock_fd);
}

static void disk_state_done(void *state) {
        DiskState *s = state;

        disk_state_free(s);
        mnt_unref_table(s->mounts);
}

void disk_state_reset(DiskState *s) {
        struct libmnt_table *mounts = TAKE_PTR(s->mounts);

        disk_state_free(s);
        *s = (DiskState) { .mounts = mounts };
}

/* Something apply makes: plan shows it, check fails with the problem; the make part makes it in apply. */
static const Change *todo(StepRun *run, const char *id, ItemStatus change, const char *problem, const char *action) {
        return item_change(run, &(Change) { .id = id, .state = change, .plan = action, .problem = problem,
                                            .hidden_in = IN_APPLY });
}

static void describe(StepRun *run, DiskState *s) {
        const Config *c = run_config(run);
        HostFacts *f = run_facts(run);
        const Change *mount = NULL;
        char msg[2048];

        /* Messages are built in msg, as long as it is (a Device= path of thousands of bytes is cut). */
        if (s->c.verdict == DISK_OURS)
                snprintf(msg, sizeof(msg), "%s, %s: rootless-ci's (GPT, partition 1 \"%s\")", s->display, s->size,
                         RCI_PARTITION_NAME);
        else
                snprintf(msg, sizeof(msg), "%s, %s: %s", s->display, s->size,
                         s->c.verdict == DISK_BLANK ? "blank" : "not rootless-ci's; --wipe given");
        item_ok(run, "disk.device", "%s", msg);

        if (s->wipe) {
                _cleanup_free_ char *found = signature_list_describe(&s->c.found);
                snprintf(msg, sizeof(msg), "wipe every signature on %s: %s", s->disk.node, strempty(found));
                todo(run, "disk.wipe", ITEM_REMOVE, msg, msg);
        }
        if (s->make_table) {
                char start[FORMAT_BYTES_MAX];
                snprintf(msg, sizeof(msg), "create GPT on %s (%s, %s) with partition 1 \"%s\" (Linux data, from %s to the end)",
                         s->disk.node, s->size, s->wipe ? "after wiping" : "blank", RCI_PARTITION_NAME,
                         format_bytes(start, sizeof(start), s->part.start));
                todo(run, "disk.partition-table", ITEM_CREATE, msg, msg);
        } else {
                char size[FORMAT_BYTES_MAX];
                snprintf(msg, sizeof(msg), "GPT on %s with partition 1 \"%s\" (Linux data, %s)", s->disk.node,
                         RCI_PARTITION_NAME, format_bytes(size, sizeof(size), s->part.size));
                item_ok(run, "disk.partition-table", "%s", msg);
                if (s->kernel_sync) {
                        char problem[512];
                        snprintf(problem, sizeof(problem), "the kernel's partitions of %s differ from its GPT", s->disk.node);
                        snprintf(msg, sizeof(msg), "tell the kernel about %s (partition 1 as in the GPT)", s->part_node);
                        todo(run, "disk.partition-node", ITEM_CHANGE, problem, msg);
                }
        }

        if (s->make_fs) {
                char problem[512];
                snprintf(problem, sizeof(problem), "no filesystem on %s", s->part_node);
                snprintf(msg, sizeof(msg), "%s %s label %s", mkfs_program_name(c->filesystem), s->part_node, RCI_FS_LABEL);
                todo(run, "disk.filesystem", ITEM_CREATE, problem, msg);
        } else {
                snprintf(msg, sizeof(msg), "%s: %s, label %s, UUID %s", s->part_node, s->fs_type, RCI_FS_LABEL,
                         strempty(s->fs_uuid));
                item_ok(run, "disk.filesystem", "%s", msg);
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
                        item_ok(run, "disk.fstab", "%s", msg);
                        break;
                case FSTAB_ADD:
                        snprintf(msg, sizeof(msg), "add to %s: %s", FSTAB_PATH, strempty(line));
                        todo(run, "disk.fstab", ITEM_CREATE, "no line in " FSTAB_PATH " for the data disk", msg);
                        break;
                case FSTAB_REPLACE:
                        snprintf(msg, sizeof(msg), "replace %s:%u (%s) with: %s%s", FSTAB_PATH, s->fstab.line,
                                 strempty(s->fstab.old_line), strempty(line),
                                 s->fstab.n_removed ? " (and drop copies of it)" : "");
                        todo(run, "disk.fstab", ITEM_CHANGE, "rootless-ci's line in " FSTAB_PATH " is out of date", msg);
                        break;
                }
        }

        if (s->mounted) {
                snprintf(msg, sizeof(msg), "%s %s mounted at %s", s->part_node, s->fs_type, c->mount_point);
                item_ok(run, "disk.mount", "%s", msg);
        } else {
                char problem[512];
                snprintf(problem, sizeof(problem), "%s is not mounted at %s", s->part_node, c->mount_point);
                snprintf(msg, sizeof(msg), "mount %s on %s%s", s->part_node, c->mount_point,
                         s->mount_point_exists ? "" : " (creating it, root-owned, 0755)");
                mount = todo(run, "disk.mount", ITEM_CREATE, problem, msg);
        }
        for (size_t i = 0; i < s->n_elsewhere; i++) {
                char id[PATH_MAX + 32];
                snprintf(id, sizeof(id), "disk.mount-elsewhere:%s", s->elsewhere[i]);
                item_finding(run, id, ITEM_WARN, NULL, "%s is also mounted at %s; rootless-ci leaves that mount alone",
                             s->part_node, s->elsewhere[i]);
        }

        /* For the storage step: the data disk is mounted (the make part mounts it), or plan would mount it. */
        f->data_mounted = s->mounted;
        f->data_mount_planned = mount && change_planned(run, mount);
        s->described = true;
}

/* --root=DIR: the disk is left to first boot; the fstab line can only be there if a live run made it. */
static int look_offline(StepRun *run) {
        const Config *c = run_config(run);
        _cleanup_free_ char *text = NULL, *source = NULL, *target = NULL;
        size_t size = 0;
        unsigned line;
        int r;

        item_finding(run, "disk.device", ITEM_SKIP, NULL, "--root=%s: %s is set up on the live host (first boot); "
                     "disks are never touched offline", run_root(run), c->disk_device);
        r = read_file_at(run_root_fd(run), FSTAB_PATH, RESOLVE_POLICY_IN_ROOT, FSTAB_MAX_SIZE, &text, &size);
        if (r < 0 && r != -ENOENT)
                return log_error_errno(r, "Failed to read %s below %s: %m", FSTAB_PATH, run_root(run));
        r = text ? fstab_find_ours(text, size, &line, &source, &target) : 0;
        if (r < 0)
                return log_error_errno(r, "Failed to parse %s: %m", FSTAB_PATH);
        if (r > 0 && streq(target, c->mount_point)) {
                char msg[PATH_MAX * 2 + 64];
                snprintf(msg, sizeof(msg), "%s:%u mounts %s at %s (written by an earlier live run)", FSTAB_PATH, line,
                         source, target);
                item_ok(run, "disk.fstab", "%s", msg);
        } else
                item_finding(run, "disk.fstab", ITEM_SKIP, NULL, "the fstab line for %s is added at first boot, once its "
                             "filesystem exists: it names the filesystem by UUID, which is chosen when it is made",
                             c->mount_point);
        return 0;
}

/*
 * The describe part: look, refuse, describe. A failed check (check's
 * refusals, a bad fstab or mount point) ends the look where a refusal
 * would have stopped apply: nothing after it is described.
 */
static int describe_look(StepRun *run, Account *a) {
        DiskState *s = run_state(run);
        int r;

        if (!run_config(run)->disk_device) {
                item_finding(run, "disk.device", ITEM_SKIP, "set [Disk] Device= (or --disk=) to a whole, unused disk",
                             "no Device= configured: Docker's data will stay on the root disk");
                return 0;
        }
        if (!run_live(run))
                return look_offline(run);

        r = look_converged(run, s);
        if (r < 0)
                return r;
        if (r > 0) {
                r = look_fstab(run, s);
                if (r >= 0 && !s->failed)
                        r = look_mount_point(run, s);
                if (r < 0 || s->failed)
                        return r;
        } else {
                disk_state_reset(s);
                r = look_disk(run, s);
                if (r < 0)
                        return r;
                r = refuse_contents(run, s);
                if (r <= 0)
                        return r;
                r = look_host(run, s);
                if (r < 0 || s->failed)
                        return r;
                r = refuse_busy(run, s);
                if (r <= 0)
                        return r;
        }
        describe(run, s);
        return 0;
}

static const Part disk_parts[] = {
        { .name = "describe", .look = describe_look },
        { .name = "make", .look = make_look, .begin = make_begin, .end = make_end },
};

const Step step_disk = {
        .name = "disk",
        STEP_PARTS(disk_parts),
        .state_size = sizeof(DiskState),
        .state_done = disk_state_done,
        .refusal = "Refusing to touch the data disk (see %s); nothing was changed.",
};
