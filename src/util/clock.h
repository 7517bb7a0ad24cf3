/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Monotonic time, and this run's account of the time it spent waiting for
 * other processes: systemd, logind, dockerd, and the children it ran (mkfs,
 * useradd). Whatever the wall clock shows beyond that account is
 * rootless-ci's own work (its CPU and its own I/O): `-v` prints both at the
 * end of a run, and scripts/bench reports them for the first apply.
 */

/* Microseconds on CLOCK_MONOTONIC. */
unsigned long long now_usec(void);

/* Milliseconds on CLOCK_MONOTONIC since `since` (from now_usec()). */
double ms_since_usec(unsigned long long since);

/* Microseconds since this process started (since its constructors ran). */
unsigned long long run_elapsed_usec(void);

/* Adds now − since (from now_usec()) to the time spent waiting for other processes. */
void waited_since(unsigned long long since);

/* The time spent waiting for other processes so far, in microseconds. */
unsigned long long waited_total_usec(void);

/* Evaluates `expr`, a call that waits for another process, and adds the time it took to the account. */
#define WAITING(expr)                                                   \
        ({                                                              \
                unsigned long long _waiting_t0 = now_usec();            \
                __typeof__(expr) _waiting_r = (expr);                   \
                waited_since(_waiting_t0);                              \
                _waiting_r;                                             \
        })
