/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "steps/disk/format.h"

char *format_bytes(char *buf, size_t size, uint64_t bytes) {
        static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
        uint64_t div = 1;
        int u = -1;

        while (u + 1 < (int) (sizeof(units) / sizeof(units[0])) && bytes / div >= 1024) {
                div *= 1024;
                u++;
        }
        if (u < 0)
                snprintf(buf, size, "%llu B", (unsigned long long) bytes);
        else {
                /* Tenths, rounded half up, computed in integers so 100 GiB never shows as 99.9. */
                unsigned long long whole = bytes / div, tenths = ((bytes % div) * 10 + div / 2) / div;
                if (tenths == 10) {
                        whole++;
                        tenths = 0;
                }
                if (tenths == 0)
                        snprintf(buf, size, "%llu %s", whole, units[u]);
                else
                        snprintf(buf, size, "%llu.%llu %s", whole, tenths, units[u]);
        }
        return buf;
}
