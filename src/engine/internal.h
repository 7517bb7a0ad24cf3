/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdarg.h>

#include "engine/engine.h"
#include "engine/step.h"

/* Between engine/report.c (the report) and engine/run.c (the loop): not for steps. */

/*
 * Put an item into the report at index at: into the place reserved there
 * (report_reserve), else inserted before the item at `at` (n_items appends).
 * Escapes host text, counts failures and changes, and logs the journal event.
 */
void report_put(Context *ctx, size_t at, const char *id, ItemStatus status, const char *fix, bool changed,
                const char *fmt, va_list ap) _printf_(7, 0);
size_t report_reserve(Context *ctx);
char *report_item_id(const Context *ctx, const char *id);
void report_drop_reserved(Context *ctx, size_t first);

typedef struct StoredChange {
        Change c;                 /* first: a Change * is a StoredChange * */
        char *id, *plan, *problem, *check_fix;
        Verdict in_check;
        size_t place;             /* apply: its place in the report (reserved at look) */
        size_t next;              /* apply: where its next item goes */
        bool reserved;
} StoredChange;

struct StepRun {
        Context *ctx;
        const Step *step;
        void *state;
        size_t first_item;        /* the step's first item */
        StoredChange **changes;
        size_t n_changes;
        StoredChange *applying;   /* the Change whose apply() runs now */
        bool relooking;           /* Part.relook's second look: report only what is new */
        size_t part_first_item;   /* the current part's first item (what a relook does not report again) */
        char **texts;             /* run_asprintf()'s, freed with the run */
        size_t n_texts;
};

void stored_change_free(StoredChange *c);

/* The verb as its IN_* bit (engine/step.h). */
unsigned verb_bit(Verb v);
