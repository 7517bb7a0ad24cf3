/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json-check.h"
#include "tests.h"
#include "explain/json.h"
#include "util/macro.h"

/*
 * The strict JSON reader that reads BUILDKITE_PLUGINS, which any pipeline
 * writes: the agent's shape, then hostile text, each refused with what and
 * where, judged against the test suite's own independent checker
 * (json-check.c) so the two cannot share a mistake unnoticed.
 */

static int parse(const char *text, JsonValue **v, char **err) {
        return json_parse(text, strlen(text), v, err);
}

TEST(reads_the_agents_plugin_list) {
        const char *text = "[{\"github.com/buildkite-plugins/docker-buildkite-plugin#v5.12.0\":"
                           "{\"image\":\"node:20\",\"propagate-uid-gid\":true,\"volumes\":[\"./a:/a\",\"/b:/b\"],"
                           "\"shm-size\":1.5e3,\"n\":-0,\"x\":null,\"e\":\"\\u00e9\\ud83d\\ude00\\n\\/\"}},"
                           " \"docker-login#v2\" ]";
        JsonValue *v = NULL;
        char *err = NULL;
        const JsonValue *cfg;

        ASSERT_OK(parse(text, &v, &err));
        ASSERT_JSON_VALID(text);
        ASSERT_EQ(v->type, JSON_ARRAY);
        ASSERT_EQ(v->n, 2U);
        ASSERT_EQ(v->items[0]->type, JSON_OBJECT);
        ASSERT_STREQ(v->items[0]->keys[0], "github.com/buildkite-plugins/docker-buildkite-plugin#v5.12.0");
        cfg = v->items[0]->items[0];
        ASSERT_STREQ(json_object_get(cfg, "image")->text, "node:20");
        ASSERT_EQ(json_object_get(cfg, "propagate-uid-gid")->type, JSON_TRUE);
        ASSERT_EQ(json_object_get(cfg, "volumes")->n, 2U);
        ASSERT_STREQ(json_object_get(cfg, "volumes")->items[1]->text, "/b:/b");
        ASSERT_STREQ(json_object_get(cfg, "shm-size")->text, "1.5e3");
        ASSERT_STREQ(json_object_get(cfg, "n")->text, "-0");
        ASSERT_EQ(json_object_get(cfg, "x")->type, JSON_NULL);
        ASSERT_STREQ(json_object_get(cfg, "e")->text, "\xc3\xa9\xf0\x9f\x98\x80\n/");
        ASSERT_TRUE(json_object_get(cfg, "missing") == NULL);
        ASSERT_STREQ(v->items[1]->text, "docker-login#v2");
        json_free(v);
}

TEST(many_members_and_elements_grow_correctly) {
        char buf[64 * 1024];
        size_t n = 0;
        JsonValue *v = NULL;
        char *err = NULL;

        n += (size_t) snprintf(buf + n, sizeof(buf) - n, "{");
        for (unsigned i = 0; i < 900; i++)
                n += (size_t) snprintf(buf + n, sizeof(buf) - n, "%s\"k%u\":[%u,%u]", i ? "," : "", i, i, i + 1);
        n += (size_t) snprintf(buf + n, sizeof(buf) - n, "}");
        ASSERT_OK(parse(buf, &v, &err));
        ASSERT_EQ(v->n, 900U);
        ASSERT_STREQ(v->keys[899], "k899");
        ASSERT_STREQ(json_object_get(v, "k517")->items[1]->text, "518");
        json_free(v);
}

/* Each is refused with an error naming the problem; the independent checker agrees it is not JSON. */
TEST(hostile_and_malformed_text_is_refused_with_where) {
        static const struct { const char *text, *want; bool checker_refuses; } cases[] = {
                { "", "a value is missing", true },
                { "   ", "a value is missing", true },
                { "[1,]", "a ',' before ']'", true },
                { "{\"a\":1,}", "a ',' before '}'", true },
                { "[1 2]", "expected ','", true },
                { "{\"a\" 1}", "':' must follow", true },
                { "{a:1}", "string name", true },
                { "[1] x", "something after the value", true },
                { "[\"a\"] [\"b\"]", "something after the value", true },
                { "\xef\xbb\xbf[]", "unexpected character", true },
                { "[01]", "expected ','", true },
                { "[-]", "needs a digit", true },
                { "[1.]", "after its '.'", true },
                { "[1e]", "exponent", true },
                { "[.5]", "unexpected character", true },
                { "[+1]", "unexpected character", true },
                { "[NaN]", "unexpected character", true },
                { "[tru]", "unexpected character", true },
                { "[\"abc]", "not closed", true },
                { "[\"a\\\"]", "not closed", true },
                { "[\"\\x41\"]", "unknown escape \\x", true },
                { "[\"\\u12\"]", "four hex digits", true },
                { "[\"\\ud800\"]", "without its low half", false },
                { "[\"\\udc00\"]", "lone low surrogate", false },
                { "[\"\\ud800\\u0041\"]", "followed by", false },
                { "[\"\\u0000\"]", "\\u0000", false },
                { "[\"a\tb\"]", "control character (0x09)", true },
                { "[\"\x1b[31m\"]", "control character (0x1b)", true },
                { "[\"\xc3\x28\"]", "invalid UTF-8", true },
                { "[\"\xc0\xaf\"]", "invalid UTF-8", true },             /* overlong '/' */
                { "[\"\xe0\x80\xaf\"]", "invalid UTF-8", true },         /* overlong, three bytes */
                { "[\"\xed\xa0\x80\"]", "invalid UTF-8", true },         /* an encoded surrogate */
                { "[\"\xf4\x90\x80\x80\"]", "invalid UTF-8", true },     /* past U+10FFFF */
                { "[\"\xff\"]", "invalid UTF-8", true },
                { "[\"\xe2\x82\"]", "invalid UTF-8", true },             /* cut short */
                { "{\"a\":1,\"a\":2}", "appears twice", false },
                { "[1]\x01", "something after the value", true },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                JsonValue *v = NULL;
                char *err = NULL;
                int r = parse(cases[i].text, &v, &err);

                if (r != -EINVAL || !err || !strstr(err, cases[i].want) || !strstr(err, "at byte ")) {
                        test_fail(__FILE__, __LINE__, "case %zu (%s): r=%d err=%s, want -EINVAL and \"%s\"", i,
                                  cases[i].text, r, err ? err : "(none)", cases[i].want);
                        json_free(v);
                        free(err);
                        return;
                }
                ASSERT_TRUE(v == NULL);
                if (cases[i].checker_refuses)
                        ASSERT_TRUE(json_check(cases[i].text) != NULL);
                free(err);
        }
}

