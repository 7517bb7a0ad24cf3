/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "engine.h"
#include "engine/internal.h"
#include "steps/steps.h"
#include "util/bus.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/escape.h"
#include "util/fs.h"
#include "util/lock.h"
#include "util/log.h"

static const Step *const all_steps[] = {
        &step_preflight,
        &step_disk,
        &step_user,
        &step_storage,
        &step_daemon,
        &step_agent,
        &step_credentials,
};

static const char *const item_status_table[_ITEM_STATUS_MAX] = {
        [ITEM_OK] = "ok",
        [ITEM_CREATE] = "create",
        [ITEM_CHANGE] = "change",
        [ITEM_REMOVE] = "remove",
        [ITEM_PASS] = "pass",
        [ITEM_FAIL] = "fail",
        [ITEM_WARN] = "warn",
        [ITEM_SKIP] = "skip",
};

static const char *const item_status_symbol[_ITEM_STATUS_MAX] = {
        [ITEM_OK] = "=",
        [ITEM_CREATE] = "+",
        [ITEM_CHANGE] = "~",
        [ITEM_REMOVE] = "-",
        [ITEM_PASS] = "PASS",
        [ITEM_FAIL] = "FAIL",
        [ITEM_WARN] = "WARN",
        [ITEM_SKIP] = "SKIP",
};

const char *item_status_to_string(ItemStatus s) {
        return s < _ITEM_STATUS_MAX ? item_status_table[s] : NULL;
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
                .id = escape_host_text(id, NULL),
                .step = ctx->current_step,
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

void report_item(Context *ctx, const char *id, ItemStatus status, const char *fix, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        report_put(ctx, ctx->n_items, id, status, fix, false, fmt, ap);
        va_end(ap);
}

void report_state(Context *ctx, const char *id, ItemStatus change, const char *fmt, ...) {
        ItemStatus status = change;
        const char *fix = NULL;
        va_list ap;

        if (ctx->verb == VERB_CHECK) {
                status = change == ITEM_OK ? ITEM_PASS : ITEM_FAIL;
                if (change != ITEM_OK)
                        fix = "rootless-ci apply";
        }
        va_start(ap, fmt);
        report_put(ctx, ctx->n_items, id, status, fix, false, fmt, ap);
        va_end(ap);
}

void report_changed(Context *ctx, const char *id, ItemStatus status, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        report_put(ctx, ctx->n_items, id, status, NULL, true, fmt, ap);
        va_end(ap);
}

int context_init(Context *ctx, Verb verb, const char *root, const Config *config) {
        *ctx = (Context) {
                .verb = verb,
                .config = config,
                .root = root ? root : "/",
                .root_fd = -1,
        };
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
        free(f->os_id);
        free(f->os_id_like);
        free(f->dockerd_rootless_path);
        free(f->rootlesskit_path);
        free(f->network_driver);
        free(f->storage_driver);
        free(f->user_home);
        free(f->subuid_ranges);
        free(f->subgid_ranges);
        free(f->privileged_gids);
        free(f->user_gids);
        free(f->storage_dir);
        free(f->docker_dir);
        free(f->builds_dir);
        free(f->data_device);
        free(f->data_fs_type);
        free(f->data_fs_uuid);
}

void context_done(Context *ctx) {
        for (size_t i = 0; i < ctx->n_items; i++) {
                free(ctx->items[i].id);
                free(ctx->items[i].message);
                free(ctx->items[i].fix);
        }
        free(ctx->items);
        host_facts_done(&ctx->facts);
        sd_bus_flush_close_unref(ctx->system_bus);
        safe_close(ctx->root_fd);
        *ctx = (Context) { .root_fd = -1 };
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
 * s must be valid UTF-8: the items are (report_put() escaped them), and
 * anything else passes through escape_host_text() first. Only JSON's own
 * escaping is done here; the control characters cannot occur in escaped
 * text and are handled anyway.
 */
static void print_json_string(FILE *f, const char *s) {
        if (!s) {
                fputs("null", f);
                return;
        }
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                switch (*p) {
                case '"':
                        fputs("\\\"", f);
                        break;
                case '\\':
                        fputs("\\\\", f);
                        break;
                case '\n':
                        fputs("\\n", f);
                        break;
                case '\t':
                        fputs("\\t", f);
                        break;
                default:
                        if (*p < 0x20 || *p == 0x7f)
                                fprintf(f, "\\u%04x", *p);
                        else
                                fputc(*p, f);
                }
        }
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
                fprintf(f, "%-4s %s: %s\n", item_status_symbol[it->status], it->id, it->message);
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
        if (r < 0)
                return exit_status_from_error(r);
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
