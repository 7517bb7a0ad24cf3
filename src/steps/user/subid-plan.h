/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/subid.h"

/*
 * The user step's plan for /etc/subuid and /etc/subgid (util/subid.h parses
 * them): decide what the CI user's range should be, render the new text.
 * Every line that is not the CI user's bad line is rendered byte for byte,
 * malformed ones included.
 */

/* Why one of the user's lines cannot be kept; SUBID_OK when it can. */
typedef enum SubIdVerdict {
        SUBID_OK,
        SUBID_TOO_SMALL,         /* count < 65536 */
        SUBID_LOW,               /* starts below 65536 */
        SUBID_PAST_END,          /* runs past 2^32-2 */
        SUBID_OVERLAPS_ENTRY,    /* shares IDs with another owner's line */
        SUBID_OVERLAPS_ID,       /* contains an existing UID (subuid) or GID (subgid) */
        _SUBID_VERDICT_MAX,
} SubIdVerdict;

const char *subid_verdict_to_string(SubIdVerdict v);

typedef struct SubIdPolicy {
        uint64_t min, max;       /* SUB_*_MIN / SUB_*_MAX: where new ranges go (inclusive) */
        uint64_t count;          /* size of a new range (at least SUBID_COUNT_MIN) */
        const uint32_t *used_ids;/* existing UIDs (for subuid) or GIDs (for subgid) */
        size_t n_used_ids;
        uint64_t preferred_start;/* 0: none. Tried first, so subuid and subgid can match */
        /*
         * Ranges that are taken though no line of the file may say so yet:
         * the other tenants' (issue 16), planned ones included. A new range
         * never overlaps them.
         */
        const SubIdRange *reserved;
        size_t n_reserved;
} SubIdPolicy;

typedef struct SubIdPlan {
        /* The user's range after the change. */
        uint64_t start, count;
        bool allocate;           /* a new line is written */
        bool outside_bounds;     /* the kept range is valid but not within [min, max] */
        size_t keep;             /* index of the kept line (when !allocate) */
        size_t insert_at;        /* allocate: index of the bad line replaced, or n_lines to append */

        /* Per line: dropped (one of the user's bad lines), and why. */
        bool *drop;
        SubIdVerdict *verdict;   /* SUBID_OK for lines that are not the user's */
        size_t n_dropped;
        const SubIdLine *conflict_example; /* a line the dropped range overlapped, for messages */
        uint32_t conflict_id;    /* an existing ID it contained, for messages */
} SubIdPlan;

void subid_plan_done(SubIdPlan *p);

/*
 * Every range the user has once the plan is carried out, in file order:
 * each of its lines kept (valid, overlapping no one), or the new one.
 * newuidmap, hence rootlesskit, maps them all, one after the other.
 */
int subid_plan_ranges(const SubIdFile *f, const SubIdPlan *p, const char *user, uid_t uid, SubIdRange **ret,
                      size_t *ret_n);

/*
 * Decide: keep the user's first valid line (dropping its bad ones), or
 * allocate the lowest free range of policy->count IDs starting at
 * min + k * 65536 (or at preferred_start when that is free) within [min, max]
 * and free of every other owner's lines and of policy->used_ids. Returns
 * -ENOSPC when no such range exists.
 */
int subid_plan(const SubIdFile *f, const char *user, uid_t uid, const SubIdPolicy *policy, SubIdPlan *ret);

/* The first of ranges[0..n) that shares an ID with [start, start+count), or NULL. */
const SubIdRange *subid_ranges_overlapping(const SubIdRange *ranges, size_t n, uint64_t start, uint64_t count);

/* Is [start, start+count) free of other owners' lines, of used IDs and of the reserved ranges? */
bool subid_range_is_free(const SubIdFile *f, const char *user, uid_t uid, const SubIdPolicy *policy,
                         uint64_t start, uint64_t count);

/* Render the file after the plan. Returns the new text (NUL-terminated), its size in *ret_size. */
int subid_render(const SubIdFile *f, const SubIdPlan *p, const char *user, char **ret, size_t *ret_size);
