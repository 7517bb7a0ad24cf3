/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "explain/json.h"
#include "util/macro.h"

typedef struct Parser {
        const unsigned char *p, *start, *end;
        unsigned depth;
        size_t n_values;
        char *error;
} Parser;

static int fail(Parser *ps, const char *fmt, ...) _printf_(2, 3);
static int fail(Parser *ps, const char *fmt, ...) {
        _cleanup_free_ char *what = NULL;
        va_list ap;

        if (ps->error)
                return -EINVAL;
        va_start(ap, fmt);
        if (vasprintf(&what, fmt, ap) < 0)
                what = NULL;
        va_end(ap);
        if (!what || asprintf(&ps->error, "%s at byte %zu", what, (size_t) (ps->p - ps->start)) < 0) {
                ps->error = NULL;
                return -ENOMEM;
        }
        return -EINVAL;
}

const char *json_type_name(JsonType t) {
        static const char *const names[] = {
                [JSON_NULL] = "null", [JSON_FALSE] = "false", [JSON_TRUE] = "true", [JSON_NUMBER] = "a number",
                [JSON_STRING] = "a string", [JSON_ARRAY] = "an array", [JSON_OBJECT] = "an object",
        };
        return (unsigned) t < ELEMENTSOF(names) ? names[t] : "?";
}

void json_free(JsonValue *v) {
        if (!v)
                return;
        for (size_t i = 0; i < v->n; i++) {
                if (v->keys)
                        free(v->keys[i]);
                if (v->items)
                        json_free(v->items[i]);
        }
        free(v->keys);
        free(v->items);
        free(v->text);
        free(v);
}

static void skip_ws(Parser *ps) {
        while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
                ps->p++;
}

