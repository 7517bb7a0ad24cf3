/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * /etc/subuid and /etc/subgid: "owner:start:count" lines, the owner a user
 * name or a numeric UID. Pure functions: parse the text, decide what the CI
 * user's range should be, render the new text. Every line that is not the
 * CI user's bad line is rendered byte for byte, malformed ones included.
 */

/* Rootless container runtimes expect a whole 16-bit ID space. */
#define SUBID_COUNT_MIN 65536ULL
/* IDs below this are the host's own users and groups (and 65534 "nobody"). */
#define SUBID_START_MIN 65536ULL
/* (uid_t) -1 is never an ID: a range ends at 2^32-2 at the latest. */
#define SUBID_ID_MAX 0xfffffffeULL

/* One range of subordinate IDs: start, start+1, ..., start+count-1. */
typedef struct SubIdRange {
        uint64_t start, count;
} SubIdRange;

typedef enum SubIdLineKind {
        SUBID_LINE_RANGE,      /* owner:start:count, parsed */
        SUBID_LINE_BLANK,      /* empty, only blanks, or a '#' comment */
        SUBID_LINE_MALFORMED,  /* anything else: kept, reported */
} SubIdLineKind;

typedef struct SubIdLine {
        const char *text;      /* into SubIdFile.buf; len bytes, the '\n' included when there is one */
        size_t len;
        unsigned lineno;
        SubIdLineKind kind;
        char *owner;           /* RANGE only */
        uint64_t start, count;
} SubIdLine;

typedef struct SubIdFile {
        char *buf;
        size_t size;
        SubIdLine *lines;
        size_t n_lines;
} SubIdFile;

int subid_file_parse(SubIdFile *f, const char *text, size_t size);
void subid_file_done(SubIdFile *f);

/* Is this RANGE line the user's (by name, or by numeric UID when uid is not (uid_t) -1)? */
bool subid_line_is_users(const SubIdLine *l, const char *user, uid_t uid);

/*
 * Every range of the user's lines, in file order, as newuidmap and
 * newgidmap accept them when the user asks for a map: each line owned by its
 * name or its numeric UID, whatever apply would think of it (a count of 0
 * is no range). None: *ret NULL, *ret_n 0.
 */
int subid_file_user_ranges(const SubIdFile *f, const char *user, uid_t uid, SubIdRange **ret, size_t *ret_n);

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

/* Is [start, start+count) free of other owners' lines and of used IDs? */
bool subid_range_is_free(const SubIdFile *f, const char *user, uid_t uid, const SubIdPolicy *policy,
                         uint64_t start, uint64_t count);

/* Render the file after the plan. Returns the new text (NUL-terminated), its size in *ret_size. */
int subid_render(const SubIdFile *f, const SubIdPlan *p, const char *user, char **ret, size_t *ret_size);
