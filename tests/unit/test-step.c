/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests.h"
#include "engine/engine.h"
#include "engine/step.h"
#include "util/error.h"
#include "util/macro.h"

/*
 * The step contract (engine/step.h): a step that only looks and describes,
 * and the engine's plan, check and apply of that description.
 */

/* What the fake host holds, and what the step's callbacks saw. */
static bool have_b, have_d, fail_a, give_up_c;
static unsigned applied, begun, ended, settled, committed;

static int apply_b(StepRun *run, Change *c) {
        applied++;
        have_b = true;
        change_done(run, c->id, c->state, "wrote b");
        /* A second item of the same apply goes right after the first. */
        change_done(run, "fake.b-extra", ITEM_CHANGE, "and its link");
        return 0;
}

static int apply_d(StepRun *run, Change *c) {
        applied++;
        if (give_up_c)
                return -EIO;
        have_d = true;
        change_done(run, c->id, c->state, "wrote d");
        return 0;
}

static int apply_fails(StepRun *run, Change *c) {
        applied++;
        change_failed(run, c->id, "remove the thing in the way", "cannot make e: something else appeared");
        return 0;
}

static int look_files(StepRun *run, Account *a) {
        item_ok(run, "fake.a", "a is in place");
        item_change(run, &(Change) {
                .id = "fake.b",
                .state = have_b ? ITEM_OK : ITEM_CREATE,
                .plan = have_b ? "b is up to date" : "write b",
                .problem = "b is missing",
                .apply = apply_b,
        });
        item_ok(run, "fake.c", "c is in place");
        item_change(run, &(Change) {
                .id = "fake.d",
                .state = have_d ? ITEM_OK : ITEM_CHANGE,
                .plan = have_d ? "d is up to date" : "rewrite d",
                .check_fix = "rootless-ci apply (it rewrites d)",
                .apply = apply_d,
        });
        return 0;
}

static int begin_lock(StepRun *run, Account *a) {
        begun++;
        return 0;
}

static void end_lock(StepRun *run, Account *a) {
        ended++;
}

static int settle_count(StepRun *run, Account *a) {
        settled++;
        return 0;
}

static int commit_count(StepRun *run, Account *a) {
        committed++;
        return 0;
}

static int look_findings(StepRun *run, Account *a) {
        item_finding(run, "fake.pass", ITEM_PASS, NULL, "fine");
        item_finding_ex(run, &(Finding) {
                .id = "fake.groups",
                .status = ITEM_FAIL,
                .message = "held",
                .fix = "end them",
                .in_plan = &(Verdict) { ITEM_WARN, "held; apply restarts what it runs", NULL },
                .in_check = &(Verdict) { ITEM_FAIL, "held", "end them (apply restarts its own)" },
        });
        if (fail_a)
                item_finding(run, "fake.broken", ITEM_FAIL, "fix it", "broken");
        return 0;
}

static const Part fake_parts[] = {
        { .name = "files", .look = look_files, .begin = begin_lock, .end = end_lock, .settle = settle_count },
        { .name = "findings", .look = look_findings, .commit = commit_count },
};

static const Step step_fake = {
        .name = "fake",
        .parts = fake_parts,
        .n_parts = ELEMENTSOF(fake_parts),
};

static int look_refuses(StepRun *run, Account *a) {
        item_ok(run, "fake.before", "looked");
        return item_stop(run, "fake.refused", STOP_NOT_CHECK, -ERCI_REFUSED, "free the disk", "the disk is in use");
}

static int look_after_refusal(StepRun *run, Account *a) {
        item_ok(run, "fake.after", "looked on");
        return 0;
}

static const Part refusing_parts[] = {
        { .name = "refuse", .look = look_refuses },
        { .name = "after", .look = look_after_refusal },
};

static const Step step_refusing = {
        .name = "fake",
        .parts = refusing_parts,
        .n_parts = ELEMENTSOF(refusing_parts),
        .refusal = "Refusing to touch the fake disk (see %s); nothing was changed.",
};

/* Run the one step s in a fresh context on root; *ret_log (may be NULL): what it logged. */
static int run_in(Verb verb, const Step *s, const char *root, Context *ctx, Config *config, char **ret_log) {
        const Step *const steps[] = { s };
        _cleanup_free_ char *log = NULL;
        int r;

        config_done(config);    /* a test may run several times on one config: each run gets a fresh one */
        r = config_init(config);
        if (r < 0)
                return r;
        r = context_init(ctx, verb, root, config);
        if (r < 0)
                return r;
        test_capture_stderr_begin();
        r = engine_run_steps(ctx, steps, ELEMENTSOF(steps));
        log = test_capture_stderr_end();
        if (ret_log)
                *ret_log = TAKE_PTR(log);
        return r;
}

static int run_fake(Verb verb, const Step *s, Context *ctx, Config *config, char **ret_log) {
        applied = begun = ended = settled = committed = 0;
        return run_in(verb, s, test_tmpdir(), ctx, config, ret_log);
}

#define ASSERT_ITEM(ctx, i, want_id, want_status, want_message, want_fix, want_changed) \
        do {                                                                             \
                ASSERT_TRUE((i) < (ctx).n_items);                                        \
                ASSERT_STREQ((ctx).items[i].id, want_id);                                \
                ASSERT_STREQ(item_status_to_string((ctx).items[i].status),               \
                             item_status_to_string(want_status));                        \
                ASSERT_STREQ((ctx).items[i].message, want_message);                      \
                if (want_fix)                                                            \
                        ASSERT_STREQ((ctx).items[i].fix, (const char *) (want_fix));     \
                else                                                                     \
                        ASSERT_TRUE((ctx).items[i].fix == NULL);                         \
                ASSERT_EQ((ctx).items[i].changed, want_changed);                         \
        } while (0)

