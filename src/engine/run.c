/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "engine/internal.h"
#include "engine/step.h"
#include "engine/markers.h"
#include "steps/steps.h"
#include "util/bus.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/lock.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/manager.h"

/*
 * The engine's loop, the one place that knows the verb: the run's context,
 * the steps in order, and each step's parts (engine/step.h). A
 * part looks and describes (engine/report.c reports it per verb); apply
 * then applies each pending Change in look order.
 */

static const Step *const all_steps[] = {
        &step_preflight,
        &step_disk,
        &step_user,
        &step_storage,
        &step_daemon,
        &step_agent,
        &step_tenants,
        &step_credentials,
};

/*
 * One account per tenant, in the configuration's order; without [Tenant],
 * the one of [User] Name= and [Agent] Unit=, without a tenant name: its
 * ids, markers and files are what they were before tenants.
 */
static int context_accounts(Context *ctx, const Config *config) {
        size_t n = config->n_tenants ? config->n_tenants : 1;

        ctx->accounts = calloc(n, sizeof(Account));
        if (!ctx->accounts)
                return -ENOMEM;
        ctx->n_accounts = n;
        for (size_t i = 0; i < n; i++) {
                const Tenant *t = config->n_tenants ? &config->tenants[i] : NULL;

                ctx->accounts[i] = (Account) {
                        .tenant = t ? t->name : NULL,
                        .name = t ? t->user : config->user_name,
                        .agent_unit = t ? t->agent_unit : config->agent_unit,
                        .agent_config = t ? t->agent_config : NULL,
                        .trust = t ? t->trust : TRUST_TRUSTED,
                        .state = ACCOUNT_UNUSABLE,
                        .uid = (uid_t) -1,
                        .gid = (gid_t) -1,
                };
        }
        return 0;
}

int context_init(Context *ctx, Verb verb, const char *root, const Config *config) {
        int r;

        *ctx = (Context) {
                .verb = verb,
                .config = config,
                .root = root ? root : "/",
                .root_fd = -1,
        };
        r = context_accounts(ctx, config);
        if (r < 0)
                return -ENOMEM;
        ctx->root_fd = open_root(ctx->root);
        if (ctx->root_fd < 0)
                return log_error_errno(ctx->root_fd, "Failed to open root directory %s: %m", ctx->root);

        /* --root=// or --root=/tmp/.. is the live host, and is treated as such. */
        struct stat st_root, st_given;
        if (stat("/", &st_root) < 0 || fstat(ctx->root_fd, &st_given) < 0)
                return log_error_errno(negative_errno(), "Failed to stat root directory %s: %m", ctx->root);
        ctx->live = st_root.st_dev == st_given.st_dev && st_root.st_ino == st_given.st_ino;
        return 0;
}

int context_system_bus(Context *ctx, sd_bus **ret) {
        if (!ctx->system_bus) {
                int r = bus_open_system_manager(&ctx->system_bus);
                if (r < 0)
                        return r;
        }
        *ret = ctx->system_bus;
        return 0;
}

int context_reload_system(Context *ctx, bool caller_changed) {
        sd_bus *bus = NULL;
        int r;

        if (!ctx->system_reload_owed && !caller_changed)
                return 0;
        r = context_system_bus(ctx, &bus);
        if (r >= 0)
                r = bus_manager_reload(bus);
        if (r < 0)
                return r;
        ctx->system_reload_owed = false;
        return 0;
}

static void host_facts_done(HostFacts *f) {
        FREE_MANY(f->os_id, f->os_id_like, f->dockerd_rootless_path, f->rootlesskit_path, f->network_driver,
                  f->storage_driver, f->privileged_gids);
}

void account_done(Account *a) {
        FREE_MANY(a->home, a->subuids, a->subgids, a->gids, a->builds_dir);
        *a = (Account) {};
}

