/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

#include "engine/engine.h"
#include "engine/markers.h"

/*
 * What several steps do with the files they own: converge a root-owned file
 * to its wanted text (the old steps' converge_file, and the pieces the step
 * contract's item_file shares with it). The restart markers are
 * engine/markers.h.
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
