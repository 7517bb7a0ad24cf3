/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "steps/user/subid-plan.h"
#include "util/fileio.h"
#include "util/macro.h"

#define SUBID_ALIGN 65536ULL

static const char *const verdict_table[_SUBID_VERDICT_MAX] = {
        [SUBID_OK] = "valid",
        [SUBID_TOO_SMALL] = "fewer than 65536 IDs",
        [SUBID_LOW] = "starts below 65536, among the host's own IDs",
        [SUBID_PAST_END] = "runs past 4294967294",
        [SUBID_OVERLAPS_ENTRY] = "overlaps another owner's range",
        [SUBID_OVERLAPS_ID] = "contains an existing account's ID",
};

const char *subid_verdict_to_string(SubIdVerdict v) {
        return v < _SUBID_VERDICT_MAX ? verdict_table[v] : NULL;
}

static bool overlaps(uint64_t a, uint64_t an, uint64_t b, uint64_t bn) {
        return an > 0 && bn > 0 && a < b + bn && b < a + an;
}

static const SubIdLine *first_overlapping_entry(const SubIdFile *f, const char *user, uid_t uid,
                                                uint64_t start, uint64_t count) {
        for (size_t i = 0; i < f->n_lines; i++) {
                const SubIdLine *l = &f->lines[i];
                if (l->kind == SUBID_LINE_RANGE && !subid_line_is_users(l, user, uid) &&
                    overlaps(start, count, l->start, l->count))
                        return l;
        }
        return NULL;
}

static bool first_used_id_in(const SubIdPolicy *p, uint64_t start, uint64_t count, uint32_t *ret) {
        for (size_t i = 0; i < p->n_used_ids; i++)
                if (p->used_ids[i] >= start && p->used_ids[i] < start + count) {
                        *ret = p->used_ids[i];
                        return true;
                }
        return false;
}

const SubIdRange *subid_ranges_overlapping(const SubIdRange *ranges, size_t n, uint64_t start, uint64_t count) {
        for (size_t i = 0; i < n; i++)
                if (overlaps(start, count, ranges[i].start, ranges[i].count))
                        return &ranges[i];
        return NULL;
}

bool subid_range_is_free(const SubIdFile *f, const char *user, uid_t uid, const SubIdPolicy *policy,
                         uint64_t start, uint64_t count) {
        uint32_t id;
        return !first_overlapping_entry(f, user, uid, start, count) && !first_used_id_in(policy, start, count, &id) &&
               !subid_ranges_overlapping(policy->reserved, policy->n_reserved, start, count);
}

void subid_plan_done(SubIdPlan *p) {
        free(p->drop);
        free(p->verdict);
        *p = (SubIdPlan) {};
}

static SubIdVerdict judge(const SubIdFile *f, const SubIdLine *l, const char *user, uid_t uid,
                          const SubIdPolicy *policy, SubIdPlan *p) {
        const SubIdLine *other;
        uint32_t id;

        if (l->count < SUBID_COUNT_MIN)
                return SUBID_TOO_SMALL;
        if (l->start < SUBID_START_MIN)
                return SUBID_LOW;
        if (l->start + l->count - 1 > SUBID_ID_MAX)
                return SUBID_PAST_END;
        other = first_overlapping_entry(f, user, uid, l->start, l->count);
        if (other) {
                if (!p->conflict_example)
                        p->conflict_example = other;
                return SUBID_OVERLAPS_ENTRY;
        }
        if (first_used_id_in(policy, l->start, l->count, &id)) {
                if (!p->conflict_id)
                        p->conflict_id = id;
                return SUBID_OVERLAPS_ID;
        }
        return SUBID_OK;
}

static bool candidate_ok(const SubIdFile *f, const char *user, uid_t uid, const SubIdPolicy *policy, uint64_t c) {
        return c >= SUBID_START_MIN && c >= policy->min && c + policy->count - 1 <= policy->max &&
               c + policy->count - 1 <= SUBID_ID_MAX &&
               subid_range_is_free(f, user, uid, policy, c, policy->count);
}

