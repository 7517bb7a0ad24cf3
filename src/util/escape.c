/* SPDX-License-Identifier: MIT */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "escape.h"

static bool is_continuation(unsigned char c) {
        return (c & 0xc0) == 0x80;
}

/*
 * The length of the valid UTF-8 sequence at p (1 to 4), or 0 when p does
 * not start one. p is NUL-terminated, and NUL is no continuation byte, so
 * this never reads past the end.
 */
static size_t utf8_sequence_length(const unsigned char *p) {
        unsigned char c = p[0];

        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf)
                return is_continuation(p[1]) ? 2 : 0;
        if (c >= 0xe0 && c <= 0xef) {
                /* E0 needs A0..BF (no overlong forms); ED needs 80..9F (no surrogates). */
                unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
                return p[1] >= lo && p[1] <= hi && is_continuation(p[2]) ? 3 : 0;
        }
        if (c >= 0xf0 && c <= 0xf4) {
                /* F0 needs 90..BF (no overlong forms); F4 needs 80..8F (nothing above U+10FFFF). */
                unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
                return p[1] >= lo && p[1] <= hi && is_continuation(p[2]) && is_continuation(p[3]) ? 4 : 0;
        }
        return 0; /* a stray continuation byte, C0/C1 (overlong), F5..FF */
}

static size_t hex_escape(char *out, const unsigned char *p, size_t n) {
        static const char hex[] = "0123456789abcdef";
        size_t j = 0;

        for (size_t i = 0; i < n; i++) {
                out[j++] = '\\';
                out[j++] = 'x';
                out[j++] = hex[p[i] >> 4];
                out[j++] = hex[p[i] & 15];
        }
        return j;
}

/*
 * Escape s into buf (NULL: only count). A piece (one character or its
 * escape) is written only if it fits whole with room for the NUL. Returns the
 * length of the escaped text (written, or needed when buf is NULL).
 */
static size_t escape_into(char *buf, size_t size, const char *s, const char *newline) {
        size_t nl_len = newline ? strlen(newline) : 0, len = 0;

        for (const unsigned char *p = (const unsigned char *) s; *p;) {
                char piece[16];
                const char *src = piece;
                size_t n = utf8_sequence_length(p), piece_len;

                if (n == 0) {
                        piece_len = hex_escape(piece, p, 1);
                        n = 1;
                } else if (n == 1 && *p == '\n' && newline) {
                        src = newline;
                        piece_len = nl_len;
                } else if (n == 1 && (*p < 0x20 || *p == 0x7f))
                        piece_len = hex_escape(piece, p, 1);
                else if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0)
                        piece_len = hex_escape(piece, p, 2); /* C1 control, U+0080..U+009F */
                else if (n == 1 && *p == '\\') {
                        piece[0] = piece[1] = '\\';
                        piece_len = 2;
                } else {
                        src = (const char *) p;
                        piece_len = n;
                }

                if (buf) {
                        if (len + piece_len >= size)
                                break;
                        memcpy(buf + len, src, piece_len);
                }
                len += piece_len;
                p += n;
        }
        if (buf)
                buf[len] = 0;
        return len;
}

char *escape_host_text(const char *s, const char *newline) {
        size_t len = escape_into(NULL, 0, s, newline);
        char *buf = malloc(len + 1);

        if (buf)
                escape_into(buf, len + 1, s, newline);
        return buf;
}

size_t escape_host_text_buf(char *buf, size_t size, const char *s, const char *newline) {
        return escape_into(buf, size, s, newline);
}

bool utf8_is_valid(const char *s) {
        for (const unsigned char *p = (const unsigned char *) s; *p;) {
                size_t n = utf8_sequence_length(p);

                if (n == 0)
                        return false;
                p += n;
        }
        return true;
}
