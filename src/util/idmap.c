/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idmap.h"
#include "macro.h"

static bool is_blank(char c) {
        return c == ' ' || c == '\t';
}

bool parse_u32_decimal(const char **p, const char *end, uint32_t *ret) {
        uint64_t v = 0;
        size_t digits = 0;

        while (*p < end && **p >= '0' && **p <= '9') {
                if (++digits > 10)
                        return false;
                v = v * 10 + (uint64_t) (**p - '0');
                (*p)++;
        }
        if (digits == 0 || v > UINT32_MAX)
                return false;
        *ret = (uint32_t) v;
        return true;
}

static bool ranges_overlap(uint64_t a, uint64_t an, uint64_t b, uint64_t bn) {
        return a < b + bn && b < a + an;
}

static int parse_map_line(const char *p, const char *end, IdMapExtent *ret) {
        uint32_t v[3];

        for (size_t i = 0; i < 3; i++) {
                const char *before = p;
                while (p < end && is_blank(*p))
                        p++;
                /* Blanks before the first number (the kernel pads), at least one between numbers. */
                if (i > 0 && p == before)
                        return -EBADMSG;
                if (!parse_u32_decimal(&p, end, &v[i]))
                        return -EBADMSG;
        }
        while (p < end && is_blank(*p))
                p++;
        if (p != end)
                return -EBADMSG;
        *ret = (IdMapExtent) { .inside = v[0], .outside = v[1], .count = v[2] };
        if (ret->count == 0 || (uint64_t) ret->inside + ret->count > (1ULL << 32) ||
            (uint64_t) ret->outside + ret->count > (1ULL << 32))
                return -EBADMSG;
        return 0;
}

int idmap_parse(const char *text, size_t size, IdMap *ret, unsigned *ret_line) {
        const char *p = text, *end = text + size;
        unsigned line = 0;

        ret->n = 0;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                const char *eol = nl ?: end;
                IdMapExtent e;
                int r;

                line++;
                if (ret_line)
                        *ret_line = line;
                if (ret->n == IDMAP_EXTENTS_MAX)
                        return -E2BIG;
                r = parse_map_line(p, eol, &e);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < ret->n; i++) {
                        const IdMapExtent *o = &ret->extents[i];
                        if (ranges_overlap(e.inside, e.count, o->inside, o->count) ||
                            ranges_overlap(e.outside, e.count, o->outside, o->count))
                                return -EBADMSG;
                }
                ret->extents[ret->n++] = e;
                p = nl ? nl + 1 : end;
        }
        if (ret_line)
                *ret_line = 0;
        return 0;
}

/* "5" or "1..65536". */
static void range_format(uint32_t start, uint32_t count, char *buf, size_t size) {
        if (count == 1)
                snprintf(buf, size, "%u", start);
        else
                snprintf(buf, size, "%u..%u", start, (uint32_t) ((uint64_t) start + count - 1));
}

void idmap_extent_format(const IdMapExtent *e, char *buf, size_t size) {
        char in[32], out[32];

        range_format(e->inside, e->count, in, sizeof(in));
        range_format(e->outside, e->count, out, sizeof(out));
        snprintf(buf, size, "%s → %s", in, out);
}

int idmap_format(const IdMap *m, char **ret) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f;

        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        if (m->n == 0)
                fputs("nothing mapped", f);
        for (size_t i = 0; i < m->n; i++) {
                char e[80];
                idmap_extent_format(&m->extents[i], e, sizeof(e));
                fprintf(f, "%s%s", i > 0 ? ", " : "", e);
        }
        if (fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        return 0;
}

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
                range_format(root->inside, root->count, in, sizeof(in));
                range_format(root->outside, root->count, out, sizeof(out));
                r = asprintf(ret_reason, "maps container %s %s to host %s %s: container root must map to %s's %s %u alone",
                             kind, in, kind, out, user, kind, owner);
                return r < 0 ? -ENOMEM : 0;
        }

        for (size_t i = 0; i < m->n; i++) {
                const IdMapExtent *e = &m->extents[i];

                if (e == root || covered(e->outside, e->count, ranges, n_ranges))
                        continue;
                range_format(e->inside, e->count, in, sizeof(in));
                range_format(e->outside, e->count, out, sizeof(out));
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
