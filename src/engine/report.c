/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/internal.h"
#include "engine/step.h"
#include "util/error.h"
#include "util/escape.h"
#include "util/log.h"
#include "util/macro.h"

/* How each status is shown: its name in JSON and the journal, its symbol in the human report. */
static const struct {
        const char *name, *symbol;
} item_status_shown[_ITEM_STATUS_MAX] = {
        [ITEM_OK] = { "ok", "=" },
        [ITEM_CREATE] = { "create", "+" },
        [ITEM_CHANGE] = { "change", "~" },
        [ITEM_REMOVE] = { "remove", "-" },
        [ITEM_PASS] = { "pass", "PASS" },
        [ITEM_FAIL] = { "fail", "FAIL" },
        [ITEM_WARN] = { "warn", "WARN" },
        [ITEM_SKIP] = { "skip", "SKIP" },
};

const char *item_status_to_string(ItemStatus s) {
        return s < _ITEM_STATUS_MAX ? item_status_shown[s].name : NULL;
}

const char *verb_to_string(Verb v) {
        switch (v) {
        case VERB_APPLY:
                return "apply";
        case VERB_PLAN:
                return "plan";
        case VERB_CHECK:
                return "check";
        }
        return NULL;
}

/* A place in the report for an item apply will report later (engine/run.c): never printed unless filled. */
size_t report_reserve(Context *ctx) {
        Item *n = reallocarray(ctx->items, ctx->n_items + 1, sizeof(Item));

        if (!n)
                abort(); /* a report we cannot record is a report we must not pretend to have */
        ctx->items = n;
        ctx->items[ctx->n_items] = (Item) {};
        return ctx->n_items++;
}

/* Drop the places reserved at or after first that were never filled. */
void report_drop_reserved(Context *ctx, size_t first) {
        size_t k = first;

        for (size_t i = first; i < ctx->n_items; i++)
                if (ctx->items[i].id)
                        ctx->items[k++] = ctx->items[i];
        ctx->n_items = k;
}

/* The id as reported: escaped, and in a tenant's run "<id>:<tenant>" (daemon.unit:pr). */
char *report_item_id(const Context *ctx, const char *id) {
        const char *tenant = ctx->current_account ? ctx->current_account->tenant : NULL;
        _cleanup_free_ char *full = NULL;

        if (!tenant)
                return escape_host_text(id, NULL);
        if (asprintf(&full, "%s:%s", id, tenant) < 0)
                return NULL;
        return escape_host_text(full, NULL);
}

void report_put(Context *ctx, size_t at, const char *id, ItemStatus status, const char *fix, bool changed,
                const char *fmt, va_list ap) {
        _cleanup_free_ char *raw = NULL;
        Item *it;

        /* At a reserved place, or inserted before the item at `at` (the end: appended). */
        if (at >= ctx->n_items || ctx->items[at].id) {
                size_t end = report_reserve(ctx);

                if (at > end)
                        at = end;
                memmove(&ctx->items[at + 1], &ctx->items[at], (end - at) * sizeof(Item));
        }
        it = &ctx->items[at];
        /*
         * Items carry host text (file names, link targets, lines of /etc
         * files), much of it the CI user's to choose: escaped here, once, so
         * the human report, the JSON and the journal all get one line of
         * valid UTF-8 (util/escape.h).
         */
        *it = (Item) {
                .id = report_item_id(ctx, id),
                .step = ctx->current_step,
                .tenant = ctx->current_account ? ctx->current_account->tenant : NULL,
                .status = status,
                .fix = fix ? escape_host_text(fix, NULL) : NULL,
                .changed = changed,
        };
        if (vasprintf(&raw, fmt, ap) < 0 || !it->id || (fix && !it->fix))
                abort();
        it->message = escape_host_text(raw, NULL);
        if (!it->message)
                abort();

        if (status == ITEM_FAIL) {
                ctx->any_failed = true;
                /*
                 * Every failure says what to do about it (a command, "rootless-ci
                 * apply", or the step by hand): monitoring shows the fix, not the
                 * code. One without is our bug, said so, never a reason to stop.
                 */
                if (!fix || !*fix)
                        log_error("Internal error: %s failed without a fix; please report this.", id);
        }
        if (changed)
                ctx->any_changed = true;

        /*
         * The journal gets the events the human report shows: for apply what
         * changed and what is wrong (an item in place is no event, and a
         * converged run at every boot should not write forty lines); for
         * plan and check every item, as monitoring wants them.
         */
        if (ctx->verb != VERB_APPLY || changed || status == ITEM_FAIL || status == ITEM_WARN)
                log_journal_event(status == ITEM_FAIL ? LOG_ERR : status == ITEM_WARN ? LOG_WARNING : LOG_INFO,
                                  ctx->current_step, it->id, item_status_to_string(status), it->message);
}

