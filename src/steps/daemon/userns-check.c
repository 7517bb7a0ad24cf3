/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "steps/daemon/daemon.h"
#include "util/idmap.h"
#include "util/proc.h"
#include "util/macro.h"

/* Is [start, start+count) inside the union of the ranges? */
static bool covered(uint64_t start, uint64_t count, const SubIdRange *ranges, size_t n) {
        uint64_t pos = start, end = start + count;

        while (pos < end) {
                uint64_t next = pos;
                for (size_t i = 0; i < n; i++)
                        if (ranges[i].start <= pos && pos < ranges[i].start + ranges[i].count &&
                            ranges[i].start + ranges[i].count > next)
                                next = ranges[i].start + ranges[i].count;
                if (next == pos)
                        return false;
                pos = next;
        }
        return true;
}

/* "100000..165535" or "100000..165535, 300000..365535" */
static int ranges_format(const SubIdRange *ranges, size_t n, char **ret) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        if (!f)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                fprintf(f, "%s%llu..%llu", i > 0 ? ", " : "", (unsigned long long) ranges[i].start,
                        (unsigned long long) (ranges[i].start + ranges[i].count - 1));
        if (fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        return 0;
}

/*
 * One map against the rootless layout. Returns 1 when it holds, 0 with
 * *ret_reason when not, -ENOMEM.
 */
static int judge_map(const IdMap *m, const char *kind, const char *subid_file, const char *user, uint32_t owner,
                     const SubIdRange *ranges, size_t n_ranges, char **ret_reason) {
        _cleanup_free_ char *subs = NULL;
        const IdMapExtent *root = NULL;
        char in[32], out[32];
        int r = 0;

        *ret_reason = NULL;
        if (m->n == 0)
                r = asprintf(ret_reason, "maps no %s at all (its %s map is empty)", kind, kind);
        else if (m->n == 1 && m->extents[0].inside == 0 && m->extents[0].outside == 0 &&
                 m->extents[0].count == IDMAP_IDENTITY_COUNT)
                r = asprintf(ret_reason, "is in no user namespace: its %s map is the host's own (0 0 %u)", kind,
                             IDMAP_IDENTITY_COUNT);
        if (r < 0)
                return -ENOMEM;
        if (*ret_reason)
                return 0;

        for (size_t i = 0; i < m->n; i++)
                if (m->extents[i].inside == 0)
                        root = &m->extents[i];
        if (!root)
                return asprintf(ret_reason, "does not map container %s 0 (root) at all", kind) < 0 ? -ENOMEM : 0;
        if (root->outside != owner || root->count != 1) {
                idmap_range_format(root->inside, root->count, in, sizeof(in));
                idmap_range_format(root->outside, root->count, out, sizeof(out));
                r = asprintf(ret_reason, "maps container %s %s to host %s %s: container root must map to %s's %s %u alone",
                             kind, in, kind, out, user, kind, owner);
                return r < 0 ? -ENOMEM : 0;
        }

        for (size_t i = 0; i < m->n; i++) {
                const IdMapExtent *e = &m->extents[i];

                if (e == root || covered(e->outside, e->count, ranges, n_ranges))
                        continue;
                idmap_range_format(e->inside, e->count, in, sizeof(in));
                idmap_range_format(e->outside, e->count, out, sizeof(out));
                if (n_ranges == 0)
                        r = asprintf(ret_reason, "maps container %s %s to host %s %s, but %s has no subordinate %s range in %s",
                                     kind, in, kind, out, user, kind, subid_file);
                else if (ranges_format(ranges, n_ranges, &subs) < 0)
                        return -ENOMEM;
                else
                        r = asprintf(ret_reason, "maps container %s %s to host %s %s, outside %s's subordinate %s range%s %s (%s)",
                                     kind, in, kind, out, user, kind, n_ranges > 1 ? "s" : "", subs, subid_file);
                return r < 0 ? -ENOMEM : 0;
        }
        return 1;
}

static int judge_ids(const uint32_t ids[4], const char *kind, const char *user, uint32_t owner, char **ret_reason) {
        *ret_reason = NULL;
        for (size_t i = 0; i < 4; i++)
                if (ids[i] != owner)
                        return asprintf(ret_reason,
                                        "runs with host %ss %u %u %u %u (real, effective, saved, filesystem), not as %s's %s %u",
                                        kind, ids[0], ids[1], ids[2], ids[3], user, kind, owner) < 0
                                       ? -ENOMEM
                                       : 0;
        return 1;
}

int rootless_ids_judge(const ProcessIds *p, const char *user, const RootlessIds *id, char **ret_message) {
        _cleanup_free_ char *reason = NULL, *uids = NULL, *gids = NULL;
        int r;

        r = judge_ids(p->uids, "UID", user, (uint32_t) id->uid, &reason);
        if (r == 1)
                r = judge_ids(p->gids, "GID", user, (uint32_t) id->gid, &reason);
        if (r == 1)
                r = judge_map(&p->uid_map, "UID", "/etc/subuid", user, (uint32_t) id->uid, id->subuids,
                              id->n_subuids, &reason);
        if (r == 1)
                r = judge_map(&p->gid_map, "GID", "/etc/subgid", user, (uint32_t) id->gid, id->subgids,
                              id->n_subgids, &reason);
        if (r < 0)
                return r;
        if (r == 0) {
                *ret_message = TAKE_PTR(reason);
                return 0;
        }

        if (idmap_format(&p->uid_map, &uids) < 0 || idmap_format(&p->gid_map, &gids) < 0)
                return -ENOMEM;
        if (streq(uids, gids))
                r = asprintf(ret_message, "runs in a user namespace: %s (UIDs and GIDs alike)", uids);
        else
                r = asprintf(ret_message, "runs in a user namespace: UIDs %s; GIDs %s", uids, gids);
        return r < 0 ? -ENOMEM : 1;
}

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