TEST(step_plan_reports_the_description) {
        _cleanup_(config_done) Config config = {};
        Context ctx;

        have_b = have_d = fail_a = give_up_c = false;
        ASSERT_EQ(run_fake(VERB_PLAN, &step_fake, &ctx, &config, NULL), 0);
        ASSERT_EQ(ctx.n_items, 6);
        ASSERT_ITEM(ctx, 0, "fake.a", ITEM_OK, "a is in place", NULL, false);
        ASSERT_ITEM(ctx, 1, "fake.b", ITEM_CREATE, "write b", NULL, false);
        ASSERT_ITEM(ctx, 2, "fake.c", ITEM_OK, "c is in place", NULL, false);
        ASSERT_ITEM(ctx, 3, "fake.d", ITEM_CHANGE, "rewrite d", NULL, false);
        ASSERT_ITEM(ctx, 4, "fake.pass", ITEM_PASS, "fine", NULL, false);
        ASSERT_ITEM(ctx, 5, "fake.groups", ITEM_WARN, "held; apply restarts what it runs", NULL, false);
        /* plan changes nothing and runs no apply-only callback */
        ASSERT_EQ(applied + begun + ended + settled + committed, 0);
        ASSERT_FALSE(have_b || have_d);
        ASSERT_FALSE(ctx.any_failed);
        context_done(&ctx);
}

TEST(step_check_judges_the_description) {
        _cleanup_(config_done) Config config = {};
        Context ctx;

        have_b = have_d = fail_a = give_up_c = false;
        ASSERT_EQ(run_fake(VERB_CHECK, &step_fake, &ctx, &config, NULL), 0);
        ASSERT_EQ(ctx.n_items, 6);
        ASSERT_ITEM(ctx, 0, "fake.a", ITEM_PASS, "a is in place", NULL, false);
        ASSERT_ITEM(ctx, 1, "fake.b", ITEM_FAIL, "b is missing", "rootless-ci apply", false);
        ASSERT_ITEM(ctx, 2, "fake.c", ITEM_PASS, "c is in place", NULL, false);
        ASSERT_ITEM(ctx, 3, "fake.d", ITEM_FAIL, "rewrite d", "rootless-ci apply (it rewrites d)", false);
        ASSERT_ITEM(ctx, 4, "fake.pass", ITEM_PASS, "fine", NULL, false);
        ASSERT_ITEM(ctx, 5, "fake.groups", ITEM_FAIL, "held", "end them (apply restarts its own)", false);
        ASSERT_EQ(applied + begun + ended + settled + committed, 0);
        ASSERT_TRUE(ctx.any_failed);
        context_done(&ctx);
}

TEST(step_apply_reports_each_result_where_its_look_found_it) {
        _cleanup_(config_done) Config config = {};
        Context ctx;

        have_b = have_d = fail_a = give_up_c = false;
        ASSERT_EQ(run_fake(VERB_APPLY, &step_fake, &ctx, &config, NULL), -ERCI_FAILED);
        ASSERT_EQ(ctx.n_items, 7);
        ASSERT_ITEM(ctx, 0, "fake.a", ITEM_OK, "a is in place", NULL, false);
        ASSERT_ITEM(ctx, 1, "fake.b", ITEM_CREATE, "wrote b", NULL, true);
        ASSERT_ITEM(ctx, 2, "fake.b-extra", ITEM_CHANGE, "and its link", NULL, true);
        ASSERT_ITEM(ctx, 3, "fake.c", ITEM_OK, "c is in place", NULL, false);
        ASSERT_ITEM(ctx, 4, "fake.d", ITEM_CHANGE, "wrote d", NULL, true);
        ASSERT_ITEM(ctx, 5, "fake.pass", ITEM_PASS, "fine", NULL, false);
        ASSERT_ITEM(ctx, 6, "fake.groups", ITEM_FAIL, "held", "end them", false);
        ASSERT_EQ(applied, 2);
        ASSERT_EQ(begun, 1);
        ASSERT_EQ(ended, 1);
        ASSERT_EQ(settled, 1);
        /* the step failed an item: nothing is recorded */
        ASSERT_EQ(committed, 0);
        ASSERT_TRUE(have_b && have_d);
        ASSERT_TRUE(ctx.any_changed);
        context_done(&ctx);
}

TEST(step_converged_apply_applies_nothing_and_takes_no_lock) {
        _cleanup_(config_done) Config config = {};
        Context ctx;

        have_b = have_d = true;
        fail_a = give_up_c = false;
        ASSERT_EQ(run_fake(VERB_APPLY, &step_fake, &ctx, &config, NULL), -ERCI_FAILED);
        ASSERT_EQ(ctx.n_items, 6);
        ASSERT_ITEM(ctx, 1, "fake.b", ITEM_OK, "b is up to date", NULL, false);
        ASSERT_ITEM(ctx, 3, "fake.d", ITEM_OK, "d is up to date", NULL, false);
        ASSERT_EQ(applied + begun + ended, 0);
        /* settle runs after every part in apply, changes or not (it pays a killed run's markers) */
        ASSERT_EQ(settled, 1);
        ASSERT_FALSE(ctx.any_changed);
        context_done(&ctx);
}

TEST(step_an_apply_that_gives_up_leaves_no_place_behind) {
        _cleanup_(config_done) Config config = {};
        Context ctx;

        have_b = true;
        have_d = fail_a = false;
        give_up_c = true;
        ASSERT_EQ(run_fake(VERB_APPLY, &step_fake, &ctx, &config, NULL), -EIO);
        ASSERT_EQ(ctx.n_items, 3);
        for (size_t i = 0; i < ctx.n_items; i++)
                ASSERT_TRUE(ctx.items[i].id != NULL);
        ASSERT_STREQ(ctx.items[2].id, "fake.c");
        /* end is paid even when an apply gave up; settle is not */
        ASSERT_EQ(begun, 1);
        ASSERT_EQ(ended, 1);
        ASSERT_EQ(settled, 0);
        context_done(&ctx);
}

static int look_one_pending(StepRun *run, Account *a) {
        item_change(run, &(Change) { .id = "fake.e", .state = ITEM_CREATE, .plan = "make e", .apply = apply_fails });
        item_change(run, &(Change) { .id = "fake.start", .state = ITEM_CHANGE, .plan = "start it",
                                     .gate = GATE_CLEAN, .apply = apply_d });
        return 0;
}

static const Part gated_parts[] = {
        { .name = "gated", .look = look_one_pending, .commit = commit_count },
};

