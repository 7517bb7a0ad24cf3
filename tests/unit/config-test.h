/* SPDX-License-Identifier: MIT */
#pragma once

/* The configuration parser as test-config and test-config-tenant drive it. */

#include <stdlib.h>
#include <string.h>

#include "tests.h"
#include "config.h"
#include "util/error.h"

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

/* text must be refused with exit 2 and a message containing want (e.g. "test.conf:3: ..."). */
#define ASSERT_REFUSED(text, want)                                                \
        do {                                                                      \
                Config _pc;                                                        \
                char *_plog = NULL;                                                \
                int _pr;                                                           \
                ASSERT_OK(config_init(&_pc));                                      \
                _pr = parse(&_pc, (text), strlen(text), &_plog);                     \
                config_done(&_pc);                                                 \
                if (_pr != -ERCI_USAGE || !strstr(_plog, (want))) {                 \
                        test_fail(__FILE__, __LINE__, "%s: want -ERCI_USAGE and \"%s\", got %d and \"%s\"", \
                                  #text, (want), _pr, _plog);                       \
                        free(_plog);                                               \
                        return;                                                   \
                }                                                                 \
                free(_plog);                                                       \
        } while (0)

#define ASSERT_ACCEPTED(text)                                                     \
        do {                                                                      \
                Config _pc;                                                        \
                char *_plog = NULL;                                                \
                int _pr;                                                           \
                ASSERT_OK(config_init(&_pc));                                      \
                _pr = parse(&_pc, (text), strlen(text), &_plog);                     \
                config_done(&_pc);                                                 \
                if (_pr != 0 || *_plog) {                                           \
                        test_fail(__FILE__, __LINE__, "%s: want it accepted silently, got %d and \"%s\"", \
                                  #text, _pr, _plog);                               \
                        free(_plog);                                               \
                        return;                                                   \
                }                                                                 \
                free(_plog);                                                       \
        } while (0)
