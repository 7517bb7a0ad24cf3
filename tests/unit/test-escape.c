/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "tests.h"
#include "util/escape.h"
#include "util/macro.h"

static char *E(const char *s) {
        static char *last;
        free(last);
        last = escape_host_text(s, NULL);
        return last;
}

TEST(escape_control_characters_become_hex) {
        ASSERT_STREQ(E("a\nPASS forged"), "a\\x0aPASS forged");
        ASSERT_STREQ(E("tab\there"), "tab\\x09here");
        ASSERT_STREQ(E("\r\x1b[2J\x7f\x01"), "\\x0d\\x1b[2J\\x7f\\x01");
        /* C1 controls are valid UTF-8 but terminals may obey them (U+009B is CSI). */
        ASSERT_STREQ(E("x\xc2\x9b" "31m\xc2\x80"), "x\\xc2\\x9b31m\\xc2\\x80");
}

TEST(escape_backslash_is_doubled_so_the_result_is_unambiguous) {
        ASSERT_STREQ(E("C:\\x0a"), "C:\\\\x0a");
        ASSERT_STREQ(E("\\"), "\\\\");
        /* A literal "\x0a" and a real newline escape differently. */
        ASSERT_TRUE(strcmp(E("\\x0a"), "\\x0a") != 0);
}

TEST(escape_keeps_valid_utf8) {
        static const char *const kept[] = {
                "plain ASCII, with !\"#$%&'()*+,-./:;<=>?@[]^_`{|}~",
                "größe",                  /* 2 bytes */
                "\xc2\xa0no-break",       /* U+00A0: first character after C1 */
                "✓ €",                    /* 3 bytes */
                "\xef\xbf\xbd",           /* U+FFFD */
                "𝄞 \xf4\x8f\xbf\xbf",     /* 4 bytes, U+10FFFF */
                "",
        };
        for (size_t i = 0; i < ELEMENTSOF(kept); i++)
                ASSERT_STREQ(E(kept[i]), kept[i]);
}

TEST(escape_bytes_outside_valid_utf8) {
        ASSERT_STREQ(E("\xff\xfe"), "\\xff\\xfe");
        ASSERT_STREQ(E("a\x80z"), "a\\x80z");               /* stray continuation byte */
        ASSERT_STREQ(E("\xc0\xaf"), "\\xc0\\xaf");          /* overlong '/' */
        ASSERT_STREQ(E("\xe0\x80\xaf"), "\\xe0\\x80\\xaf"); /* overlong, 3 bytes */
        ASSERT_STREQ(E("\xed\xa0\x80"), "\\xed\\xa0\\x80"); /* a UTF-16 surrogate */
        ASSERT_STREQ(E("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80"); /* above U+10FFFF */
        ASSERT_STREQ(E("\xf5\x80\x80\x80"), "\\xf5\\x80\\x80\\x80");
        /* Cut short: the lead byte is escaped, what follows judged on its own. */
        ASSERT_STREQ(E("\xe2\x9c"), "\\xe2\\x9c");
        ASSERT_STREQ(E("\xe2\x9cok"), "\\xe2\\x9cok");
        ASSERT_STREQ(E("\xc3" "A"), "\\xc3A");
}

TEST(escape_newline_replacement) {
        _cleanup_free_ char *s = escape_host_text("one\ntwo\x1b\n", "\n    ");
        ASSERT_STREQ(s, "one\n    two\\x1b\n    ");
}

TEST(escape_into_a_buffer_cuts_at_a_whole_character) {
        char buf[8];

        ASSERT_EQ(escape_host_text_buf(buf, sizeof(buf), "abcdefghij", NULL), 7);
        ASSERT_STREQ(buf, "abcdefg");
        /* "ab" + "\x0a" is 6; the next escape would not fit whole. */
        ASSERT_EQ(escape_host_text_buf(buf, sizeof(buf), "ab\n\n", NULL), 6);
        ASSERT_STREQ(buf, "ab\\x0a");
        /* Nor is a multi-byte character cut. */
        ASSERT_EQ(escape_host_text_buf(buf, sizeof(buf), "abcde€", NULL), 5);
        ASSERT_STREQ(buf, "abcde");
        ASSERT_EQ(escape_host_text_buf(buf, 1, "abc", NULL), 0);
        ASSERT_STREQ(buf, "");
}
