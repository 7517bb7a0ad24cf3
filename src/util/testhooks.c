/* SPDX-License-Identifier: MIT */
#include <stdlib.h>

#include "testhooks.h"

bool test_hook_resolve_fallback(void) {
        return TEST_HOOK_FLAG("RCI_FORCE_RESOLVE_FALLBACK");
}
