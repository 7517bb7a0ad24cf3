/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "engine/engine.h"
#include "steps/steps.h"
#include "steps/tenants/tenants.h"
#include "tests.h"
#include "util/error.h"
#include "util/fs.h"

/*
 * The tenants step on fake trees (offline: files only, systemd is not
 * asked): the record apply writes, a removed tenant reported as a WARN in
 * every verb with nothing taken down, --retire taking down what
 * rootless-ci wrote for it and keeping every byte of its data, and the
 * refusals of --retire. Config.tenants is filled by hand (the [Tenant]
 * parser is another branch's).
 */

#define PR_UID "1234"
#define RECORD_MAIN_PR                                                                                         \
        "main buildkite buildkite-agent@main.service /etc/buildkite-agent/main.cfg\n"                        \
        "pr buildkite-pr buildkite-agent@pr.service /etc/buildkite-agent/pr.cfg\n"

static void config_tenants(Config *c, size_t n) {
        static const char *const names[] = { "main", "pr" }, *const users[] = { "buildkite", "buildkite-pr" };

        if (config_init(c) < 0)
                abort();
        c->tenants = calloc(n, sizeof(Tenant));
        if (!c->tenants)
                abort();
        c->n_tenants = n;
        for (size_t i = 0; i < n; i++) {
                c->tenants[i] = (Tenant) { .name = strdup(names[i]), .user = strdup(users[i]) };
                if (asprintf(&c->tenants[i].agent_unit, "buildkite-agent@%s.service", names[i]) < 0 ||
                    asprintf(&c->tenants[i].agent_config, "/etc/buildkite-agent/%s.cfg", names[i]) < 0)
                        abort();
        }
}

/* A host apply set up main and pr on: the record, what it wrote for pr, and pr's data. */
static void tree_with_pr(const char *dir, const char *record) {
        _cleanup_(tenant_records_done) TenantRecords t = {};
        _cleanup_free_ char *text = NULL;

        /* As apply writes it (its header too). */
        if (tenant_records_parse(record, &t) < 0 || !(text = tenant_records_render(t.entries, t.n_entries)))
                abort();
        test_write(dir, "etc/passwd",
                   "root:x:0:0:root:/root:/bin/bash\n"
                   "buildkite:x:1001:1001::/home/buildkite:/bin/bash\n"
                   "buildkite-pr:x:" PR_UID ":" PR_UID "::/home/buildkite-pr:/bin/bash\n");
        test_write(dir, "etc/group", "root:x:0:\n");
        test_write(dir, "var/lib/rootless-ci/tenants", text);
        test_write(dir, "etc/systemd/system/buildkite-agent@pr.service.d/zz-rootless-ci.conf", "[Service]\nUser=buildkite-pr\n");
        test_write(dir, "etc/systemd/system/buildkite-agent@main.service.d/zz-rootless-ci.conf", "[Service]\nUser=buildkite\n");
        test_write(dir, "etc/systemd/system/user@" PR_UID ".service.d/rootless-ci-mount.conf", "[Unit]\n");
        test_write(dir, "etc/systemd/system/user@1001.service.d/rootless-ci-mount.conf", "[Unit]\n");
        test_write(dir, "var/lib/systemd/linger/buildkite-pr", "");
        test_write(dir, "var/lib/systemd/linger/buildkite", "");
        /* Both agent instances enabled in the tree, as systemctl --root enables them. */
        test_write(dir, "lib/systemd/system/buildkite-agent@.service", "[Install]\nWantedBy=multi-user.target\n");
        test_write(dir, "etc/systemd/system/multi-user.target.wants/.keep", "");
        for (size_t i = 0; i < 2; i++)
                if (symlink("/lib/systemd/system/buildkite-agent@.service",
                            test_path(dir, i == 0 ? "etc/systemd/system/multi-user.target.wants/buildkite-agent@pr.service"
                                                  : "etc/systemd/system/multi-user.target.wants/buildkite-agent@main.service")) < 0)
                        abort();
        /* Its data: never deleted. */
        test_write(dir, "home/buildkite-pr/.profile", "pr's profile\n");
        test_write(dir, "srv/rootless-ci/buildkite-pr/builds/pipeline/README", "a checkout\n");
        test_write(dir, "srv/rootless-ci/buildkite-pr/docker/image/overlay2/repositories.json", "{}\n");
        test_write(dir, "etc/buildkite-agent/pr.cfg", "token=\"secret\"\n");
}

