/* SPDX-License-Identifier: MIT */
#pragma once

#include "build-config.h"

/*
 * Test hooks: environment variables that steer the program for the test
 * tiers (RCI_ONLY_STEPS and RCI_UNITS_DIR in main.c, RCI_KILL_AT and
 * RCI_STOP_AT in util/killpoint.c, RCI_FORCE_RESOLVE_FALLBACK in
 * util/testhooks.c, RCI_FORCE_MOUNT_FALLBACK in steps/disk/mount.c). They are
 * compiled in only with meson's -Dtest_hooks=true (RCI_TEST_HOOKS in
 * build-config.h; default off, and off in any package): without it the
 * program never reads them, and their names are not even in the binary.
 *
 * main.c, util/killpoint.c and util/testhooks.c are compiled again with
 * TEST_HOOKS set on the command line: -DTEST_HOOKS=0 for the hookless twin
 * the unit suite checks (src/meson.build), -DTEST_HOOKS=1 for the unit
 * tests, which therefore have the hooks in any build. Everything else
 * (steps/disk/mount.c) follows the option, so the twin, which shares that
 * library, still reads RCI_FORCE_MOUNT_FALLBACK.
 */
#ifndef TEST_HOOKS
#  define TEST_HOOKS RCI_TEST_HOOKS
#endif

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/*
 * A hook that is a flag: true when the variable name is "1". Expanded in the
 * file that uses it, so it follows that file's TEST_HOOKS; without the hooks
 * it is false and the name is not compiled in.
 */
#if TEST_HOOKS
#  define TEST_HOOK_FLAG(name) test_hook_flag_is_set(name)
#else
#  define TEST_HOOK_FLAG(name) false
#endif

static inline bool test_hook_flag_is_set(const char *name) {
        const char *e = getenv(name);
        return e && strcmp(e, "1") == 0;
}

/*
 * RCI_FORCE_RESOLVE_FALLBACK=1: safe_openat() (util/fs.c) takes its
 * O_NOFOLLOW walk instead of openat2(), so test-fs covers both. A hook the
 * library reads, kept here so that it is compiled per program as the
 * killpoints are: false in a build without the hooks.
 */
bool test_hook_resolve_fallback(void);
