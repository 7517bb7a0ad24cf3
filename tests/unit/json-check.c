/* SPDX-License-Identifier: MIT */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "json-check.h"

typedef struct Parser {
        const unsigned char *start, *p;
        const char *error;
        unsigned depth;
} Parser;

static bool fail(Parser *ps, const char *what) {
        if (!ps->error)
                ps->error = what;
        return false;
}

static void skip_ws(Parser *ps) {
        while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')
                ps->p++;
}

static bool literal(Parser *ps, const char *word) {
        size_t l = strlen(word);
        if (strncmp((const char *) ps->p, word, l) != 0)
                return fail(ps, "unknown literal");
        ps->p += l;
        return true;
}

/* One UTF-8 character of at least two bytes at ps->p (RFC 3629's table). */
static bool utf8_char(Parser *ps) {
        const unsigned char *p = ps->p;
        unsigned char lo = 0x80, hi = 0xbf;
        size_t n;

        if (p[0] >= 0xc2 && p[0] <= 0xdf)
                n = 2;
        else if (p[0] >= 0xe0 && p[0] <= 0xef) {
                n = 3;
                lo = p[0] == 0xe0 ? 0xa0 : 0x80;
                hi = p[0] == 0xed ? 0x9f : 0xbf;
        } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
                n = 4;
                lo = p[0] == 0xf0 ? 0x90 : 0x80;
                hi = p[0] == 0xf4 ? 0x8f : 0xbf;
        } else
                return fail(ps, "a byte that starts no UTF-8 character");
        if (p[1] < lo || p[1] > hi)
                return fail(ps, "invalid UTF-8");
        for (size_t i = 2; i < n; i++)
                if ((p[i] & 0xc0) != 0x80)
                        return fail(ps, "invalid UTF-8");
        ps->p += n;
        return true;
}

static bool string(Parser *ps) {
        if (*ps->p != '"')
                return fail(ps, "expected a string");
        ps->p++;
        for (;;) {
                unsigned char c = *ps->p;
                if (c == '"') {
                        ps->p++;
                        return true;
                }
                if (c == 0)
                        return fail(ps, "unterminated string");
                if (c < 0x20)
                        return fail(ps, "raw control character in a string");
                if (c == '\\') {
                        c = ps->p[1];
                        if (c == 'u') {
                                for (int i = 2; i < 6; i++)
                                        if (!ps->p[i] || !strchr("0123456789abcdefABCDEF", ps->p[i]))
                                                return fail(ps, "bad \\u escape");
                                ps->p += 6;
                        } else if (c && strchr("\"\\/bfnrt", c))
                                ps->p += 2;
                        else
                                return fail(ps, "bad escape");
                } else if (c < 0x80)
                        ps->p++;
                else if (!utf8_char(ps))
                        return false;
        }
}

static bool number(Parser *ps) {
        const unsigned char *p = ps->p;

        if (*p == '-')
                p++;
        if (*p == '0')
                p++;
        else if (*p >= '1' && *p <= '9')
                while (*p >= '0' && *p <= '9')
                        p++;
        else
                return fail(ps, "expected a value");
        if (*p == '.') {
                if (!(*++p >= '0' && *p <= '9'))
                        return fail(ps, "bad fraction");
                while (*p >= '0' && *p <= '9')
                        p++;
        }
        if (*p == 'e' || *p == 'E') {
                p++;
                if (*p == '+' || *p == '-')
                        p++;
                if (!(*p >= '0' && *p <= '9'))
                        return fail(ps, "bad exponent");
                while (*p >= '0' && *p <= '9')
                        p++;
        }
        ps->p = p;
        return true;
}

static bool value(Parser *ps);

/* An object or an array: open, members separated by commas, close. */
static bool container(Parser *ps, char close, bool object) {
        if (++ps->depth > 64)
                return fail(ps, "nested too deep");
        ps->p++;
        skip_ws(ps);
        if (*ps->p == close) {
                ps->p++;
                ps->depth--;
                return true;
        }
        for (;;) {
                skip_ws(ps);
                if (object) {
                        if (!string(ps))
                                return false;
                        skip_ws(ps);
                        if (*ps->p != ':')
                                return fail(ps, "expected ':'");
                        ps->p++;
                }
                if (!value(ps))
                        return false;
                skip_ws(ps);
                if (*ps->p == ',') {
                        ps->p++;
                        continue;
                }
                if (*ps->p != close)
                        return fail(ps, object ? "expected ',' or '}'" : "expected ',' or ']'");
                ps->p++;
                ps->depth--;
                return true;
        }
}

static bool value(Parser *ps) {
        skip_ws(ps);
        switch (*ps->p) {
        case '{':
                return container(ps, '}', true);
        case '[':
                return container(ps, ']', false);
        case '"':
                return string(ps);
        case 't':
                return literal(ps, "true");
        case 'f':
                return literal(ps, "false");
        case 'n':
                return literal(ps, "null");
        default:
                return number(ps);
        }
}

const char *json_check(const char *text) {
        static char buf[256];
        Parser ps = { .start = (const unsigned char *) text, .p = (const unsigned char *) text };

        if (value(&ps)) {
                skip_ws(&ps);
                if (*ps.p == 0)
                        return NULL;
                fail(&ps, "text after the value");
        }
        snprintf(buf, sizeof(buf), "%s at byte %zu", ps.error, (size_t) (ps.p - ps.start));
        return buf;
}