static int run_tenants(Context *ctx, Verb verb, const char *dir, const Config *c) {
        const Step *const steps[] = { &step_tenants };

        if (context_init(ctx, verb, dir, c) < 0)
                abort();
        return engine_run_steps(ctx, steps, 1);
}

static const Item *find_item(const Context *ctx, const char *id) {
        for (size_t i = 0; i < ctx->n_items; i++)
                if (streq(ctx->items[i].id, id))
                        return &ctx->items[i];
        return NULL;
}

static bool exists(const char *dir, const char *relpath) {
        struct stat st;
        return lstat(test_path(dir, relpath), &st) == 0;
}

TEST(record_round_trip_and_malformed_lines) {
        TenantRecord e[] = {
                { .name = "main", .user = "buildkite", .agent_unit = "buildkite-agent@main.service",
                  .agent_config = "/etc/buildkite-agent/main.cfg" },
                { .name = TENANT_LEGACY_NAME, .user = "ci", .agent_unit = "buildkite-agent.service" },
        };
        _cleanup_(tenant_records_done) TenantRecords t = {}, bad = {};
        _cleanup_free_ char *text = tenant_records_render(e, ELEMENTSOF(e));

        ASSERT_TRUE(text);
        ASSERT_CONTAINS(text, "# The tenants rootless-ci apply has set up");
        ASSERT_CONTAINS(text, "\nmain buildkite buildkite-agent@main.service /etc/buildkite-agent/main.cfg\n"
                              "_legacy ci buildkite-agent.service -\n");
        ASSERT_OK(tenant_records_parse(text, &t));
        ASSERT_EQ(t.n_entries, 2);
        ASSERT_EQ(t.bad_line, 0);
        ASSERT_STREQ(tenant_records_find(&t, "_legacy")->user, "ci");
        ASSERT_STREQ(tenant_records_find(&t, "main")->agent_unit, "buildkite-agent@main.service");
        ASSERT_STREQ(tenant_records_find(&t, "main")->agent_config, "/etc/buildkite-agent/main.cfg");
        ASSERT_TRUE(tenant_records_find(&t, "_legacy")->agent_config == NULL);

        /* The first bad line is named; the good ones are still read. */
        ASSERT_OK(tenant_records_parse("# c\nmain buildkite buildkite-agent@main.service -\n\n"
                                       "Bad_Name u x.service -\npr buildkite-pr\nmain other y.service -\n"
                                       "x u x.service relative.cfg\n",
                                       &bad));
        ASSERT_EQ(bad.n_entries, 1);
        ASSERT_EQ(bad.bad_line, 4);
        ASSERT_STREQ(bad.bad_why, "not a tenant name");
        tenant_records_done(&bad);
        /* NAME~N: a tenant's earlier settings; nothing else after a '~'. */
        ASSERT_OK(tenant_records_parse("pr~2 u x.service -\n_legacy~1 u x.service -\npr~ u x.service -\n", &bad));
        ASSERT_EQ(bad.n_entries, 2);
        ASSERT_EQ(bad.bad_line, 3);
}

