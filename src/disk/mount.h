/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

/* The mount options of our fstab line, used for the mount made now as well. */
#define RCI_MOUNT_OPTIONS "defaults,nofail,x-rootless-ci"

/*
 * Is the block device devnum mounted at target (in this mount namespace)?
 * Returns 1 yes, 0 no, < 0 error. The check is by device number and by
 * source node, so it also holds for filesystems that report an anonymous
 * device number.
 */
int mount_is_mounted_at(dev_t devnum, const char *target);

/*
 * Mount node (a block device) on target with libmount. Nothing from fstab
 * is read: source, target, type and options are all given. Logs
 * libmount's own message on failure.
 */
int mount_device(const char *node, const char *target, const char *fstype, const char *options);
