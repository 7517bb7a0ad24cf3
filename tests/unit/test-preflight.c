/* SPDX-License-Identifier: MIT */
#include "tests.h"

TEST(preflight_placeholder) {
        test_skip("not written yet");
}
