/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Run a program and wait for it: no shell, a clean environment (PATH and
 * LC_ALL=C only), stdin from /dev/null, its stdout sent to our stderr so the
 * report on stdout stays ours, every other fd closed. Returns the exit status
 * (>= 0), or a negative errno when it could not run or died of a signal.
 */
int spawn_wait(const char *path, char *const argv[]);
