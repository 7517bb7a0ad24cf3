/* SPDX-License-Identifier: MIT */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "killpoint.h"
#include "testhooks.h"

#if TEST_HOOKS

/* At most this many different points counted per variable: a test targets one. */
#define MAX_COUNTED 8

typedef struct {
        char id[256];
        unsigned long passes;
} Counter;

/* This pass's number for point ID (1 for its first pass in this run). */
static unsigned long count_pass(Counter *counters, const char *id) {
        for (size_t i = 0; i < MAX_COUNTED; i++) {
                if (counters[i].id[0] == 0)
                        snprintf(counters[i].id, sizeof(counters[i].id), "%s", id);
                if (strcmp(counters[i].id, id) == 0)
                        return ++counters[i].passes;
        }
        return 0;
}

/*
 * Does SPEC target this pass of the point? SPEC is "NAME" or "NAME@DETAIL"
 * (every pass; the first one kills), or either with ":N" (the N-th pass
 * only). A bare NAME matches the point whatever its detail.
 */
static int targets(const char *spec, const char *name, const char *detail, Counter *counters) {
        char id[256];
        const char *colon;
        size_t len;
        unsigned long n = 0;

        if (!spec)
                return 0;
        colon = strrchr(spec, ':');
        len = colon ? (size_t) (colon - spec) : strlen(spec);
        if (colon) {
                char *end;
                if (colon[1] < '1' || colon[1] > '9')
                        return 0;
                n = strtoul(colon + 1, &end, 10);
                if (*end != 0)
                        return 0;
        }
        if (strlen(name) == len && strncmp(spec, name, len) == 0)
                snprintf(id, sizeof(id), "%s", name);
        else if (detail && snprintf(id, sizeof(id), "%s@%s", name, detail) > 0 && strlen(id) == len &&
                 strncmp(spec, id, len) == 0)
                ;
        else
                return 0;
        return count_pass(counters, id) == n || n == 0;
}

void killpoint_at(const char *name, const char *detail) {
        static Counter stop_counters[MAX_COUNTED], kill_counters[MAX_COUNTED];
        const char *want = getenv("RCI_KILL_AT"), *stop = getenv("RCI_STOP_AT");

        if (targets(stop, name, detail, stop_counters)) {
                fflush(NULL);
                raise(SIGSTOP);
        }
        if (!want)
                return;
        if (strcmp(want, "list") == 0) {
                if (detail)
                        fprintf(stderr, "killpoint: %s@%s\n", name, detail);
                else
                        fprintf(stderr, "killpoint: %s\n", name);
                return;
        }
        if (targets(want, name, detail, kill_counters)) {
                fflush(NULL);
                raise(SIGKILL);
        }
}

#else
/* A build without test hooks: every point is a no-op, and RCI_KILL_AT/RCI_STOP_AT are never read. */
void killpoint_at(const char *name, const char *detail) {
}
#endif

void killpoint(const char *name) {
        killpoint_at(name, NULL);
}
