/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdarg.h>

#include "engine.h"

/* Between engine.c (the report) and engine/run.c (the parts): not for steps. */

/*
 * Put an item into the report at index at: into the place reserved there
 * (report_reserve), else inserted before the item at `at` (n_items appends).
 * Escapes host text, counts failures and changes, and logs the journal event.
 */
void report_put(Context *ctx, size_t at, const char *id, ItemStatus status, const char *fix, bool changed,
                const char *fmt, va_list ap) _printf_(7, 0);
size_t report_reserve(Context *ctx);
void report_drop_reserved(Context *ctx, size_t first);