/* Append code point cp as UTF-8 to buf (room checked by the caller: at most 4 bytes). */
static size_t put_utf8(char *buf, uint32_t cp) {
        if (cp < 0x80) {
                buf[0] = (char) cp;
                return 1;
        }
        if (cp < 0x800) {
                buf[0] = (char) (0xc0 | (cp >> 6));
                buf[1] = (char) (0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                buf[0] = (char) (0xe0 | (cp >> 12));
                buf[1] = (char) (0x80 | ((cp >> 6) & 0x3f));
                buf[2] = (char) (0x80 | (cp & 0x3f));
                return 3;
        }
        buf[0] = (char) (0xf0 | (cp >> 18));
        buf[1] = (char) (0x80 | ((cp >> 12) & 0x3f));
        buf[2] = (char) (0x80 | ((cp >> 6) & 0x3f));
        buf[3] = (char) (0x80 | (cp & 0x3f));
        return 4;
}

/* One UTF-8 sequence starting at ps->p (its first byte >= 0x80): its length, or 0 when it is not valid UTF-8. */
static size_t utf8_sequence(const Parser *ps) {
        const unsigned char *s = ps->p;
        size_t left = (size_t) (ps->end - s), n;
        uint32_t cp, min;

        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                n = 2, cp = s[0] & 0x1f, min = 0x80;
        else if (s[0] >= 0xe0 && s[0] <= 0xef)
                n = 3, cp = s[0] & 0x0f, min = 0x800;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
                n = 4, cp = s[0] & 0x07, min = 0x10000;
        else
                return 0;
        if (left < n)
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return n;
}

static int hex4(Parser *ps, uint32_t *ret) {
        uint32_t v = 0;

        if (ps->end - ps->p < 4)
                return fail(ps, "a \\u escape needs four hex digits");
        for (unsigned i = 0; i < 4; i++) {
                unsigned char c = ps->p[i];
                v <<= 4;
                if (c >= '0' && c <= '9')
                        v |= (uint32_t) (c - '0');
                else if (c >= 'a' && c <= 'f')
                        v |= (uint32_t) (c - 'a' + 10);
                else if (c >= 'A' && c <= 'F')
                        v |= (uint32_t) (c - 'A' + 10);
                else
                        return fail(ps, "a \\u escape needs four hex digits");
        }
        ps->p += 4;
        *ret = v;
        return 0;
}

/* A string; ps->p is at its opening quote. The decoded text is never longer than the encoded one. */
static int parse_string(Parser *ps, char **ret) {
        const unsigned char *q;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        int r;

        ps->p++;
        /* Room: the rest of the input bounds the decoded length (an escape never grows). */
        for (q = ps->p; q < ps->end && *q != '"'; q++)
                if (*q == '\\' && q + 1 < ps->end)
                        q++;
        buf = malloc((size_t) (q - ps->p) + 1);
        if (!buf)
                return -ENOMEM;

        for (;;) {
                unsigned char c;

                if (ps->p >= ps->end)
                        return fail(ps, "a string is not closed");
                c = *ps->p;
                if (c == '"') {
                        ps->p++;
                        break;
                }
                if (c < 0x20)
                        return fail(ps, "a control character (0x%02x) in a string", c);
                if (c >= 0x80) {
                        size_t n = utf8_sequence(ps);
                        if (n == 0)
                                return fail(ps, "invalid UTF-8 in a string");
                        memcpy(buf + len, ps->p, n);
                        len += n;
                        ps->p += n;
                        continue;
                }
                if (c != '\\') {
                        buf[len++] = (char) c;
                        ps->p++;
                        continue;
                }
                ps->p++;
                if (ps->p >= ps->end)
                        return fail(ps, "a string is not closed");
                c = *ps->p++;
                switch (c) {
                case '"': case '\\': case '/':
                        buf[len++] = (char) c;
                        break;
                case 'b': buf[len++] = '\b'; break;
                case 'f': buf[len++] = '\f'; break;
                case 'n': buf[len++] = '\n'; break;
                case 'r': buf[len++] = '\r'; break;
                case 't': buf[len++] = '\t'; break;
                case 'u': {
                        uint32_t cp, lo;

                        r = hex4(ps, &cp);
                        if (r < 0)
                                return r;
                        if (cp >= 0xdc00 && cp <= 0xdfff)
                                return fail(ps, "a lone low surrogate (\\u%04x)", (unsigned) cp);
                        if (cp >= 0xd800 && cp <= 0xdbff) {
                                if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
                                        return fail(ps, "a high surrogate (\\u%04x) without its low half", (unsigned) cp);
                                ps->p += 2;
                                r = hex4(ps, &lo);
                                if (r < 0)
                                        return r;
                                if (lo < 0xdc00 || lo > 0xdfff)
                                        return fail(ps, "a high surrogate followed by \\u%04x", (unsigned) lo);
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        }
                        if (cp == 0)
                                return fail(ps, "\\u0000 in a string");
                        /* Six or twelve bytes of escape become at most four. */
                        len += put_utf8(buf + len, cp);
                        break;
                }
                default:
                        ps->p--;
                        return fail(ps, "an unknown escape \\%c", c >= 0x20 && c < 0x7f ? c : '?');
                }
        }
        buf[len] = 0;
        *ret = TAKE_PTR(buf);
        return 0;
}

static int parse_number(Parser *ps, char **ret) {
        const unsigned char *s = ps->p;

        if (ps->p < ps->end && *ps->p == '-')
                ps->p++;
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
                return fail(ps, "a number needs a digit");
        if (*ps->p == '0')
                ps->p++;
        else
                while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
                        ps->p++;
        if (ps->p < ps->end && *ps->p == '.') {
                ps->p++;
                if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
                        return fail(ps, "a number needs a digit after its '.'");
                while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
                        ps->p++;
        }
        if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
                ps->p++;
                if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
                        ps->p++;
                if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
                        return fail(ps, "a number needs a digit in its exponent");
                while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
                        ps->p++;
        }
        *ret = strndup((const char *) s, (size_t) (ps->p - s));
        return *ret ? 0 : -ENOMEM;
}

static int parse_value(Parser *ps, JsonValue **ret);

/* Room doubles as elements come (amortised linear); cap is the room items and keys have. */
static int append(JsonValue *v, size_t *cap, char *key, JsonValue *item) {
        if (v->n == *cap) {
                size_t room = *cap ? *cap * 2 : 4;
                JsonValue **items = reallocarray(v->items, room, sizeof(*items));

                if (!items)
                        return -ENOMEM;
                v->items = items;
                if (v->type == JSON_OBJECT) {
                        char **keys = reallocarray(v->keys, room, sizeof(*keys));
                        if (!keys)
                                return -ENOMEM;
                        v->keys = keys;
                }
                *cap = room;
        }
        if (v->type == JSON_OBJECT)
                v->keys[v->n] = key;
        v->items[v->n++] = item;
        return 0;
}

