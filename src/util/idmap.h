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
 * and a judge of the rootless layout (container root → the CI user alone,
 * every other mapped ID inside the CI user's subordinate range). Reading a
 * process's maps and status from /proc is proc.h's.
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

/* "0 → 1000" (count 1) or "1..65536 → 100000..165535". */
void idmap_extent_format(const IdMapExtent *e, char *buf, size_t size);

/* Every extent, in the order of the map, joined by ", ". "nothing mapped" for an empty map. */
int idmap_format(const IdMap *m, char **ret);

/* A decimal number of at most 10 digits and at most UINT32_MAX at *p (before end); moves *p past it. */
bool parse_u32_decimal(const char **p, const char *end, uint32_t *ret);

/* The readers of /proc/PID (ProcessIds and the rest) are in proc.h, included here for the callers of before. */
typedef struct ProcessIds ProcessIds;
#include "proc.h"

/* The CI user as rootless Docker should run: its IDs and all its subordinate ranges (none: n = 0). */
typedef struct RootlessIds {
        uid_t uid;
        gid_t gid;
        const SubIdRange *subuids;
        size_t n_subuids;
        const SubIdRange *subgids;
        size_t n_subgids;
} RootlessIds;

/*
 * Does the process run the rootless way for the CI user? Its UIDs and GIDs
 * on the host must all be the user's; in each map container ID 0 must map
 * to the user's ID with a count of 1, and every other extent lie inside the
 * user's subordinate ranges (their union: newuidmap maps each of the user's
 * lines). Returns 1 when it does, with *ret_message describing the maps
 * ("runs in a user namespace: 0 → 1000, …"); 0 when it does not, with
 * *ret_message saying why ("runs with host UIDs 0 0 0 0 …"), to follow
 * "PID N, which serves …'s Docker socket,"; -ENOMEM.
 */
int rootless_ids_judge(const ProcessIds *p, const char *user, const RootlessIds *want, char **ret_message);