/*
 * s must be valid UTF-8: the items are (report_put() escaped them), and
 * anything else passes through escape_host_text() first. Only JSON's own
 * escaping is done here; the control characters cannot occur in escaped
 * text and are handled anyway.
 */
static void print_json_string(FILE *f, const char *s) {
        static const char *const short_escapes[128] = {
                ['"'] = "\\\"", ['\\'] = "\\\\", ['\n'] = "\\n", ['\t'] = "\\t",
        };

        if (!s) {
                fputs("null", f);
                return;
        }
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (*p < ELEMENTSOF(short_escapes) && short_escapes[*p])
                        fputs(short_escapes[*p], f);
                else if (*p < 0x20 || *p == 0x7f)
                        fprintf(f, "\\u%04x", *p);
                else
                        fputc(*p, f);
        fputc('"', f);
}

static void report_print_json(const Context *ctx, int exit_status, FILE *f) {
        _cleanup_free_ char *root = escape_host_text(ctx->root, NULL);

        if (!root)
                abort();

        fprintf(f, "{\"schema\":1,\"verb\":\"%s\",\"exit\":%d,\"changed\":%s,\"root\":",
                verb_to_string(ctx->verb), exit_status, ctx->any_changed ? "true" : "false");
        print_json_string(f, root);
        /* A run limited by a test hook is never mistaken for a whole one. */
        fprintf(f, ",\"partial\":%s", ctx->only_steps ? "true" : "false");
        if (ctx->only_steps) {
                fputs(",\"only_steps\":[", f);
                for (const char *p = ctx->only_steps; *p;) {
                        size_t l = strcspn(p, ",");
                        _cleanup_free_ char *name = strndup(p, l);

                        if (!name)
                                abort();
                        if (p != ctx->only_steps)
                                fputc(',', f);
                        print_json_string(f, name);
                        p += l + (p[l] == ',');
                }
                fputc(']', f);
        }
        fputs(",\"items\":[", f);
        for (size_t i = 0; i < ctx->n_items; i++) {
                const Item *it = &ctx->items[i];
                fputs(i ? ",\n{" : "\n{", f);
                fputs("\"id\":", f);
                print_json_string(f, it->id);
                fputs(",\"step\":", f);
                print_json_string(f, it->step);
                if (it->tenant) {
                        fputs(",\"tenant\":", f);
                        print_json_string(f, it->tenant);
                }
                fprintf(f, ",\"status\":\"%s\",\"message\":", item_status_to_string(it->status));
                print_json_string(f, it->message);
                fputs(",\"fix\":", f);
                print_json_string(f, it->fix);
                fprintf(f, ",\"changed\":%s}", it->changed ? "true" : "false");
        }
        fputs("]}\n", f);
}

static void report_print_human(const Context *ctx, int exit_status, FILE *f) {
        for (size_t i = 0; i < ctx->n_items; i++) {
                const Item *it = &ctx->items[i];

                /* apply shows what it did and what is wrong; plan and check show everything. */
                if (ctx->verb == VERB_APPLY && !it->changed && it->status != ITEM_FAIL && it->status != ITEM_WARN)
                        continue;
                fprintf(f, "%-4s %s: %s\n", item_status_shown[it->status].symbol, it->id, it->message);
                if (it->fix && (it->status == ITEM_FAIL || it->status == ITEM_WARN || ctx->verb != VERB_CHECK))
                        fprintf(f, "     fix: %s\n", it->fix);
        }

        if (ctx->verb == VERB_APPLY && exit_status == EXIT_OK && !ctx->any_changed)
                fputs(ctx->only_steps ? "Nothing changed in the steps that ran.\n"
                                      : "Nothing changed: the host is converged.\n", f);
        if (ctx->only_steps)
                fprintf(f, "PARTIAL run: only the steps %s ran (a test hook); this says nothing about the rest.\n",
                        ctx->only_steps);
}

void report_print(const Context *ctx, int exit_status, FILE *f) {
        if (ctx->json)
                report_print_json(ctx, exit_status, f);
        else
                report_print_human(ctx, exit_status, f);
        fflush(f);
}

