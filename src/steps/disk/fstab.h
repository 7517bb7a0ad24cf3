/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/*
 * Our line in /etc/fstab:
 *
 *   UUID=<uuid> <mount point> <ext4|xfs> defaults,nofail,x-rootless-ci 0 <2|0>
 *
 * FSTAB_MARKER is the mount option that marks the line as rootless-ci's own;
 * mount(8) and systemd ignore x-* options. Mounting by UUID= survives
 * device renames; nofail keeps the host booting without the disk (what
 * needs the disk orders itself after the mount with RequiresMountsFor=).
 *
 * The file is never serialised by libmount: libmount parses each line to
 * understand it, and the new file is the old text with only our line
 * replaced or appended, so every other line stays byte for byte as it was
 * (comments, odd spacing, and lines libmount cannot parse, which it would
 * otherwise drop).
 */
#define FSTAB_PATH "/etc/fstab"
#define FSTAB_MARKER "x-rootless-ci"
#define FSTAB_MAX_SIZE (1024 * 1024)

typedef struct FstabWant {
        const char *uuid;
        const char *target;
        const char *fstype;
} FstabWant;

typedef enum FstabAction {
        FSTAB_KEEP,     /* our line is there and right (or our filesystem already has a line) */
        FSTAB_ADD,
        FSTAB_REPLACE,
} FstabAction;

typedef struct FstabPlan {
        FstabAction action;
        unsigned line;          /* KEEP/REPLACE: the line number of our (old) line */
        char *old_line;         /* REPLACE: the line replaced, without its newline */
        char *new_line;         /* the line wanted, without a newline */
        char *text;             /* ADD/REPLACE: the whole new file */
        size_t size;
        unsigned *unparsable;   /* numbers of lines libmount cannot parse; kept as they are */
        size_t n_unparsable;
        unsigned n_removed;     /* further copies of our line, dropped */
        bool adopted;           /* KEEP because a line without our marker already mounts our filesystem there */
} FstabPlan;

void fstab_plan_done(FstabPlan *p);

/* The line rootless-ci wants (no newline); the mount point escaped as fstab needs. */
char *fstab_line(const FstabWant *want);

/*
 * Decide what to do with the fstab text (path only for messages).
 * Returns 0 with *ret filled; -ERCI_REFUSED when a line that is not ours
 * already mounts something else at the mount point, or mounts our
 * filesystem elsewhere; -ERCI_FAILED when the file cannot be handled (a NUL
 * byte, a line libmount cannot parse that carries our marker). In both
 * cases *ret_error says why, naming path:line.
 */
int fstab_plan(const char *path, const char *text, size_t size, const FstabWant *want, FstabPlan *ret,
               char **ret_error);

/*
 * Find our line (the first with FSTAB_MARKER). Returns 1 and its line
 * number, source and target (unescaped) if there is one, 0 if none.
 */
int fstab_find_ours(const char *text, size_t size, unsigned *ret_line, char **ret_source, char **ret_target);