static int parse_container(Parser *ps, JsonValue *v) {
        bool object = v->type == JSON_OBJECT;
        char close = object ? '}' : ']';
        size_t cap = 0;
        int r;

        if (++ps->depth > JSON_MAX_DEPTH)
                return fail(ps, "nested deeper than %u levels", JSON_MAX_DEPTH);
        ps->p++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == close) {
                ps->p++;
                ps->depth--;
                return 0;
        }
        /* The duplicate check looks at every earlier member: objects stay small. */
        for (;;) {
                _cleanup_free_ char *key = NULL;
                JsonValue *item = NULL;

                skip_ws(ps);
                if (object) {
                        if (ps->p >= ps->end || *ps->p != '"')
                                return fail(ps, "an object member needs a string name");
                        r = parse_string(ps, &key);
                        if (r < 0)
                                return r;
                        if (v->n >= JSON_MAX_MEMBERS)
                                return fail(ps, "an object with more than %u members", JSON_MAX_MEMBERS);
                        if (json_object_get(v, key))
                                return fail(ps, "a member name appears twice in one object");
                        skip_ws(ps);
                        if (ps->p >= ps->end || *ps->p != ':')
                                return fail(ps, "a ':' must follow an object member's name");
                        ps->p++;
                }
                r = parse_value(ps, &item);
                if (r < 0)
                        return r;
                r = append(v, &cap, key, item);
                if (r < 0) {
                        json_free(item);
                        return r;
                }
                key = NULL;
                skip_ws(ps);
                if (ps->p < ps->end && *ps->p == ',') {
                        ps->p++;
                        skip_ws(ps);
                        if (ps->p < ps->end && *ps->p == close)
                                return fail(ps, "a ',' before '%c'", close);
                        continue;
                }
                if (ps->p < ps->end && *ps->p == close) {
                        ps->p++;
                        ps->depth--;
                        return 0;
                }
                return fail(ps, "expected ',' or '%c'", close);
        }
}

static int literal(Parser *ps, const char *word) {
        size_t n = strlen(word);

        if ((size_t) (ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
                return fail(ps, "unexpected character '%c'", *ps->p >= 0x20 && *ps->p < 0x7f ? *ps->p : '?');
        ps->p += n;
        return 0;
}

static int parse_value(Parser *ps, JsonValue **ret) {
        JsonValue *v;
        int r;

        skip_ws(ps);
        if (ps->p >= ps->end)
                return fail(ps, "a value is missing");
        if (++ps->n_values > JSON_MAX_VALUES)
                return fail(ps, "more than %u values", JSON_MAX_VALUES);
        v = calloc(1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        switch (*ps->p) {
        case '{':
                v->type = JSON_OBJECT;
                r = parse_container(ps, v);
                break;
        case '[':
                v->type = JSON_ARRAY;
                r = parse_container(ps, v);
                break;
        case '"':
                v->type = JSON_STRING;
                r = parse_string(ps, &v->text);
                break;
        case 't':
                v->type = JSON_TRUE;
                r = literal(ps, "true");
                break;
        case 'f':
                v->type = JSON_FALSE;
                r = literal(ps, "false");
                break;
        case 'n':
                v->type = JSON_NULL;
                r = literal(ps, "null");
                break;
        default:
                if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) {
                        v->type = JSON_NUMBER;
                        r = parse_number(ps, &v->text);
                } else
                        r = fail(ps, "unexpected character '%c'", *ps->p >= 0x20 && *ps->p < 0x7f ? *ps->p : '?');
        }
        if (r < 0) {
                json_free(v);
                return r;
        }
        *ret = v;
        return 0;
}

int json_parse(const char *text, size_t size, JsonValue **ret, char **ret_error) {
        Parser ps = { .p = (const unsigned char *) text, .start = (const unsigned char *) text,
                      .end = (const unsigned char *) text + size };
        JsonValue *v = NULL;
        int r;

        *ret = NULL;
        *ret_error = NULL;
        if (size > JSON_MAX_SIZE) {
                if (asprintf(ret_error, "%zu bytes, more than the %u this reader takes", size, JSON_MAX_SIZE) < 0)
                        *ret_error = NULL;
                return -E2BIG;
        }
        if (memchr(text, 0, size)) {
                ps.p = memchr(text, 0, size);
                r = fail(&ps, "a NUL byte");
                *ret_error = ps.error;
                return r;
        }
        r = parse_value(&ps, &v);
        if (r >= 0) {
                skip_ws(&ps);
                if (ps.p != ps.end) {
                        json_free(v);
                        r = fail(&ps, "something after the value");
                }
        }
        if (r < 0) {
                *ret_error = ps.error;
                return r;
        }
        *ret = v;
        return 0;
}

const JsonValue *json_object_get(const JsonValue *object, const char *key) {
        if (!object || object->type != JSON_OBJECT)
                return NULL;
        for (size_t i = 0; i < object->n; i++)
                if (streq(object->keys[i], key))
                        return object->items[i];
        return NULL;
}