int subid_plan(const SubIdFile *f, const char *user, uid_t uid, const SubIdPolicy *policy, SubIdPlan *ret) {
        SubIdPlan p = {};
        bool found = false;

        p.drop = calloc(f->n_lines + 1, sizeof(bool));
        p.verdict = calloc(f->n_lines + 1, sizeof(SubIdVerdict));
        if (!p.drop || !p.verdict) {
                subid_plan_done(&p);
                return -ENOMEM;
        }
        p.insert_at = f->n_lines;

        for (size_t i = 0; i < f->n_lines; i++) {
                const SubIdLine *l = &f->lines[i];

                if (!subid_line_is_users(l, user, uid))
                        continue;
                p.verdict[i] = judge(f, l, user, uid, policy, &p);
                if (p.verdict[i] == SUBID_OK && !found) {
                        found = true;
                        p.keep = i;
                        p.start = l->start;
                        p.count = l->count;
                }
        }

        /* The user's bad lines go; with no good one, the first bad line's place takes the new range. */
        for (size_t i = 0; i < f->n_lines; i++)
                if (subid_line_is_users(&f->lines[i], user, uid) && p.verdict[i] != SUBID_OK) {
                        p.drop[i] = true;
                        p.n_dropped++;
                        if (!found && p.insert_at == f->n_lines)
                                p.insert_at = i;
                }

        if (found) {
                p.outside_bounds = p.start < policy->min || p.start + p.count - 1 > policy->max;
                *ret = p;
                return 0;
        }

        p.allocate = true;
        p.count = policy->count < SUBID_COUNT_MIN ? SUBID_COUNT_MIN : policy->count;
        {
                SubIdPolicy eff = *policy;
                eff.count = p.count;

                if (eff.preferred_start && candidate_ok(f, user, uid, &eff, eff.preferred_start)) {
                        p.start = eff.preferred_start;
                        *ret = p;
                        return 0;
                }
                for (uint64_t c = eff.min; c + eff.count - 1 <= eff.max && c + eff.count - 1 <= SUBID_ID_MAX;
                     c += SUBID_ALIGN)
                        if (candidate_ok(f, user, uid, &eff, c)) {
                                p.start = c;
                                *ret = p;
                                return 0;
                        }
        }
        subid_plan_done(&p);
        return -ENOSPC;
}

int subid_plan_ranges(const SubIdFile *f, const SubIdPlan *p, const char *user, uid_t uid, SubIdRange **ret,
                      size_t *ret_n) {
        SubIdRange *r = calloc(f->n_lines + 1, sizeof(SubIdRange));
        size_t n = 0;

        if (!r)
                return -ENOMEM;
        for (size_t i = 0; i <= f->n_lines; i++) {
                if (p->allocate && i == p->insert_at)
                        r[n++] = (SubIdRange) { p->start, p->count };
                if (i < f->n_lines && subid_line_is_users(&f->lines[i], user, uid) && !p->drop[i] &&
                    p->verdict[i] == SUBID_OK)
                        r[n++] = (SubIdRange) { f->lines[i].start, f->lines[i].count };
        }
        *ret = r;
        *ret_n = n;
        return 0;
}

int subid_render(const SubIdFile *f, const SubIdPlan *p, const char *user, char **ret, size_t *ret_size) {
        _cleanup_fclose_ FILE *out = NULL;
        char *buf = NULL;
        size_t size = 0;

        out = open_memstream(&buf, &size);
        if (!out)
                return -ENOMEM;

        for (size_t i = 0; i <= f->n_lines; i++) {
                if (p->allocate && i == p->insert_at) {
                        /* Appending after a last line without its newline: that line gets one. */
                        if (i == f->n_lines && i > 0 && f->lines[i - 1].text[f->lines[i - 1].len - 1] != '\n')
                                fputc('\n', out);
                        fprintf(out, "%s:%llu:%llu\n", user, (unsigned long long) p->start,
                                (unsigned long long) p->count);
                }
                if (i == f->n_lines)
                        break;
                if (!p->drop[i])
                        fwrite(f->lines[i].text, 1, f->lines[i].len, out);
        }

        if (memstream_finish(TAKE_PTR(out), &buf) < 0)
                return -ENOMEM;
        *ret = buf;
        *ret_size = size;
        return 0;
}
