/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The cgroup v2 controllers user managers are given (Delegate= in
 * units/user-delegate.conf.in names the same): preflight says whether the
 * kernel offers them, the daemon step that the CI user's manager has them.
 */
#define DELEGATED_CONTROLLERS "cpu cpuset io memory pids"
/*
 * Those of them that have (a cgroup.controllers line; NULL: none) lacks, as
 * "cpuset io", into buf ("" when it has them all).
 */
#define CONTROLLERS_MISSING_MAX sizeof(DELEGATED_CONTROLLERS)
void delegated_controllers_missing(const char *have, char buf[static CONTROLLERS_MISSING_MAX]);
