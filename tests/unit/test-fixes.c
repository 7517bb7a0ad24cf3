/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <sys/stat.h>
#include <unistd.h>

#include "fake-tree.h"
#include "steps/steps.h"
#include "tests.h"
#include "units.h"
#include "util/macro.h"

/*
 * Every FAIL item says what to do about it (README: JSON, "fix"). All the
 * steps run plan and check on fake trees broken in many ways at once; each
 * FAIL must come with a fix, and the engine must not have logged a failure
 * without one. A step that gains a FAIL without a fix fails here (or in any
 * fake_run() test, or in the shell tests' expect, which look the same way).
 */

static const Step *const every_step[] = {
        &step_preflight, &step_disk, &step_user, &step_storage, &step_daemon, &step_agent,
};

typedef struct Tally {
        size_t runs, failures;
        char ids[4096];  /* the failed ids, for the test's own assertions */
} Tally;

static void run_every_step(const char *d, Verb verb, Tally *t) {
        _cleanup_(config_done) Config config = {};
        _cleanup_free_ char *log = NULL;
        Context ctx;
        size_t n;

        if (config_init(&config) < 0)
                abort();
        units_set_dir(UNITS_SOURCE_DIR);
        if (context_init(&ctx, verb, d, &config) < 0)
                abort();
        test_capture_stderr_begin();
        (void) engine_run_steps(&ctx, every_step, ELEMENTSOF(every_step));
        log = test_capture_stderr_end();

        n = fake_assert_every_failure_has_a_fix(&ctx);
        for (size_t i = 0; i < ctx.n_items; i++)
                if (ctx.items[i].status == ITEM_FAIL) {
                        size_t l = strlen(t->ids);
                        snprintf(t->ids + l, sizeof(t->ids) - l, "%s ", ctx.items[i].id);
                }
        if (strstr(log, "Internal error"))
                test_fail(__FILE__, __LINE__, "%s: %s", verb_to_string(verb), log);
        if (getenv("RCI_TEST_VERBOSE"))
                for (size_t i = 0; i < ctx.n_items; i++)
                        if (ctx.items[i].status == ITEM_FAIL)
                                printf("# FAIL %s: %s | fix: %s\n", ctx.items[i].id, ctx.items[i].message,
                                       ctx.items[i].fix ? ctx.items[i].fix : "(none)");
        context_done(&ctx);
        t->runs++;
        t->failures += n;
}

static void plan_and_check(const char *d, Tally *t) {
        run_every_step(d, VERB_PLAN, t);
        run_every_step(d, VERB_CHECK, t);
}

static void give_to_ci(const char *path) {
        if (getuid() == 0 && lchown(path, fake_ci_uid(), fake_ci_gid()) < 0)
                abort();
}

TEST(every_failure_on_an_empty_tree_has_a_fix) {
        Tally t = {};

        plan_and_check(test_tmpdir(), &t);
        /* No tools, no account files: preflight and the user step fail throughout. */
        ASSERT_CONTAINS(t.ids, "preflight.newuidmap");
        ASSERT_CONTAINS(t.ids, "user.account");
        ASSERT_TRUE(t.failures >= 10);
}

TEST(every_failure_on_a_tree_broken_everywhere_has_a_fix) {
        const char *d = test_tmpdir();
        char p[4096];
        Tally t = {};

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        fake_tree_populate(d, true);
        /* user: privileged groups, a sudoers rule, no subordinate IDs */
        fake_tree_write_ids(d, "etc/group",
                            "root:x:0:\nsudo:x:27:alice,buildkite\ndocker:x:999:buildkite\nalice:x:@ALICE@:\n"
                            "buildkite:x:@GID@:\n");
        test_write(d, "etc/sudoers", "root ALL=(ALL:ALL) ALL\nbuildkite ALL=(ALL) NOPASSWD: ALL\n");
        /* storage: ~/.local is a symlink the build planted */
        snprintf(p, sizeof(p), "%s/home/buildkite/.local", d);
        ASSERT_OK(symlink("/etc", p));
        give_to_ci(p);
        /* daemon: an administrator's own file where the root daemon's mask goes */
        test_write(d, "etc/systemd/system/docker.service", "[Service]\nExecStart=/usr/sbin/dockerd\n");
        /* agent: a configuration every user can change */
        test_write(d, "etc/buildkite-agent/buildkite-agent.cfg", "token=x\n");
        test_write(d, "etc/buildkite-agent/hooks/environment", "#!/bin/sh\n");
        snprintf(p, sizeof(p), "%s/etc/buildkite-agent/hooks", d);
        ASSERT_OK(chmod(p, 0777));

        plan_and_check(d, &t);
        ASSERT_CONTAINS(t.ids, "user.groups");
        ASSERT_CONTAINS(t.ids, "user.sudoers");
        ASSERT_CONTAINS(t.ids, "user.subuid");
        ASSERT_CONTAINS(t.ids, "storage.home-local");
        ASSERT_CONTAINS(t.ids, "daemon.root-docker.service");
        ASSERT_CONTAINS(t.ids, "agent.config:");
        ASSERT_TRUE(t.failures >= 20);
}

TEST(every_failure_for_an_unusable_account_has_a_fix) {
        static const char *const passwd[] = {
                /* a system account */
                "root:x:0:0:root:/root:/bin/bash\nbuildkite:x:10:10::/home/buildkite:/bin/bash\n",
                /* the overflow UID */
                "root:x:0:0:root:/root:/bin/bash\nbuildkite:x:65534:65534::/home/buildkite:/bin/bash\n",
                /* a home that is not absolute */
                "root:x:0:0:root:/root:/bin/bash\nbuildkite:x:@UID@:@GID@::home:/bin/bash\n",
                /* a home that is a file */
                "root:x:0:0:root:/root:/bin/bash\nbuildkite:x:@UID@:@GID@::/home/file:/bin/bash\n",
                /* a home that does not exist */
                "root:x:0:0:root:/root:/bin/bash\nbuildkite:x:@UID@:@GID@::/home/gone:/bin/bash\n",
        };

        for (size_t i = 0; i < ELEMENTSOF(passwd); i++) {
                char d[4096];
                Tally t = {};

                snprintf(d, sizeof(d), "%s/%zu", test_tmpdir(), i);
                fake_tree_populate(d, true);
                fake_tree_write_ids(d, "etc/passwd", passwd[i]);
                test_write(d, "home/file", "not a directory\n");
                plan_and_check(d, &t);
                if (!strstr(t.ids, "user.account") && !strstr(t.ids, "storage.home-link"))
                        test_fail(__FILE__, __LINE__, "case %zu: the account's problem was not found: %s", i, t.ids);
        }
}
