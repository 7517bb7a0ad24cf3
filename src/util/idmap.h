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
 * as the reading process's namespace sees the outside IDs), and the Uid:
 * and Gid: lines of /proc/PID/status. Pure parsers, plus one reader of a
 * process through its /proc/PID directory fd. The judge of the rootless
 * layout is the daemon step's (steps/daemon/userns-check.c).
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

/*
 * /proc/PID/status: the four IDs (real, effective, saved, filesystem) of
 * the line starting with key ("Uid:" or "Gid:"). -ENOENT without such a
 * line, -EBADMSG when it is not four numbers.
 */
int proc_status_ids(const char *text, const char *key, uint32_t ret[4]);

/*
 * The Groups: line of /proc/PID/status: the supplementary groups, as the
 * reader's namespace sees them (*ret malloc'd, NULL when there are none).
 * -ENOENT without such a line, -EBADMSG when it is not numbers.
 */
int proc_status_groups(const char *text, uint32_t **ret, size_t *ret_n);

/* What a process holds, from its status alone: enough to judge its groups. */
typedef struct ProcessCreds {
        char comm[17];               /* its command name, for messages; "" when unknown */
        uint32_t uids[4], gids[4];   /* real, effective, saved, filesystem */
        uint32_t *groups;            /* supplementary groups (Groups:) */
        size_t n_groups;
} ProcessCreds;

void process_creds_done(ProcessCreds *c);

/* Read status through proc_fd (an open /proc/PID). -ESRCH when the process has exited; -EBADMSG. */
int process_creds_read(int proc_fd, ProcessCreds *ret);

/* Does it hold one of gids (as a GID or a supplementary group)? *ret_gid (may be NULL): the first found. */
bool process_creds_hold_gid(const ProcessCreds *c, const gid_t *gids, size_t n_gids, gid_t *ret_gid);

/* Does the live process pid hold one of gids? 1 yes (*ret_gid, may be NULL), 0 no or gone, < 0 error. */
int pid_holds_gid(pid_t pid, const gid_t *gids, size_t n_gids, gid_t *ret_gid);

typedef struct GroupHolder {
        pid_t pid;
        char comm[17];
        gid_t gid;                   /* the first of the GIDs asked about that it holds */
} GroupHolder;

/*
 * Every process below proc_dir_fd (an open /proc, or a fake one in tests)
 * with uid as one of its four UIDs that holds one of gids, in directory
 * order (*ret malloc'd, NULL when none). *ret_seen (may be NULL): how many
 * processes of uid were looked at. Processes that exit meanwhile are
 * skipped; -EBADMSG when a status does not parse.
 */
int group_holders_find(int proc_dir_fd, uid_t uid, const gid_t *gids, size_t n_gids, GroupHolder **ret,
                       size_t *ret_n, size_t *ret_seen);

typedef struct ProcessIds {
        char comm[17];               /* its command name ("dockerd"), for messages; "" when unknown */
        uint32_t uids[4], gids[4];   /* real, effective, saved, filesystem, as this process sees them */
        IdMap uid_map, gid_map;
} ProcessIds;

/*
 * Read status (its Name:, Uid: and Gid: lines), uid_map and gid_map through proc_fd (an open /proc/PID).
 * -ESRCH when the process has exited; -EBADMSG (or -E2BIG) when a file
 * does not parse, with *ret_file (may be NULL) naming it.
 */
int process_ids_read(int proc_fd, ProcessIds *ret, const char **ret_file);
