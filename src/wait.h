/* SPDX-License-Identifier: MIT */
#pragma once

#include "config.h"

/*
 * "rootless-ci wait": block until the CI user's rootless Docker answers
 * GET /_ping on /run/user/UID/docker.sock, for at most ReadyTimeoutSec. The
 * agent's drop-in runs it as ExecStartPre=, so the agent (and its first job)
 * never starts before the daemon can answer. Changes nothing. Returns 0 when
 * the daemon answered; -ERCI_FAILED (exit 1) at the deadline or when the
 * user is not in /etc/passwd (the account files are the one source of
 * account data, as for every step), with a message that says which.
 *
 * user: --user's value, or NULL. With tenants, NULL waits for every
 * tenant's daemon (in order, within the one ReadyTimeoutSec), a tenant's
 * user for that one's alone (a tenant's agent waits for its own daemon
 * only), anything else is a usage error (exit 2).
 */
int wait_for_docker(const Config *c, const char *user);
