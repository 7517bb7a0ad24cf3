/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <sched.h>
#include <stdarg.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include "json-check.h"
#include "tests.h"
#include "engine/engine.h"
#include "engine/step.h"
#include "util/error.h"
#include "util/log.h"
#include "util/macro.h"

static unsigned ran_first, ran_second;

/* Fake steps on the step contract (engine/step.h): one part each, looking and describing. */
static int look_failing_check(StepRun *run, Account *a) {
        ran_first++;
        item_finding(run, "first.thing", ITEM_FAIL, "fix it", "thing %d is broken", 42);
        return 0;
}

static int look_passing(StepRun *run, Account *a) {
        ran_second++;
        item_finding(run, "second.thing", ITEM_PASS, NULL, "fine");
        return 0;
}

static int look_giving_up(StepRun *run, Account *a) {
        ran_first++;
        return -EIO;
}

static int apply_create_x(StepRun *run, Change *c) {
        change_done(run, c->id, ITEM_CREATE, "created %s", "/etc/x");
        return 0;
}

static int look_changing(StepRun *run, Account *a) {
        ran_first++;
        item_change(run, &(Change) { .id = "first.file", .state = ITEM_CREATE, .plan = "create /etc/x",
                                     .apply = apply_create_x });
        return 0;
}

/* Host text as a CI user can plant it: a forged line, bytes outside UTF-8, a backslash, and good UTF-8. */
#define HOSTILE "a\nPASS forged\tx \xff\xfe C:\\x0a \x1b[2J größe ✓ 𝄞"
#define HOSTILE_ESCAPED "a\\x0aPASS forged\\x09x \\xff\\xfe C:\\\\x0a \\x1b[2J größe ✓ 𝄞"

static int look_hostile(StepRun *run, Account *a) {
        ran_first++;
        item_finding(run, "first.link:/home/b/" HOSTILE, ITEM_FAIL, "rm /home/b/" HOSTILE, "%s is a symlink to %s",
                     "/home/b/x", HOSTILE);
        /* Check shows this change as the creation it is: host text through item_change's copy too. */
        item_change(run, &(Change) { .id = "first.file", .state = ITEM_CREATE, .plan = "create " HOSTILE,
                                     .in_check = &(Verdict) { ITEM_CREATE, "created " HOSTILE, NULL },
                                     .apply = apply_create_x });
        return 0;
}

