/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * What libblkid sees on a disk: every signature, not only the first.
 *
 * Both the superblock chain (filesystems, swap, LVM, LUKS, RAID members...)
 * and the partition-table chain are enabled, signatures with bad checksums
 * included, and probing goes on after each hit by hiding the hit's magic
 * and stepping back, so a second signature of the same kind (a backup GPT
 * header) or of another kind (an ISO9660 image with an MBR) is found too.
 * A probe that fails is recorded as an error signature: an unreadable disk
 * is never taken for a blank one.
 *
 * Everything works on a file descriptor and a byte range, so the contents
 * of a partition are probed through the whole disk at the partition's
 * offset (whether or not the kernel has a node for it), and tests can probe
 * image files.
 */

typedef struct Signature {
        char *where;      /* "/dev/loop3", "/dev/loop3p1", "partition 2 of /dev/loop3" */
        char *type;       /* "ext4", "gpt", "PMBR", "LVM2_member", ...; "unreadable" on error */
        char *usage;      /* "filesystem", "partition table", "raid", "crypto", "other", "error" */
        char *label;      /* NULL if none */
        char *uuid;       /* UUID or PTUUID; NULL if none */
        uint64_t offset;  /* of the magic, in bytes from the start of the probed range */
        uint64_t disk_offset; /* of the magic, from the start of the device (the same signature seen twice) */
        bool error;
} Signature;

typedef struct SignatureList {
        Signature *items;
        size_t n;
} SignatureList;

void signature_list_done(SignatureList *l);
/* Append a copy of s. */
int signature_list_add(SignatureList *l, const Signature *s);

/*
 * Append every signature found in [offset, offset + size) of fd (size 0:
 * to the end) to l. Returns < 0 only for -ENOMEM; a probe error becomes an
 * error signature.
 */
int probe_signatures(int fd, uint64_t offset, uint64_t size, const char *where, SignatureList *l);

/*
 * Erase every signature in the range (fd must be open for writing), the way
 * wipefs --all does: only the magic bytes. Each one erased is appended to
 * destroyed. Returns < 0 if a probe or a write failed, or if a signature
 * would not go away.
 */
int wipe_signatures(int fd, uint64_t offset, uint64_t size, const char *where, SignatureList *destroyed);

/* "/dev/loop3p1: ext4 filesystem, label \"data\", UUID 1234-... at offset 1080" */
char *signature_describe(const Signature *s);

/* All of them, "; "-separated, each signature once (one seen through two ranges is listed once). */
char *signature_list_describe(const SignatureList *l);

/* One partition of a partition table, as written on the disk. */
typedef struct TablePartition {
        unsigned number;
        uint64_t start;   /* bytes */
        uint64_t size;    /* bytes */
        char *name;       /* GPT partition name; NULL if none */
        char *type;       /* GPT type GUID (lower case) or MBR type ("0x83"); NULL if none */
} TablePartition;

typedef struct PartitionTable {
        char *type;       /* "gpt", "dos", ...; NULL: no partition table */
        char *uuid;
        TablePartition *parts;
        size_t n_parts;
} PartitionTable;

void partition_table_done(PartitionTable *t);

/*
 * Read the partition table of the whole disk on fd. No table: 0 and
 * t->type NULL. A table libblkid cannot read: -EIO.
 */
int probe_partition_table(int fd, PartitionTable *ret);

/*
 * Probe the one filesystem in a range (libblkid's safe probe: two
 * signatures there are ambiguous, -EIO): for verifying our own mkfs.
 * only_type (may be NULL) runs that type's prober alone, for a filesystem
 * already known to be mounted as that type: the converged run, which writes
 * nothing to the disk, skips the other probers (ZFS's alone reads four
 * labels across the device and scans them: most of the step's time).
 */
int probe_filesystem(int fd, uint64_t offset, uint64_t size, const char *only_type, char **ret_type, char **ret_label,
                     char **ret_uuid);
