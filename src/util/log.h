/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <syslog.h>

#include "macro.h"

/*
 * Human-readable progress goes to stderr; when the journal is there the same
 * events also go to it with structured fields (RCI_STEP=, RCI_OBJECT=, ...).
 */

void log_set_max_level(int level);
void log_open_journal(bool enable);

/* Prefix for messages of the step that is running ("disk", "user", ...). */
void log_set_step(const char *step);

int log_internal(int level, int error, const char *file, int line, const char *fmt, ...) _printf_(5, 6);

#define log_full_errno(level, error, ...) \
        log_internal((level), (error), __FILE__, __LINE__, __VA_ARGS__)

#define log_debug(...)   log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...)    log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...)  log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...)   log_full_errno(LOG_ERR, 0, __VA_ARGS__)

/* These return the (negative) error they are given. "%m" prints it. */
#define log_debug_errno(e, ...)   log_full_errno(LOG_DEBUG, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...)   log_full_errno(LOG_ERR, (e), __VA_ARGS__)

/* Send one structured record to the journal (no-op without a journal). */
void log_journal_event(int level, const char *step, const char *object, const char *change, const char *message);
