/* SPDX-License-Identifier: MIT */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "killpoint.h"

/*
 * Does point NAME, passed for the pass-th time in this run, match SPEC
 * ("NAME" = every pass, "NAME:N" = the N-th pass only)?
 */
static int spec_matches(const char *spec, const char *name, unsigned long pass) {
        size_t len = strlen(name);
        char *end;
        unsigned long n;

        if (strncmp(spec, name, len) != 0)
                return 0;
        if (spec[len] == 0)
                return 1;
        if (spec[len] != ':' || spec[len + 1] < '1' || spec[len + 1] > '9')
                return 0;
        n = strtoul(spec + len + 1, &end, 10);
        return *end == 0 && n == pass;
}

/* How often NAME has been passed in this run, this pass included. Only the
 * names the environment targets are counted, so one slot per variable is enough. */
static unsigned long count_pass(const char *name, int slot) {
        static const char *names[2];
        static unsigned long passes[2];

        if (!names[slot] || strcmp(names[slot], name) != 0) {
                /* Point names are string literals: keep the pointer. */
                names[slot] = name;
                passes[slot] = 0;
        }
        return ++passes[slot];
}

static int targets(const char *spec, const char *name, int slot) {
        size_t len = strlen(name);

        if (!spec || strncmp(spec, name, len) != 0 || (spec[len] != 0 && spec[len] != ':'))
                return 0;
        return spec_matches(spec, name, count_pass(name, slot));
}

void killpoint(const char *name) {
        const char *want = getenv("RCI_KILL_AT"), *stop = getenv("RCI_STOP_AT");

        if (targets(stop, name, 0)) {
                fflush(NULL);
                raise(SIGSTOP);
        }
        if (!want)
                return;
        if (strcmp(want, "list") == 0) {
                fprintf(stderr, "killpoint: %s\n", name);
                return;
        }
        if (targets(want, name, 1)) {
                fflush(NULL);
                raise(SIGKILL);
        }
}
