/* SPDX-License-Identifier: MIT */
#include "util/macro.h"
#include "util/root-sockets.h"

const char *const root_daemon_sockets[] = {
        "/run/docker.sock",
        "/var/run/docker.sock",
        "/run/containerd/containerd.sock",
        "/run/containerd/containerd.sock.ttrpc",
        "/run/containerd/debug.sock",
        "/run/docker/containerd/containerd.sock",
        "/var/run/docker/containerd/containerd.sock",
        "/run/buildkit/buildkitd.sock",
        "/run/podman/podman.sock",
        "/run/crio/crio.sock",
        "/run/libvirt/libvirt-sock",
        "/var/lib/lxd/unix.socket",
        "/var/snap/lxd/common/lxd/unix.socket",
        "/var/lib/incus/unix.socket",
};
const size_t n_root_daemon_sockets = ELEMENTSOF(root_daemon_sockets);
