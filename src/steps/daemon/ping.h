/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * Is the Docker daemon up? GET /_ping over its unix socket: a healthy daemon
 * answers "HTTP/1.x 200" with the body "OK".
 */

#define DOCKER_PING_REQUEST "GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n"

/*
 * Parse a complete response (the daemon closes the connection after an
 * HTTP/1.0 answer). Returns 0 for "200" with body "OK"; -EPROTO for a
 * well-formed answer that is not that (*ret_status says which status);
 * -EBADMSG for anything that is not an HTTP response.
 */
int docker_ping_parse(const char *buf, size_t size, unsigned *ret_status);

/*
 * Who answered, from the connection itself (SO_PEERCRED): the process that
 * listens on the socket — for rootless Docker, dockerd inside rootlesskit's
 * namespaces — with its credentials as this process's namespaces see them.
 */
typedef struct DockerPeer {
        pid_t pid;        /* 0: the listener is in a PID namespace this process cannot see */
        uid_t uid;        /* its effective UID and GID when it called listen() */
        gid_t gid;
        int proc_fd;      /* /proc/PID (a directory fd), opened before the request was sent; -1 if not */
        int proc_error;   /* why proc_fd is -1 (negative errno) */
} DockerPeer;

#define DOCKER_PEER_NULL ((DockerPeer) { .proc_fd = -1 })

void docker_peer_done(DockerPeer *p);

/*
 * One attempt: connect to socket_path, which must be a socket owned by
 * owner (the path is resolved without following any symlink, since it lies
 * in the user's runtime directory), send the request, parse the answer.
 * Returns 0 when the daemon is up, else a negative errno (-ENOENT: no socket
 * yet, -ECONNREFUSED: nobody listening, -EPERM: wrong owner or not a socket,
 * -EPROTO/-EBADMSG: a bad answer, -ETIMEDOUT). ret_peer (may be NULL) gets
 * the listener, from the same connection: written only on success
 * (overwritten, not released), then released with docker_peer_done().
 */
int docker_ping_peer(const char *socket_path, uid_t owner, unsigned timeout_ms, DockerPeer *ret_peer);

/*
 * Poll docker_ping_peer() until it succeeds or timeout_sec passes, saying
 * every few seconds what it waits for. still_hopeful (may be NULL) is asked
 * about once a second; a negative answer ends the wait with that error (the
 * daemon's unit failed: no point waiting on). Returns 0, or the last error
 * (-ETIMEDOUT if the last attempt was a connection refusal or no socket).
 * ret_peer (may be NULL) gets the listener of the attempt that succeeded.
 */
int docker_ping_wait(const char *socket_path, uid_t owner, unsigned timeout_sec, const char *what,
                     int (*still_hopeful)(void *userdata), void *userdata, DockerPeer *ret_peer);
