/* SPDX-License-Identifier: MIT */
#include "tests.h"

TEST(config_placeholder) {
        test_skip("not written yet");
}