static const Step step_gated = {
        .name = "fake",
        .parts = gated_parts,
        .n_parts = ELEMENTSOF(gated_parts),
};

TEST(step_change_failed_is_a_failed_item_and_gate_clean_holds) {
        _cleanup_(config_done) Config config = {};
        Context ctx;

        have_b = have_d = fail_a = give_up_c = false;
        ASSERT_EQ(run_fake(VERB_APPLY, &step_gated, &ctx, &config, NULL), -ERCI_FAILED);
        ASSERT_EQ(ctx.n_items, 1);
        ASSERT_ITEM(ctx, 0, "fake.e", ITEM_FAIL, "cannot make e: something else appeared",
                    "remove the thing in the way", false);
        /* the start is not applied on a half-made set-up */
        ASSERT_EQ(applied, 1);
        ASSERT_FALSE(have_d);
        ASSERT_EQ(committed, 0);
        context_done(&ctx);
}

TEST(step_commit_only_in_an_apply_that_failed_nothing) {
        _cleanup_(config_done) Config config = {};
        Context ctx;

        have_b = have_d = true;
        fail_a = give_up_c = false;
        /* fake.groups fails in apply; a step without failures commits */
        {
                static const Part parts[] = { { .name = "clean", .look = look_after_refusal, .commit = commit_count } };
                static const Step s = { .name = "fake", .parts = parts, .n_parts = ELEMENTSOF(parts) };

                ASSERT_EQ(run_fake(VERB_APPLY, &s, &ctx, &config, NULL), 0);
                ASSERT_EQ(committed, 1);
                context_done(&ctx);
                config_done(&config);
                ASSERT_EQ(run_fake(VERB_PLAN, &s, &ctx, &config, NULL), 0);
                ASSERT_EQ(committed, 0);
                context_done(&ctx);
        }
}

TEST(step_item_stop_stops_its_verbs_and_is_a_failed_check_in_the_others) {
        _cleanup_(config_done) Config config = {};
        _cleanup_free_ char *log = NULL;
        Context ctx;

        ASSERT_EQ(run_fake(VERB_PLAN, &step_refusing, &ctx, &config, &log), -ERCI_REFUSED);
        ASSERT_EQ(ctx.n_items, 2);
        ASSERT_ITEM(ctx, 1, "fake.refused", ITEM_FAIL, "the disk is in use", "free the disk", false);
        ASSERT_CONTAINS(log, "Refusing to touch the fake disk (see fake.refused); nothing was changed.");
        ASSERT_EQ(exit_status_from_error(-ERCI_REFUSED), 3);
        context_done(&ctx);
        config_done(&config);
        free(log);
        log = NULL;

        ASSERT_EQ(run_fake(VERB_CHECK, &step_refusing, &ctx, &config, &log), 0);
        ASSERT_EQ(ctx.n_items, 3);
        ASSERT_STREQ(ctx.items[2].id, "fake.after");
        ASSERT_TRUE(ctx.any_failed);
        ASSERT_FALSE(strstr(log, "Refusing"));
        context_done(&ctx);
}

/* item_stop_ex: a stop with its own stderr line (the disk step's bad fstab, exit 1); change_planned: plan only. */
static bool planned_seen, in_place_planned;

static int look_stops_with_its_line(StepRun *run, Account *a) {
        const Change *todo = item_change(run, &(Change) { .id = "fake.mount", .state = ITEM_CREATE,
                                                          .plan = "mount it", .hidden_in = IN_APPLY });
        const Change *done = item_change(run, &(Change) { .id = "fake.in-place", .state = ITEM_OK,
                                                          .plan = "in place", .hidden_in = IN_APPLY });

        planned_seen = change_planned(run, todo);
        in_place_planned = change_planned(run, done);
        return item_stop_ex(run, &(Stop) {
                .id = "fake.fstab",
                .when = STOP_NOT_CHECK,
                .error = -ERCI_FAILED,
                .fix = "repair it",
                .message = "the fstab is odd",
                .log = "/etc/fstab is not a regular file.",
        });
}

static const Part stop_line_parts[] = {
        { .name = "stop", .look = look_stops_with_its_line },
        { .name = "after", .look = look_after_refusal },
};

static const Step step_stop_line = {
        .name = "fake",
        .parts = stop_line_parts,
        .n_parts = ELEMENTSOF(stop_line_parts),
        .refusal = "Refusing to touch the fake disk (see %s); nothing was changed.",
};

TEST(step_item_stop_ex_logs_its_own_line_and_change_planned_is_plan_only) {
        _cleanup_(config_done) Config config = {};
        _cleanup_free_ char *log = NULL;
        Context ctx;

        ASSERT_EQ(run_fake(VERB_PLAN, &step_stop_line, &ctx, &config, &log), -ERCI_FAILED);
        ASSERT_EQ(ctx.n_items, 3);
        ASSERT_ITEM(ctx, 2, "fake.fstab", ITEM_FAIL, "the fstab is odd", "repair it", false);
        ASSERT_CONTAINS(log, "/etc/fstab is not a regular file.");
        ASSERT_FALSE(strstr(log, "Refusing"));
        ASSERT_EQ(exit_status_from_error(-ERCI_FAILED), 1);
        ASSERT_TRUE(planned_seen);
        ASSERT_FALSE(in_place_planned);
        context_done(&ctx);
        config_done(&config);
        free(log);
        log = NULL;

        ASSERT_EQ(run_fake(VERB_CHECK, &step_stop_line, &ctx, &config, &log), 0);
        ASSERT_EQ(ctx.n_items, 4);
        ASSERT_ITEM(ctx, 0, "fake.mount", ITEM_FAIL, "mount it", "rootless-ci apply", false);
        ASSERT_STREQ(ctx.items[3].id, "fake.after");
        ASSERT_FALSE(strstr(log, "not a regular file"));
        ASSERT_FALSE(planned_seen);
        context_done(&ctx);
        config_done(&config);
        free(log);
        log = NULL;

        ASSERT_EQ(run_fake(VERB_APPLY, &step_stop_line, &ctx, &config, &log), -ERCI_FAILED);
        ASSERT_EQ(ctx.n_items, 1);  /* the changes are hidden in apply */
        ASSERT_ITEM(ctx, 0, "fake.fstab", ITEM_FAIL, "the fstab is odd", "repair it", false);
        ASSERT_CONTAINS(log, "/etc/fstab is not a regular file.");
        ASSERT_FALSE(planned_seen);
        context_done(&ctx);
}