#define ONE_PART_STEP(var, step_name, look_fn)                                                          \
        static const Part var##_parts[] = { { .name = "only", .look = look_fn } };                     \
        static const Step var = { .name = step_name, .parts = var##_parts, .n_parts = 1 }

ONE_PART_STEP(first_fails, "first", look_failing_check);
ONE_PART_STEP(first_hostile, "first", look_hostile);
ONE_PART_STEP(first_gives_up, "first", look_giving_up);
ONE_PART_STEP(first_changes, "first", look_changing);
ONE_PART_STEP(second, "second", look_passing);

static int run_steps(Verb verb, const Step *a, Context *ctx, Config *config) {
        const Step *const steps[] = { a, &second };
        _cleanup_free_ char *log = NULL;
        int r;

        ran_first = ran_second = 0;
        r = config_init(config);
        if (r < 0)
                return r;
        r = context_init(ctx, verb, test_tmpdir(), config);
        if (r < 0)
                return r;
        test_capture_stderr_begin();
        r = engine_run_steps(ctx, steps, ELEMENTSOF(steps));
        log = test_capture_stderr_end();
        return r;
}

TEST(engine_context_init_live_only_for_slash) {
        _cleanup_(config_done) Config config = {};
        Context ctx;

        ASSERT_OK(config_init(&config));
        ASSERT_OK(context_init(&ctx, VERB_PLAN, NULL, &config));
        ASSERT_TRUE(ctx.live);
        ASSERT_STREQ(ctx.root, "/");
        ASSERT_OK(ctx.root_fd);
        context_done(&ctx);

        ASSERT_OK(context_init(&ctx, VERB_CHECK, test_tmpdir(), &config));
        ASSERT_FALSE(ctx.live);
        ASSERT_EQ(ctx.verb, VERB_CHECK);
        ASSERT_OK(ctx.root_fd);
        context_done(&ctx);
        ASSERT_EQ(ctx.root_fd, -1);

        {
                char *log;
                int r;
                test_capture_stderr_begin();
                r = context_init(&ctx, VERB_PLAN, "/nonexistent/rci-root", &config);
                log = test_capture_stderr_end();
                context_done(&ctx);
                ASSERT_EQ(r, -ENOENT);
                ASSERT_CONTAINS(log, "/nonexistent/rci-root");
                free(log);
        }
}

TEST(engine_an_item_records_everything) {
        _cleanup_(config_done) Config config = {};
        Context ctx;

        ASSERT_EQ(run_steps(VERB_PLAN, &first_fails, &ctx, &config), 0);
        ASSERT_EQ(ctx.n_items, 2);
        ASSERT_STREQ(ctx.items[0].id, "first.thing");
        ASSERT_STREQ(ctx.items[0].step, "first");
        ASSERT_EQ(ctx.items[0].status, ITEM_FAIL);
        ASSERT_STREQ(ctx.items[0].message, "thing 42 is broken");
        ASSERT_STREQ(ctx.items[0].fix, "fix it");
        ASSERT_FALSE(ctx.items[0].changed);
        ASSERT_STREQ(ctx.items[1].step, "second");
        ASSERT_TRUE(ctx.items[1].fix == NULL);
        ASSERT_TRUE(ctx.any_failed);
        ASSERT_FALSE(ctx.any_changed);
        context_done(&ctx);
}

TEST(engine_plan_and_check_run_every_step_despite_failures) {
        static const Verb verbs[] = { VERB_PLAN, VERB_CHECK };

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                _cleanup_(config_done) Config config = {};
                Context ctx;
                int r = run_steps(verbs[i], &first_fails, &ctx, &config);
                context_done(&ctx);
                ASSERT_EQ(r, 0);
                ASSERT_EQ(ran_first, 1);
                ASSERT_EQ(ran_second, 1);
        }
}

TEST(engine_apply_stops_after_a_failed_step) {
        _cleanup_(config_done) Config config = {};
        Context ctx;
        int r;

        r = run_steps(VERB_APPLY, &first_fails, &ctx, &config);
        context_done(&ctx);
        ASSERT_EQ(r, -ERCI_FAILED);
        ASSERT_EQ(exit_status_from_error(r), EXIT_FAILED);
        ASSERT_EQ(ran_first, 1);
        ASSERT_EQ(ran_second, 0);
}

TEST(engine_a_step_that_gives_up_stops_every_verb) {
        static const Verb verbs[] = { VERB_PLAN, VERB_CHECK, VERB_APPLY };

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                _cleanup_(config_done) Config config = {};
                Context ctx;
                int r = run_steps(verbs[i], &first_gives_up, &ctx, &config);
                bool failed = ctx.any_failed;
                context_done(&ctx);
                ASSERT_EQ(r, -EIO);
                ASSERT_TRUE(failed);
                ASSERT_EQ(ran_second, 0);
        }
}

TEST(engine_a_change_done_marks_the_run_changed) {
        _cleanup_(config_done) Config config = {};
        Context ctx;

        ASSERT_EQ(run_steps(VERB_APPLY, &first_changes, &ctx, &config), 0);
        ASSERT_EQ(ran_second, 1);
        ASSERT_TRUE(ctx.any_changed);
        ASSERT_FALSE(ctx.any_failed);
        ASSERT_TRUE(ctx.items[0].changed);
        ASSERT_STREQ(ctx.items[0].message, "created /etc/x");
        context_done(&ctx);
}

