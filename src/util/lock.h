/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

/*
 * One lock so two runs never interleave: flock() on /run/rootless-ci.lock
 * below the root (or on the root directory itself when it has no /run, as
 * in a bare image tree). apply takes it exclusive, plan and check shared.
 * A second run waits up to timeout_ms, then fails with -EWOULDBLOCK after
 * logging which process holds it. The holder's PID is written into the file.
 */
int lock_acquire(int rootfd, bool exclusive, unsigned timeout_ms, int *ret_fd);
