/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "idmap.h"

/*
 * The one reader of /proc/PID/status (and of a process's uid_map and
 * gid_map, through idmap.h's parser), and the one scan of /proc. Pure
 * parsers of the status text, and readers through an open /proc/PID
 * directory fd (or a fake /proc in tests).
 */

/*
 * /proc/PID/status: the four IDs (real, effective, saved, filesystem) of
 * the line starting with key ("Uid:" or "Gid:"). -ENOENT without such a
 * line, -EBADMSG when it is not four numbers.
 */
int proc_status_ids(const char *text, const char *key, uint32_t ret[4]);

/*
 * The Name: line of a status text (the command name, as comm; best effort,
 * for messages), printable characters only ('?' for others), cut to size;
 * "" without one.
 */
void proc_status_name(const char *text, char *buf, size_t size);

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

/* The same for the live process pid (through /proc/PID). */
int process_creds_read_pid(pid_t pid, ProcessCreds *ret);

/* Does it hold one of gids (as a GID or a supplementary group)? *ret_gid (may be NULL): the first found. */
bool process_creds_hold_gid(const ProcessCreds *c, const gid_t *gids, size_t n_gids, gid_t *ret_gid);

/* Does the live process pid hold one of gids? 1 yes (*ret_gid, may be NULL), 0 no or gone, < 0 error. */
int pid_holds_gid(pid_t pid, const gid_t *gids, size_t n_gids, gid_t *ret_gid);

/*
 * The one scan of /proc: for every process below proc_dir_fd (an open
 * /proc, or a fake one in tests), in directory order, with uid as one of its
 * four UIDs (a set-user-ID program started by the user is still the
 * user's), f(userdata, pid, its /proc/PID fd, its creds). Processes that
 * exit meanwhile are skipped; -EBADMSG when a status does not parse. f
 * returns < 0 to stop with that error, > 0 to stop with that value
 * (returned), 0 to go on; the scan returns 0 when it went through.
 */
typedef int (*ProcScanFunc)(void *userdata, pid_t pid, int proc_fd, const ProcessCreds *c);
int proc_scan_uid(int proc_dir_fd, uid_t uid, ProcScanFunc f, void *userdata);

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
