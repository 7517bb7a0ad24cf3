/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>

#include "engine/step.h"
#include "steps/files.h"
#include "util/log.h"
#include "util/macro.h"

/* The generic items of the step contract (engine/step.h): one look, one apply, for many steps. */

typedef struct FileChange {
        char *path, *text, *what, *shown;
        bool exists;
} FileChange;

static void file_change_free(void *p) {
        FileChange *f = p;

        if (!f)
                return;
        free(f->path);
        free(f->text);
        free(f->what);
        free(f->shown);
        free(f);
}

static int file_apply(StepRun *run, Change *c) {
        const FileChange *f = c->data;
        int r;

        r = file_make_dir(run_root_fd(run), f->path, f->shown);
        if (r < 0)
                return r;
        /* verified as it is written: a read-back in the same call */
        r = file_write_verified(run_root_fd(run), f->path, f->shown, f->text);
        if (r < 0)
                return r;
        change_done(run, c->id, c->state, "%s %s %s", f->exists ? "rewrote" : "wrote", f->what, f->shown);
        return 0;
}

int item_file(StepRun *run, const FileWant *w) {
        _cleanup_free_ char *shown = run_shown(run, w->path), *plan = NULL, *problem = NULL;
        FileChange *f;
        bool exists, same;
        int r;

        if (!shown)
                return -ENOMEM;
        r = file_look(run_root_fd(run), w->path, shown, w->text, &exists, &same);
        if (r < 0)
                return r;
        if (same) {
                item_ok(run, w->id, "%s %s is up to date", w->what, shown);
                return 0;
        }

        if (asprintf(&plan, "%s %s %s%s", exists ? "rewrite" : "write", w->what, shown,
                     exists ? " (content differs)" : "") < 0 ||
            asprintf(&problem, "%s %s %s", w->what, shown,
                     exists ? "differs from what rootless-ci installs (content or mode)" : "is missing") < 0)
                return -ENOMEM;
        f = calloc(1, sizeof(FileChange));
        if (!f || !(f->path = strdup(w->path)) || !(f->text = strdup(w->text)) || !(f->what = strdup(w->what))) {
                file_change_free(f);
                return -ENOMEM;
        }
        f->shown = TAKE_PTR(shown);
        f->exists = exists;
        item_change(run, &(Change) {
                .id = w->id,
                .state = exists ? ITEM_CHANGE : ITEM_CREATE,
                .plan = plan,
                .problem = problem,
                .marker = w->marker,
                .effects = w->effects,
                .apply = file_apply,
                .data = f,
                .data_free = file_change_free,
        });
        return 1;
}
