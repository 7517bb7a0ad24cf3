/* SPDX-License-Identifier: MIT */
#include <stdlib.h>

#include "macro.h"
#include "testhooks.h"

bool test_hook_resolve_fallback(void) {
#if TEST_HOOKS
        const char *e = getenv("RCI_FORCE_RESOLVE_FALLBACK");
        return e && streq(e, "1");
#else
        return false;
#endif
}
