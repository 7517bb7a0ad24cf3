/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

#include "steps/disk/identify.h"
#include "steps/disk/layout.h"
#include "steps/disk/probe.h"

/*
 * What is on the disk, sorted into the three cases that decide everything:
 *
 *   blank    no signature anywhere: not on the disk, not in any partition
 *            the table or the kernel knows, not (see contents_probe_area)
 *            where our partition would go;
 *   ours     only a GPT (and its protective MBR) with exactly one partition,
 *            number 1, named RCI_PARTITION_NAME, of the Linux data type,
 *            holding nothing (half made) or exactly one filesystem, ext4 or
 *            xfs, labelled RCI_FS_LABEL, with a UUID;
 *   foreign  anything else, with the first reason it is not ours.
 */
typedef enum DiskVerdict {
        DISK_BLANK,
        DISK_OURS,
        DISK_FOREIGN,
} DiskVerdict;

typedef struct DiskContents {
        SignatureList found;     /* every signature, on the disk and in its partitions */
        PartitionTable table;
        DiskVerdict verdict;
        char *foreign_reason;    /* foreign: why, in words */
        bool kernel_stale;       /* the kernel knows partitions that are not in the table */

        /* ours: */
        PartitionGeometry part;  /* partition 1, from the table */
        char *fs_type;           /* our filesystem; NULL while the partition is blank */
        char *fs_uuid;
} DiskContents;

void disk_contents_done(DiskContents *c);

/* Partition 1, named RCI_PARTITION_NAME, of the Linux data type. */
bool disk_partition_is_ours(const TablePartition *p);

/*
 * Probe the disk open on fd (node names it in messages) and each partition
 * of its table and of kparts (the kernel's), by byte range through fd.
 * Errors are negative errnos; a probe error is a signature (not blank).
 */
int disk_contents_probe(int fd, const char *node, const KernelPartition *kparts, size_t n_kparts, DiskContents *ret);

/*
 * Probe the area where our partition would go. Something there (a leftover
 * no whole-disk probe can see, such as a filesystem that was inside a
 * partition whose table is gone) makes a blank disk foreign.
 */
int disk_contents_probe_area(int fd, const PartitionGeometry *g, DiskContents *c);
