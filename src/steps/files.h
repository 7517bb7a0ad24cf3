/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

#include "engine/engine.h"

/*
 * What several steps do with the files they own: converge a root-owned file
 * to its wanted text, and remember a restart that is owed.
 */

/*
 * Converge one root-owned file (mode 0644) to want. Reports it under id;
 * returns 1 if it differs (apply: changed it), 0 if not, < 0 when it could
 * not go on. what names it in messages. pending_marker (may be NULL) is set
 * before the file is written, so a restart owed for the new content survives
 * a run killed right after the write.
 */
int converge_file(Context *ctx, const char *id, const char *path, const char *want, const char *what,
                  const char *pending_marker);

/*
 * The pieces of converge_file, shared with the step contract's item_file
 * (engine/items.c). file_look: does path hold want, root-owned, mode 0644?
 * (logged < 0 when it cannot tell). file_make_dir: its directory, made.
 * file_write_verified: write it atomically and read it back. shown is the
 * path as the host sees it, for messages.
 */
int file_look(int root_fd, const char *path, const char *shown, const char *want, bool *ret_exists, bool *ret_same);
int file_make_dir(int root_fd, const char *path, const char *shown);
int file_write_verified(int root_fd, const char *path, const char *shown, const char *want);

/*
 * API sockets of daemons that run as root and act for whoever connects —
 * Docker, containerd (its own and Docker's bundled one), BuildKit, Podman,
 * CRI-O, libvirt, LXD, Incus: each is root for its clients. The user step
 * treats a group that can write one as privileged; the daemon step's check
 * fails when the CI user can connect to one (invariant I1).
 */
extern const char *const root_daemon_sockets[];
extern const size_t n_root_daemon_sockets;

/*
 * The cgroup v2 controllers user managers are given (Delegate= in
 * units/user-delegate.conf.in names the same): preflight says whether the
 * kernel offers them, the daemon step that the CI user's manager has them.
 */
#define DELEGATED_CONTROLLERS "cpu cpuset io memory pids"
/*
 * Those of them that have (a cgroup.controllers line; NULL: none) lacks, as
 * "cpuset io", into buf ("" when it has them all).
 */
#define CONTROLLERS_MISSING_MAX sizeof(DELEGATED_CONTROLLERS)
void delegated_controllers_missing(const char *have, char buf[static CONTROLLERS_MISSING_MAX]);

/*
 * "Restart pending" markers, for a run killed between rewriting a unit and
 * restarting what runs it: the next run finds the file up to date, so
 * only the marker tells it the restart is still owed. They live in
 * /run/rootless-ci, which a reboot empties, and a reboot starts everything
 * from the new files anyway. Live host only (no-ops under --root).
 */
int marker_set(Context *ctx, const char *name);
bool marker_exists(Context *ctx, const char *name);
int marker_clear(Context *ctx, const char *name);
