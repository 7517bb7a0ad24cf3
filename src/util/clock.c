/* SPDX-License-Identifier: MIT */
#include <time.h>

#include "clock.h"

static unsigned long long started_usec, waited_usec;

unsigned long long now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (unsigned long long) ts.tv_sec * 1000000ULL + (unsigned long long) ts.tv_nsec / 1000ULL;
}

__attribute__((constructor)) static void clock_start(void) {
        started_usec = now_usec();
}

unsigned long long run_elapsed_usec(void) {
        return now_usec() - started_usec;
}

double ms_since_usec(unsigned long long since) {
        return (double) (now_usec() - since) / 1e3;
}

void waited_since(unsigned long long since) {
        waited_usec += now_usec() - since;
}

unsigned long long waited_total_usec(void) {
        return waited_usec;
}
