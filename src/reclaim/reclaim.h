/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * "rootless-ci reclaim [--builds-dir=DIR] PATH...": give a job's checkout
 * back to the CI user, so the next job's git clean, or the agent's
 * remove-and-retry, succeeds after a container wrote it as a non-root user.
 *
 * Run by the CI user itself (the agent's hooks), never by root: it maps the
 * user's IDs as its rootless daemon does (0 -> the user, 1.. -> every
 * subordinate range, util/userns.h) and, as root of that user namespace,
 * walks each PATH by file descriptors only:
 *
 *   - an entry owned by a subordinate UID or GID is chowned to 0:0 there, the
 *     user outside; an owner outside the user's IDs is left, and reported;
 *   - a directory of the user's gets u+rwx, so the user can empty and
 *     remove it;
 *   - a symlink is chowned itself and never followed;
 *   - a file with more than one name is given back once the walk has met
 *     every name of it below PATH, else left as it is (another name may be
 *     outside the checkout); that does not stop its removal, which needs
 *     only its directory;
 *   - another filesystem, or a mount of the same one, below PATH is not
 *     entered (nor is what is mounted there touched);
 *   - no recursion: the walk keeps a stack of its own, and the file
 *     descriptors of at most RECLAIM_FDS_KEPT levels open; a deeper level's
 *     parent is reopened through ".." and checked to be the same directory.
 *
 * It takes no lock, reads no configuration and needs no daemon.
 */

typedef struct ReclaimOptions {
        const char *builds_dir;   /* NULL: $BUILDKITE_BUILD_PATH */
        const char *const *paths;
        size_t n_paths;
} ReclaimOptions;

/*
 * The verb. 0 done (what was left is reported); -ERCI_USAGE (exit 2) for a
 * refused command line or PATH, nothing changed; -ERCI_FAILED (exit 1) when
 * something could not be done. Logs everything itself.
 */
int reclaim_main(const ReclaimOptions *o);

/*
 * Is path (absolute) strictly below builds_dir (absolute), by the text of
 * both, without "." or ".." components? Returns the part below it in
 * *ret_rel ("agent/org/pipeline"). -ERCI_USAGE with a message otherwise.
 */
int reclaim_path_below(const char *builds_dir, const char *path, char **ret_rel);

/*
 * Open rel (from reclaim_path_below()) below builds_fd, an open builds
 * directory, without following any symlink on the way, as an O_PATH fd in
 * *ret_fd (-1 when rel does not exist: nothing to do). It must be a
 * directory on the same mount as builds_fd. -ERCI_USAGE with a message
 * naming path otherwise.
 */
int reclaim_open_checkout(int builds_fd, const char *path, const char *rel, int *ret_fd);

/* Which IDs the walk gives back, as the walking process sees them. */
typedef struct ReclaimIds {
        uid_t self_uid;           /* what entries are given to: 0 inside the user namespace */
        gid_t self_gid;
        uint32_t uid_max;         /* IDs 1..uid_max other than self_uid are the user's subordinates */
        uint32_t gid_max;
        uint32_t overflow_uid;    /* what an unmapped ID reads as (65534): maybe a subordinate, maybe not */
        uint32_t overflow_gid;
} ReclaimIds;

typedef enum ReclaimVerdict {
        RECLAIM_KEEP,             /* the user's: nothing to chown */
        RECLAIM_CHOWN,            /* give it to self (the kernel has the last word: EPERM means foreign) */
        RECLAIM_FOREIGN,          /* owned by an ID that is neither the user's nor a subordinate: leave */
} ReclaimVerdict;

ReclaimVerdict reclaim_judge_owner(const ReclaimIds *ids, uint32_t uid, uint32_t gid);

#define RECLAIM_FDS_KEPT 64
/* Per-entry failures logged one by one; the rest only counted. */
#define RECLAIM_ERRORS_LOGGED 10

typedef struct ReclaimStats {
        uint64_t entries;         /* looked at, below the PATHs and the PATHs themselves */
        uint64_t reowned;         /* chowned to the user */
        uint64_t opened;          /* directories given u+rwx */
        uint64_t foreign;         /* left: owned by IDs outside the user's */
        uint64_t hardlinked;      /* left: subordinate-owned, with a name not met below the PATH */
        uint64_t mounts;          /* not entered: another mount */
        uint64_t errors;          /* could not be done (logged, the first few) */
        char *first_foreign, *first_hardlinked, *first_mount;
} ReclaimStats;

void reclaim_stats_done(ReclaimStats *s);

/*
 * Walk the directory at fd (any fd of it; shown names it in messages) with
 * the caller's credentials. Returns 0, or a negative errno when the walk
 * had to stop (the tree changed under it in a way it cannot follow safely,
 * or out of memory); per-entry failures are counted in stats->errors.
 */
int reclaim_tree(int fd, const char *shown, const ReclaimIds *ids, ReclaimStats *stats);

/*
 * What the walk and the checkout's checks (reclaim.c) both ask of an entry:
 * statx of fd itself, never followed (what the walk needs: type, mode,
 * owner, links, inode, mount ID), 0 or a negative errno; and whether two
 * entries are on the same mount.
 */
struct statx;
int reclaim_statx_fd(int fd, struct statx *ret);
bool reclaim_same_mount(const struct statx *a, const struct statx *b);
