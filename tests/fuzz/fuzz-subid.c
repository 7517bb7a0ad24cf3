/* SPDX-License-Identifier: MIT */
/*
 * The /etc/subuid and /etc/subgid reader, allocator and writer on
 * arbitrary text. The first byte picks the user (by name, or by name and
 * UID), the policy's bounds and a preferred start. When the plan succeeds:
 *   - every line but the user's dropped bad lines survives byte for byte,
 *     in order, and the new line (if any) is the only one added;
 *   - the user's range is valid: at least 65536 IDs, at or above 65536,
 *     ending by 2^32-2, overlapping no other owner's range and no used ID;
 *     a new range lies within the policy's bounds;
 *   - planning again on the result keeps that range and changes nothing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "steps/user/subid-plan.h"

static const char *const users[] = { "buildkite", "ci", "a-b_c$", "_x" };
static const uint32_t used[] = { 0, 1000, 65534, 165536, 300000, 4294967294u };

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void) argc;
        (void) argv;
        return 0;
}

static void check_range(const SubIdFile *f, const char *user, uid_t uid, const SubIdPolicy *pol, uint64_t start,
                        uint64_t count) {
        FUZZ_ASSERT(count >= SUBID_COUNT_MIN);
        FUZZ_ASSERT(start >= SUBID_START_MIN);
        FUZZ_ASSERT(start + count - 1 <= SUBID_ID_MAX);
        FUZZ_ASSERT(subid_range_is_free(f, user, uid, pol, start, count));
        for (size_t i = 0; i < f->n_lines; i++) {
                const SubIdLine *l = &f->lines[i];
                if (l->kind == SUBID_LINE_RANGE && !subid_line_is_users(l, user, uid) && l->count > 0)
                        FUZZ_ASSERT(start + count <= l->start || l->start + l->count <= start);
        }
        for (size_t i = 0; i < pol->n_used_ids; i++)
                FUZZ_ASSERT(pol->used_ids[i] < start || pol->used_ids[i] >= start + count);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        SubIdFile f = {}, f2 = {};
        SubIdPlan p = {}, p2 = {};
        SubIdPolicy pol;
        const char *user, *text;
        char *out = NULL, *out2 = NULL, newline[128];
        size_t out_size = 0, out2_size = 0, pos = 0;
        uid_t uid;
        int r;

        if (size < 1 || size > 64 * 1024)
                return 0;
        user = users[data[0] & 3];
        uid = data[0] & 4 ? 1001 : (uid_t) -1;
        pol = (SubIdPolicy) {
                .min = data[0] & 8 ? 100000 : 65536,
                .max = data[0] & 16 ? 600100000 : 1000000,
                .count = data[0] & 32 ? 65536 : 131072,
                .used_ids = used,
                .n_used_ids = sizeof(used) / sizeof(used[0]),
                .preferred_start = data[0] & 64 ? 231072 : 0,
        };
        text = (const char *) data + 1;
        size--;

        r = subid_file_parse(&f, text, size);
        FUZZ_ASSERT(r == 0 || r == -ENOMEM);
        if (r < 0)
                return 0;
        /* The lines cover the text exactly. */
        for (size_t i = 0; i < f.n_lines; i++) {
                FUZZ_ASSERT(f.lines[i].text == f.buf + pos && f.lines[i].len > 0);
                pos += f.lines[i].len;
        }
        FUZZ_ASSERT(pos == size);

        r = subid_plan(&f, user, uid, &pol, &p);
        FUZZ_ASSERT(r == 0 || r == -ENOSPC || r == -ENOMEM);
        if (r < 0)
                goto done;
        check_range(&f, user, uid, &pol, p.start, p.count);
        if (p.allocate)
                FUZZ_ASSERT(p.start >= pol.min && p.start + p.count - 1 <= pol.max);

        r = subid_render(&f, &p, user, &out, &out_size);
        FUZZ_ASSERT(r == 0);

        /* Rebuild the expected text: the kept lines, and the new line where the plan puts it. */
        snprintf(newline, sizeof(newline), "%s:%llu:%llu\n", user, (unsigned long long) p.start,
                 (unsigned long long) p.count);
        pos = 0;
        for (size_t i = 0; i <= f.n_lines; i++) {
                if (p.allocate && i == p.insert_at) {
                        if (i == f.n_lines && i > 0 && f.lines[i - 1].text[f.lines[i - 1].len - 1] != '\n') {
                                FUZZ_ASSERT(pos < out_size && out[pos] == '\n');
                                pos++;
                        }
                        FUZZ_ASSERT(out_size - pos >= strlen(newline) &&
                                    memcmp(out + pos, newline, strlen(newline)) == 0);
                        pos += strlen(newline);
                }
                if (i == f.n_lines)
                        break;
                if (p.drop[i]) {
                        FUZZ_ASSERT(subid_line_is_users(&f.lines[i], user, uid));
                        continue;
                }
                FUZZ_ASSERT(out_size - pos >= f.lines[i].len &&
                            memcmp(out + pos, f.lines[i].text, f.lines[i].len) == 0);
                pos += f.lines[i].len;
        }
        FUZZ_ASSERT(pos == out_size);

        /* A fixed point: the result keeps the same range and renders to the same bytes. */
        FUZZ_ASSERT(subid_file_parse(&f2, out, out_size) == 0);
        r = subid_plan(&f2, user, uid, &pol, &p2);
        FUZZ_ASSERT(r == 0);
        FUZZ_ASSERT(!p2.allocate && p2.n_dropped == 0);
        FUZZ_ASSERT(p2.start == p.start && p2.count == p.count);
        FUZZ_ASSERT(subid_render(&f2, &p2, user, &out2, &out2_size) == 0);
        FUZZ_ASSERT(out2_size == out_size && memcmp(out, out2, out_size) == 0);

done:
        free(out);
        free(out2);
        subid_plan_done(&p2);
        subid_plan_done(&p);
        subid_file_done(&f2);
        subid_file_done(&f);
        return 0;
}
