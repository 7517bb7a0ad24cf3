/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/*
 * The last n_lines journal messages of a user's unit (what the unit itself
 * logged and what the user's manager said about it), as one malloc'd text,
 * oldest first, one per line (no newline after the last). Empty text when
 * the journal has none. The text is the user's: log it, and log.c escapes it.
 */
int journal_user_unit_tail(uid_t uid, const char *unit, size_t n_lines, char **ret);

/* A likely cause of a rootless dockerd failure, judged from its log; NULL if nothing known matches. */
const char *rootless_docker_failure_hint(const char *log);
