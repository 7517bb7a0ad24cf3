/* SPDX-License-Identifier: MIT */
#include "tests.h"

TEST(fs_placeholder) {
        test_skip("not written yet");
}