TEST(apply_records_the_legacy_tenant_and_named_tenants) {
        const char *dir = test_tmpdir();
        _cleanup_(config_done) Config legacy = {}, two = {};
        Context ctx;

        /* No [Tenant]: the one of [User]/[Agent], as _legacy; plan and check write nothing. */
        ASSERT_OK(config_init(&legacy));
        ASSERT_OK(run_tenants(&ctx, VERB_PLAN, dir, &legacy));
        ASSERT_EQ(find_item(&ctx, "tenants.record")->status, ITEM_CREATE);
        context_done(&ctx);
        /* check judges the host: the record, apply's bookkeeping, is not its business (unless it is corrupt). */
        ASSERT_OK(run_tenants(&ctx, VERB_CHECK, dir, &legacy));
        ASSERT_TRUE(find_item(&ctx, "tenants.record") == NULL);
        ASSERT_FALSE(ctx.any_failed);
        context_done(&ctx);
        ASSERT_FALSE(exists(dir, "var/lib/rootless-ci/tenants"));
        ASSERT_OK(run_tenants(&ctx, VERB_APPLY, dir, &legacy));
        ASSERT_TRUE(find_item(&ctx, "tenants.record")->changed);
        context_done(&ctx);
        ASSERT_CONTAINS(test_read_kept(dir, "var/lib/rootless-ci/tenants"),
                        "\n_legacy buildkite buildkite-agent.service -\n");

        /* Switched to [Tenant] sections: both recorded, the legacy one kept (removed, not retired). */
        config_tenants(&two, 2);
        ASSERT_OK(run_tenants(&ctx, VERB_APPLY, dir, &two));
        ASSERT_EQ(find_item(&ctx, "tenants.removed:_legacy")->status, ITEM_WARN);
        context_done(&ctx);
        ASSERT_CONTAINS(test_read_kept(dir, "var/lib/rootless-ci/tenants"),
                        "\n" RECORD_MAIN_PR "_legacy buildkite buildkite-agent.service -\n");
        /* A second apply changes nothing. */
        ASSERT_OK(run_tenants(&ctx, VERB_APPLY, dir, &two));
        ASSERT_FALSE(ctx.any_changed);
        ASSERT_EQ(find_item(&ctx, "tenants.record")->status, ITEM_OK);
        context_done(&ctx);
}

TEST(removed_tenant_is_a_warning_in_every_verb_and_nothing_is_taken_down) {
        const char *dir = test_tmpdir();
        _cleanup_(config_done) Config one = {};
        _cleanup_free_ char *record = NULL;
        static const Verb verbs[] = { VERB_PLAN, VERB_CHECK, VERB_APPLY };

        tree_with_pr(dir, RECORD_MAIN_PR);
        record = test_read(dir, "var/lib/rootless-ci/tenants");
        config_tenants(&one, 1);
        for (size_t v = 0; v < ELEMENTSOF(verbs); v++) {
                const Item *it;
                Context ctx;

                ASSERT_OK(run_tenants(&ctx, verbs[v], dir, &one));
                it = find_item(&ctx, "tenants.removed:pr");
                ASSERT_TRUE(it);
                ASSERT_EQ(it->status, ITEM_WARN);
                ASSERT_CONTAINS(it->message, "tenant pr (user buildkite-pr, buildkite-agent@pr.service) is no longer "
                                             "configured; still there for it: buildkite-agent@pr.service (enabled), "
                                             "the drop-in");
                ASSERT_CONTAINS(it->message, "buildkite-agent@pr.service.d/zz-rootless-ci.conf");
                ASSERT_CONTAINS(it->message, "linger for buildkite-pr");
                ASSERT_CONTAINS(it->message, "user@" PR_UID ".service.d/rootless-ci-mount.conf");
                ASSERT_CONTAINS(it->message, "apply takes nothing down without --retire=pr");
                ASSERT_CONTAINS(it->fix, "rootless-ci apply --retire=pr");
                /* A warning: check holds, and apply changes nothing for it. */
                ASSERT_FALSE(ctx.any_failed);
                ASSERT_FALSE(ctx.any_changed);
                ASSERT_TRUE(verbs[v] == VERB_CHECK || find_item(&ctx, "tenants.record")->status == ITEM_OK);
                context_done(&ctx);
        }
        /* Everything is still there, the record too. */
        ASSERT_STREQ(test_read_kept(dir, "var/lib/rootless-ci/tenants"), record);
        ASSERT_TRUE(exists(dir, "etc/systemd/system/buildkite-agent@pr.service.d/zz-rootless-ci.conf"));
        ASSERT_TRUE(exists(dir, "var/lib/systemd/linger/buildkite-pr"));
        ASSERT_TRUE(exists(dir, "etc/systemd/system/user@" PR_UID ".service.d/rootless-ci-mount.conf"));
        ASSERT_TRUE(exists(dir, "etc/systemd/system/multi-user.target.wants/buildkite-agent@pr.service"));
}

