/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A tiny TAP test runner. TEST(name) { ... } registers a test; the program
 * runs all of them (or those whose name contains argv[1]) and prints TAP.
 * A test fails through the ASSERT_* macros; it skips by calling
 * test_skip("reason") and returning: "ok N - name # SKIP reason", which
 * meson counts as a skipped subtest and scripts/test lists with its reason.
 * Exit: 1 when a test failed, else 0 (TAP; meson reports the binary as
 * skipped when every test in it skipped).
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct TestCase {
        const char *name;
        void (*func)(void);
} TestCase;

#define TEST(n)                                                                          \
        static void test_##n(void);                                                      \
        static const TestCase test_case_##n                                              \
                __attribute__((used, section("rci_tests"), aligned(sizeof(void *)))) = { \
                        .name = #n, .func = test_##n,                                    \
                };                                                                       \
        static void test_##n(void)

extern int test_failed_flag;
extern int test_skipped_flag;

void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void test_skip(const char *reason);
/* A fresh empty directory for this test, removed afterwards. */
const char *test_tmpdir(void);
/* Write text to dir/relpath, creating parent directories. */
void test_write(const char *dir, const char *relpath, const char *text);
/* Read a whole file into a malloc'd string (NULL if missing). */
char *test_read(const char *dir, const char *relpath);
/* The same, but the string belongs to the runner and is freed after the test (for use inside ASSERT_*). */
const char *test_read_kept(const char *dir, const char *relpath);
/* dir/relpath in a static buffer (valid until the next call). */
const char *test_path(const char *dir, const char *relpath);

/*
 * Capture what the code under test writes to stderr (fd 2), so a test can
 * check the exact message. _end() restores stderr, echoes the capture as TAP
 * comments when RCI_TEST_VERBOSE is set, and returns it (malloc'd, never NULL).
 */
void test_capture_stderr_begin(void);
char *test_capture_stderr_end(void);

/* The log level every test starts with (debug when RCI_TEST_VERBOSE is set), to return to after changing it. */
int test_log_level(void);

#define ASSERT_TRUE(expr)                                                        \
        do {                                                                     \
                if (!(expr)) {                                                   \
                        test_fail(__FILE__, __LINE__, "assertion failed: %s", #expr); \
                        return;                                                  \
                }                                                                \
        } while (0)

#define ASSERT_FALSE(expr) ASSERT_TRUE(!(expr))

#define ASSERT_EQ(a, b)                                                          \
        do {                                                                     \
                intmax_t _a = (intmax_t) (a), _b = (intmax_t) (b);               \
                if (_a != _b) {                                                  \
                        test_fail(__FILE__, __LINE__, "%s == %s: %jd != %jd", #a, #b, _a, _b); \
                        return;                                                  \
                }                                                                \
        } while (0)

#define ASSERT_STREQ(a, b)                                                       \
        do {                                                                     \
                const char *_a = (a), *_b = (b);                                 \
                if (!_a || !_b || strcmp(_a, _b) != 0) {                         \
                        test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b, \
                                  _a ? _a : "(null)", _b ? _b : "(null)");       \
                        return;                                                  \
                }                                                                \
        } while (0)

/* haystack contains needle (both strings; NULL never matches). */
#define ASSERT_CONTAINS(haystack, needle)                                        \
        do {                                                                     \
                const char *_h = (haystack), *_n = (needle);                     \
                if (!_h || !_n || !strstr(_h, _n)) {                             \
                        test_fail(__FILE__, __LINE__, "%s contains \"%s\": got \"%s\"", #haystack, \
                                  _n ? _n : "(null)", _h ? _h : "(null)");       \
                        return;                                                  \
                }                                                                \
        } while (0)

#define ASSERT_NOT_CONTAINS(haystack, needle)                                    \
        do {                                                                     \
                const char *_h = (haystack), *_n = (needle);                     \
                if (!_h || !_n || strstr(_h, _n)) {                              \
                        test_fail(__FILE__, __LINE__, "%s lacks \"%s\": got \"%s\"", #haystack, \
                                  _n ? _n : "(null)", _h ? _h : "(null)");       \
                        return;                                                  \
                }                                                                \
        } while (0)

#define ASSERT_OK(expr)                                                          \
        do {                                                                     \
                long _r = (long) (expr);                                         \
                if (_r < 0) {                                                    \
                        test_fail(__FILE__, __LINE__, "%s failed: %ld", #expr, _r); \
                        return;                                                  \
                }                                                                \
        } while (0)
