/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "engine/step.h"
#include "steps/files.h"
#include "util/error.h"
#include "util/log.h"
#include "util/manager.h"
#include "util/macro.h"

/*
 * The step contract's engine side (engine/step.h): the one place that knows
 * the verb. A part looks and describes; plan and check report the
 * description as it is, apply applies each pending Change in look order.
 */

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
};

static unsigned verb_bit(Verb v) {
        return v == VERB_PLAN ? IN_PLAN : v == VERB_CHECK ? IN_CHECK : IN_APPLY;
}

const Config *run_config(const StepRun *run) {
        return run->ctx->config;
}

int run_root_fd(const StepRun *run) {
        return run->ctx->root_fd;
}

const char *run_root(const StepRun *run) {
        return run->ctx->root;
}

bool run_live(const StepRun *run) {
        return run->ctx->live;
}

HostFacts *run_facts(StepRun *run) {
        return &run->ctx->facts;
}

void *run_state(StepRun *run) {
        return run->state;
}

int run_system_bus(StepRun *run, struct sd_bus **ret) {
        return context_system_bus(run->ctx, ret);
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

void item_ok(StepRun *run, const char *id, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        report_put(run->ctx, run->ctx->n_items, id, run->ctx->verb == VERB_CHECK ? ITEM_PASS : ITEM_OK, NULL,
                   false, fmt, ap);
        va_end(ap);
}

void item_finding(StepRun *run, const char *id, ItemStatus status, const char *fix, const char *fmt, ...) {
        va_list ap;

        if (status == ITEM_OK && run->ctx->verb == VERB_CHECK)
                status = ITEM_PASS;
        va_start(ap, fmt);
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

int item_stop(StepRun *run, const char *id, StopWhen when, int error, const char *fix, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        report_put(run->ctx, run->ctx->n_items, id, ITEM_FAIL, fix, false, fmt, ap);
        va_end(ap);
        if (!(when & verb_bit(run->ctx->verb)))
                return 0;
        /* The item says why; stderr just says what happened. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        log_error(run->step->refusal ?: "Refusing to go on (see %s); nothing was changed.", id);
#pragma GCC diagnostic pop
        return error;
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
                if (c->state == ITEM_OK)
                        put(run, ctx->n_items, s->id, ITEM_OK, NULL, false, "%s", s->plan);
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
        /* A second item of the same apply goes right after the first: the later places move on by one. */
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

bool owed(StepRun *run, const char *marker) {
        for (size_t i = 0; i < run->n_changes; i++) {
                const Change *c = &run->changes[i]->c;
                if (c->marker && streq(c->marker, marker) && c->state != ITEM_OK)
                        return true;
        }
        return run->ctx->verb == VERB_APPLY && marker_exists(run->ctx, marker);
}

int owed_paid(StepRun *run, const char *marker) {
        if (run->ctx->verb != VERB_APPLY)
                return 0;
        return marker_clear(run->ctx, marker);
}

int system_reload_if_owed(StepRun *run, bool force) {
        if (run->ctx->verb != VERB_APPLY)
                return 0;
        return context_reload_system(run->ctx, force);
}

static bool failed_since(const Context *ctx, size_t first) {
        for (size_t i = first; i < ctx->n_items; i++)
                if (ctx->items[i].id && ctx->items[i].status == ITEM_FAIL)
                        return true;
        return false;
}

static int apply_changes(StepRun *run, size_t first) {
        Context *ctx = run->ctx;
        int r = 0;

        for (size_t i = first; i < run->n_changes; i++) {
                StoredChange *s = run->changes[i];
                Change *c = &s->c;

                if (c->state == ITEM_OK || (c->hidden_in & IN_APPLY))
                        continue;
                /* GATE_CLEAN: do not start a daemon on a half-made set-up. */
                if (c->gate == GATE_CLEAN && ctx->any_failed)
                        continue;
                /* Owe the restart before changing what it restarts for: it survives a kill. */
                if (c->marker) {
                        r = marker_set(ctx, c->marker);
                        if (r < 0)
                                return r;
                }
                run->applying = s;
                r = c->apply(run, c);
                if (r >= 0 && c->verify)
                        r = c->verify(run, c);
                run->applying = NULL;
                if (r < 0)
                        return r;
                /* systemd learns it at its next reload, made once for every step's changes. */
                if (c->effects & EFFECT_SYSTEM_RELOAD && ctx->live && manager_is_running())
                        ctx->system_reload_owed = true;
        }
        return 0;
}

static int run_part(StepRun *run, const Part *p, Account *a) {
        Context *ctx = run->ctx;
        size_t first_change = run->n_changes, first_item = ctx->n_items;
        bool pending = false;
        int r;

        r = p->look(run, a);
        if (r < 0 || ctx->verb != VERB_APPLY)
                goto finish;    /* plan and check: the description is the report */

        for (size_t i = first_change; i < run->n_changes; i++)
                pending = pending ||
                          (run->changes[i]->c.state != ITEM_OK && !(run->changes[i]->c.hidden_in & IN_APPLY));
        /* begin/end only when something changes: a converged apply takes no lock. */
        if (pending && p->begin)
                r = p->begin(run, a);
        if (pending && r >= 0)
                r = apply_changes(run, first_change);
        if (pending && p->begin && p->end)
                p->end(run, a);
        if (r >= 0 && p->settle)
                r = p->settle(run, a);
        if (r >= 0 && p->commit && !failed_since(ctx, run->first_item))
                r = p->commit(run, a);
finish:
        /* Places of changes that reported nothing (an apply that gave up) are no items. */
        report_drop_reserved(ctx, first_item);
        return r;
}

/* Transition: the account of today's one user, from the facts the user step wrote. */
static void account_from_facts(const Context *ctx, Account *a) {
        const HostFacts *f = &ctx->facts;

        *a = (Account) {
                .name = ctx->config->user_name,
                .agent_unit = ctx->config->agent_unit,
                .state = f->user_known ? ACCOUNT_KNOWN : f->user_planned ? ACCOUNT_PLANNED : ACCOUNT_UNUSABLE,
                .uid = f->user_known ? f->user_uid : (uid_t) -1,
                .gid = f->user_known ? f->user_gid : (gid_t) -1,
                .home = f->user_home,
        };
}

int step_run(Context *ctx, const Step *s) {
        StepRun run = { .ctx = ctx, .step = s, .first_item = ctx->n_items };
        Account account = {};
        int r = 0;

        if (s->run)
                return s->run(ctx);

        if (s->state_size) {
                run.state = calloc(1, s->state_size);
                if (!run.state)
                        return log_error_errno(-ENOMEM, "Failed to allocate the state of step %s: %m", s->name);
        }
        if (s->per_account)
                account_from_facts(ctx, &account);
        /* Each part in order: a later look sees what earlier parts applied. */
        for (size_t i = 0; i < s->n_parts && r >= 0; i++)
                r = run_part(&run, &s->parts[i], s->per_account ? &account : NULL);

        if (s->state_done && run.state)
                s->state_done(run.state);
        free(run.state);
        for (size_t i = 0; i < run.n_changes; i++) {
                StoredChange *c = run.changes[i];
                free(c->id);
                free(c->plan);
                free(c->problem);
                free(c->check_fix);
                if (c->c.data_free)
                        c->c.data_free(c->c.data);
                free(c);
        }
        free(run.changes);
        return r;
}