TEST(legacy_tenant_switched_to_tenants_keeps_what_a_tenant_still_uses) {
        const char *dir = test_tmpdir();
        _cleanup_(config_done) Config two = {};
        const Item *it;
        Context ctx;

        tree_with_pr(dir, "_legacy buildkite buildkite-agent.service -\n");
        test_write(dir, "etc/systemd/system/buildkite-agent.service.d/zz-rootless-ci.conf", "[Service]\n");
        config_tenants(&two, 2);
        ASSERT_OK(run_tenants(&ctx, VERB_CHECK, dir, &two));
        it = find_item(&ctx, "tenants.removed:_legacy");
        ASSERT_TRUE(it);
        ASSERT_EQ(it->status, ITEM_WARN);
        ASSERT_CONTAINS(it->message, "the tenant of [User] Name=buildkite and [Agent] Unit=buildkite-agent.service");
        ASSERT_CONTAINS(it->message, "buildkite-agent.service.d/zz-rootless-ci.conf");
        /* buildkite is tenant main's now: its linger and its manager's drop-in are not the legacy tenant's to lose. */
        ASSERT_NOT_CONTAINS(it->message, "linger for buildkite");
        ASSERT_NOT_CONTAINS(it->message, "user@1001");
        ASSERT_CONTAINS(it->message, "its user buildkite (with its Docker and linger) is tenant main's now and stays");
        ASSERT_CONTAINS(it->fix, "--retire=_legacy");
        context_done(&ctx);

        /*
         * Its agent still enabled, as buildkite, now the user of main, an
         * untrusted tenant here: the old agent's jobs (trusted ones, with their
         * secrets) and main's share a user, a home and a Docker. A failure, not
         * a warning; with main trusted, a warning again.
         */
        test_write(dir, "etc/systemd/system/multi-user.target.wants/.keep", "");
        ASSERT_OK(symlink("/lib/systemd/system/buildkite-agent.service",
                          test_path(dir, "etc/systemd/system/multi-user.target.wants/buildkite-agent.service")));
        ASSERT_OK(run_tenants(&ctx, VERB_CHECK, dir, &two));
        it = find_item(&ctx, "tenants.removed:_legacy");
        ASSERT_EQ(it->status, ITEM_FAIL);
        ASSERT_CONTAINS(it->message, "buildkite-agent.service still runs jobs as buildkite, now the untrusted tenant "
                                     "main's user");
        context_done(&ctx);
        two.tenants[0].trust = TRUST_TRUSTED;
        ASSERT_OK(run_tenants(&ctx, VERB_CHECK, dir, &two));
        ASSERT_EQ(find_item(&ctx, "tenants.removed:_legacy")->status, ITEM_WARN);
        context_done(&ctx);

        two.retire = (const char *const[]) { "_legacy" };
        two.n_retire = 1;
        ASSERT_OK(run_tenants(&ctx, VERB_APPLY, dir, &two));
        ASSERT_FALSE(ctx.any_failed);
        context_done(&ctx);
        ASSERT_FALSE(exists(dir, "etc/systemd/system/buildkite-agent.service.d/zz-rootless-ci.conf"));
        ASSERT_TRUE(exists(dir, "var/lib/systemd/linger/buildkite"));
        ASSERT_TRUE(exists(dir, "etc/systemd/system/user@1001.service.d/rootless-ci-mount.conf"));
        ASSERT_NOT_CONTAINS(test_read_kept(dir, "var/lib/rootless-ci/tenants"), "_legacy");
}