/*
 * item_file: the report and the file in each verb, for a missing file, one
 * that differs and one in place. These are the items the old converge_file
 * reported for the same trees (the transition's test compared the two until
 * converge_file went).
 */
#define EXAMPLE_TEXT "x=1\n"

static int file_look_example(StepRun *run, Account *a) {
        int r = item_file(run, &(FileWant) { .id = "example.conf", .path = "/etc/example/example.conf",
                                             .text = EXAMPLE_TEXT, .what = "the example file" });
        return r < 0 ? r : 0;
}

static const Part file_parts[] = { { .name = "conf", .look = file_look_example } };
static const Step file_step = { .name = "example", .parts = file_parts, .n_parts = ELEMENTSOF(file_parts) };

static void example_tree(const char *root, const char *content) {
        if (!content)
                return;
        test_write(root, "etc/example/example.conf", content);
        if (chmod(test_path(root, "etc/example/example.conf"), 0644) < 0)
                abort();
}

TEST(step_item_file_reports_and_writes) {
        static const struct {
                Verb verb;
                const char *before;    /* the file before the run; NULL: missing */
                ItemStatus status;
                const char *message;   /* %s: the file as the host sees it */
                const char *fix;
                bool changed;
                const char *after;     /* the file after the run; NULL: missing */
        } cases[] = {
                { VERB_PLAN, NULL, ITEM_CREATE, "write the example file %s", NULL, false, NULL },
                { VERB_PLAN, "x=2\n", ITEM_CHANGE, "rewrite the example file %s (content differs)", NULL, false,
                  "x=2\n" },
                { VERB_PLAN, EXAMPLE_TEXT, ITEM_OK, "the example file %s is up to date", NULL, false, EXAMPLE_TEXT },
                { VERB_CHECK, NULL, ITEM_FAIL, "the example file %s is missing", "rootless-ci apply", false, NULL },
                { VERB_CHECK, "x=2\n", ITEM_FAIL,
                  "the example file %s differs from what rootless-ci installs (content or mode)", "rootless-ci apply",
                  false, "x=2\n" },
                { VERB_CHECK, EXAMPLE_TEXT, ITEM_PASS, "the example file %s is up to date", NULL, false, EXAMPLE_TEXT },
                { VERB_APPLY, NULL, ITEM_CREATE, "wrote the example file %s", NULL, true, EXAMPLE_TEXT },
                { VERB_APPLY, "x=2\n", ITEM_CHANGE, "rewrote the example file %s", NULL, true, EXAMPLE_TEXT },
                { VERB_APPLY, EXAMPLE_TEXT, ITEM_OK, "the example file %s is up to date", NULL, false, EXAMPLE_TEXT },
        };
        const char *base = test_tmpdir();

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(config_done) Config config = {};
                _cleanup_free_ char *root = NULL, *shown = NULL, *message = NULL, *text = NULL;
                Context ctx;

                ASSERT_TRUE(asprintf(&root, "%s/file-%zu", base, i) > 0);
                ASSERT_OK(mkdir(root, 0755));
                example_tree(root, cases[i].before);
                ASSERT_TRUE(asprintf(&shown, "%s/etc/example/example.conf", root) > 0);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
                ASSERT_TRUE(asprintf(&message, cases[i].message, shown) > 0);
#pragma GCC diagnostic pop

                ASSERT_EQ(run_in(cases[i].verb, &file_step, root, &ctx, &config, NULL), 0);
                ASSERT_EQ(ctx.n_items, 1);
                ASSERT_ITEM(ctx, 0, "example.conf", cases[i].status, message, cases[i].fix, cases[i].changed);
                text = test_read(root, "etc/example/example.conf");
                ASSERT_TRUE(cases[i].after ? text && streq(text, cases[i].after) : text == NULL);
                context_done(&ctx);
        }
}

/* Two pending changes side by side: the first one's second item must not take the second one's place. */
static int look_adjacent(StepRun *run, Account *a) {
        item_change(run, &(Change) { .id = "fake.b", .state = ITEM_CREATE, .plan = "write b", .apply = apply_b });
        item_change(run, &(Change) { .id = "fake.d", .state = ITEM_CHANGE, .plan = "rewrite d", .apply = apply_d });
        item_ok(run, "fake.z", "z is in place");
        return 0;
}

TEST(step_adjacent_changes_keep_their_order) {
        static const Part parts[] = { { .name = "adjacent", .look = look_adjacent } };
        static const Step s = { .name = "fake", .parts = parts, .n_parts = ELEMENTSOF(parts) };
        _cleanup_(config_done) Config config = {};
        Context ctx;

        have_b = have_d = fail_a = give_up_c = false;
        ASSERT_EQ(run_fake(VERB_APPLY, &s, &ctx, &config, NULL), 0);
        ASSERT_EQ(ctx.n_items, 4);
        ASSERT_ITEM(ctx, 0, "fake.b", ITEM_CREATE, "wrote b", NULL, true);
        ASSERT_ITEM(ctx, 1, "fake.b-extra", ITEM_CHANGE, "and its link", NULL, true);
        ASSERT_ITEM(ctx, 2, "fake.d", ITEM_CHANGE, "wrote d", NULL, true);
        ASSERT_ITEM(ctx, 3, "fake.z", ITEM_OK, "z is in place", NULL, false);
        context_done(&ctx);
}

/* A change whose apply reports nothing, beside one that reports twice: no empty place, nothing lost. */
static int apply_silent(StepRun *run, Change *c) {
        applied++;
        return 0;
}

static int look_silent_then_two(StepRun *run, Account *a) {
        item_change(run, &(Change) { .id = "fake.q", .state = ITEM_CREATE, .plan = "quietly", .apply = apply_silent });
        item_change(run, &(Change) { .id = "fake.b", .state = ITEM_CREATE, .plan = "write b", .apply = apply_b });
        item_change(run, &(Change) { .id = "fake.q2", .state = ITEM_CREATE, .plan = "quietly", .apply = apply_silent });
        return 0;
}

