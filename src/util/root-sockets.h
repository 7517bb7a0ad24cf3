/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

/*
 * API sockets of daemons that run as root and act for whoever connects —
 * Docker, containerd (its own and Docker's bundled one), BuildKit, Podman,
 * CRI-O, libvirt, LXD, Incus: each is root for its clients. The user step
 * treats a group that can write one as privileged; the daemon step's check
 * fails when the CI user can connect to one (invariant I1).
 */
extern const char *const root_daemon_sockets[];
extern const size_t n_root_daemon_sockets;
