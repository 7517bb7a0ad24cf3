/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>

#include "util/error.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/ping.h"
#include "wait.h"

int wait_for_docker(const Config *c) {
        struct passwd *pw;
        char sock[64];
        unsigned long long t0 = now_usec();
        int r;

        errno = 0;
        pw = getpwnam(c->user_name);
        if (!pw)
                return log_error_errno(-ERCI_FAILED, "User %s does not exist%s%s (run rootless-ci apply first)",
                                       c->user_name, errno ? ": " : "", errno ? strerror(errno) : "");
        snprintf(sock, sizeof(sock), "/run/user/%u/docker.sock", (unsigned) pw->pw_uid);

        r = docker_ping_wait(sock, pw->pw_uid, c->ready_timeout_sec, "the CI user's Docker", NULL, NULL, NULL);
        if (r < 0)
                return log_error_errno(-ERCI_FAILED,
                                       "%s's Docker did not answer GET /_ping on %s within %u s (%s); see: "
                                       "journalctl _UID=%u --user-unit=docker.service",
                                       c->user_name, sock, c->ready_timeout_sec,
                                       r == -ETIMEDOUT ? "no socket, or nobody listening"
                                       : r == -EPERM   ? "the path is not a socket owned by the user"
                                                       : strerror(-r),
                                       (unsigned) pw->pw_uid);
        log_info("%s's Docker answers on %s (waited %.2f s)", c->user_name, sock, (double) (now_usec() - t0) / 1e6);
        return 0;
}