TEST(step_silent_changes_leave_no_place) {
        static const Part parts[] = { { .name = "silent", .look = look_silent_then_two } };
        static const Step s = { .name = "fake", .parts = parts, .n_parts = ELEMENTSOF(parts) };
        _cleanup_(config_done) Config config = {};
        Context ctx;

        have_b = have_d = fail_a = give_up_c = false;
        ASSERT_EQ(run_fake(VERB_APPLY, &s, &ctx, &config, NULL), 0);
        ASSERT_EQ(applied, 3);
        ASSERT_EQ(ctx.n_items, 2);
        ASSERT_STREQ(ctx.items[0].id, "fake.b");
        ASSERT_STREQ(ctx.items[1].id, "fake.b-extra");
        context_done(&ctx);
}

/*
 * Part.relook: apply looks again under begin's locks and applies what that
 * look describes (the user step: another tool may edit /etc/subuid between
 * the look and the lock). Here begin plays that tool: x is made meanwhile,
 * y is spoiled.
 */
static bool have_x, have_y;
static unsigned looked;

static int apply_x(StepRun *run, Change *c) {
        applied++;
        have_x = true;
        change_done(run, c->id, c->state, "wrote x");
        return 0;
}

static int apply_y(StepRun *run, Change *c) {
        applied++;
        have_y = true;
        change_done(run, c->id, c->state, "wrote y");
        return 0;
}

static int look_relooked(StepRun *run, Account *a) {
        looked++;
        item_change(run, &(Change) { .id = "fake.x", .state = have_x ? ITEM_OK : ITEM_CREATE,
                                     .plan = have_x ? "x is in place" : "write x", .apply = apply_x });
        item_finding(run, "fake.w", ITEM_WARN, NULL, "a line kept as it is");
        item_change(run, &(Change) { .id = "fake.y", .state = have_y ? ITEM_OK : ITEM_CHANGE,
                                     .plan = have_y ? "y is in place" : "rewrite y", .apply = apply_y });
        item_ok(run, "fake.z", "z is in place");
        if (looked > 1)
                item_finding(run, "fake.new", ITEM_WARN, NULL, "appeared meanwhile");
        return 0;
}

static int begin_meanwhile(StepRun *run, Account *a) {
        begun++;
        have_x = true;
        have_y = false;
        return 0;
}

TEST(step_relook_applies_what_the_look_under_the_lock_describes) {
        static const Part parts[] = { { .name = "relooked", .look = look_relooked, .begin = begin_meanwhile,
                                        .end = end_lock, .relook = true } };
        static const Step s = { .name = "fake", .parts = parts, .n_parts = ELEMENTSOF(parts) };
        _cleanup_(config_done) Config config = {};
        Context ctx;

        have_x = false;
        have_y = true;
        looked = 0;
        ASSERT_EQ(run_fake(VERB_APPLY, &s, &ctx, &config, NULL), 0);
        ASSERT_EQ(looked, 2);
        ASSERT_EQ(begun, 1);
        ASSERT_EQ(ended, 1);
        /* x was made meanwhile: not applied, not reported; y is, after the part's items (as before the contract) */
        ASSERT_EQ(applied, 1);
        ASSERT_EQ(ctx.n_items, 5);
        ASSERT_ITEM(ctx, 0, "fake.w", ITEM_WARN, "a line kept as it is", NULL, false);
        ASSERT_ITEM(ctx, 1, "fake.y", ITEM_OK, "y is in place", NULL, false);
        ASSERT_ITEM(ctx, 2, "fake.z", ITEM_OK, "z is in place", NULL, false);
        ASSERT_ITEM(ctx, 3, "fake.y", ITEM_CHANGE, "wrote y", NULL, true);
        /* a finding only the relook made is reported (in relook order); the first look's are not, twice */
        ASSERT_ITEM(ctx, 4, "fake.new", ITEM_WARN, "appeared meanwhile", NULL, false);
        context_done(&ctx);

        /* converged: one look, no lock, no relook */
        have_x = have_y = true;
        looked = 0;
        ASSERT_EQ(run_fake(VERB_APPLY, &s, &ctx, &config, NULL), 0);
        ASSERT_EQ(looked, 1);
        ASSERT_EQ(begun + ended + applied, 0);
        ASSERT_EQ(ctx.n_items, 4);
        context_done(&ctx);

        /* plan and check never relook */
        have_x = false;
        looked = 0;
        ASSERT_EQ(run_fake(VERB_PLAN, &s, &ctx, &config, NULL), 0);
        ASSERT_EQ(looked, 1);
        ASSERT_EQ(begun, 0);
        context_done(&ctx);
}

/* The account: what the step that writes it (the user step) wrote is what a later per-account step gets. */
static uid_t seen_uid;
static size_t seen_n_gids;

static int look_writes_account(StepRun *run, Account *a) {
        static const gid_t gids[] = { 4242, 27 };

        a->state = ACCOUNT_KNOWN;
        a->uid = 4242;
        a->gid = 4242;
        a->gids = malloc(sizeof(gids));
        if (!a->gids)
                return -ENOMEM;
        memcpy(a->gids, gids, sizeof(gids));
        a->n_gids = ELEMENTSOF(gids);
        return 0;
}

static int look_reads_account(StepRun *run, Account *a) {
        seen_uid = a->state == ACCOUNT_KNOWN ? a->uid : (uid_t) -1;
        seen_n_gids = a->n_gids;
        return 0;
}