TEST(a_nul_inside_is_refused_not_cut_short) {
        JsonValue *v = NULL;
        char *err = NULL;

        ASSERT_EQ(json_parse("[\"a\"]\0[1]", 9, &v, &err), -EINVAL);
        ASSERT_CONTAINS(err, "a NUL byte at byte 5");
        free(err);
}

TEST(depth_size_and_count_are_bounded_and_cheap) {
        size_t n = 200000;
        char *deep = malloc(n + 1), *err = NULL, *big;
        JsonValue *v = NULL;
        struct timespec t0, t1;

        ASSERT_TRUE(deep != NULL);
        /* 200000 '[': no stack exhaustion, refused at the limit. */
        memset(deep, '[', n);
        deep[n] = 0;
        ASSERT_EQ(parse(deep, &v, &err), -EINVAL);
        ASSERT_CONTAINS(err, "nested deeper than 64 levels");
        free(err);
        err = NULL;
        /* 64 levels are fine. */
        memset(deep, '[', 64);
        memset(deep + 64, ']', 64);
        deep[128] = 0;
        ASSERT_OK(parse(deep, &v, &err));
        json_free(v);
        v = NULL;
        free(deep);

        big = malloc(JSON_MAX_SIZE + 2);
        ASSERT_TRUE(big != NULL);
        memset(big, ' ', JSON_MAX_SIZE + 1);
        big[0] = '1';
        big[JSON_MAX_SIZE + 1] = 0;
        ASSERT_EQ(parse(big, &v, &err), -E2BIG);
        ASSERT_CONTAINS(err, "more than");
        free(err);
        err = NULL;

        /* Half a megabyte of "0," is more values than allowed: refused, quickly. */
        clock_gettime(CLOCK_MONOTONIC, &t0);
        big[0] = '[';
        for (size_t i = 1; i + 2 < 600000; i += 2)
                big[i] = '0', big[i + 1] = ',';
        memcpy(big + 599999, "0]", 3);
        ASSERT_EQ(parse(big, &v, &err), -EINVAL);
        ASSERT_CONTAINS(err, "more than 100000 values");
        free(err);
        err = NULL;

        /* An object of 1001 members: refused before the duplicate check grows quadratic. */
        {
                size_t k = 0;
                k += (size_t) sprintf(big + k, "{");
                for (unsigned i = 0; i <= JSON_MAX_MEMBERS; i++)
                        k += (size_t) sprintf(big + k, "%s\"%u\":0", i ? "," : "", i);
                sprintf(big + k, "}");
                ASSERT_EQ(parse(big, &v, &err), -EINVAL);
                ASSERT_CONTAINS(err, "more than 1000 members");
                free(err);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("# bounded refusals took %.1f ms\n",
               (double) (t1.tv_sec - t0.tv_sec) * 1e3 + (double) (t1.tv_nsec - t0.tv_nsec) / 1e6);
        ASSERT_TRUE(t1.tv_sec - t0.tv_sec < 5);
        free(big);
}

/* Every prefix of a valid document is refused (or, for the whole, read) without reading past its end. */
TEST(every_truncation_is_refused) {
        const char *text = "[{\"docker#v5\":{\"image\":\"a\\u00e9\\ud83d\\ude00\xc3\xa9\",\"n\":[1.5e-3,true,false,null]}}]";
        size_t n = strlen(text);

        for (size_t len = 0; len < n; len++) {
                char *copy = strndup(text, len), *err = NULL;
                JsonValue *v = NULL;

                ASSERT_TRUE(copy != NULL);
                /* The copy is exactly len bytes from the heap: a read past it is an ASan finding. */
                ASSERT_EQ(json_parse(copy, len, &v, &err), -EINVAL);
                free(err);
                free(copy);
        }
}