/*
 * The step contract's reporting (engine/step.h): how each verb shows what a
 * step's look describes. engine/run.c applies what it describes.
 */

unsigned verb_bit(Verb v) {
        return v == VERB_PLAN ? IN_PLAN : v == VERB_CHECK ? IN_CHECK : IN_APPLY;
}

static void put(StepRun *run, size_t at, const char *id, ItemStatus status, const char *fix, bool changed,
                const char *fmt, ...) _printf_(7, 8);
static void put(StepRun *run, size_t at, const char *id, ItemStatus status, const char *fix, bool changed,
                const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        report_put(run->ctx, at, id, status, fix, changed, fmt, ap);
        va_end(ap);
}

/* An item the current part reported already: the same id, status and text. */
static bool seen_in_part(const StepRun *run, const char *id, ItemStatus status, const char *fmt, va_list ap)
        _printf_(4, 0);
static bool seen_in_part(const StepRun *run, const char *id, ItemStatus status, const char *fmt, va_list ap) {
        _cleanup_free_ char *raw = NULL, *message = NULL, *eid = NULL;

        if (vasprintf(&raw, fmt, ap) < 0 || !(message = escape_host_text(raw, NULL)) ||
            !(eid = report_item_id(run->ctx, id)))
                abort(); /* as report_put() */
        for (size_t i = run->part_first_item; i < run->ctx->n_items; i++) {
                const Item *it = &run->ctx->items[i];
                if (it->id && it->status == status && streq(it->id, eid) && streq(it->message, message))
                        return true;
        }
        return false;
}

/* Part.relook's look: is this finding one the part's first look reported already? */
static bool relook_seen(const StepRun *run, const char *id, ItemStatus status, const char *fmt, va_list ap)
        _printf_(4, 0);
static bool relook_seen(const StepRun *run, const char *id, ItemStatus status, const char *fmt, va_list ap) {
        va_list aq;
        bool seen;

        if (!run->relooking)
                return false;
        va_copy(aq, ap);
        seen = seen_in_part(run, id, status, fmt, aq);
        va_end(aq);
        return seen;
}

/* An in-place status as the verb shows it: PASS in check. */
static ItemStatus status_in_verb(const StepRun *run, ItemStatus status) {
        return status == ITEM_OK && run->ctx->verb == VERB_CHECK ? ITEM_PASS : status;
}

void item_ok(StepRun *run, const char *id, const char *fmt, ...) {
        va_list ap;

        if (run->relooking)
                return;  /* in place: the first look said so */
        va_start(ap, fmt);
        report_put(run->ctx, run->ctx->n_items, id, status_in_verb(run, ITEM_OK), NULL, false, fmt, ap);
        va_end(ap);
}

void item_finding(StepRun *run, const char *id, ItemStatus status, const char *fix, const char *fmt, ...) {
        va_list ap;

        status = status_in_verb(run, status);
        va_start(ap, fmt);
        if (!relook_seen(run, id, status, fmt, ap))
                report_put(run->ctx, run->ctx->n_items, id, status, fix, false, fmt, ap);
        va_end(ap);
}

void item_finding_ex(StepRun *run, const Finding *f) {
        Verb verb = run->ctx->verb;
        Verdict v = { f->status, f->message, f->fix };

        if (f->hidden_in & verb_bit(verb))
                return;
        if (verb == VERB_PLAN && f->in_plan)
                v = *f->in_plan;
        else if (verb == VERB_CHECK && f->in_check)
                v = *f->in_check;
        item_finding(run, f->id, v.status, v.fix, "%s", v.message);
}

/* After a stop's FAIL item: in the verbs of `when`, its stderr line (log, else Step.refusal) and its error. */
static int stop_log(StepRun *run, const char *id, StopWhen when, int error, const char *log) {
        if (!(when & verb_bit(run->ctx->verb)))
                return 0;
        if (log)
                return log_error_errno(error, "%s", log);
        /* The item says why; stderr just says what happened. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        return log_error_errno(error, run->step->refusal ?: "Refusing to go on (see %s); nothing was changed.", id);
#pragma GCC diagnostic pop
}

int item_stop(StepRun *run, const char *id, StopWhen when, int error, const char *fix, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        if (!relook_seen(run, id, ITEM_FAIL, fmt, ap))
                report_put(run->ctx, run->ctx->n_items, id, ITEM_FAIL, fix, false, fmt, ap);
        va_end(ap);
        return stop_log(run, id, when, error, NULL);
}

int item_stop_ex(StepRun *run, const Stop *s) {
        /* Reported as item_stop() reports (stopping in no verb), then stopped with its own line. */
        (void) item_stop(run, s->id, 0, 0, s->fix, "%s", s->message);
        return stop_log(run, s->id, s->when, s->error, s->log);
}

