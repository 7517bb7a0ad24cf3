/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * /etc/subuid and /etc/subgid: "owner:start:count" lines, the owner a user
 * name or a numeric UID. Pure functions: parse the text, and the ranges a
 * user has (what newuidmap maps). Deciding and rendering the CI user's
 * range is the user step's (steps/user/subid-plan.h).
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
