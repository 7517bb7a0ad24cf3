/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The error convention (see README, "Hacking"):
 *
 *   Every function that can fail returns int: >= 0 on success, a negative
 *   errno on failure. Two project-specific codes extend errno, above its
 *   range, for failures that map to their own exit status:
 *
 *     -ERCI_USAGE    bad command line or configuration       → exit 2
 *     -ERCI_REFUSED  refused to protect existing data        → exit 3
 *
 *   The function that detects a failure either logs it with its context and
 *   returns the code, or returns the code and lets its caller log it; a
 *   failure is logged once, never twice. log_error_errno() returns the code
 *   it was given so "return log_error_errno(r, ...)" does both.
 */

#include <errno.h>

enum {
        ERCI_BASE = 4096,
        ERCI_USAGE,    /* exit 2 */
        ERCI_REFUSED,  /* exit 3 */
        ERCI_FAILED,   /* exit 1, already reported in detail */
};

enum {
        EXIT_OK = 0,
        EXIT_FAILED = 1,
        EXIT_USAGE = 2,
        EXIT_REFUSED = 3,
};

static inline int exit_status_from_error(int r) {
        if (r >= 0)
                return EXIT_OK;
        switch (-r) {
        case ERCI_USAGE:
                return EXIT_USAGE;
        case ERCI_REFUSED:
                return EXIT_REFUSED;
        default:
                return EXIT_FAILED;
        }
}

/* strerror() that also names our own codes. */
const char *error_to_string(int r);
