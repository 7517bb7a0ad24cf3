/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

#include "engine/engine.h"

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
