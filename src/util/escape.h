/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/*
 * Text taken from the host (file names, symlink targets, lines of /etc
 * files, what a child wrote to stderr) made safe to show: a CI user can
 * plant most of it, and a newline in it would forge report lines, an escape
 * sequence would drive the operator's terminal, and a stray byte would make
 * the JSON report invalid.
 *
 * Every control character (C0, DEL, and C1 U+0080..U+009F, which some
 * terminals obey) and every byte that is not part of valid UTF-8 (RFC 3629:
 * no overlong forms, no surrogates, nothing above U+10FFFF) becomes "\xNN"
 * (lower-case hex, one per byte), and a backslash becomes "\\", so the
 * escaped text reads back unambiguously. Every other character, multi-byte
 * UTF-8 included, is kept as it is.
 *
 * newline: NULL escapes '\n' like any other control character ("\x0a");
 * otherwise each '\n' becomes this text (log.c uses "\n" plus an indent, so
 * a continuation line cannot pass for a line of its own).
 */

/* A malloc'd escaped copy of s; NULL when out of memory. */
char *escape_host_text(const char *s, const char *newline);

/*
 * The same into buf (size > 0), cut before the first character that does not
 * fit (never inside an escape); always NUL-terminated. Returns the length
 * written.
 */
size_t escape_host_text_buf(char *buf, size_t size, const char *s, const char *newline);

/* s is well-formed UTF-8 as above (RFC 3629); control characters are not looked at. */
bool utf8_is_valid(const char *s);
