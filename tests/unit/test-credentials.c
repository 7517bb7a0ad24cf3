/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests.h"
#include "config.h"
#include "engine/engine.h"
#include "steps/steps.h"
#include "util/macro.h"

/*
 * The credentials step on the live /proc, read only: this process (and its
 * UID's others) stands in for the CI user's, a supplementary group it holds
 * for a group that leads to root. What each verb shows must not change.
 */

static int run_credentials(Verb verb, const char *root, bool known, bool planned, gid_t privileged, Context *ctx,
                           Config *config) {
        int r = config_init(config);
        if (r < 0)
                return r;
        r = context_init(ctx, verb, root, config);
        if (r < 0)
                return r;
        ctx->accounts[0].state = known ? ACCOUNT_KNOWN : planned ? ACCOUNT_PLANNED : ACCOUNT_UNUSABLE;
        if (known) {
                ctx->accounts[0].uid = getuid();
                ctx->accounts[0].gid = getgid();
        }
        ctx->facts.privileged_gids = calloc(1, sizeof(gid_t));
        if (!ctx->facts.privileged_gids)
                return -ENOMEM;
        ctx->facts.privileged_gids[0] = privileged;
        ctx->facts.n_privileged_gids = 1;
        ctx->current_step = "credentials";
        return step_run(ctx, &step_credentials);
}

#define HELD_GID ((gid_t) 2147480001)

/*
 * A process of this UID that holds a supplementary group: one this process
 * holds, or (as root) a child given HELD_GID; (gid_t) -1 when neither.
 */
static gid_t held_group(pid_t *ret_child) {
        gid_t g[64];
        int n = getgroups(ELEMENTSOF(g), g), p[2];
        char c;

        *ret_child = 0;
        if (n > 0)
                return g[0];
        if (geteuid() != 0 || pipe(p) < 0)
                return (gid_t) -1;
        *ret_child = fork();
        if (*ret_child < 0) {
                *ret_child = 0;
                return (gid_t) -1;
        }
        if (*ret_child == 0) {
                gid_t held = HELD_GID;
                close(p[0]);
                if (setgroups(1, &held) < 0 || write(p[1], "x", 1) != 1)
                        _exit(1);
                pause();
                _exit(0);
        }
        close(p[1]);
        n = (int) read(p[0], &c, 1);
        close(p[0]);
        return n == 1 ? HELD_GID : (gid_t) -1;
}

static void child_stop(pid_t pid) {
        if (pid > 0) {
                (void) kill(pid, SIGKILL);
                (void) waitpid(pid, NULL, 0);
        }
}

TEST(credentials_offline_and_without_a_user_skip) {
        _cleanup_(config_done) Config config = {};
        Context ctx;

        ASSERT_OK(run_credentials(VERB_CHECK, test_tmpdir(), true, false, 0, &ctx, &config));
        ASSERT_EQ(ctx.n_items, 1);
        ASSERT_EQ(ctx.items[0].status, ITEM_SKIP);
        ASSERT_STREQ(ctx.items[0].message, "the groups of running processes are checked on the live host");
        context_done(&ctx);
        config_done(&config);

        ASSERT_OK(run_credentials(VERB_PLAN, NULL, false, true, 0, &ctx, &config));
        ASSERT_EQ(ctx.n_items, 1);
        ASSERT_EQ(ctx.items[0].status, ITEM_SKIP);
        ASSERT_STREQ(ctx.items[0].message, "user buildkite does not exist yet: it has no processes");
        context_done(&ctx);
        config_done(&config);

        ASSERT_OK(run_credentials(VERB_APPLY, NULL, false, false, 0, &ctx, &config));
        ASSERT_EQ(ctx.n_items, 1);
        ASSERT_EQ(ctx.items[0].status, ITEM_SKIP);
        ASSERT_STREQ(ctx.items[0].message, "user buildkite does not exist or is not usable (see the user step)");
        ASSERT_TRUE(ctx.items[0].fix == NULL);
        context_done(&ctx);
}

TEST(credentials_none_held_is_in_place) {
        _cleanup_(config_done) Config config = {};
        static const Verb verbs[] = { VERB_PLAN, VERB_CHECK, VERB_APPLY };
        static const ItemStatus want[] = { ITEM_OK, ITEM_PASS, ITEM_OK };
        Context ctx;

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                /* a GID nothing holds */
                ASSERT_OK(run_credentials(verbs[i], NULL, true, false, 2147480000, &ctx, &config));
                ASSERT_EQ(ctx.n_items, 1);
                ASSERT_EQ(ctx.items[0].status, want[i]);
                ASSERT_TRUE(strstr(ctx.items[0].message, "running process") != NULL);
                ASSERT_CONTAINS(ctx.items[0].message, "holds a group that leads to root");
                ASSERT_TRUE(ctx.items[0].fix == NULL);
                context_done(&ctx);
                config_done(&config);
        }
}