TEST(retire_takes_down_what_rootless_ci_wrote_and_keeps_the_data) {
        const char *dir = test_tmpdir();
        _cleanup_(config_done) Config one = {};
        static const char *const kept[] = {
                "home/buildkite-pr/.profile",
                "srv/rootless-ci/buildkite-pr/builds/pipeline/README",
                "srv/rootless-ci/buildkite-pr/docker/image/overlay2/repositories.json",
                "etc/buildkite-agent/pr.cfg",
                "etc/systemd/system/buildkite-agent@main.service.d/zz-rootless-ci.conf",
                "etc/systemd/system/user@1001.service.d/rootless-ci-mount.conf",
                "var/lib/systemd/linger/buildkite",
        };
        const char *before[ELEMENTSOF(kept)];
        const Item *it;
        Context ctx;

        tree_with_pr(dir, RECORD_MAIN_PR);
        /* The operator's own drop-in beside ours: kept, and so its directory. */
        test_write(dir, "etc/systemd/system/user@" PR_UID ".service.d/override.conf", "[Unit]\n");
        config_tenants(&one, 1);
        one.retire = (const char *const[]) { "pr" };
        one.n_retire = 1;
        for (size_t i = 0; i < ELEMENTSOF(kept); i++)
                before[i] = test_read_kept(dir, kept[i]);
        ASSERT_OK(tenants_verify_retire(&one, dir));

        /* plan --retire: what apply would take down, and nothing taken. */
        ASSERT_OK(run_tenants(&ctx, VERB_PLAN, dir, &one));
        ASSERT_TRUE(find_item(&ctx, "tenants.removed:pr") == NULL);
        ASSERT_EQ(find_item(&ctx, "tenants.retire-agent:pr")->status, ITEM_REMOVE);
        ASSERT_EQ(find_item(&ctx, "tenants.retire-agent-dropin:pr")->status, ITEM_REMOVE);
        ASSERT_EQ(find_item(&ctx, "tenants.retire-linger:pr")->status, ITEM_REMOVE);
        ASSERT_EQ(find_item(&ctx, "tenants.retire-mount-dropin:pr")->status, ITEM_REMOVE);
        ASSERT_EQ(find_item(&ctx, "tenants.record")->status, ITEM_CHANGE);
        context_done(&ctx);
        ASSERT_TRUE(exists(dir, "var/lib/systemd/linger/buildkite-pr"));

        ASSERT_OK(run_tenants(&ctx, VERB_APPLY, dir, &one));
        ASSERT_FALSE(ctx.any_failed);
        it = find_item(&ctx, "tenants.retire-linger:pr");
        ASSERT_TRUE(it && it->changed);
        ASSERT_CONTAINS(it->message, "disabled linger for buildkite-pr");
        ASSERT_CONTAINS(find_item(&ctx, "tenants.retire-agent-dropin:pr")->message, "zz-rootless-ci.conf and its empty directory");
        /* Disabled offline by its link. */
        ASSERT_CONTAINS(find_item(&ctx, "tenants.retire-agent:pr")->message, "disabled buildkite-agent@pr.service");
        context_done(&ctx);
        ASSERT_FALSE(exists(dir, "etc/systemd/system/buildkite-agent@pr.service.d/zz-rootless-ci.conf"));
        ASSERT_FALSE(exists(dir, "var/lib/systemd/linger/buildkite-pr"));
        ASSERT_FALSE(exists(dir, "etc/systemd/system/user@" PR_UID ".service.d/rootless-ci-mount.conf"));
        ASSERT_FALSE(exists(dir, "etc/systemd/system/buildkite-agent@pr.service.d"));
        /* main's link stays. */
        ASSERT_FALSE(exists(dir, "etc/systemd/system/multi-user.target.wants/buildkite-agent@pr.service"));
        ASSERT_TRUE(exists(dir, "etc/systemd/system/multi-user.target.wants/buildkite-agent@main.service"));
        ASSERT_TRUE(exists(dir, "etc/systemd/system/user@" PR_UID ".service.d/override.conf"));
        /* Forgotten: the record holds main alone, and pr is no longer reported. */
        ASSERT_NOT_CONTAINS(test_read_kept(dir, "var/lib/rootless-ci/tenants"), "buildkite-pr");
        ASSERT_CONTAINS(test_read_kept(dir, "var/lib/rootless-ci/tenants"),
                        "\nmain buildkite buildkite-agent@main.service /etc/buildkite-agent/main.cfg\n");
        /* Every byte of its data, and everything of main's. */
        for (size_t i = 0; i < ELEMENTSOF(kept); i++)
                ASSERT_STREQ(test_read_kept(dir, kept[i]), before[i]);

        /* Once forgotten, --retire=pr is unknown. */
        ASSERT_EQ(tenants_verify_retire(&one, dir), -ERCI_USAGE);
        one.n_retire = 0;
        ASSERT_OK(run_tenants(&ctx, VERB_CHECK, dir, &one));
        ASSERT_TRUE(find_item(&ctx, "tenants.removed:pr") == NULL);
        ASSERT_FALSE(ctx.any_failed);
        context_done(&ctx);
}

