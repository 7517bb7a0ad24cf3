/* SPDX-License-Identifier: MIT */
#pragma once

/* The configuration parser as test-config and test-config-tenant drive it. */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"
#include "config.h"
#include "util/error.h"
#include "util/macro.h"

/*
 * Parse text as "test.conf" into a fresh Config; return the parser's result
 * and what it logged (malloc'd, in *ret_log).
 */
static inline int parse(Config *c, const char *text, size_t size, char **ret_log) {
        int r;

        test_capture_stderr_begin();
        r = config_parse_text(c, "test.conf", text, size);
        *ret_log = test_capture_stderr_end();
        return r;
}

/* config_load() of root (or explicit_path alone), what it logged in *ret_log. */
static inline int load(Config *c, const char *root, const char *explicit_path, char **ret_log) {
        int r;

        test_capture_stderr_begin();
        r = config_load(c, root, explicit_path);
        *ret_log = test_capture_stderr_end();
        return r;
}

/*
 * Parse text into a fresh Config, freed again: whether it returned want_r
 * and logged want (NULL: nothing at all). Its result in *ret_r, the log in
 * *ret_log.
 */
static inline bool parse_is(const char *text, int want_r, const char *want, int *ret_r, char **ret_log) {
        Config c;

        *ret_log = NULL;
        *ret_r = config_init(&c);
        if (*ret_r < 0)
                return false;
        *ret_r = parse(&c, text, strlen(text), ret_log);
        config_done(&c);
        return *ret_r == want_r && (want ? strstr(*ret_log, want) != NULL : **ret_log == 0);
}

#define ASSERT_PARSE_IS(text, want_r, want)                                       \
        do {                                                                      \
                char *_plog;                                                      \
                int _pr;                                                          \
                if (!parse_is((text), (want_r), (want), &_pr, &_plog)) {          \
                        test_fail(__FILE__, __LINE__, "%s: want %d and \"%s\", got %d and \"%s\"", #text, \
                                  (want_r), (want) ? (want) : "nothing logged", _pr, _plog ? _plog : ""); \
                        free(_plog);                                              \
                        return;                                                   \
                }                                                                 \
                free(_plog);                                                      \
        } while (0)

/* text must be refused with exit 2 and a message containing want (e.g. "test.conf:3: ..."). */
#define ASSERT_REFUSED(text, want) ASSERT_PARSE_IS(text, -ERCI_USAGE, want)
/* text must be accepted silently. */
#define ASSERT_ACCEPTED(text) ASSERT_PARSE_IS(text, 0, (const char *) NULL)

/* "[section]\nkey=value\n" must be refused at its line 2 with why; shown: value as the log escapes it. */
#define ASSERT_KEY_REFUSED(section, key, value, shown, why)                       \
        do {                                                                      \
                _cleanup_free_ char *_ktext = NULL, *_kwant = NULL;               \
                ASSERT_TRUE(asprintf(&_ktext, "[%s]\n%s=%s\n", (section), (key), (value)) > 0); \
                ASSERT_TRUE(asprintf(&_kwant, "test.conf:2: %s=%s: %s", (key), (shown), (why)) > 0); \
                ASSERT_REFUSED(_ktext, _kwant);                                   \
        } while (0)

/* config_load() of the tree root must be refused with exit 2, logging the message formatted from ... */
#define ASSERT_LOAD_REFUSED(root, ...)                                            \
        do {                                                                      \
                Config _lc;                                                       \
                char *_llog = NULL, *_lwant = NULL;                               \
                int _lr;                                                          \
                ASSERT_OK(config_init(&_lc));                                     \
                _lr = load(&_lc, (root), NULL, &_llog);                           \
                config_done(&_lc);                                                \
                if (asprintf(&_lwant, __VA_ARGS__) < 0 || _lr != -ERCI_USAGE || !strstr(_llog, _lwant)) { \
                        test_fail(__FILE__, __LINE__, "want -ERCI_USAGE and \"%s\", got %d and \"%s\"", \
                                  _lwant, _lr, _llog);                            \
                        free(_llog);                                              \
                        return;                                                   \
                }                                                                 \
                free(_llog);                                                      \
                free(_lwant);                                                     \
        } while (0)