void context_done(Context *ctx) {
        for (size_t i = 0; i < ctx->n_items; i++)
                FREE_MANY(ctx->items[i].id, ctx->items[i].message, ctx->items[i].fix);
        free(ctx->items);
        host_facts_done(&ctx->facts);
        for (size_t i = 0; i < ctx->n_accounts; i++)
                account_done(&ctx->accounts[i]);
        free(ctx->accounts);
        sd_bus_flush_close_unref(ctx->system_bus);
        safe_close(ctx->root_fd);
        *ctx = (Context) { .root_fd = -1 };
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

char *run_shown(const StepRun *run, const char *path) {
        return path_join_root(run->ctx->root, path);
}

char *run_vasprintf(StepRun *run, const char *fmt, va_list ap) {
        char **n = reallocarray(run->texts, run->n_texts + 1, sizeof(char *));

        if (!n)
                abort(); /* as report_put(): a description we cannot record must not be half applied */
        run->texts = n;
        if (vasprintf(&run->texts[run->n_texts], fmt, ap) < 0)
                abort();
        return run->texts[run->n_texts++];
}

char *run_asprintf(StepRun *run, const char *fmt, ...) {
        va_list ap;
        char *s;

        va_start(ap, fmt);
        s = run_vasprintf(run, fmt, ap);
        va_end(ap);
        return s;
}

const Account *run_accounts(const StepRun *run, size_t *ret_n) {
        *ret_n = run->ctx->n_accounts;
        return run->ctx->accounts;
}

int run_system_bus(StepRun *run, struct sd_bus **ret) {
        return context_system_bus(run->ctx, ret);
}

int run_user_manager_state(StepRun *run, uid_t uid, char **ret_name, UnitState *ret) {
        _cleanup_free_ char *name = NULL;
        sd_bus *bus = NULL;
        int r;

        r = run_system_bus(run, &bus);
        if (r < 0)
                return r;
        if (asprintf(&name, "user@%u.service", (unsigned) uid) < 0)
                return -ENOMEM;
        r = bus_get_unit_state(bus, name, ret);
        if (r >= 0 && ret_name)
                *ret_name = TAKE_PTR(name);
        return r;
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
        int r;

        if (run->ctx->verb != VERB_APPLY || (!run->ctx->system_reload_owed && !force))
                return 0;
        r = context_reload_system(run->ctx, true);
        return r < 0 ? r : 1;
}

bool run_gate_closed(const StepRun *run) {
        return run->ctx->verb == VERB_APPLY && run->ctx->any_failed;
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
                if (c->gate == GATE_CLEAN && run_gate_closed(run))
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

void stored_change_free(StoredChange *c) {
        if (!c)
                return;
        free(c->id);
        free(c->plan);
        free(c->problem);
        free(c->check_fix);
        if (c->c.data_free)
                c->c.data_free(c->c.data);
        free(c);
}

/*
 * Part.relook: under begin's locks, look again and apply that description
 * instead of the first (engine/step.h). The first look's places were never
 * filled: they go with its Changes.
 */
static int relook(StepRun *run, const Part *p, Account *a, size_t first_change) {
        int r;

        for (size_t i = first_change; i < run->n_changes; i++)
                stored_change_free(run->changes[i]);
        run->n_changes = first_change;
        report_drop_reserved(run->ctx, run->part_first_item);

        run->relooking = true;
        r = p->look(run, a);
        run->relooking = false;
        return r;
}

static int run_part(StepRun *run, const Part *p, Account *a) {
        Context *ctx = run->ctx;
        size_t first_change = run->n_changes, first_item = ctx->n_items;
        bool pending = false;
        int r;

        run->part_first_item = first_item;
        /* GATE_CLEAN: do not start a daemon, or judge one, on a half-made set-up. */
        if (p->gate == GATE_CLEAN && run_gate_closed(run))
                return 0;
        r = p->look(run, a);
        if (r < 0 || ctx->verb != VERB_APPLY)
                goto finish;    /* plan and check: the description is the report */

        for (size_t i = first_change; i < run->n_changes; i++)
                pending = pending ||
                          (run->changes[i]->c.state != ITEM_OK && !(run->changes[i]->c.hidden_in & IN_APPLY));
        /* begin/end only when something changes: a converged apply takes no lock. */
        if (pending && p->begin)
                r = p->begin(run, a);
        if (pending && r >= 0 && p->relook)
                r = relook(run, p, a, first_change);
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

/* One run of step s: for the account a (per-account steps), or for the host (a is NULL). */
static int step_run_for(Context *ctx, const Step *s, Account *a, bool first_account) {
        StepRun run = { .ctx = ctx, .step = s, .first_item = ctx->n_items };
        int r = 0;

        if (s->state_size) {
                run.state = calloc(1, s->state_size);
                if (!run.state)
                        return log_error_errno(-ENOMEM, "Failed to allocate the state of step %s: %m", s->name);
        }
        /* Each part in order: a later look sees what earlier parts applied. */
        for (size_t i = 0; i < s->n_parts && r >= 0; i++) {
                const Part *p = &s->parts[i];

                /* A part about the host runs once, in the first account's run, and names no tenant. */
                if (p->host_wide && !first_account)
                        continue;
                ctx->current_account = p->host_wide ? NULL : a;
                /* Its log lines name no tenant either. */
                if (p->host_wide && a && a->tenant)
                        log_set_step(s->name);
                r = run_part(&run, p, a);
                if (p->host_wide && a && a->tenant)
                        log_set_step(ctx->step_label);
        }
        ctx->current_account = NULL;

        if (s->state_done && run.state)
                s->state_done(run.state);
        free(run.state);
        for (size_t i = 0; i < run.n_changes; i++)
                stored_change_free(run.changes[i]);
        free(run.changes);
        for (size_t i = 0; i < run.n_texts; i++)
                free(run.texts[i]);
        free(run.texts);
        return r;
}

int step_run(Context *ctx, const Step *s) {
        int r = 0;

        if (!s->per_account)
                return step_run_for(ctx, s, NULL, true);

        /* Once per account, in the configuration's order; the log names the tenant ("daemon:pr"). */
        for (size_t i = 0; i < ctx->n_accounts && r >= 0; i++) {
                const char *tenant = ctx->accounts[i].tenant;
                _cleanup_free_ char *label = NULL;

                if (tenant) {
                        if (asprintf(&label, "%s:%s", s->name, tenant) < 0)
                                return -ENOMEM;
                        ctx->step_label = label;
                        log_set_step(label);
                }
                r = step_run_for(ctx, s, &ctx->accounts[i], i == 0);
                ctx->step_label = NULL;
                log_set_step(s->name);
        }
        return r;
}

static void log_step_summary(const Context *ctx, size_t first_item, double ms) {
        size_t failed = 0, changes = 0, n = ctx->n_items - first_item;

        for (size_t i = first_item; i < ctx->n_items; i++) {
                ItemStatus s = ctx->items[i].status;
                if (s == ITEM_FAIL)
                        failed++;
                else if (s == ITEM_CREATE || s == ITEM_CHANGE || s == ITEM_REMOVE)
                        changes++;
        }
        if (failed)
                log_info("%zu of %zu items failed (%.1f ms)", failed, n, ms);
        else if (changes)
                log_info("%zu %s (%.1f ms)", changes,
                         ctx->verb == VERB_APPLY ? "changed" : (ctx->verb == VERB_PLAN ? "to change" : "out of date"), ms);
        else
                log_info("%zu items in place (%.1f ms)", n, ms);
}

int engine_run_steps(Context *ctx, const Step *const *steps, size_t n_steps) {
        for (size_t i = 0; i < n_steps; i++) {
                const Step *s = steps[i];
                size_t first = ctx->n_items;
                unsigned long long start;
                int r;

                ctx->current_step = s->name;
                log_set_step(s->name);
                start = now_usec();

                r = step_run(ctx, s);
                log_step_summary(ctx, first, ms_since_usec(start));
                if (r < 0) {
                        ctx->any_failed = true;
                        log_set_step(NULL);
                        return r;
                }

                /* Nothing may change while a prerequisite is missing. */
                if (ctx->verb == VERB_APPLY && ctx->any_failed) {
                        log_set_step(NULL);
                        if (i + 1 < n_steps)
                                log_error("%s failed; stopping before anything is changed by later steps.", s->name);
                        return -ERCI_FAILED;
                }
        }
        log_set_step(NULL);
        return 0;
}

/*
 * only: "disk[,user,...]", the steps to run in their usual order (the test
 * hook RCI_ONLY_STEPS, read in main.c), or NULL for all. The host tests run
 * the disk step alone on machines where preflight stops apply (no systemd,
 * no Docker). It only ever leaves steps out.
 */
static int select_steps(const char *only, const Step **ret, size_t *ret_n) {
        size_t n = 0;

        if (!only) {
                for (size_t i = 0; i < ELEMENTSOF(all_steps); i++)
                        ret[n++] = all_steps[i];
                *ret_n = n;
                return 0;
        }

        for (const char *p = only;; p++) {
                size_t l = strcspn(p, ",");
                bool known = false;

                for (size_t i = 0; i < ELEMENTSOF(all_steps); i++)
                        known = known || (strlen(all_steps[i]->name) == l && strncmp(all_steps[i]->name, p, l) == 0);
                if (!known)
                        return log_error_errno(-ERCI_USAGE, "Steps to run only: '%s' names no step ('%.*s').", only,
                                               (int) l, p);
                p += l;
                if (*p == 0)
                        break;
        }
        for (size_t i = 0; i < ELEMENTSOF(all_steps); i++) {
                const char *name = all_steps[i]->name;
                size_t l = strlen(name);
                for (const char *p = only; (p = strstr(p, name)); p += l)
                        if ((p == only || p[-1] == ',') && (p[l] == ',' || p[l] == 0)) {
                                ret[n++] = all_steps[i];
                                break;
                        }
        }
        log_warning("Running only the steps %s (a test hook): a partial run.", only);
        *ret_n = n;
        return 0;
}

/*
 * -v: where the run's time went. Waiting is what clock.h accounts for: the
 * calls to systemd, logind and dockerd and the children run (mkfs, useradd);
 * the rest is rootless-ci's own work, its CPU and its own I/O (fsync above
 * all). scripts/bench reads this line.
 */
static void log_run_account(void) {
        struct rusage ru = {};
        double total = (double) run_elapsed_usec() / 1e3, waited = (double) waited_total_usec() / 1e3;

        (void) getrusage(RUSAGE_SELF, &ru);
        log_debug("Timing: run %.1f ms, waiting for other processes %.1f ms, own %.1f ms (CPU %.1f ms)", total, waited,
                  total - waited,
                  (double) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
                          (double) (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3);
}

int engine_run(const EngineOptions *o, const Config *config) {
        _cleanup_close_ int lock_fd = -1;
        const Step *steps[ELEMENTSOF(all_steps)];
        size_t n_steps = 0;
        Context ctx;
        int r, status;

        r = select_steps(o->only_steps, steps, &n_steps);
        if (r < 0)
                return exit_status_from_error(r);

        r = context_init(&ctx, o->verb, o->root, config);
        if (r < 0) {
                context_done(&ctx);     /* what it made before it failed */
                return exit_status_from_error(r);
        }
        ctx.json = o->json;
        ctx.only_steps = o->only_steps;

        /*
         * Before the lock and any step: a user step that ran first would
         * already have changed the host. apply --root runs useradd --root,
         * which runs code from the tree: it must be root's alone.
         */
        r = config_verify_in_root(config, ctx.root_fd, ctx.root, o->verb == VERB_APPLY && !ctx.live);
        if (r < 0) {
                context_done(&ctx);
                return exit_status_from_error(r);
        }

        log_open_journal(ctx.live);

        r = lock_acquire(ctx.root_fd, o->verb == VERB_APPLY, o->lock_timeout_ms, &lock_fd);
        if (r < 0) {
                context_done(&ctx);
                return EXIT_FAILED;
        }

        r = engine_run_steps(&ctx, steps, n_steps);
        /* A step that owed a reload and no later step that paid it (it failed, or had nothing to start). */
        if (ctx.verb == VERB_APPLY) {
                int k = context_reload_system(&ctx, false);
                if (r >= 0 && k < 0)
                        r = k;
        }
        if (r < 0)
                status = exit_status_from_error(r);
        else
                status = ctx.any_failed ? EXIT_FAILED : EXIT_OK;

        log_run_account();
        report_print(&ctx, status, stdout);
        context_done(&ctx);
        return status;
}