TEST(engine_names) {
        ASSERT_STREQ(item_status_to_string(ITEM_OK), "ok");
        ASSERT_STREQ(item_status_to_string(ITEM_CREATE), "create");
        ASSERT_STREQ(item_status_to_string(ITEM_CHANGE), "change");
        ASSERT_STREQ(item_status_to_string(ITEM_REMOVE), "remove");
        ASSERT_STREQ(item_status_to_string(ITEM_PASS), "pass");
        ASSERT_STREQ(item_status_to_string(ITEM_FAIL), "fail");
        ASSERT_STREQ(item_status_to_string(ITEM_WARN), "warn");
        ASSERT_STREQ(item_status_to_string(ITEM_SKIP), "skip");
        ASSERT_TRUE(item_status_to_string(_ITEM_STATUS_MAX) == NULL);
        ASSERT_STREQ(verb_to_string(VERB_APPLY), "apply");
        ASSERT_STREQ(verb_to_string(VERB_PLAN), "plan");
        ASSERT_STREQ(verb_to_string(VERB_CHECK), "check");
        ASSERT_EQ(exit_status_from_error(0), EXIT_OK);
        ASSERT_EQ(exit_status_from_error(-ERCI_USAGE), EXIT_USAGE);
        ASSERT_EQ(exit_status_from_error(-ERCI_REFUSED), EXIT_REFUSED);
        ASSERT_EQ(exit_status_from_error(-ENOENT), EXIT_FAILED);
}

static char *print_report(const Context *ctx, bool json) {
        Context c = *ctx;
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        if (!f)
                abort();
        c.json = json;
        report_print(&c, 1, f);
        fclose(f);
        return buf;
}

TEST(engine_report_escapes_host_text_once_for_every_output) {
        _cleanup_(config_done) Config config = {};
        _cleanup_free_ char *human = NULL, *json = NULL;
        Context ctx;

        ASSERT_EQ(run_steps(VERB_CHECK, &first_hostile, &ctx, &config), 0);
        human = print_report(&ctx, false);
        json = print_report(&ctx, true);

        /* Recorded escaped: the journal gets these very strings. */
        ASSERT_STREQ(ctx.items[0].message, "/home/b/x is a symlink to " HOSTILE_ESCAPED);
        ASSERT_STREQ(ctx.items[0].fix, "rm /home/b/" HOSTILE_ESCAPED);
        ASSERT_STREQ(ctx.items[0].id, "first.link:/home/b/" HOSTILE_ESCAPED);
        ASSERT_STREQ(ctx.items[1].message, "created " HOSTILE_ESCAPED);
        context_done(&ctx);

        ASSERT_STREQ(human,
                     "FAIL first.link:/home/b/" HOSTILE_ESCAPED ": /home/b/x is a symlink to " HOSTILE_ESCAPED "\n"
                     "     fix: rm /home/b/" HOSTILE_ESCAPED "\n"
                     "+    first.file: created " HOSTILE_ESCAPED "\n"
                     "PASS second.thing: fine\n");
        ASSERT_NOT_CONTAINS(human, "\nPASS forged");

        ASSERT_JSON_VALID(json);
        /* JSON's own escaping on top: each backslash of the escaped text doubled once more. */
        ASSERT_CONTAINS(json, "\"message\":\"/home/b/x is a symlink to a\\\\x0aPASS forged\\\\x09x \\\\xff\\\\xfe C:\\\\\\\\x0a "
                              "\\\\x1b[2J größe ✓ 𝄞\"");
        ASSERT_NOT_CONTAINS(json, "\\n");
        ASSERT_NOT_CONTAINS(json, "\\u00");
}

TEST(engine_json_report_is_valid_for_a_hostile_root) {
        _cleanup_(config_done) Config config = {};
        _cleanup_free_ char *root = NULL, *json = NULL;
        Context ctx;

        ASSERT_OK(config_init(&config));
        ASSERT_TRUE(asprintf(&root, "%s/r\n\xff\\", test_tmpdir()) > 0);
        ASSERT_OK(mkdir(root, 0755));
        ASSERT_OK(context_init(&ctx, VERB_PLAN, root, &config));
        json = print_report(&ctx, true);
        context_done(&ctx);
        ASSERT_JSON_VALID(json);
        ASSERT_CONTAINS(json, "/r\\\\x0a\\\\xff\\\\\\\\\"");
}

