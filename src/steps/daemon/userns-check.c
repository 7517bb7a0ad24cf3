/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "steps/daemon/daemon.h"
#include "util/idmap.h"
#include "util/macro.h"

/*
 * Invariant I2: the daemon runs as the CI user in a user namespace, container
 * root mapped to the user alone and every other container ID into its
 * subordinate ranges (all its lines, as the user step left them in the
 * Account). Judged from the process that listens on the socket the ping
 * just talked to (its SO_PEERCRED PID, /proc/PID opened on that
 * connection): no child, no bus. Returns 1 when it holds, 0 when not, with
 * *ret_message saying which; < 0 only for -ENOMEM.
 */
int inspect_userns(const Account *a, const DockerPeer *peer, char **ret_message) {
        const RootlessIds id = {
                .uid = a->uid,
                .gid = a->gid,
                .subuids = a->subuids,
                .n_subuids = a->n_subuids,
                .subgids = a->subgids,
                .n_subgids = a->n_subgids,
        };
        _cleanup_free_ ProcessIds *ids = NULL;
        _cleanup_free_ char *why = NULL;
        const char *file = NULL;
        int r;

        if (peer->pid <= 0)
                return asprintf(ret_message,
                                "%s's Docker socket is served by a process in a PID namespace this run cannot see: "
                                "its user namespace cannot be checked",
                                a->name) < 0
                               ? -ENOMEM
                               : 0;
        ids = malloc(sizeof(*ids));
        if (!ids)
                return -ENOMEM;
        r = peer->proc_fd < 0 ? peer->proc_error : process_ids_read(peer->proc_fd, ids, &file);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return asprintf(ret_message, "%s's Docker socket is served by PID %ld, whose /proc/%ld%s%s cannot be read: %s",
                                a->name, (long) peer->pid, (long) peer->pid, file ? "/" : "", strempty(file),
                                r == -ESRCH ? "it has exited" : strerror(-r)) < 0
                               ? -ENOMEM
                               : 0;
        r = rootless_ids_judge(ids, a->name, &id, &why);
        if (r < 0)
                return r;
        if (r > 0)
                r = asprintf(ret_message, "%s's %s (PID %ld) %s", a->name, ids->comm[0] ? ids->comm : "daemon",
                             (long) peer->pid, why) < 0 ? -ENOMEM : 1;
        else
                r = asprintf(ret_message, "%s's Docker socket is served by PID %ld%s%s%s, which %s", a->name,
                             (long) peer->pid, ids->comm[0] ? " (" : "", ids->comm, ids->comm[0] ? ")" : "", why) < 0
                            ? -ENOMEM
                            : 0;
        return r;
}

/* check's fix when the user namespace is wrong: apply restarts the daemon, which maps the IDs anew. */
char *userns_check_fix(const Account *a) {
        char *s;
        return asprintf(&s,
                        "rootless-ci apply (it restarts %s's docker.service, which maps the IDs of /etc/subuid and "
                        "/etc/subgid anew)",
                        a->name) < 0
                       ? NULL
                       : s;
}
