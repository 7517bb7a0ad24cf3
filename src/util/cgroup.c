/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "util/cgroup.h"
#include "util/macro.h"

void delegated_controllers_missing(const char *have, char buf[static CONTROLLERS_MISSING_MAX]) {
        static const char *const wanted[] = { "cpu", "cpuset", "io", "memory", "pids" };

        buf[0] = 0;
        for (size_t i = 0; i < ELEMENTSOF(wanted); i++) {
                if (have && word_in_list(have, wanted[i]))
                        continue;
                if (buf[0])
                        strcat(buf, " ");
                strcat(buf, wanted[i]);
        }
}