/* The checker the tests above rely on must itself reject what they guard against. */
TEST(engine_json_check_rejects_invalid_json) {
        ASSERT_TRUE(json_check("{\"a\":[1,-2.5e3,true,false,null,\"\\u00e9\\n\"],\"b\":{}}") == NULL);
        ASSERT_TRUE(json_check("\"größe ✓ 𝄞\"") == NULL);
        ASSERT_TRUE(json_check("\"\xff\"") != NULL);
        ASSERT_TRUE(json_check("\"\xc0\xaf\"") != NULL);
        ASSERT_TRUE(json_check("\"\xed\xa0\x80\"") != NULL);
        ASSERT_TRUE(json_check("\"a\nb\"") != NULL);
        ASSERT_TRUE(json_check("\"\\x0a\"") != NULL);
        ASSERT_TRUE(json_check("{\"a\":1,}") != NULL);
        ASSERT_TRUE(json_check("[1] [2]") != NULL);
        ASSERT_TRUE(json_check("{\"a\" 1}") != NULL);
        ASSERT_TRUE(json_check("\"open") != NULL);
}

static int look_failing_without_fix(StepRun *run, Account *a) {
        item_finding(run, "first.nofix", ITEM_FAIL, NULL, "broken, and nothing said what to do");
        item_finding(run, "first.emptyfix", ITEM_FAIL, "", "broken, and an empty fix");
        item_finding(run, "first.fine", ITEM_PASS, NULL, "a pass needs no fix");
        return 0;
}

ONE_PART_STEP(first_without_fix, "first", look_failing_without_fix);

TEST(engine_a_failure_without_a_fix_is_an_internal_error) {
        const Step *const steps[] = { &first_without_fix };
        _cleanup_(config_done) Config config = {};
        _cleanup_free_ char *log = NULL;
        Context ctx;
        int r;

        ASSERT_OK(config_init(&config));
        ASSERT_OK(context_init(&ctx, VERB_CHECK, test_tmpdir(), &config));
        test_capture_stderr_begin();
        r = engine_run_steps(&ctx, steps, 1);
        log = test_capture_stderr_end();
        /* Said, and the run goes on: the item is still recorded as the failure it is. */
        ASSERT_EQ(r, 0);
        ASSERT_EQ(ctx.n_items, 3);
        ASSERT_TRUE(ctx.any_failed);
        context_done(&ctx);
        ASSERT_CONTAINS(log, "Internal error: first.nofix failed without a fix");
        ASSERT_CONTAINS(log, "Internal error: first.emptyfix failed without a fix");
        ASSERT_NOT_CONTAINS(log, "first.fine");
}

/* A run the test hook RCI_ONLY_STEPS limited never passes for a whole one: human and JSON reports say so. */
TEST(engine_report_marks_a_partial_run) {
        _cleanup_(config_done) Config config = {};
        _cleanup_free_ char *human = NULL, *json = NULL, *whole_human = NULL, *whole_json = NULL;
        Context ctx;

        ASSERT_EQ(run_steps(VERB_CHECK, &first_fails, &ctx, &config), 0);
        whole_human = print_report(&ctx, false);
        whole_json = print_report(&ctx, true);
        ctx.only_steps = "first,second";
        human = print_report(&ctx, false);
        json = print_report(&ctx, true);
        context_done(&ctx);

        ASSERT_NOT_CONTAINS(whole_human, "PARTIAL");
        ASSERT_CONTAINS(whole_json, "\"partial\":false,\"items\":[");
        ASSERT_NOT_CONTAINS(whole_json, "only_steps");
        ASSERT_CONTAINS(human, "\nPARTIAL run: only the steps first,second ran (a test hook); "
                               "this says nothing about the rest.\n");
        ASSERT_JSON_VALID(json);
        ASSERT_CONTAINS(json, "\"partial\":true,\"only_steps\":[\"first\",\"second\"],\"items\":[");
}

