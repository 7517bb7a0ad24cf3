/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/macro.h"

struct libmnt_table;

/*
 * Which device Device= names, and whether it may be touched at all.
 *
 * The configured name (a /dev/disk/by-id/... link, recommended) is resolved
 * once; from then on rootless-ci works on the device number it found, and
 * every node it opens is checked against that number.
 */

/* Anything smaller cannot usefully hold Docker's data (and mkfs.xfs wants 300 MB). */
#define DISK_MIN_SIZE (512ULL * 1024 * 1024)

/* A partition of the disk as the kernel knows it (from sysfs). */
typedef struct KernelPartition {
        unsigned number;
        dev_t devnum;
        char *name;      /* "loop3p1" */
        uint64_t start;  /* bytes from the start of the disk */
        uint64_t size;   /* bytes */
} KernelPartition;

typedef struct Disk {
        char *given;     /* as configured: "/dev/disk/by-id/..." */
        char *node;      /* "/dev/loop3" */
        char *name;      /* "loop3" */
        char *sysfs;     /* "/sys/dev/block/7:3" */
        dev_t devnum;
        uint64_t size;   /* bytes */
        KernelPartition *parts;
        size_t n_parts;
} Disk;

void disk_done(Disk *d);

/*
 * Resolve given to a whole-disk block device that is writable and large
 * enough. Returns -ERCI_USAGE with *ret_reason set (a sentence naming the
 * device) when it is not a usable disk; other errors are negative errnos.
 */
int disk_identify(const char *given, Disk *ret, char **ret_reason);

/* (Re-)read the kernel's partitions of the disk from sysfs. */
int disk_read_partitions(Disk *d);

/* The partition the kernel knows as number n, or NULL. */
const KernelPartition *disk_kernel_partition(const Disk *d, unsigned n);

/* "/dev/loop3p1", "/dev/sdb1", "/dev/nvme0n1p1": 'p' when the disk name ends in a digit. */
char *disk_partition_node(const Disk *d, unsigned n);
/* "loop3p1" */
char *disk_partition_name(const char *disk_name, unsigned n);

/* "/dev/disk/by-id/x (/dev/loop3)", or just "/dev/loop3" when that is what was given. */
char *disk_display_name(const Disk *d);

/*
 * Open the disk's node (O_CLOEXEC is added) and make sure it is still the
 * device identified: -ENXIO otherwise.
 */
int disk_open(const Disk *d, int flags);
/* Same for any node that must be the block device devnum. */
int open_block_device(const char *node, dev_t devnum, int flags);

/* Append a formatted string to the NULL-terminated list l of n strings. 0, or -ENOMEM. */
int strv_add_printf(char ***l, size_t *n, const char *fmt, ...) _printf_(3, 4);
/* "a; b; c": the n strings of l joined with sep (malloc'd), or NULL. */
char *strv_join(char **l, size_t n, const char *sep);

/* Something mounted from the disk or one of its partitions. */
typedef struct DiskMount {
        dev_t devnum;    /* of the disk or the partition */
        char *device;    /* "/dev/loop3p1" */
        char *target;
} DiskMount;

typedef struct DiskUsage {
        DiskMount *mounts;
        size_t n_mounts;
        char **busy;     /* NULL-terminated: other uses that forbid any change (swap, holders, / or /boot) */
        size_t n_busy;
} DiskUsage;

void disk_usage_done(DiskUsage *u);

/*
 * Everything that uses the disk or its partitions right now: mounts (in
 * mounts, the table of mount_table_read(), by device number and by source), swap (/proc/swaps),
 * holders in sysfs (LVM, device-mapper, md RAID, bcache...), and the
 * filesystems of / and /boot.
 */
int disk_usage(const Disk *d, struct libmnt_table *mounts, DiskUsage *ret);
