/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Test hook on the production path, compiled in only with meson's
 * -Dtest_hooks=true (util/testhooks.h; without it a point does nothing and
 * nothing is read): when RCI_KILL_AT names this point, the process kills
 * itself with SIGKILL right here, so tests can prove that
 * a run killed at any point is completed by the next one. RCI_KILL_AT=list
 * prints every point passed (to stderr) instead. A point can be passed
 * more than once in a run (write-before-rename, for every file written):
 * RCI_KILL_AT=NAME:N kills at its N-th pass only (N from 1), so a test can
 * target each pass that the list shows.
 *
 * RCI_STOP_AT=NAME stops the process (SIGSTOP) at NAME instead, so a test
 * can look at the host between two steps of one run, then let it go on
 * (SIGCONT) to its end and its report. NAME:N works there too.
 */
void killpoint(const char *name);

/*
 * The same point, with what it is working on (a file name, a program, a
 * unit): listed as NAME@DETAIL, and RCI_KILL_AT=NAME@DETAIL[:N] targets the
 * passes with that detail only, so a test can say which file's write to
 * kill, whatever other files the run writes before it. NAME alone still
 * matches every pass.
 */
void killpoint_at(const char *name, const char *detail);
