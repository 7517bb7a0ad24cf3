/* SPDX-License-Identifier: MIT */
#pragma once

#include "tests.h"

/*
 * A strict RFC 8259 check of one JSON text, written apart from the code
 * under test: valid UTF-8 throughout, no raw control character in a string,
 * only JSON's escapes, nothing after the value but white space. NULL when
 * text is valid JSON, else what is wrong and where (a static buffer).
 */
const char *json_check(const char *text);

#define ASSERT_JSON_VALID(text)                                                  \
        do {                                                                     \
                const char *_t = (text), *_e = _t ? json_check(_t) : "no text";  \
                if (_e) {                                                        \
                        test_fail(__FILE__, __LINE__, "%s is not valid JSON: %s: %s", #text, _e, \
                                  _t ? _t : "(null)");                           \
                        return;                                                  \
                }                                                                \
        } while (0)
