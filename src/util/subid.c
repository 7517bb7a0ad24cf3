/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "subid.h"

void subid_file_done(SubIdFile *f) {
        for (size_t i = 0; i < f->n_lines; i++)
                free(f->lines[i].owner);
        free(f->lines);
        free(f->buf);
        *f = (SubIdFile) {};
}

static bool parse_u64(const char *s, size_t len, uint64_t max, uint64_t *ret) {
        uint64_t v = 0;

        if (len == 0 || len > 10)
                return false;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (uint64_t) (s[i] - '0');
        }
        if (v > max)
                return false;
        *ret = v;
        return true;
}

static int parse_line(SubIdLine *l) {
        const char *s = l->text, *c1, *c2;
        size_t len = l->len;

        if (len > 0 && s[len - 1] == '\n')
                len--;
        if (strspn(s, " \t") >= len || s[strspn(s, " \t")] == '#') {
                l->kind = SUBID_LINE_BLANK;
                return 0;
        }

        l->kind = SUBID_LINE_MALFORMED;
        c1 = memchr(s, ':', len);
        if (!c1 || c1 == s)
                return 0;
        c2 = memchr(c1 + 1, ':', (size_t) (s + len - c1 - 1));
        if (!c2 || memchr(c2 + 1, ':', (size_t) (s + len - c2 - 1)))
                return 0;
        if (memchr(s, ' ', (size_t) (c1 - s)) || memchr(s, '\t', (size_t) (c1 - s)))
                return 0;
        if (!parse_u64(c1 + 1, (size_t) (c2 - c1 - 1), UINT32_MAX, &l->start) ||
            !parse_u64(c2 + 1, (size_t) (s + len - c2 - 1), 1ULL << 32, &l->count))
                return 0;

        l->owner = strndup(s, (size_t) (c1 - s));
        if (!l->owner)
                return -ENOMEM;
        l->kind = SUBID_LINE_RANGE;
        return 0;
}

int subid_file_parse(SubIdFile *f, const char *text, size_t size) {
        unsigned lineno = 0;
        int r;

        *f = (SubIdFile) {};
        f->buf = malloc(size + 1);
        if (!f->buf)
                return -ENOMEM;
        memcpy(f->buf, text, size);
        f->buf[size] = 0;
        f->size = size;

        for (const char *p = f->buf, *end = f->buf + size; p < end;) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t len = nl ? (size_t) (nl - p) + 1 : (size_t) (end - p);
                SubIdLine *n;

                n = reallocarray(f->lines, f->n_lines + 1, sizeof(SubIdLine));
                if (!n) {
                        subid_file_done(f);
                        return -ENOMEM;
                }
                f->lines = n;
                f->lines[f->n_lines] = (SubIdLine) { .text = p, .len = len, .lineno = ++lineno };
                r = parse_line(&f->lines[f->n_lines]);
                f->n_lines++;
                if (r < 0) {
                        subid_file_done(f);
                        return r;
                }
                p += len;
        }
        return 0;
}

bool subid_line_is_users(const SubIdLine *l, const char *user, uid_t uid) {
        char buf[16];

        if (l->kind != SUBID_LINE_RANGE)
                return false;
        if (streq(l->owner, user))
                return true;
        if (uid == (uid_t) -1)
                return false;
        snprintf(buf, sizeof(buf), "%u", (unsigned) uid);
        return streq(l->owner, buf);
}

int subid_file_user_ranges(const SubIdFile *f, const char *user, uid_t uid, SubIdRange **ret, size_t *ret_n) {
        _cleanup_free_ SubIdRange *r = NULL;
        size_t n = 0;

        for (size_t i = 0; i < f->n_lines; i++) {
                const SubIdLine *l = &f->lines[i];
                SubIdRange *nr;

                if (!subid_line_is_users(l, user, uid) || l->count == 0)
                        continue;
                nr = reallocarray(r, n + 1, sizeof(SubIdRange));
                if (!nr)
                        return -ENOMEM;
                r = nr;
                r[n++] = (SubIdRange) { l->start, l->count };
        }
        *ret = TAKE_PTR(r);
        *ret_n = n;
        return 0;
}
