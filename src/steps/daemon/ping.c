/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/log.h"
#include "util/clock.h"
#include "util/macro.h"
#include "ping.h"

#define PING_RESPONSE_MAX 8192
#define PING_POLL_INTERVAL_MS 50
#define PING_PROGRESS_EVERY_USEC (5ULL * 1000 * 1000)

int docker_ping_parse(const char *buf, size_t size, unsigned *ret_status) {
        const char *p, *end = buf + size, *body;
        unsigned status = 0;
        size_t digits = 0;

        /* Status line: "HTTP/1.0 200 OK" or "HTTP/1.1 200 OK". */
        if (size < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || (buf[7] != '0' && buf[7] != '1') || buf[8] != ' ')
                return -EBADMSG;
        for (p = buf + 9; p < end && *p >= '0' && *p <= '9'; p++, digits++)
                status = status * 10 + (unsigned) (*p - '0');
        if (digits != 3 || p >= end || (*p != ' ' && *p != '\r'))
                return -EBADMSG;
        if (ret_status)
                *ret_status = status;

        body = memmem(buf, size, "\r\n\r\n", 4);
        if (!body)
                return -EBADMSG;
        body += 4;

        if (status != 200)
                return -EPROTO;
        if ((size_t) (end - body) != 2 || memcmp(body, "OK", 2) != 0)
                return -EPROTO;
        return 0;
}

/* Wait for fd to be ready for events until deadline (CLOCK_MONOTONIC usec). */
static int wait_fd(int fd, short events, unsigned long long deadline) {
        for (;;) {
                unsigned long long n = now_usec();
                struct pollfd pfd = { .fd = fd, .events = events };
                int r;

                if (n >= deadline)
                        return -ETIMEDOUT;
                r = WAITING(poll(&pfd, 1, (int) ((deadline - n + 999) / 1000)));
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return negative_errno();
                if (r > 0)
                        return 0;
        }
}

/*
 * After a send() or recv() on the non-blocking socket that returned n: 1 when
 * it is to be tried again (EAGAIN or EINTR; waited for events first), 0 when
 * n is its answer, or a negative errno.
 */
static int io_again(int fd, ssize_t n, short events, unsigned long long deadline) {
        int r;

        if (n >= 0)
                return 0;
        if (errno != EAGAIN && errno != EINTR)
                return negative_errno();
        r = wait_fd(fd, events, deadline);
        return r < 0 ? r : 1;
}

void docker_peer_done(DockerPeer *p) {
        p->proc_fd = safe_close(p->proc_fd);
        p->pid = 0;
}

/*
 * Who listens: SO_PEERCRED of a connected unix socket gives the credentials
 * the listener had when it called listen() (its PID as our PID namespace
 * sees it, 0 when it cannot). /proc/PID is opened now, before the request
 * goes out: the fd keeps naming that very process (a reused PID gets a new
 * directory), and the daemon answering afterwards proves it was alive then.
 */
static int get_peer(int fd, DockerPeer *ret) {
        struct ucred cred = {};
        socklen_t len = sizeof(cred);
        char path[32];

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return negative_errno();
        *ret = (DockerPeer) { .pid = cred.pid, .uid = cred.uid, .gid = cred.gid, .proc_fd = -1, .proc_error = -ESRCH };
        if (cred.pid <= 0)
                return 0;
        snprintf(path, sizeof(path), "/proc/%ld", (long) cred.pid);
        ret->proc_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ret->proc_error = ret->proc_fd < 0 ? negative_errno() : 0;
        return 0;
}

