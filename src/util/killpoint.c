/* SPDX-License-Identifier: MIT */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "killpoint.h"

void killpoint(const char *name) {
        const char *want = getenv("RCI_KILL_AT"), *stop = getenv("RCI_STOP_AT");

        if (stop && strcmp(stop, name) == 0) {
                fflush(NULL);
                raise(SIGSTOP);
        }
        if (!want)
                return;
        if (strcmp(want, "list") == 0) {
                fprintf(stderr, "killpoint: %s\n", name);
                return;
        }
        if (strcmp(want, name) == 0) {
                fflush(NULL);
                raise(SIGKILL);
        }
}