TEST(retire_refuses_a_configured_or_unknown_tenant_and_changes_nothing) {
        const char *dir = test_tmpdir();
        _cleanup_(config_done) Config one = {}, legacy = {};
        _cleanup_free_ char *record = NULL, *err = NULL;
        Context ctx;

        tree_with_pr(dir, RECORD_MAIN_PR);
        record = test_read(dir, "var/lib/rootless-ci/tenants");
        config_tenants(&one, 1);

        one.retire = (const char *const[]) { "main" };
        one.n_retire = 1;
        test_capture_stderr_begin();
        ASSERT_EQ(tenants_verify_retire(&one, dir), -ERCI_USAGE);
        err = test_capture_stderr_end();
        ASSERT_CONTAINS(err, "--retire=main: tenant main is still configured ([Tenant] Name=main)");

        one.retire = (const char *const[]) { "pr", "old" };
        one.n_retire = 2;
        free(err);
        test_capture_stderr_begin();
        ASSERT_EQ(tenants_verify_retire(&one, dir), -ERCI_USAGE);
        err = test_capture_stderr_end();
        ASSERT_CONTAINS(err, "--retire=old: rootless-ci has set up no tenant old here");

        /* Without [Tenant], the legacy tenant is the configured one. */
        ASSERT_OK(config_init(&legacy));
        legacy.retire = (const char *const[]) { "_legacy" };
        legacy.n_retire = 1;
        ASSERT_EQ(tenants_verify_retire(&legacy, dir), -ERCI_USAGE);

        /* The step refuses too, in every verb, before it takes anything down. */
        ASSERT_EQ(run_tenants(&ctx, VERB_APPLY, dir, &one), -ERCI_USAGE);
        ASSERT_EQ(find_item(&ctx, "tenants.retire:old")->status, ITEM_FAIL);
        ASSERT_TRUE(find_item(&ctx, "tenants.retire-linger:pr") == NULL);
        context_done(&ctx);
        ASSERT_STREQ(test_read_kept(dir, "var/lib/rootless-ci/tenants"), record);
        ASSERT_TRUE(exists(dir, "var/lib/systemd/linger/buildkite-pr"));
        ASSERT_TRUE(exists(dir, "etc/systemd/system/buildkite-agent@pr.service.d/zz-rootless-ci.conf"));
}

