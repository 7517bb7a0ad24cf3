/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "util/error.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/macro.h"
#include "steps/daemon/ping.h"
#include "util/userdb.h"
#include "wait.h"

/* One user's daemon, for at most timeout_sec. */
static int wait_for_user(const UserDb *db, const char *user, unsigned timeout_sec) {
        const PasswdEntry *pw;
        char sock[64];
        unsigned long long t0 = now_usec();
        uid_t uid;
        int r;

        pw = userdb_find_user(db, user);
        if (!pw)
                return log_error_errno(-ERCI_FAILED, "User %s does not exist in /etc/passwd (run rootless-ci apply first)",
                                       user);
        uid = pw->uid;
        snprintf(sock, sizeof(sock), "/run/user/%u/docker.sock", (unsigned) uid);

        r = docker_ping_wait(sock, uid, timeout_sec, "the CI user's Docker", NULL, NULL, NULL);
        if (r < 0)
                return log_error_errno(-ERCI_FAILED,
                                       "%s's Docker did not answer GET /_ping on %s within %u s (%s); see: "
                                       "journalctl _UID=%u --user-unit=docker.service",
                                       user, sock, timeout_sec,
                                       r == -ETIMEDOUT ? "no socket, or nobody listening"
                                       : r == -EPERM   ? "the path is not a socket owned by the user"
                                                       : strerror(-r),
                                       (unsigned) uid);
        log_info("%s's Docker answers on %s (waited %.2f s)", user, sock, (double) (now_usec() - t0) / 1e6);
        return 0;
}

int wait_for_docker(const Config *c, const char *user) {
        _cleanup_(userdb_done) UserDb db = {};
        _cleanup_close_ int root_fd = -1;
        unsigned long long deadline = now_usec() + (unsigned long long) c->ready_timeout_sec * 1000000ULL;
        int r;

        /* With tenants, --user was checked to name one tenant's user (cli.c). */
        /* The account files, as every step reads them (README, "User"): one source of account data. */
        root_fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root_fd < 0)
                return log_error_errno(negative_errno(), "Failed to open /: %m");
        r = userdb_load(&db, root_fd);
        if (r < 0)
                return log_error_errno(-ERCI_FAILED, "Cannot read /etc/passwd and /etc/group: %s", strerror(-r));

        if (user || c->n_tenants == 0)
                return wait_for_user(&db, user ?: c->user_name, c->ready_timeout_sec);

        /* Every tenant's daemon, in the configuration's order, all within the one ReadyTimeoutSec. */
        for (size_t i = 0; i < c->n_tenants; i++) {
                unsigned long long now = now_usec();
                unsigned left = now < deadline ? (unsigned) ((deadline - now + 999999ULL) / 1000000ULL) : 0;

                r = wait_for_user(&db, c->tenants[i].user, left);
                if (r < 0)
                        return r;
        }
        return 0;
}