TEST(credentials_held_warns_in_plan_and_fails_in_check_and_apply) {
        Config config[3] = {};
        Context plan, check, apply;
        pid_t child = 0;
        gid_t g = held_group(&child);
        int r[3];

        if (g == (gid_t) -1) {
                child_stop(child);
                test_skip("no process of this UID holds a supplementary group (and not root to start one) to stand "
                          "in for a privileged one");
                return;
        }
        /* All three verbs first: the child is stopped before any assertion can return. */
        r[0] = run_credentials(VERB_PLAN, NULL, true, false, g, &plan, &config[0]);
        r[1] = run_credentials(VERB_CHECK, NULL, true, false, g, &check, &config[1]);
        r[2] = run_credentials(VERB_APPLY, NULL, true, false, g, &apply, &config[2]);
        child_stop(child);

        ASSERT_OK(r[0]);
        ASSERT_EQ(plan.n_items, 1);
        ASSERT_EQ(plan.items[0].status, ITEM_WARN);
        ASSERT_CONTAINS(plan.items[0].message, "a group that leads to root: PID ");
        ASSERT_CONTAINS(plan.items[0].message, "; apply restarts buildkite's manager and the agent when they hold "
                                               "one, and fails naming whatever else still does");
        ASSERT_TRUE(plan.items[0].fix == NULL);
        ASSERT_FALSE(plan.any_failed);

        ASSERT_OK(r[1]);
        ASSERT_EQ(check.n_items, 1);
        ASSERT_EQ(check.items[0].status, ITEM_FAIL);
        ASSERT_CONTAINS(check.items[0].message, "a group that leads to root, and with it that power, whatever "
                                                "/etc/group says now: PID ");
        ASSERT_TRUE(check.items[0].fix != NULL);
        ASSERT_TRUE(strncmp(check.items[0].fix, "end ", 4) == 0);
        ASSERT_CONTAINS(check.items[0].fix, "(kill ");
        ASSERT_CONTAINS(check.items[0].fix, "a new process gets only the groups /etc/group gives buildkite "
                                            "(rootless-ci apply restarts the user manager and the agent itself when "
                                            "they hold one)");
        ASSERT_TRUE(check.any_failed);

        ASSERT_OK(r[2]);
        ASSERT_EQ(apply.n_items, 1);
        ASSERT_EQ(apply.items[0].status, ITEM_FAIL);
        ASSERT_STREQ(apply.items[0].message, check.items[0].message);
        ASSERT_TRUE(apply.items[0].fix != NULL);
        ASSERT_TRUE(strstr(apply.items[0].fix, "rootless-ci apply") == NULL);
        ASSERT_TRUE(strncmp(apply.items[0].fix, check.items[0].fix, strlen(apply.items[0].fix)) == 0);
        ASSERT_CONTAINS(apply.items[0].fix, "a new process gets only the groups /etc/group gives buildkite");
        ASSERT_FALSE(apply.items[0].changed);

        context_done(&plan);
        context_done(&check);
        context_done(&apply);
        for (size_t i = 0; i < ELEMENTSOF(config); i++)
                config_done(&config[i]);
}

/* Issue 16: each tenant's user is judged by its own processes, under an id that names the tenant. */
TEST(credentials_each_tenant_is_judged_by_its_own_processes) {
        _cleanup_(config_done) Config config = {};
        const char *names[] = { "main", "pr" };
        Context ctx;
        pid_t child = 0;
        gid_t g = held_group(&child);
        int r;

        if (g == (gid_t) -1) {
                child_stop(child);
                test_skip("no process of this UID holds a supplementary group (and not root to start one)");
                return;
        }
        r = config_init(&config);
        config.tenants = calloc(2, sizeof(Tenant));
        if (r >= 0 && config.tenants) {
                config.n_tenants = 2;
                for (size_t i = 0; i < 2; i++)
                        config.tenants[i] = (Tenant) { .name = strdup(names[i]),
                                                       .user = strdup(i == 0 ? "buildkite" : "buildkite-pr"),
                                                       .agent_unit = strdup("buildkite-agent@x.service"),
                                                       .trust = i == 0 ? TRUST_TRUSTED : TRUST_UNTRUSTED };
                r = context_init(&ctx, VERB_CHECK, NULL, &config);
        } else
                r = -ENOMEM;
        if (r >= 0) {
                /* main: a UID with no process; pr: this UID, whose child holds the group. */
                ctx.accounts[0].state = ctx.accounts[1].state = ACCOUNT_KNOWN;
                ctx.accounts[0].uid = ctx.accounts[0].gid = 2147480002;
                ctx.accounts[1].uid = getuid();
                ctx.accounts[1].gid = getgid();
                ctx.facts.privileged_gids = calloc(1, sizeof(gid_t));
                if (!ctx.facts.privileged_gids)
                        r = -ENOMEM;
                else {
                        ctx.facts.privileged_gids[0] = g;
                        ctx.facts.n_privileged_gids = 1;
                        ctx.current_step = "credentials";
                        r = step_run(&ctx, &step_credentials);
                }
        }
        child_stop(child);

        ASSERT_OK(r);
        ASSERT_EQ(ctx.n_items, 2);
        ASSERT_STREQ(ctx.items[0].id, "credentials.groups:main");
        ASSERT_EQ(ctx.items[0].status, ITEM_PASS);
        ASSERT_CONTAINS(ctx.items[0].message, "none of buildkite's 0 running processes");
        ASSERT_STREQ(ctx.items[1].id, "credentials.groups:pr");
        ASSERT_EQ(ctx.items[1].status, ITEM_FAIL);
        ASSERT_CONTAINS(ctx.items[1].message, " of buildkite-pr still hold");
        context_done(&ctx);
}