TEST(step_account_written_by_the_user_step_reaches_later_steps) {
        static const Part writer_parts[] = { { .name = "account", .look = look_writes_account } };
        static const Part reader_parts[] = { { .name = "read", .look = look_reads_account } };
        static const Step writer = { .name = "fake-user", .parts = writer_parts, .n_parts = 1, .per_account = true };
        static const Step reader = { .name = "fake", .parts = reader_parts, .n_parts = 1, .per_account = true };
        const Step *const steps[] = { &writer, &reader };
        _cleanup_(config_done) Config config = {};
        Context ctx;

        ASSERT_OK(config_init(&config));
        ASSERT_OK(context_init(&ctx, VERB_PLAN, test_tmpdir(), &config));
        /* what the account held before: the user step's is what counts */
        ctx.accounts[0].state = ACCOUNT_KNOWN;
        ctx.accounts[0].uid = 1;
        ASSERT_EQ(engine_run_steps(&ctx, steps, 2), 0);
        ASSERT_EQ(seen_uid, 4242);
        ASSERT_EQ(seen_n_gids, 2);
        context_done(&ctx);

        /* a later step run alone gets the account as it is (tests that set it) */
        ASSERT_OK(context_init(&ctx, VERB_PLAN, test_tmpdir(), &config));
        ctx.accounts[0].state = ACCOUNT_KNOWN;
        ctx.accounts[0].uid = 1;
        ASSERT_EQ(engine_run_steps(&ctx, steps + 1, 1), 0);
        ASSERT_EQ(seen_uid, 1);
        ASSERT_EQ(seen_n_gids, 0);
        context_done(&ctx);
}

/* An apply that reports what it did, a warning beside it, then more (storage.home-link's copy). */
static int apply_noted(StepRun *run, Change *c) {
        applied++;
        change_done(run, c->id, ITEM_CHANGE, "copied n");
        change_note(run, c->id, ITEM_WARN, NULL, "the original stays");
        change_done(run, "fake.n-mode", ITEM_CHANGE, "and its mode");
        return 0;
}

static int look_noted(StepRun *run, Account *a) {
        item_change(run, &(Change) { .id = "fake.n", .state = ITEM_CHANGE, .plan = "copy n", .apply = apply_noted });
        item_change(run, &(Change) { .id = "fake.b", .state = ITEM_CREATE, .plan = "write b", .apply = apply_b });
        item_ok(run, "fake.z", "z is in place");
        return 0;
}

/* storage.home-link: "copied", its WARN, then storage.docker's mode, in that order, the WARN unchanged. */
TEST(step_change_note_goes_in_its_change_place_unchanged) {
        static const Part parts[] = { { .name = "noted", .look = look_noted } };
        static const Step s = { .name = "fake", .parts = parts, .n_parts = ELEMENTSOF(parts) };
        _cleanup_(config_done) Config config = {};
        Context ctx;

        have_b = have_d = fail_a = give_up_c = false;
        ASSERT_EQ(run_fake(VERB_APPLY, &s, &ctx, &config, NULL), 0);
        ASSERT_EQ(ctx.n_items, 6);
        ASSERT_ITEM(ctx, 0, "fake.n", ITEM_CHANGE, "copied n", NULL, true);
        ASSERT_ITEM(ctx, 1, "fake.n", ITEM_WARN, "the original stays", NULL, false);
        ASSERT_ITEM(ctx, 2, "fake.n-mode", ITEM_CHANGE, "and its mode", NULL, true);
        ASSERT_ITEM(ctx, 3, "fake.b", ITEM_CREATE, "wrote b", NULL, true);
        ASSERT_ITEM(ctx, 4, "fake.b-extra", ITEM_CHANGE, "and its link", NULL, true);
        ASSERT_ITEM(ctx, 5, "fake.z", ITEM_OK, "z is in place", NULL, false);
        context_done(&ctx);
}

/* item_symlink: converge_symlink of the old daemon step as look + apply, with its texts. */
static unsigned link_hidden_in;

static int link_look(StepRun *run, Account *a) {
        int r = item_symlink(run, &(SymlinkWant) { .id = "example.link", .path = "/etc/example/link",
                                                   .target = "/dev/null", .what = "mask the example",
                                                   .hidden_in = link_hidden_in });
        return r < 0 ? r : 0;
}

static char *link_read(const char *root) {
        char buf[256];
        ssize_t n = readlink(test_path(root, "etc/example/link"), buf, sizeof(buf) - 1);

        if (n < 0)
                return NULL;
        buf[n] = 0;
        return strdup(buf);
}

