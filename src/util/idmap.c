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

void idmap_range_format(uint32_t start, uint32_t count, char *buf, size_t size) {
        if (count == 1)
                snprintf(buf, size, "%u", start);
        else
                snprintf(buf, size, "%u..%u", start, (uint32_t) ((uint64_t) start + count - 1));
}

void idmap_extent_format(const IdMapExtent *e, char *buf, size_t size) {
        char in[32], out[32];

        idmap_range_format(e->inside, e->count, in, sizeof(in));
        idmap_range_format(e->outside, e->count, out, sizeof(out));
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
