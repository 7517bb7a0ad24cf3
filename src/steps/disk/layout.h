/* SPDX-License-Identifier: MIT */
#pragma once

#include <parted/parted.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "steps/disk/identify.h"

/*
 * The partition layout rootless-ci writes and recognises: a GPT with exactly
 * one partition, optimally aligned, spanning the disk, named
 * RCI_PARTITION_NAME, of the Linux filesystem data type.
 */
#define RCI_PARTITION_NAME "rootless-ci-data"
#define GPT_TYPE_LINUX_DATA "0fc63daf-8483-4772-8e79-3d69d8477de4"

typedef struct PartitionGeometry {
        uint64_t start;  /* bytes */
        uint64_t size;   /* bytes */
} PartitionGeometry;

/* libparted is loaded on first use (see layout.c); true once it is. For tests. */
bool layout_libparted_loaded(void);

/*
 * Where the partition would go on the device at path (a disk or an image
 * file), computed by libparted in memory. Writes nothing.
 */
int layout_plan(const char *path, FileSystem fs, PartitionGeometry *ret);

/*
 * Write a fresh GPT with our one partition to path (libparted's commit to
 * the disk only; the caller tells the kernel with layout_kernel_add()). The
 * geometry must come out as expected (from layout_plan), or nothing is
 * written. Logs.
 */
int layout_write(const char *path, FileSystem fs, const PartitionGeometry *expected);

/*
 * The answer rootless-ci gives to a libparted exception offering options:
 * never FIX, YES, RETRY or IGNORE (a "fix" while reading a damaged table
 * writes to the disk; an "ignore" goes on regardless), CANCEL or NO where
 * offered, OK for a notice. Exported for tests.
 */
PedExceptionOption layout_exception_answer(PedExceptionType type, PedExceptionOption options);

/* Tell the kernel about partition n (BLKPG), or make it forget it. No write to the disk. */
int layout_kernel_add(int disk_fd, unsigned n, uint64_t start, uint64_t size);
int layout_kernel_del(int disk_fd, unsigned n);

/*
 * Wait (at most timeout_ms) until the kernel knows partition n of d with
 * this geometry and its node in /dev is that partition's block device
 * (devtmpfs creates it; udev may rename or re-create it). Re-reads d's
 * partitions. Returns the node and its device number.
 */
int layout_wait_partition(Disk *d, unsigned n, const PartitionGeometry *g, unsigned timeout_ms, char **ret_node,
                          dev_t *ret_devnum);