TEST(step_item_symlink_reports_and_links_as_converge_symlink) {
        static const Part parts[] = { { .name = "link", .look = link_look } };
        static const Step s = { .name = "example", .parts = parts, .n_parts = ELEMENTSOF(parts) };
        /* none, elsewhere, in place, a file */
        static const char *const have[] = { NULL, "/elsewhere", "/dev/null", "" };
        const char *base = test_tmpdir();

        link_hidden_in = 0;
        for (size_t h = 0; h < ELEMENTSOF(have); h++)
                for (size_t vi = 0; vi < 3; vi++) {
                        static const Verb verbs[] = { VERB_PLAN, VERB_CHECK, VERB_APPLY };
                        Verb v = verbs[vi];
                        _cleanup_(config_done) Config config = {};
                        _cleanup_free_ char *root = NULL, *shown = NULL, *msg = NULL, *fix = NULL, *after = NULL;
                        Context ctx;
                        int r;

                        ASSERT_TRUE(asprintf(&root, "%s/link-%zu-%d", base, h, (int) v) > 0);
                        ASSERT_OK(mkdir(root, 0755));
                        if (have[h] && have[h][0]) {
                                ASSERT_OK(mkdir(test_path(root, "etc"), 0755));
                                ASSERT_OK(mkdir(test_path(root, "etc/example"), 0755));
                                ASSERT_OK(symlink(have[h], test_path(root, "etc/example/link")));
                        } else if (have[h])
                                test_write(root, "etc/example/link", "mine\n");
                        ASSERT_TRUE(asprintf(&shown, "%s/etc/example/link", root) > 0);

                        r = run_in(v, &s, root, &ctx, &config, NULL);
                        after = link_read(root);
                        ASSERT_EQ(ctx.n_items, 1);
                        if (h == 3) {
                                /* not a symlink: a failure in every verb, left alone */
                                ASSERT_EQ(r, v == VERB_APPLY ? -ERCI_FAILED : 0);
                                ASSERT_TRUE(asprintf(&msg, "%s is not a symlink; rootless-ci leaves it alone (move it "
                                                     "away to let apply mask the example)", shown) > 0);
                                ASSERT_TRUE(asprintf(&fix, "move it away (mv %s %s.old), then run rootless-ci apply",
                                                     shown, shown) > 0);
                                ASSERT_ITEM(ctx, 0, "example.link", ITEM_FAIL, msg, fix, false);
                                ASSERT_STREQ(test_read_kept(root, "etc/example/link"), "mine\n");
                        } else if (h == 2) {
                                ASSERT_OK(r);
                                ASSERT_TRUE(asprintf(&msg, "mask the example (%s → /dev/null)", shown) > 0);
                                ASSERT_ITEM(ctx, 0, "example.link", v == VERB_CHECK ? ITEM_PASS : ITEM_OK, msg, NULL,
                                            false);
                                ASSERT_STREQ(after, "/dev/null");
                        } else if (v == VERB_PLAN) {
                                ASSERT_OK(r);
                                ASSERT_TRUE(asprintf(&msg, "mask the example: link %s → /dev/null", shown) > 0);
                                ASSERT_ITEM(ctx, 0, "example.link", h ? ITEM_CHANGE : ITEM_CREATE, msg, NULL, false);
                                ASSERT_TRUE(h ? streq(after, "/elsewhere") : after == NULL);
                        } else if (v == VERB_CHECK) {
                                ASSERT_OK(r);
                                ASSERT_TRUE(asprintf(&msg, "not done: mask the example (%s → /dev/null %s)", shown,
                                                     h ? "points elsewhere" : "is missing") > 0);
                                ASSERT_ITEM(ctx, 0, "example.link", ITEM_FAIL, msg, "rootless-ci apply", false);
                                ASSERT_TRUE(h ? streq(after, "/elsewhere") : after == NULL);
                        } else {
                                ASSERT_OK(r);
                                ASSERT_TRUE(asprintf(&msg, "mask the example: linked %s → /dev/null", shown) > 0);
                                ASSERT_ITEM(ctx, 0, "example.link", h ? ITEM_CHANGE : ITEM_CREATE, msg, NULL, true);
                                ASSERT_STREQ(after, "/dev/null");
                        }
                        context_done(&ctx);
                }

        /* hidden in check: neither reported there nor, in place or not, anywhere it is hidden */
        link_hidden_in = IN_CHECK;
        for (size_t h = 0; h < 3; h++) {
                _cleanup_(config_done) Config config = {};
                _cleanup_free_ char *root = NULL;
                Context ctx;

                ASSERT_TRUE(asprintf(&root, "%s/hidden-%zu", base, h) > 0);
                ASSERT_OK(mkdir(root, 0755));
                if (have[h]) {
                        ASSERT_OK(mkdir(test_path(root, "etc"), 0755));
                        ASSERT_OK(mkdir(test_path(root, "etc/example"), 0755));
                        ASSERT_OK(symlink(have[h], test_path(root, "etc/example/link")));
                }
                ASSERT_OK(run_in(VERB_CHECK, &s, root, &ctx, &config, NULL));
                ASSERT_EQ(ctx.n_items, 0);
                ASSERT_FALSE(ctx.any_failed);
                context_done(&ctx);
        }
        link_hidden_in = 0;
}

/* Part.gate, change_note and run_stop_quietly: what the daemon step says as data. */
static int look_broken(StepRun *run, Account *a) {
        item_finding(run, "fake.broken", ITEM_FAIL, "fix it", "broken");
        return 0;
}

static int apply_started(StepRun *run, Change *c) {
        applied++;
        change_note(run, c->id, ITEM_OK, NULL, "it was up already");
        change_note(run, "fake.judged", ITEM_FAIL, "look at it", "judged after the start");
        return 0;
}

static int look_start(StepRun *run, Account *a) {
        item_change(run, &(Change) { .id = "fake.start", .state = ITEM_CHANGE, .plan = "start it", .apply = apply_started });
        return 0;
}

static int look_quiet_stop(StepRun *run, Account *a) {
        return run_stop_quietly(run, STOP_APPLY, -ERCI_FAILED, "User %s does not exist (see the user step)", "ci");
}

TEST(step_gated_part_is_skipped_in_apply_after_a_failure_only) {
        static const Part parts[] = {
                { .name = "broken", .look = look_broken },
                { .name = "start", .look = look_start, .settle = settle_count, .gate = GATE_CLEAN },
        };
        static const Step s = { .name = "fake", .parts = parts, .n_parts = ELEMENTSOF(parts) };
        _cleanup_(config_done) Config config = {};
        Context ctx;

        ASSERT_EQ(run_fake(VERB_APPLY, &s, &ctx, &config, NULL), -ERCI_FAILED);
        ASSERT_EQ(ctx.n_items, 1);
        ASSERT_EQ(applied, 0);
        ASSERT_EQ(settled, 0);
        context_done(&ctx);
        config_done(&config);

        ASSERT_EQ(run_fake(VERB_PLAN, &s, &ctx, &config, NULL), 0);
        ASSERT_EQ(ctx.n_items, 2);
        ASSERT_ITEM(ctx, 1, "fake.start", ITEM_CHANGE, "start it", NULL, false);
        context_done(&ctx);
}

TEST(step_change_note_reports_in_place_unchanged) {
        static const Part parts[] = { { .name = "start", .look = look_start } };
        static const Step s = { .name = "fake", .parts = parts, .n_parts = ELEMENTSOF(parts) };
        _cleanup_(config_done) Config config = {};
        Context ctx;

        ASSERT_EQ(run_fake(VERB_APPLY, &s, &ctx, &config, NULL), -ERCI_FAILED);
        ASSERT_EQ(applied, 1);
        ASSERT_EQ(ctx.n_items, 2);
        ASSERT_ITEM(ctx, 0, "fake.start", ITEM_OK, "it was up already", NULL, false);
        ASSERT_ITEM(ctx, 1, "fake.judged", ITEM_FAIL, "judged after the start", "look at it", false);
        ASSERT_FALSE(ctx.any_changed);
        context_done(&ctx);
}

