/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "subid.h"

/*
 * Which user namespace a process runs in, and how its IDs map onto the
 * host's: /proc/PID/uid_map and gid_map ("inside outside count" per line,
 * as the reading process's namespace sees the outside IDs). A pure parser
 * and its formatter. Reading a process's maps and status from /proc is
 * proc.h's; the judge of the rootless layout is the daemon step's
 * (steps/daemon/userns-check.c).
 */

/* The kernel's limit on the lines of one map (since Linux 4.15). */
#define IDMAP_EXTENTS_MAX 340
/* A full map line is at most 3 × 10 digits, 2 blanks and a newline; the kernel pads to that. */
#define IDMAP_TEXT_MAX (IDMAP_EXTENTS_MAX * 33)

typedef struct IdMapExtent {
        uint32_t inside;     /* the first ID in the namespace */
        uint32_t outside;    /* what it is outside (on the host, for a reader there) */
        uint32_t count;      /* >= 1 */
} IdMapExtent;

typedef struct IdMap {
        IdMapExtent extents[IDMAP_EXTENTS_MAX];
        size_t n;
} IdMap;

/*
 * Parse the text of a uid_map or gid_map: each line three decimal numbers
 * separated (and possibly preceded, as the kernel pads them) by blanks.
 * Empty text is an empty map. -EBADMSG for a line that is not that, a
 * count of 0, a range past 4294967295, or ranges that overlap inside or
 * outside (the kernel accepts neither); -E2BIG for more than 340 lines.
 * *ret_line (may be NULL) gets the 1-based line at fault.
 */
int idmap_parse(const char *text, size_t size, IdMap *ret, unsigned *ret_line);

/* The whole 32-bit space mapped onto itself: the host's own namespace, no user namespace at all. */
#define IDMAP_IDENTITY_COUNT 4294967295U

/* "5" or "1..65536". */
void idmap_range_format(uint32_t start, uint32_t count, char *buf, size_t size);

/* "0 → 1000" (count 1) or "1..65536 → 100000..165535". */
void idmap_extent_format(const IdMapExtent *e, char *buf, size_t size);

/* Every extent, in the order of the map, joined by ", ". "nothing mapped" for an empty map. */
int idmap_format(const IdMap *m, char **ret);

/* A decimal number of at most 10 digits and at most UINT32_MAX at *p (before end); moves *p past it. */
bool parse_u32_decimal(const char **p, const char *end, uint32_t *ret);

/* The readers of /proc/PID (ProcessIds and the rest) are in proc.h, included here for the callers of before. */
typedef struct ProcessIds ProcessIds;
#include "proc.h"
