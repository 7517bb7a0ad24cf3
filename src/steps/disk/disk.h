/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <sys/stat.h>

#include "engine/step.h"
#include "steps/disk/contents.h"
#include "steps/disk/format.h"
#include "steps/disk/fstab.h"
#include "steps/disk/identify.h"

/*
 * Between the disk step's files: step.c (the Step, its describe and make
 * parts), look.c (what the describe part reads and refuses) and make.c
 * (what apply does, one Change.apply each). Not for other steps.
 */

/* Refusals no option overrides: what the operator does by hand. */
#define FIX_DISK_BUSY                                                                                          \
        "stop what uses the disk (lsblk and findmnt show it: unmount it, swapoff, stop its RAID, LVM or "     \
        "LUKS), or set Device= to another disk; then run rootless-ci apply"
#define FIX_DISK_CHANGED                                                                                       \
        "find what else writes to the disk and stop it, then run rootless-ci apply again (it looks anew; "   \
        "--wipe only if what is there now may be destroyed)"

typedef struct DiskState {
        struct libmnt_table *mounts;    /* this namespace's mounts, read once (disk_mounts()) */

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

        bool failed;                    /* the look failed a check: it stops where a refusal would */
        bool described;                 /* the describe part got to the end: the make part has work */
        bool locked;                    /* make: lock_fd holds the disk's flock */
        int lock_fd;
} DiskState;

/* Empty the state for a fresh look; the mount table stays (one read per run). */
void disk_state_reset(DiskState *s);

/* look.c: each returns < 0 when it cannot go on (logged, or a refusal's error) */
int disk_mounts(DiskState *s, struct libmnt_table **ret);
int look_converged(StepRun *run, DiskState *s);
int look_disk(StepRun *run, DiskState *s);
int look_host(StepRun *run, DiskState *s);
int look_fstab(StepRun *run, DiskState *s);
int look_mount_point(StepRun *run, DiskState *s);
/* Returns 1 to go on, else what the look returns (0 in check, the refusal's error otherwise). */
int refuse_contents(StepRun *run, DiskState *s);
int refuse_busy(StepRun *run, DiskState *s);
/* item_stop_ex(), remembered in s->failed. */
int disk_stop(StepRun *run, DiskState *s, const Stop *stop);

/* make.c: the make part */
int make_look(StepRun *run, Account *a);
int make_begin(StepRun *run, Account *a);
void make_end(StepRun *run, Account *a);