TEST(step_run_stop_quietly_stops_its_verbs_without_an_item) {
        static const Part parts[] = { { .name = "quiet", .look = look_quiet_stop },
                                      { .name = "after", .look = look_after_refusal } };
        static const Step s = { .name = "fake", .parts = parts, .n_parts = ELEMENTSOF(parts) };
        _cleanup_(config_done) Config config = {};
        _cleanup_free_ char *log = NULL;
        Context ctx;

        ASSERT_EQ(run_fake(VERB_APPLY, &s, &ctx, &config, &log), -ERCI_FAILED);
        ASSERT_EQ(ctx.n_items, 0);
        ASSERT_TRUE(strstr(log, "User ci does not exist (see the user step)"));
        context_done(&ctx);
        config_done(&config);
        free(log);
        log = NULL;

        ASSERT_EQ(run_fake(VERB_CHECK, &s, &ctx, &config, &log), 0);
        ASSERT_EQ(ctx.n_items, 1);
        ASSERT_STREQ(ctx.items[0].id, "fake.after");
        ASSERT_FALSE(strstr(log, "does not exist"));
        context_done(&ctx);
}

/* Issue 16: the per-account steps run once per tenant, and say whose run each item is. */
static unsigned host_looks, account_looks, accounts_seen_ok;
static char seen_users[64];

static int look_host(StepRun *run, Account *a) {
        host_looks++;
        item_ok(run, "fake.host", "the host's");
        return 0;
}

static int look_per_tenant(StepRun *run, Account *a) {
        size_t n;
        const Account *all = run_accounts(run, &n);

        account_looks++;
        strncat(seen_users, a->name, sizeof(seen_users) - strlen(seen_users) - 2);
        strcat(seen_users, ",");
        accounts_seen_ok += n == 2 && (a == &all[0] || a == &all[1]);
        item_change(run, &(Change) {
                .id = "fake.unit",
                .state = ITEM_CREATE,
                .plan = run_asprintf(run, "write %s's unit", a->name),
                .apply = apply_b,
        });
        return 0;
}

TEST(step_per_account_steps_run_once_per_tenant_and_name_it) {
        static const Part parts[] = {
                { .name = "host", .look = look_host, .host_wide = true },
                { .name = "unit", .look = look_per_tenant },
        };
        static const Step s = { .name = "fake", .parts = parts, .n_parts = ELEMENTSOF(parts), .per_account = true };
        const Step *const steps[] = { &s };
        _cleanup_(config_done) Config config = {};
        _cleanup_free_ char *out = NULL;
        size_t size = 0;
        Context ctx;
        FILE *f;

        ASSERT_OK(config_init(&config));
        config.tenants = calloc(2, sizeof(Tenant));
        ASSERT_TRUE(config.tenants);
        config.n_tenants = 2;
        config.tenants[0] = (Tenant) { .name = strdup("main"), .user = strdup("buildkite"),
                                       .agent_unit = strdup("buildkite-agent@main.service"), .trust = TRUST_TRUSTED };
        config.tenants[1] = (Tenant) { .name = strdup("pr"), .user = strdup("buildkite-pr"),
                                       .agent_unit = strdup("buildkite-agent@pr.service") };

        host_looks = account_looks = accounts_seen_ok = 0;
        seen_users[0] = 0;
        ASSERT_OK(context_init(&ctx, VERB_PLAN, test_tmpdir(), &config));
        ASSERT_EQ(ctx.n_accounts, 2);
        ASSERT_STREQ(ctx.accounts[1].tenant, "pr");
        ASSERT_STREQ(ctx.accounts[1].name, "buildkite-pr");
        ASSERT_EQ(ctx.accounts[0].trust, TRUST_TRUSTED);
        ASSERT_EQ(ctx.accounts[1].trust, TRUST_UNTRUSTED);
        ASSERT_EQ(engine_run_steps(&ctx, steps, 1), 0);
        /* The host's part once, unsuffixed; the account's part for each tenant, in order. */
        ASSERT_EQ(host_looks, 1);
        ASSERT_EQ(account_looks, 2);
        ASSERT_EQ(accounts_seen_ok, 2);
        ASSERT_STREQ(seen_users, "buildkite,buildkite-pr,");
        ASSERT_EQ(ctx.n_items, 3);
        ASSERT_ITEM(ctx, 0, "fake.host", ITEM_OK, "the host's", NULL, false);
        ASSERT_TRUE(ctx.items[0].tenant == NULL);
        ASSERT_ITEM(ctx, 1, "fake.unit:main", ITEM_CREATE, "write buildkite's unit", NULL, false);
        ASSERT_ITEM(ctx, 2, "fake.unit:pr", ITEM_CREATE, "write buildkite-pr's unit", NULL, false);
        ASSERT_STREQ(ctx.items[2].tenant, "pr");

        /* JSON schema 1 gains "tenant" on a tenant's items, nothing on the host's. */
        ctx.json = true;
        f = open_memstream(&out, &size);
        ASSERT_TRUE(f);
        report_print(&ctx, 0, f);
        fclose(f);
        ASSERT_CONTAINS(out, "{\"id\":\"fake.host\",\"step\":\"fake\",\"status\"");
        ASSERT_CONTAINS(out, "{\"id\":\"fake.unit:pr\",\"step\":\"fake\",\"tenant\":\"pr\",\"status\"");
        context_done(&ctx);

        /* Without tenants: one account, no suffix, no tenant field. */
        config_done(&config);
        ASSERT_OK(config_init(&config));
        ASSERT_OK(context_init(&ctx, VERB_PLAN, test_tmpdir(), &config));
        ASSERT_EQ(ctx.n_accounts, 1);
        ASSERT_TRUE(ctx.accounts[0].tenant == NULL);
        ASSERT_EQ(ctx.accounts[0].trust, TRUST_TRUSTED);
        ctx.accounts[0].name = "buildkite";
        ASSERT_EQ(engine_run_steps(&ctx, steps, 1), 0);
        ASSERT_EQ(ctx.n_items, 2);
        ASSERT_ITEM(ctx, 1, "fake.unit", ITEM_CREATE, "write buildkite's unit", NULL, false);
        ASSERT_TRUE(ctx.items[1].tenant == NULL);
        context_done(&ctx);
}