TEST(retire_option_parsing) {
        Cli cli;

        ASSERT_OK(cli_parse(4, (char *[]) { "rootless-ci", "apply", "--retire=pr", "--retire=old", NULL }, &cli));
        ASSERT_EQ(cli.n_retire, 2);
        ASSERT_STREQ(cli.retire[1], "old");
        ASSERT_OK(cli_parse(3, (char *[]) { "rootless-ci", "--retire=pr", "plan", NULL }, &cli));
        ASSERT_EQ(cli.n_retire, 1);
        ASSERT_EQ(cli_parse(3, (char *[]) { "rootless-ci", "check", "--retire=pr", NULL }, &cli), -ERCI_USAGE);
        ASSERT_EQ(cli_parse(4, (char *[]) { "rootless-ci", "apply", "--retire=pr", "--retire=pr", NULL }, &cli),
                  -ERCI_USAGE);
        ASSERT_EQ(cli_parse(3, (char *[]) { "rootless-ci", "apply", "--retire=", NULL }, &cli), -ERCI_USAGE);
        ASSERT_EQ(cli_parse(4, (char *[]) { "rootless-ci", "reclaim", "--retire=pr", "/x", NULL }, &cli), -ERCI_USAGE);
}

TEST(a_record_that_does_not_parse_is_never_rewritten) {
        const char *dir = test_tmpdir();
        _cleanup_(config_done) Config one = {};
        const char *bad = "main buildkite buildkite-agent@main.service /etc/buildkite-agent/main.cfg\npr buildkite-pr\n";
        const Item *it;
        Context ctx;

        test_write(dir, "var/lib/rootless-ci/tenants", bad);
        config_tenants(&one, 1);
        /* A failure: apply exits 1 (a record that lost a tenant would let it run on unnoticed). */
        ASSERT_EQ(run_tenants(&ctx, VERB_APPLY, dir, &one), -ERCI_FAILED);
        it = find_item(&ctx, "tenants.record");
        ASSERT_EQ(it->status, ITEM_FAIL);
        ASSERT_CONTAINS(it->message, "/var/lib/rootless-ci/tenants:2: not NAME USER AGENT-UNIT AGENT-CONFIG");
        ASSERT_CONTAINS(it->fix, "correct or remove that line");
        context_done(&ctx);
        ASSERT_STREQ(test_read_kept(dir, "var/lib/rootless-ci/tenants"), bad);
}

TEST(removed_users_are_those_still_running_for_a_removed_tenant) {
        const char *dir = test_tmpdir();
        _cleanup_(config_done) Config one = {};
        _cleanup_strv_free_ char **users = NULL, **none = NULL;
        _cleanup_close_ int root_fd = -1;

        tree_with_pr(dir, RECORD_MAIN_PR "old buildkite-pr buildkite-agent@old.service /etc/buildkite-agent/old.cfg\n"
                          "_legacy buildkite buildkite-agent.service -\n");
        root_fd = open_root(dir);
        ASSERT_OK(root_fd);
        config_tenants(&one, 1);
        /* The removed ones, with what they read: pr, old and _legacy (not main). */
        {
                _cleanup_(tenant_records_done) TenantRecords removed = {};
                ASSERT_OK(tenants_removed(root_fd, &one, &removed));
                ASSERT_EQ(removed.n_entries, 3);
                ASSERT_STREQ(removed.entries[0].name, "pr");
                ASSERT_STREQ(removed.entries[0].agent_config, "/etc/buildkite-agent/pr.cfg");
                ASSERT_STREQ(removed.entries[2].name, "_legacy");
        }
        /* pr and old share a user: once; _legacy's user is main's: not a removed user. */
        ASSERT_OK(tenants_removed_users(root_fd, &one, &users));
        ASSERT_STREQ(users[0], "buildkite-pr");
        ASSERT_TRUE(users[1] == NULL);
        /* Both retired in this run: their user is nobody's to keep. */
        one.retire = (const char *const[]) { "pr", "old" };
        one.n_retire = 2;
        ASSERT_OK(tenants_removed_users(root_fd, &one, &none));
        ASSERT_TRUE(none[0] == NULL);
        one.n_retire = 1;
        strv_free(none);
        none = NULL;
        ASSERT_OK(tenants_removed_users(root_fd, &one, &none));
        ASSERT_STREQ(none[0], "buildkite-pr");

        /* A record with a line that does not parse: not half read (the daemon and agent steps would drop what it keeps). */
        test_write(dir, "var/lib/rootless-ci/tenants", RECORD_MAIN_PR "Bad_Name u x.service -\n");
        {
                _cleanup_(tenant_records_done) TenantRecords removed = {};
                _cleanup_strv_free_ char **bad = NULL;
                ASSERT_EQ(tenants_removed(root_fd, &one, &removed), -EBADMSG);
                ASSERT_EQ(tenants_removed_users(root_fd, &one, &bad), -EBADMSG);
        }
}