bool change_planned(const StepRun *run, const Change *c) {
        return run->ctx->verb == VERB_PLAN && c->state != ITEM_OK;
}

static char *strdup_or_null(const char *s) {
        char *c;

        if (!s)
                return NULL;
        c = strdup(s);
        if (!c)
                abort(); /* as report_put(): a description we cannot record must not be half applied */
        return c;
}

Change *item_change(StepRun *run, const Change *c) {
        Context *ctx = run->ctx;
        StoredChange *s, **n;

        s = calloc(1, sizeof(StoredChange));
        n = reallocarray(run->changes, run->n_changes + 1, sizeof(StoredChange *));
        if (!s || !n)
                abort();
        run->changes = n;
        run->changes[run->n_changes++] = s;
        s->c = *c;
        s->c.id = s->id = strdup_or_null(c->id);
        s->c.plan = s->plan = strdup_or_null(c->plan ?: "");
        s->c.problem = s->problem = strdup_or_null(c->problem);
        s->c.check_fix = s->check_fix = strdup_or_null(c->check_fix);
        if (c->in_check) {
                s->in_check = *c->in_check;
                s->c.in_check = &s->in_check;
        }

        if (c->hidden_in & verb_bit(ctx->verb))
                return &s->c;
        switch (ctx->verb) {
        case VERB_PLAN:
                put(run, ctx->n_items, s->id, c->state, NULL, false, "%s", s->plan);
                break;
        case VERB_CHECK:
                if (c->in_check)
                        put(run, ctx->n_items, s->id, c->in_check->status, c->in_check->fix, false, "%s",
                            c->in_check->message ?: s->plan);
                else if (c->state == ITEM_OK)
                        put(run, ctx->n_items, s->id, ITEM_PASS, NULL, false, "%s", s->plan);
                else
                        put(run, ctx->n_items, s->id, ITEM_FAIL, s->check_fix ?: "rootless-ci apply", false, "%s",
                            s->problem ?: s->plan);
                break;
        case VERB_APPLY:
                if (c->state == ITEM_OK) {
                        if (!run->relooking)  /* a relook's OK: the first look reported it, or it was pending */
                                put(run, ctx->n_items, s->id, ITEM_OK, NULL, false, "%s", s->plan);
                }
                else {
                        /* Apply reports what it did where the look found it: ok, result, ok, ... */
                        s->place = s->next = report_reserve(ctx);
                        s->reserved = true;
                }
                break;
        }
        return &s->c;
}

/* The index the next item of the Change being applied goes to (the end outside an apply()). */
static size_t change_place(StepRun *run) {
        StoredChange *a = run->applying;
        size_t at;

        if (!a || !a->reserved)
                return run->ctx->n_items;
        at = a->next++;
        /*
         * A second item of the same apply goes right after the first: the later places move on by one.
         * Reserved places are interchangeable: if the one right after is a later change's, this item
         * takes it (report_put fills a reserved place) and that change then takes or inserts the next,
         * so the order holds and no place is left over (test-step: adjacent and silent changes).
         */
        if (at > a->place)
                for (size_t i = 0; i < run->n_changes; i++)
                        if (run->changes[i] != a && run->changes[i]->reserved && run->changes[i]->place >= at) {
                                run->changes[i]->place++;
                                run->changes[i]->next++;
                        }
        return at;
}

void change_done(StepRun *run, const char *id, ItemStatus status, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        report_put(run->ctx, change_place(run), id, status, NULL, true, fmt, ap);
        va_end(ap);
}

void change_failed(StepRun *run, const char *id, const char *fix, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        report_put(run->ctx, change_place(run), id, ITEM_FAIL, fix, false, fmt, ap);
        va_end(ap);
}

void change_note(StepRun *run, const char *id, ItemStatus status, const char *fix, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        report_put(run->ctx, change_place(run), id, status_in_verb(run, status), fix, false, fmt, ap);
        va_end(ap);
}

int run_stop_quietly(StepRun *run, StopWhen when, int error, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;

        if (!(when & verb_bit(run->ctx->verb)))
                return 0;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        log_error("%s", msg ?: fmt);
        return error;
}
