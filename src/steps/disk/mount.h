/* SPDX-License-Identifier: MIT */
#pragma once

#include <libmount.h>
#include <stdbool.h>
#include <sys/types.h>

#include "util/macro.h"

/* The mount options of our fstab line, used for the mount made now as well. */
#define RCI_MOUNT_OPTIONS "defaults,nofail,x-rootless-ci"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct libmnt_table *, mnt_unref_table)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct libmnt_iter *, mnt_free_iter)

/*
 * The mounts of this mount namespace (/proc/self/mountinfo): the one place
 * that reads it. The disk step reads it once per look and hands the table
 * to what asks about mounts (disk_usage(), mount_is_mounted_at()).
 */
int mount_table_read(struct libmnt_table **ret);

/*
 * Is the block device devnum mounted at target, as the top mount there, in
 * the table tb? Returns 1 yes, 0 no. The check is by device number and by
 * source node, so it also holds for filesystems that report an anonymous
 * device number. < 0: out of memory.
 */
int mount_is_mounted_at(struct libmnt_table *tb, dev_t devnum, const char *target);

/*
 * Mount node (a block device) on the directory dir_fd (an O_PATH fd the
 * caller opened without following symlinks and checked), never by a path
 * that could be looked up again and lead elsewhere: with the new mount API
 * (move_mount() onto the fd), else libmount on /proc/self/fd/N.
 * In test builds (-Dtest_hooks=true) RCI_FORCE_MOUNT_FALLBACK=1 forces the
 * latter, so tests cover both. Nothing from fstab is read: source, type and options are all given; target names
 * the directory in messages. Logs the kernel's or libmount's message on
 * failure.
 */
int mount_device_at(const char *node, int dir_fd, const char *target, const char *fstype, const char *options);