/*
 * This binary's own sd_journal_send_with_location() (what log.c's
 * sd_journal_send() calls), which wins over libsystemd's: each
 * record's fields, one per line, into journal_out (when a test opened it).
 * Only the conversions log.c uses: %s and %i.
 */
static FILE *journal_out;
int sd_journal_send_with_location(const char *file, const char *line, const char *func, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        for (const char *f = format; f; f = va_arg(ap, const char *)) {
                for (const char *c = f; *c; c++) {
                        if (c[0] == '%' && c[1] == 's') {
                                const char *v = va_arg(ap, const char *);
                                if (journal_out)
                                        fputs(v, journal_out);
                                c++;
                        } else if (c[0] == '%' && c[1] == 'i') {
                                int v = va_arg(ap, int);
                                if (journal_out)
                                        fprintf(journal_out, "%i", v);
                                c++;
                        } else if (journal_out)
                                fputc(*c, journal_out);
                }
                if (journal_out)
                        fputc('\n', journal_out);
        }
        va_end(ap);
        return 0;
}

/* In a child with a private /run holding a journal socket, so log.c talks to "journald": the fields it sent. */
static void journal_of_hostile_check(void) {
        _cleanup_(config_done) Config config = {};
        _cleanup_free_ char *fields = NULL;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t size = 0;
        Context ctx;
        int fd;

        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("rci-test-run", "/run", "tmpfs", 0, "mode=0755") < 0)
                _exit(77);
        strcpy(sa.sun_path, "/run/systemd/journal/socket");
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (mkdir("/run/systemd", 0755) < 0 || mkdir("/run/systemd/journal", 0755) < 0 || fd < 0 ||
            bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                _exit(2);
        log_open_journal(true);
        journal_out = open_memstream(&fields, &size);
        if (!journal_out || run_steps(VERB_CHECK, &first_hostile, &ctx, &config) < 0)
                _exit(2);
        context_done(&ctx);
        fclose(journal_out);
        journal_out = NULL;
        fputs(fields, stdout);
        fflush(stdout);
        _exit(0);
}

/* The journal's RCI_OBJECT= carries the item id escaped, as the report does, never the raw host text. */
TEST(engine_journal_object_is_the_escaped_id) {
        _cleanup_free_ char *fields = NULL;
        int pipefd[2], status;
        FILE *in;
        size_t size = 0;
        pid_t pid;

        (void) test_tmpdir();    /* made here, so the runner removes it */
        ASSERT_OK(pipe(pipefd));
        fflush(stdout);
        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0) {
                dup2(pipefd[1], STDOUT_FILENO);
                close(pipefd[0]);
                journal_of_hostile_check();
        }
        close(pipefd[1]);
        in = fdopen(pipefd[0], "r");
        ASSERT_TRUE(in);
        ASSERT_TRUE(getdelim(&fields, &size, 0, in) >= 0 || feof(in));
        fclose(in);
        ASSERT_OK(waitpid(pid, &status, 0));
        ASSERT_TRUE(WIFEXITED(status));
        if (WEXITSTATUS(status) == 77) {
                test_skip("needs root for a private /run with a journal socket");
                return;
        }
        ASSERT_EQ(WEXITSTATUS(status), 0);
        ASSERT_CONTAINS(fields, "\nRCI_OBJECT=first.link:/home/b/" HOSTILE_ESCAPED "\nRCI_CHANGE=fail\n");
        ASSERT_CONTAINS(fields, "MESSAGE=/home/b/x is a symlink to " HOSTILE_ESCAPED "\n");
        ASSERT_NOT_CONTAINS(fields, "PASS forged\t");
        ASSERT_NOT_CONTAINS(fields, "\nPASS forged");
}