TEST(a_tenant_whose_user_changed_leaves_its_earlier_settings_to_retire) {
        const char *dir = test_tmpdir();
        _cleanup_(config_done) Config two = {};
        _cleanup_strv_free_ char **users = NULL;
        _cleanup_close_ int root_fd = -1;
        const Item *it;
        Context ctx;

        tree_with_pr(dir, RECORD_MAIN_PR);
        root_fd = open_root(dir);
        ASSERT_OK(root_fd);
        config_tenants(&two, 2);
        free(two.tenants[1].user);
        two.tenants[1].user = strdup("buildkite-pr2");

        /* pr as it was set up is pr~1: reported, its user's things listed, its agent unit the new pr's. */
        ASSERT_OK(run_tenants(&ctx, VERB_PLAN, dir, &two));
        it = find_item(&ctx, "tenants.removed:pr~1");
        ASSERT_TRUE(it);
        ASSERT_EQ(it->status, ITEM_WARN);
        ASSERT_CONTAINS(it->message, "tenant pr as it was set up before, with user buildkite-pr and "
                                     "buildkite-agent@pr.service (recorded as pr~1), is no longer configured");
        ASSERT_CONTAINS(it->message, "linger for buildkite-pr");
        ASSERT_NOT_CONTAINS(it->message, "zz-rootless-ci.conf");
        ASSERT_CONTAINS(it->message, "buildkite-agent@pr.service is tenant pr's now and stays");
        ASSERT_CONTAINS(it->fix, "rootless-ci apply --retire=pr~1");
        context_done(&ctx);
        ASSERT_OK(tenants_removed_users(root_fd, &two, &users));
        ASSERT_STREQ(users[0], "buildkite-pr");

        /* apply records both, and takes nothing down. */
        ASSERT_OK(run_tenants(&ctx, VERB_APPLY, dir, &two));
        context_done(&ctx);
        ASSERT_CONTAINS(test_read_kept(dir, "var/lib/rootless-ci/tenants"),
                        "\npr buildkite-pr2 buildkite-agent@pr.service /etc/buildkite-agent/pr.cfg\n"
                        "pr~1 buildkite-pr buildkite-agent@pr.service /etc/buildkite-agent/pr.cfg\n");
        ASSERT_TRUE(exists(dir, "var/lib/systemd/linger/buildkite-pr"));

        /* --retire=pr names the configured one; --retire=pr~1 the earlier settings. */
        two.retire = (const char *const[]) { "pr" };
        two.n_retire = 1;
        ASSERT_EQ(tenants_verify_retire(&two, dir), -ERCI_USAGE);
        two.retire = (const char *const[]) { "pr~1" };
        ASSERT_OK(tenants_verify_retire(&two, dir));
        ASSERT_OK(run_tenants(&ctx, VERB_APPLY, dir, &two));
        ASSERT_FALSE(ctx.any_failed);
        ASSERT_TRUE(find_item(&ctx, "tenants.retire-agent-dropin:pr~1") == NULL);
        context_done(&ctx);
        ASSERT_FALSE(exists(dir, "var/lib/systemd/linger/buildkite-pr"));
        ASSERT_FALSE(exists(dir, "etc/systemd/system/user@" PR_UID ".service.d/rootless-ci-mount.conf"));
        ASSERT_TRUE(exists(dir, "etc/systemd/system/buildkite-agent@pr.service.d/zz-rootless-ci.conf"));
        ASSERT_NOT_CONTAINS(test_read_kept(dir, "var/lib/rootless-ci/tenants"), "pr~1");
        ASSERT_CONTAINS(test_read_kept(dir, "var/lib/rootless-ci/tenants"), "\npr buildkite-pr2 ");
}