int docker_ping_peer(const char *socket_path, uid_t owner, unsigned timeout_ms, DockerPeer *ret_peer) {
        _cleanup_(docker_peer_done) DockerPeer peer = DOCKER_PEER_NULL;
        _cleanup_close_ int path_fd = -1, root_fd = -1, fd = -1;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        unsigned long long deadline = now_usec() + (unsigned long long) timeout_ms * 1000ULL;
        char buf[PING_RESPONSE_MAX];
        size_t got = 0, sent = 0;
        struct stat st;
        int r;

        root_fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root_fd < 0)
                return negative_errno();
        /* The socket lies in the user's runtime directory: follow no symlink on the way. */
        path_fd = safe_openat(root_fd, socket_path + strspn(socket_path, "/"), O_PATH, 0, RESOLVE_POLICY_NO_SYMLINKS);
        if (path_fd < 0)
                return path_fd == -ELOOP ? -EPERM : path_fd;
        if (fstat(path_fd, &st) < 0)
                return negative_errno();
        if (!S_ISSOCK(st.st_mode) || st.st_uid != owner)
                return -EPERM;

        /* Connect through the fd we checked, not the path, which could change meanwhile. */
        r = snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d", path_fd);
        if (r < 0 || (size_t) r >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                if (errno != EINPROGRESS && errno != EAGAIN)
                        return negative_errno();
                r = wait_fd(fd, POLLOUT, deadline);
                if (r < 0)
                        return r;
                int err = 0;
                socklen_t len = sizeof(err);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                        return negative_errno();
                if (err)
                        return -err;
        }
        if (ret_peer) {
                r = get_peer(fd, &peer);
                if (r < 0)
                        return r;
        }

        while (sent < strlen(DOCKER_PING_REQUEST)) {
                ssize_t n = send(fd, &DOCKER_PING_REQUEST[sent], strlen(DOCKER_PING_REQUEST) - sent, MSG_NOSIGNAL);
                r = io_again(fd, n, POLLOUT, deadline);
                if (r < 0)
                        return r;
                if (r == 0)
                        sent += (size_t) n;
        }

        /* HTTP/1.0: the daemon closes the connection after its answer. */
        for (;;) {
                ssize_t n;

                if (got == sizeof(buf))
                        return -EBADMSG;
                n = recv(fd, buf + got, sizeof(buf) - got, 0);
                r = io_again(fd, n, POLLIN, deadline);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;
                if (n == 0)
                        break;
                got += (size_t) n;
        }
        r = docker_ping_parse(buf, got, NULL);
        if (r < 0)
                return r;
        if (ret_peer) {
                *ret_peer = peer;
                peer = DOCKER_PEER_NULL;
        }
        return 0;
}

int docker_ping_wait(const char *socket_path, uid_t owner, unsigned timeout_sec, const char *what,
                     int (*still_hopeful)(void *userdata), void *userdata, DockerPeer *ret_peer) {
        unsigned long long start = now_usec(), deadline = start + (unsigned long long) timeout_sec * 1000000ULL;
        unsigned long long next_progress = start + PING_PROGRESS_EVERY_USEC, next_ask = start + 1000000ULL;
        int r;

        for (;;) {
                unsigned long long n;

                r = docker_ping_peer(socket_path, owner, 2000, ret_peer);
                if (r >= 0) {
                        log_debug("%s answered GET /_ping after %.2f s", what, (double) (now_usec() - start) / 1e6);
                        return 0;
                }
                n = now_usec();
                if (n >= deadline)
                        break;
                if (still_hopeful && n >= next_ask) {
                        int h = still_hopeful(userdata);
                        if (h < 0)
                                return h;
                        next_ask = n + 1000000ULL;
                }
                if (n >= next_progress) {
                        log_info("Waiting for %s to answer GET /_ping on %s: %llu s of %u s (last: %s)", what,
                                 socket_path, (n - start) / 1000000ULL, timeout_sec, strerror(-r));
                        next_progress += PING_PROGRESS_EVERY_USEC;
                }
                /* A short pause between attempts; the deadline bounds the wait. */
                (void) WAITING(poll(NULL, 0, PING_POLL_INTERVAL_MS));
        }
        return r == -ENOENT || r == -ECONNREFUSED ? -ETIMEDOUT : r;
}
