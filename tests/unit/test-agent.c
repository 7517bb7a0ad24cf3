/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build-config.h"
#include "config.h"
#include "engine/engine.h"
#include "fake-tree.h"
#include "steps/agent/agent.h"
#include "steps/steps.h"
#include "tests.h"
#include "units.h"
#include "util/error.h"

/*
 * The agent step on fake --root trees: the drop-in as the template fills it,
 * the walk that takes /etc/buildkite-agent back from the package's user,
 * the warning about the CI user's own agent configuration, and the
 * DOCKER_HOST verdict taken from what the daemon step wrote into the Account. The live part
 * (daemon-reload, restart) is proved by the machine tier (agent-*.sh).
 */

#define TOKEN "rci-test-token-4f9c2a7e"

static const Step *const agent_only[] = { &step_agent };

static const char *P(const char *d, const char *rel) {
        static char bufs[4][PATH_MAX];
        static unsigned i;
        char *b = bufs[i++ % 4];

        snprintf(b, sizeof(bufs[0]), "%s/%s", d, rel);
        return b;
}

typedef struct Run {
        Config config;
        Context ctx;
        int r;
        char *err;   /* what the step wrote to stderr */
} Run;

static void run_done(Run *run) {
        context_done(&run->ctx);
        config_done(&run->config);
        free(run->err);
}

/* The agent step alone, with the account the earlier steps would have left. */
static void run_agent(Run *run, const char *root, Verb verb, const char *agent_unit) {
        *run = (Run) {};
        if (config_init(&run->config) < 0)
                abort();
        if (agent_unit) {
                free(run->config.agent_unit);
                run->config.agent_unit = strdup(agent_unit);
        }
        units_set_dir(UNITS_SOURCE_DIR);
        if (context_init(&run->ctx, verb, root, &run->config) < 0)
                abort();
        run->ctx.accounts[0].state = ACCOUNT_KNOWN;
        run->ctx.accounts[0].uid = fake_ci_uid();
        run->ctx.accounts[0].gid = fake_ci_gid();
        run->ctx.accounts[0].home = strdup("/home/buildkite");
        run->ctx.accounts[0].builds_dir = strdup("/srv/rootless-ci/buildkite/builds");
        test_capture_stderr_begin();
        run->r = engine_run_steps(&run->ctx, agent_only, 1);
        run->err = test_capture_stderr_end();
        /* As fake_run: every item, for comparing two builds' logs (issue 15's guard). */
        if (getenv("RCI_TEST_VERBOSE"))
                for (size_t i = 0; i < run->ctx.n_items; i++)
                        printf("# %s %-6s %s: %s%s%s\n", verb_to_string(verb),
                               item_status_to_string(run->ctx.items[i].status), run->ctx.items[i].id,
                               run->ctx.items[i].message, run->ctx.items[i].fix ? " | fix: " : "",
                               run->ctx.items[i].fix ? run->ctx.items[i].fix : "");
}

static size_t count(const Run *run, const char *id, ItemStatus status, const char *needle) {
        size_t n = 0;
        for (size_t i = 0; i < run->ctx.n_items; i++) {
                const Item *it = &run->ctx.items[i];
                /* "agent.config" counts "agent.config:PATH" too: per-object items carry their object after a colon. */
                bool same_kind = streq(it->id, id) || (strncmp(it->id, id, strlen(id)) == 0 && it->id[strlen(id)] == ':');
                if (!same_kind || (status != _ITEM_STATUS_MAX && it->status != status))
                        continue;
                if (needle && !strstr(it->message, needle))
                        continue;
                n++;
        }
        return n;
}

static void dump(const Run *run) {
        for (size_t i = 0; i < run->ctx.n_items; i++)
                printf("# %-6s %s: %s\n", item_status_to_string(run->ctx.items[i].status), run->ctx.items[i].id,
                       run->ctx.items[i].message);
}

static void make_home(const char *root) {
        ASSERT_OK(mkdir(P(root, "home"), 0755));
        ASSERT_OK(mkdir(P(root, "home/buildkite"), 0750));
        if (getuid() == 0)
                ASSERT_OK(chown(P(root, "home/buildkite"), fake_ci_uid(), fake_ci_gid()));
}

/* What the package leaves: everything owned by its own user, some of it group-writable. */
static void make_package_tree(const char *root, uid_t pkg) {
        test_write(root, "etc/buildkite-agent/buildkite-agent.cfg", "token=\"" TOKEN "\"\nbuild-path=\"/var/lib/buildkite-agent/builds\"\n");
        test_write(root, "etc/buildkite-agent/hooks/environment", "#!/bin/sh\nexport A=1\n");
        test_write(root, "etc/buildkite-agent/hooks/pre-command.sample", "#!/bin/sh\n");
        test_write(root, "etc/buildkite-agent/bootstrap.sh", "#!/bin/sh\n");
        ASSERT_OK(chmod(P(root, "etc/buildkite-agent"), 0775));
        ASSERT_OK(chmod(P(root, "etc/buildkite-agent/hooks"), 0777));
        ASSERT_OK(chmod(P(root, "etc/buildkite-agent/buildkite-agent.cfg"), 0644));
        ASSERT_OK(chmod(P(root, "etc/buildkite-agent/hooks/environment"), 04775));
        ASSERT_OK(chmod(P(root, "etc/buildkite-agent/hooks/pre-command.sample"), 0644));
        ASSERT_OK(chmod(P(root, "etc/buildkite-agent/bootstrap.sh"), 0700));
        if (getuid() == 0) {
                const char *paths[] = { "etc/buildkite-agent", "etc/buildkite-agent/hooks",
                                        "etc/buildkite-agent/buildkite-agent.cfg", "etc/buildkite-agent/hooks/environment",
                                        "etc/buildkite-agent/hooks/pre-command.sample", "etc/buildkite-agent/bootstrap.sh" };
                for (size_t i = 0; i < ELEMENTSOF(paths); i++)
                        ASSERT_OK(lchown(P(root, paths[i]), pkg, pkg));
        }
}

static bool owner_mode_is(const char *root, const char *rel, uid_t uid, gid_t gid, mode_t mode) {
        struct stat st;
        if (lstat(P(root, rel), &st) < 0)
                return false;
        if (st.st_uid != uid || st.st_gid != gid || (st.st_mode & 07777) != mode) {
                printf("# %s is %u:%u %04o, want %u:%u %04o\n", rel, (unsigned) st.st_uid, (unsigned) st.st_gid,
                       (unsigned) (st.st_mode & 07777), (unsigned) uid, (unsigned) gid, (unsigned) mode);
                return false;
        }
        return true;
}

/* ---- modes ---------------------------------------------------------------------------------------------- */

TEST(wanted_mode_gives_the_group_the_owners_access_minus_write) {
        ASSERT_EQ(agent_config_wanted_mode(0755, false), 0755);
        ASSERT_EQ(agent_config_wanted_mode(0775, false), 0755);
        ASSERT_EQ(agent_config_wanted_mode(0777, false), 0755);
        ASSERT_EQ(agent_config_wanted_mode(0700, false), 0750);
        ASSERT_EQ(agent_config_wanted_mode(0600, false), 0640);
        ASSERT_EQ(agent_config_wanted_mode(0644, false), 0644);
        ASSERT_EQ(agent_config_wanted_mode(0666, false), 0644);
        ASSERT_EQ(agent_config_wanted_mode(0711, false), 0751);
        /* setuid, setgid and sticky never survive */
        ASSERT_EQ(agent_config_wanted_mode(04755, false), 0755);
        ASSERT_EQ(agent_config_wanted_mode(03777, false), 0755);
}

TEST(wanted_mode_of_the_config_file_is_0640_whatever_it_was) {
        ASSERT_EQ(agent_config_wanted_mode(0600, true), 0640);
        ASSERT_EQ(agent_config_wanted_mode(0644, true), 0640);
        ASSERT_EQ(agent_config_wanted_mode(0666, true), 0640);
        ASSERT_EQ(agent_config_wanted_mode(04777, true), 0640);
}

/* ---- the drop-in ---------------------------------------------------------------------------------------- */

TEST(dropin_path_is_in_the_units_own_dropin_directory) {
        char *p = agent_dropin_path("buildkite-agent.service");
        ASSERT_STREQ(p, "/etc/systemd/system/buildkite-agent.service.d/zz-rootless-ci.conf");
        free(p);
        p = agent_dropin_path("buildkite-agent@1.service");
        ASSERT_STREQ(p, "/etc/systemd/system/buildkite-agent@1.service.d/zz-rootless-ci.conf");
        free(p);
}

TEST(dropin_runs_the_agent_as_the_ci_user_against_its_daemon) {
        const char *root = test_tmpdir();
        char want[512], *text;
        Run run;

        make_home(root);
        run_agent(&run, root, VERB_APPLY, NULL);
        if (run.r < 0 || run.ctx.any_failed)
                dump(&run);
        ASSERT_OK(run.r);
        ASSERT_FALSE(run.ctx.any_failed);
        text = test_read(root, "etc/systemd/system/buildkite-agent.service.d/zz-rootless-ci.conf");
        ASSERT_TRUE(text != NULL);

        ASSERT_CONTAINS(text, "\nUser=buildkite\n");
        snprintf(want, sizeof(want), "\nGroup=%u\n", (unsigned) fake_ci_gid());
        ASSERT_CONTAINS(text, want);
        snprintf(want, sizeof(want), "\nWants=user@%u.service\nAfter=user@%u.service\n", (unsigned) fake_ci_uid(),
                 (unsigned) fake_ci_uid());
        ASSERT_CONTAINS(text, want);
        /* A restart of the user's manager must not propagate to the agent (and cancel its jobs). */
        ASSERT_NOT_CONTAINS(text, "\nRequires=user@");
        ASSERT_NOT_CONTAINS(text, "\nBindsTo=");
        ASSERT_NOT_CONTAINS(text, "\nPartOf=");
        ASSERT_CONTAINS(text, "\nEnvironment=HOME=/home/buildkite\n");
        snprintf(want, sizeof(want), "\nEnvironment=XDG_RUNTIME_DIR=/run/user/%u\n", (unsigned) fake_ci_uid());
        ASSERT_CONTAINS(text, want);
        snprintf(want, sizeof(want), "\nEnvironment=DOCKER_HOST=unix:///run/user/%u/docker.sock\n",
                 (unsigned) fake_ci_uid());
        ASSERT_CONTAINS(text, want);
        ASSERT_CONTAINS(text, "\nEnvironment=BUILDKITE_BUILD_PATH=/srv/rootless-ci/buildkite/builds\n");
        ASSERT_CONTAINS(text, "\nEnvironment=BUILDKITE_PLUGINS_PATH=/srv/rootless-ci/buildkite/builds/.plugins\n");
        ASSERT_CONTAINS(text, "\nEnvironment=BUILDKITE_AGENT_CONFIG=/etc/buildkite-agent/buildkite-agent.cfg\n");
        ASSERT_CONTAINS(text, "\nRequiresMountsFor=/srv/rootless-ci/buildkite/builds\n");
        ASSERT_CONTAINS(text, "\nExecStartPre=+" SBINDIR "/rootless-ci wait --user=buildkite --ready-timeout=120\n");
        ASSERT_CONTAINS(text, "\nTimeoutStartSec=180s\n");
        ASSERT_CONTAINS(text, "\nEnvironment=BUILDKITE_ADDITIONAL_HOOKS_PATHS=" HOOKS_DIR "\n");
        for (const char *a = strchr(text, '@'); a; a = strchr(a + 1, '@'))
                ASSERT_FALSE(a[1] >= 'A' && a[1] <= 'Z'); /* nothing left unfilled */
        free(text);
        run_done(&run);
}

TEST(dropin_follows_the_configured_unit_user_and_timeout) {
        const char *root = test_tmpdir();
        char *text;
        Run run;

        make_home(root);
        run = (Run) {};
        run_agent(&run, root, VERB_APPLY, "ci-agent.service");
        ASSERT_OK(run.r);
        text = test_read(root, "etc/systemd/system/ci-agent.service.d/zz-rootless-ci.conf");
        ASSERT_TRUE(text != NULL);
        ASSERT_CONTAINS(text, "ci-agent.service.d/zz-rootless-ci.conf");
        free(text);
        ASSERT_TRUE(test_read(root, "etc/systemd/system/buildkite-agent.service.d/zz-rootless-ci.conf") == NULL);
        run_done(&run);
}

TEST(dropin_render_refuses_a_home_that_cannot_stand_in_a_unit_file) {
        Config c;
        Account a;
        char *text = NULL;

        ASSERT_OK(config_init(&c));
        units_set_dir(UNITS_SOURCE_DIR);
        a = (Account) { .name = c.user_name, .agent_unit = c.agent_unit, .state = ACCOUNT_KNOWN };
        a.uid = 1001;
        a.gid = 1001;
        a.home = "/home/build kite\nUser=root";
        a.builds_dir = "/srv/rootless-ci/buildkite/builds";
        test_capture_stderr_begin();
        ASSERT_EQ(agent_dropin_render(&c, &a, &text), -EINVAL);
        free(test_capture_stderr_end());
        ASSERT_TRUE(text == NULL);
        config_done(&c);
}

TEST(dropin_second_apply_changes_nothing_and_check_passes) {
        const char *root = test_tmpdir();
        struct stat st1, st2;
        Run run;

        make_home(root);
        run_agent(&run, root, VERB_APPLY, NULL);
        ASSERT_EQ(count(&run, "agent.dropin", ITEM_CREATE, NULL), 1);
        run_done(&run);
        ASSERT_OK(stat(P(root, "etc/systemd/system/buildkite-agent.service.d/zz-rootless-ci.conf"), &st1));

        run_agent(&run, root, VERB_APPLY, NULL);
        ASSERT_FALSE(run.ctx.any_changed);
        run_done(&run);
        ASSERT_OK(stat(P(root, "etc/systemd/system/buildkite-agent.service.d/zz-rootless-ci.conf"), &st2));
        ASSERT_EQ(st1.st_ino, st2.st_ino);

        run_agent(&run, root, VERB_CHECK, NULL);
        ASSERT_EQ(count(&run, "agent.dropin", ITEM_PASS, NULL), 1);
        ASSERT_FALSE(run.ctx.any_failed);
        run_done(&run);

        /* Drift: check fails, apply rewrites. */
        test_write(root, "etc/systemd/system/buildkite-agent.service.d/zz-rootless-ci.conf", "[Service]\nUser=root\n");
        run_agent(&run, root, VERB_CHECK, NULL);
        ASSERT_EQ(count(&run, "agent.dropin", ITEM_FAIL, NULL), 1);
        run_done(&run);
        run_agent(&run, root, VERB_APPLY, NULL);
        ASSERT_EQ(count(&run, "agent.dropin", ITEM_CHANGE, "rewrote"), 1);
        run_done(&run);
}

TEST(plan_writes_nothing) {
        const char *root = test_tmpdir();
        Run run;

        make_home(root);
        run_agent(&run, root, VERB_PLAN, NULL);
        ASSERT_EQ(count(&run, "agent.dropin", ITEM_CREATE, NULL), 1);
        ASSERT_EQ(count(&run, "agent.service", ITEM_SKIP, "offline"), 1);
        run_done(&run);
        ASSERT_TRUE(access(P(root, "etc/systemd"), F_OK) < 0);
}

/* ---- /etc/buildkite-agent ------------------------------------------------------------------------------- */

TEST(no_agent_installed_is_fine_and_said) {
        const char *root = test_tmpdir();
        Run run;

        make_home(root);
        run_agent(&run, root, VERB_CHECK, NULL);
        ASSERT_EQ(count(&run, "agent.config", ITEM_PASS, "not installed"), 1);
        run_done(&run);
}

TEST(plan_and_check_report_the_packages_ownership_without_changing_it) {
        const char *root = test_tmpdir();
        Run run;

        make_home(root);
        make_package_tree(root, 4242);
        run_agent(&run, root, VERB_PLAN, NULL);
        /* Every entry is owned by someone other than root (the package's user, or the test's). */
        ASSERT_EQ(count(&run, "agent.config", ITEM_CHANGE, "secure "), 6);
        run_done(&run);
        run_agent(&run, root, VERB_CHECK, NULL);
        ASSERT_EQ(count(&run, "agent.config", ITEM_FAIL, "someone other than root can change what the agent loads"), 6);
        run_done(&run);
        ASSERT_TRUE(owner_mode_is(root, "etc/buildkite-agent/hooks", getuid() == 0 ? 4242 : getuid(),
                                  getuid() == 0 ? 4242 : getgid(), 0777));
}

TEST(apply_takes_the_tree_back_for_root_and_fails_on_what_the_package_user_planted) {
        const char *root = test_tmpdir();
        struct stat outside_before, outside_after;
        gid_t g = fake_ci_gid();
        Run run;

        if (getuid() != 0) {
                test_skip("chown to root needs root");
                return;
        }
        make_home(root);
        make_package_tree(root, 4242);
        /*
         * Planted by the package's user: a link to a file of its own, a hard
         * link to it, a FIFO. Each lets someone other than root change what
         * the agent loads in every later job: a FAIL, and none is touched.
         */
        test_write(root, "outside/target", "not the agent's\n");
        ASSERT_OK(chown(P(root, "outside/target"), 4242, 4242));
        ASSERT_OK(chmod(P(root, "outside/target"), 0666));
        ASSERT_OK(chown(P(root, "outside"), 4242, 4242));
        /* Absolute, as the agent sees it (resolved inside the fake root). */
        ASSERT_OK(symlink("/outside/target", P(root, "etc/buildkite-agent/hooks/post-checkout")));
        ASSERT_OK(link(P(root, "outside/target"), P(root, "etc/buildkite-agent/hooks/pre-exit")));
        ASSERT_OK(mkfifo(P(root, "etc/buildkite-agent/hooks/fifo"), 0666));
        ASSERT_OK(stat(P(root, "outside/target"), &outside_before));

        run_agent(&run, root, VERB_APPLY, NULL);
        ASSERT_EQ(run.r, -ERCI_FAILED);
        ASSERT_TRUE(run.ctx.any_failed);
        ASSERT_EQ(count(&run, "agent.config", ITEM_CHANGE, "secured "), 6);
        ASSERT_EQ(count(&run, "agent.config-link", ITEM_FAIL, "post-checkout is a symlink to"), 1);
        ASSERT_EQ(count(&run, "agent.config-link", ITEM_FAIL, "is owned by UID 4242"), 2);
        ASSERT_EQ(count(&run, "agent.config-link", ITEM_FAIL, "pre-exit has 2 hard links and is owned by UID 4242"), 1);
        ASSERT_EQ(count(&run, "agent.config-link", ITEM_FAIL, "fifo is a FIFO"), 1);
        ASSERT_EQ(count(&run, "agent.config-link", ITEM_WARN, NULL), 0);
        for (size_t i = 0; i < run.ctx.n_items; i++)
                if (run.ctx.items[i].status == ITEM_FAIL)
                        ASSERT_CONTAINS(run.ctx.items[i].fix, "/etc/buildkite-agent/hooks/");
        ASSERT_CONTAINS(run.err, "Secured ");
        ASSERT_NOT_CONTAINS(run.err, TOKEN);
        for (size_t i = 0; i < run.ctx.n_items; i++)
                ASSERT_NOT_CONTAINS(run.ctx.items[i].message, TOKEN);
        run_done(&run);

        ASSERT_TRUE(owner_mode_is(root, "etc/buildkite-agent", 0, g, 0755));
        ASSERT_TRUE(owner_mode_is(root, "etc/buildkite-agent/hooks", 0, g, 0755));
        ASSERT_TRUE(owner_mode_is(root, "etc/buildkite-agent/buildkite-agent.cfg", 0, g, 0640));
        ASSERT_TRUE(owner_mode_is(root, "etc/buildkite-agent/hooks/environment", 0, g, 0755));
        ASSERT_TRUE(owner_mode_is(root, "etc/buildkite-agent/hooks/pre-command.sample", 0, g, 0644));
        ASSERT_TRUE(owner_mode_is(root, "etc/buildkite-agent/bootstrap.sh", 0, g, 0750));
        /* What the link and the hard link lead to is untouched; nothing is removed. */
        ASSERT_OK(stat(P(root, "outside/target"), &outside_after));
        ASSERT_EQ(outside_after.st_uid, 4242);
        ASSERT_EQ(outside_after.st_mode & 07777, 0666);
        ASSERT_EQ(outside_after.st_ctim.tv_nsec, outside_before.st_ctim.tv_nsec);
        ASSERT_EQ(outside_after.st_ctim.tv_sec, outside_before.st_ctim.tv_sec);
        {
                struct stat fst;
                ASSERT_OK(lstat(P(root, "etc/buildkite-agent/hooks/fifo"), &fst));
                ASSERT_TRUE(S_ISFIFO(fst.st_mode));
                ASSERT_EQ(fst.st_uid, 0);
                ASSERT_OK(lstat(P(root, "etc/buildkite-agent/hooks/post-checkout"), &fst));
                ASSERT_TRUE(S_ISLNK(fst.st_mode));
        }

        /* Still there: check fails, naming each; plan too. */
        run_agent(&run, root, VERB_CHECK, NULL);
        ASSERT_EQ(count(&run, "agent.config-link", ITEM_FAIL, NULL), 3);
        ASSERT_EQ(count(&run, "agent.config", ITEM_FAIL, NULL), 0);
        ASSERT_TRUE(run.ctx.any_failed);
        run_done(&run);
        run_agent(&run, root, VERB_PLAN, NULL);
        ASSERT_EQ(count(&run, "agent.config-link", ITEM_FAIL, NULL), 3);
        run_done(&run);

        /* The operator follows the fixes: check passes. */
        ASSERT_OK(unlink(P(root, "etc/buildkite-agent/hooks/post-checkout")));
        ASSERT_OK(unlink(P(root, "etc/buildkite-agent/hooks/pre-exit")));
        ASSERT_OK(unlink(P(root, "etc/buildkite-agent/hooks/fifo")));
        run_agent(&run, root, VERB_CHECK, NULL);
        ASSERT_EQ(count(&run, "agent.config", ITEM_PASS, "owned by root"), 1);
        ASSERT_FALSE(run.ctx.any_failed);
        run_done(&run);
}

/*
 * Where a link in the tree may lead. The fake root holds what a host has:
 * root-only system directories, the CI user's home and builds directory,
 * a sticky world-writable /tmp, a directory the CI user's group can write.
 */
static void make_host_dirs(const char *root) {
        uid_t ci = fake_ci_uid();
        gid_t cg = fake_ci_gid();

        make_home(root);
        make_package_tree(root, 4242);
        test_write(root, "usr/share/ci-hooks/environment", "#!/bin/sh\n");
        ASSERT_OK(chmod(P(root, "usr/share/ci-hooks/environment"), 0755));
        ASSERT_OK(mkdir(P(root, "usr/share/ci-fifo"), 0755));
        ASSERT_OK(mkfifo(P(root, "usr/share/ci-fifo/fifo"), 0644));
        test_write(root, "usr/share/ci-hooks-mixed/environment", "#!/bin/sh\n");
        test_write(root, "usr/share/ci-hooks-mixed/sub/post-checkout", "#!/bin/sh\n");
        ASSERT_OK(chown(P(root, "usr/share/ci-hooks-mixed/sub/post-checkout"), ci, cg));
        ASSERT_OK(symlink("/home/buildkite", P(root, "usr/share/to-home")));
        ASSERT_OK(symlink("ci-hooks", P(root, "usr/share/to-hooks")));
        test_write(root, "srv/rootless-ci/buildkite/builds/.keep", "");
        ASSERT_OK(chown(P(root, "srv/rootless-ci/buildkite/builds"), ci, cg));
        ASSERT_OK(chmod(P(root, "srv/rootless-ci/buildkite/builds"), 0750));
        test_write(root, "home/buildkite/hook", "#!/bin/sh\n");
        ASSERT_OK(chown(P(root, "home/buildkite/hook"), ci, cg));
        test_write(root, "tmp/hook", "#!/bin/sh\n");
        ASSERT_OK(chmod(P(root, "tmp"), 01777));
        test_write(root, "opt/shared/hook", "#!/bin/sh\n");
        ASSERT_OK(chown(P(root, "opt/shared"), 0, cg));
        ASSERT_OK(chmod(P(root, "opt/shared"), 0775));
        test_write(root, "opt/root-file", "#!/bin/sh\n");
        ASSERT_OK(chmod(P(root, "opt/root-file"), 0644));
}

TEST(a_link_in_the_tree_fails_unless_only_root_can_change_where_it_leads) {
        static const struct {
                const char *entry, *target;
                ItemStatus status;      /* of its agent.config-link item; ITEM_OK: no item, it passes */
                const char *why;
        } cases[] = {
                /* Root's alone, all the way: passes (a file, a directory, through a root-owned link). */
                { "hooks/environment", "/usr/share/ci-hooks/environment", ITEM_OK, NULL },
                { "hooks/environment", "../../../usr/share/ci-hooks/environment", ITEM_OK, NULL },
                { "hooks/environment", "/usr/share/to-hooks/environment", ITEM_OK, NULL },
                { "hooks", "/usr/share/ci-hooks/../ci-hooks", ITEM_OK, NULL },
                { "hooks/pre-exit", "../bootstrap.sh", ITEM_OK, NULL },
                /* Into the tree: the walk's to judge and secure, even while the package's user owns it (plan). */
                { "hooks/pre-exit", "/etc/buildkite-agent/bootstrap.sh", ITEM_OK, NULL },
                /* Dangling where only root can create it: a warning. */
                { "hooks/environment", "/usr/share/ci-hooks/missing", ITEM_WARN, "does not exist" },
                { "hooks/environment", "/usr/share/nothing/at/all", ITEM_WARN, "does not exist" },
                /* Dangling where a job creates it: the issue's example. */
                { "hooks/environment", "/srv/rootless-ci/buildkite/builds/.h", ITEM_FAIL,
                  "rootless-ci/buildkite/builds is owned by UID" },
                { "hooks/environment", "/home/buildkite/hook", ITEM_FAIL, "/home/buildkite is owned by UID" },
                { "hooks/environment", "/tmp/hook", ITEM_FAIL, "/tmp is writable by group and others (1777)" },
                { "hooks/environment", "/opt/shared/hook", ITEM_FAIL, "/opt/shared is writable by its group (0775)" },
                /* ".." stays in the root: it cannot climb out and back in elsewhere. */
                { "hooks/environment", "../../../../../../../../home/buildkite/hook", ITEM_FAIL,
                  "/home/buildkite is owned by UID" },
                /* A root-owned link on the way that leads into the home. */
                { "hooks/environment", "/usr/share/to-home/hook", ITEM_FAIL, "/home/buildkite is owned by UID" },
                /* An intermediate directory of the tree itself a link. */
                { "hooks", "/srv/rootless-ci/buildkite/builds", ITEM_FAIL, "builds is owned by UID" },
                { "hooks", "/usr/share/ci-hooks-mixed", ITEM_FAIL, "sub/post-checkout is owned by UID" },
                { "hooks", "/usr/share/ci-fifo", ITEM_FAIL, "fifo is a FIFO" },
                { "hooks/environment", "/usr/share/ci-fifo/fifo", ITEM_FAIL, "fifo is a FIFO" },
                { "hooks/environment", "environment", ITEM_FAIL, "symlinks on the way (a loop?)" },
                { "hooks/environment", "/etc/buildkite-agent/hooks", ITEM_OK, NULL },
                { "hooks/x", ".", ITEM_OK, NULL },
                { "hooks/x", "/usr/share", ITEM_FAIL, "is owned by UID" },
        };

        if (getuid() != 0) {
                test_skip("the fake host's ownership (root's, the CI user's) needs root");
                return;
        }
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char root[256], entry[512], id[1024];
                Run run;

                /* Every other case with --root=DIR/: the paths the judge builds must still compare. */
                snprintf(root, sizeof(root), "%s/case%zu%s", test_tmpdir(), i, i % 2 ? "/" : "");
                ASSERT_OK(mkdir(root, 0755));
                make_host_dirs(root);
                snprintf(entry, sizeof(entry), "etc/buildkite-agent/%s", cases[i].entry);
                if (streq(cases[i].entry, "hooks")) {
                        ASSERT_OK(unlink(P(root, "etc/buildkite-agent/hooks/environment")));
                        ASSERT_OK(unlink(P(root, "etc/buildkite-agent/hooks/pre-command.sample")));
                        ASSERT_OK(rmdir(P(root, entry)));
                } else
                        (void) unlink(P(root, entry));
                ASSERT_OK(symlink(cases[i].target, P(root, entry)));
                snprintf(id, sizeof(id), "agent.config-link:%s/%s", root, entry);
                printf("# case %zu: %s -> %s\n", i, cases[i].entry, cases[i].target);

                /* The same verdict in plan (the tree still the package's), apply, and check. */
                for (size_t v = 0; v < 3; v++) {
                        static const Verb order[] = { VERB_PLAN, VERB_APPLY, VERB_CHECK };
                        Verb verb = order[v];
                        size_t n = 0;

                        run_agent(&run, root, verb, NULL);
                        /* apply stops at a FAIL (the engine's rule: nothing more on a half-made set-up) */
                        ASSERT_EQ(run.r, verb == VERB_APPLY && cases[i].status == ITEM_FAIL ? -ERCI_FAILED : 0);
                        for (size_t k = 0; k < run.ctx.n_items; k++) {
                                const Item *it = &run.ctx.items[k];
                                if (!streq(it->id, id))
                                        continue;
                                n++;
                                if (it->status != cases[i].status || !strstr(it->message, cases[i].why ?: "")) {
                                        dump(&run);
                                        ASSERT_EQ(it->status, cases[i].status);
                                        ASSERT_CONTAINS(it->message, cases[i].why);
                                }
                        }
                        if (n != (cases[i].status == ITEM_OK ? 0 : 1))
                                dump(&run);
                        ASSERT_EQ(n, cases[i].status == ITEM_OK ? 0 : 1);
                        if (verb == VERB_CHECK) {
                                ASSERT_EQ(run.ctx.any_failed, cases[i].status == ITEM_FAIL);
                                if (cases[i].status != ITEM_FAIL)
                                        ASSERT_EQ(count(&run, "agent.config", ITEM_PASS, "owned by root"), 1);
                        }
                        run_done(&run);
                }
        }
}

/* The issue's example, on a tree that needs no root: nothing there is root's, the builds directory least of all. */
TEST(a_dangling_hook_into_the_builds_dir_fails_in_plan_check_and_apply) {
        const char *root = test_tmpdir();
        Run run;

        make_home(root);
        make_package_tree(root, 4242);
        ASSERT_OK(mkdir(P(root, "srv"), 0755));
        ASSERT_OK(mkdir(P(root, "srv/rootless-ci"), 0755));
        ASSERT_OK(mkdir(P(root, "srv/rootless-ci/buildkite"), 0750));
        ASSERT_OK(mkdir(P(root, "srv/rootless-ci/buildkite/builds"), 0750));
        if (getuid() == 0)
                ASSERT_OK(chown(P(root, "srv/rootless-ci/buildkite/builds"), fake_ci_uid(), fake_ci_gid()));
        ASSERT_OK(unlink(P(root, "etc/buildkite-agent/hooks/environment")));
        ASSERT_OK(symlink("/srv/rootless-ci/buildkite/builds/.h", P(root, "etc/buildkite-agent/hooks/environment")));
        /* apply too where it can chown the tree to root */
        for (size_t v = 0; v < (getuid() == 0 ? 3U : 2U); v++) {
                static const Verb order[] = { VERB_PLAN, VERB_CHECK, VERB_APPLY };
                char want[128];

                run_agent(&run, root, order[v], NULL);
                /* As root only builds is the CI user's; without root, all of /srv is the test's own. */
                snprintf(want, sizeof(want), "%s is owned by UID %u", getuid() == 0 ? "/builds" : "/srv",
                         (unsigned) fake_ci_uid());
                if (count(&run, "agent.config-link", ITEM_FAIL, want) != 1)
                        dump(&run);
                ASSERT_EQ(count(&run, "agent.config-link", ITEM_FAIL, want), 1);
                ASSERT_TRUE(run.ctx.any_failed);
                run_done(&run);
        }
        /* Left as it was: a link, dangling. */
        ASSERT_TRUE(access(P(root, "etc/buildkite-agent/hooks/environment"), F_OK) < 0);
        ASSERT_TRUE(access(P(root, "srv/rootless-ci/buildkite/builds/.h"), F_OK) < 0);
}

TEST(a_hard_link_fails_unless_root_alone_can_change_it) {
        const char *root = test_tmpdir();
        Run run;

        if (getuid() != 0) {
                test_skip("a root-owned file needs root");
                return;
        }
        make_host_dirs(root);
        /* The issue's example: a hook hard-linked to a file the CI user owns. */
        ASSERT_OK(link(P(root, "home/buildkite/hook"), P(root, "etc/buildkite-agent/hooks/post-checkout")));
        /* A root-owned file no one else can write: its other names change nothing. */
        ASSERT_OK(link(P(root, "opt/root-file"), P(root, "etc/buildkite-agent/hooks/pre-exit")));
        run_agent(&run, root, VERB_APPLY, NULL);
        ASSERT_EQ(count(&run, "agent.config-link", ITEM_FAIL, "post-checkout has 2 hard links and is owned by UID"), 1);
        ASSERT_EQ(count(&run, "agent.config-link", ITEM_WARN, "pre-exit has 2 hard links"), 1);
        run_done(&run);
        ASSERT_TRUE(owner_mode_is(root, "home/buildkite/hook", fake_ci_uid(), fake_ci_gid(), 0644));
        run_agent(&run, root, VERB_CHECK, NULL);
        ASSERT_EQ(count(&run, "agent.config-link", ITEM_FAIL, NULL), 1);
        ASSERT_TRUE(run.ctx.any_failed);
        run_done(&run);
}

TEST(a_symlinked_config_dir_fails_and_is_not_followed) {
        const char *root = test_tmpdir();
        Run run;

        make_home(root);
        test_write(root, "elsewhere/buildkite-agent.cfg", "token=\"" TOKEN "\"\n");
        ASSERT_OK(chmod(P(root, "elsewhere"), 0777));
        ASSERT_OK(mkdir(P(root, "etc"), 0755));
        ASSERT_OK(symlink("/elsewhere", P(root, "etc/buildkite-agent")));
        for (size_t v = 0; v < 3; v++) {
                static const Verb order[] = { VERB_PLAN, VERB_CHECK, VERB_APPLY };
                run_agent(&run, root, order[v], NULL);
                ASSERT_EQ(run.r, order[v] == VERB_APPLY ? -ERCI_FAILED : 0);
                ASSERT_EQ(count(&run, "agent.config", ITEM_FAIL, "is a symlink to /elsewhere"), 1);
                ASSERT_EQ(count(&run, "agent.config", ITEM_CHANGE, NULL), 0);
                ASSERT_TRUE(run.ctx.any_failed);
                run_done(&run);
        }
        ASSERT_TRUE(owner_mode_is(root, "elsewhere", getuid(), getgid(), 0777));
}

/* ---- the CI user's own configuration -------------------------------------------------------------------- */

TEST(a_config_in_the_ci_users_home_is_warned_about_and_never_read) {
        const char *root = test_tmpdir();
        Run run;

        make_home(root);
        run_agent(&run, root, VERB_CHECK, NULL);
        ASSERT_EQ(count(&run, "agent.home-config", ITEM_PASS, NULL), 1);
        run_done(&run);

        test_write(root, "home/buildkite/.buildkite-agent/buildkite-agent.cfg", "token=\"" TOKEN "\"\n");
        run_agent(&run, root, VERB_CHECK, NULL);
        ASSERT_EQ(count(&run, "agent.home-config", ITEM_WARN, "exists"), 1);
        ASSERT_NOT_CONTAINS(run.err, TOKEN);
        run_done(&run);
}

TEST(a_symlink_on_the_way_to_the_home_config_is_warned_about_not_followed) {
        const char *root = test_tmpdir();
        Run run;

        make_home(root);
        test_write(root, "target/buildkite-agent.cfg", "x\n");
        ASSERT_OK(symlink(P(root, "target"), P(root, "home/buildkite/.buildkite-agent")));
        run_agent(&run, root, VERB_APPLY, NULL);
        ASSERT_EQ(count(&run, "agent.home-config", ITEM_WARN, "symlink"), 1);
        run_done(&run);
}

/*
 * Between the config part's look and its apply (the part's begin, which
 * apply calls when something is pending), the package's user adds an
 * entry to a directory the look walked: apply secures the directory, sees
 * an entry it never looked at, and stops; the entry is left as it was.
 */
static const char *planted_root;

static int plant_after_look(StepRun *run, Account *a) {
        test_write(planted_root, "etc/buildkite-agent/hooks/planted", "#!/bin/sh\n");
        if (chown(P(planted_root, "etc/buildkite-agent/hooks/planted"), 4242, 4242) < 0)
                return -errno;
        return 0;
}

static const Part planted_parts[] = {
        { .name = "config", .look = agent_config_look, .begin = plant_after_look },
};

static const Step step_config_planted = {
        .name = "agent",
        .per_account = true,
        .parts = planted_parts,
        .n_parts = ELEMENTSOF(planted_parts),
        .state_size = sizeof(AgentState),
};

TEST(config_an_entry_added_between_look_and_apply_stops_apply) {
        const Step *const steps[] = { &step_config_planted };
        const char *root = test_tmpdir();
        Config c;
        Context ctx;
        char *err;

        if (getuid() != 0) {
                test_skip("chown to root needs root");
                return;
        }
        make_home(root);
        make_package_tree(root, 4242);
        planted_root = root;
        ASSERT_OK(config_init(&c));
        ASSERT_OK(context_init(&ctx, VERB_APPLY, root, &c));
        ctx.accounts[0].state = ACCOUNT_KNOWN;
        ctx.accounts[0].uid = fake_ci_uid();
        ctx.accounts[0].gid = fake_ci_gid();
        test_capture_stderr_begin();
        ASSERT_EQ(engine_run_steps(&ctx, steps, 1), -EBUSY);
        err = test_capture_stderr_end();
        ASSERT_CONTAINS(err, "hooks/planted appeared while");
        ASSERT_CONTAINS(err, "run apply again");
        /* The directory is root's now (no other entry can come in), the planted file untouched. */
        ASSERT_TRUE(owner_mode_is(root, "etc/buildkite-agent/hooks", 0, fake_ci_gid(), 0755));
        ASSERT_TRUE(owner_mode_is(root, "etc/buildkite-agent/hooks/planted", 4242, 4242, 0644));
        free(err);
        context_done(&ctx);
        config_done(&c);
}

/* ---- DOCKER_HOST ---------------------------------------------------------------------------------------- */

TEST(docker_host_verdict_follows_the_daemon_steps_socket_check) {
        const char *root = test_tmpdir();
        Run run;

        make_home(root);
        run_agent(&run, root, VERB_CHECK, NULL);
        /* Offline: the daemon step did not check; said, not passed. */
        ASSERT_EQ(count(&run, "agent.docker-host", ITEM_SKIP, "DOCKER_HOST"), 1);
        run_done(&run);

        /* The account as the daemon step leaves it on a live host. */
        for (unsigned reachable = 0; reachable < 2; reachable++) {
                Config c;
                Context ctx;

                ASSERT_OK(config_init(&c));
                ASSERT_OK(context_init(&ctx, VERB_CHECK, root, &c));
                ctx.accounts[0].state = ACCOUNT_KNOWN;
                ctx.accounts[0].uid = fake_ci_uid();
                ctx.accounts[0].gid = fake_ci_gid();
                ctx.accounts[0].home = strdup("/home/buildkite");
                ctx.accounts[0].builds_dir = strdup("/srv/rootless-ci/buildkite/builds");
                ctx.accounts[0].root_sockets_checked = true;
                ctx.accounts[0].root_sockets_reachable = reachable;
                test_capture_stderr_begin();
                ASSERT_OK(engine_run_steps(&ctx, agent_only, 1));
                free(test_capture_stderr_end());
                for (size_t i = 0; i < ctx.n_items; i++)
                        if (streq(ctx.items[i].id, "agent.docker-host")) {
                                ASSERT_EQ(ctx.items[i].status, reachable ? ITEM_FAIL : ITEM_PASS);
                                ASSERT_CONTAINS(ctx.items[i].message, reachable ? "any job can become root"
                                                                                : "safe only because no root-owned");
                        }
                context_done(&ctx);
                config_done(&c);
        }
}

TEST(a_missing_user_is_a_skip_in_plan) {
        const char *root = test_tmpdir();
        Config c;
        Context ctx;

        ASSERT_OK(config_init(&c));
        ASSERT_OK(context_init(&ctx, VERB_PLAN, root, &c));
        ctx.accounts[0].state = ACCOUNT_PLANNED;
        ASSERT_OK(engine_run_steps(&ctx, agent_only, 1));
        ASSERT_FALSE(ctx.any_failed);
        ASSERT_TRUE(access(P(root, "etc"), F_OK) < 0);
        context_done(&ctx);
        config_done(&c);
}

/* ---- rootless-ci's own hooks, and the agent that must run them ------------------------------------------ */

/* HOOKS_DIR in the fake tree as the package installs it (owned by whoever runs the test). */
static void make_hooks(const char *root) {
        char rel[256];

        for (const char *const *n = agent_hook_names; *n; n++) {
                snprintf(rel, sizeof(rel), "%s/%s", &HOOKS_DIR[1], *n);
                test_write(root, rel, "#!/bin/sh\n");
                ASSERT_OK(chmod(P(root, rel), 0755));
        }
}

static const Item *find_item(const Run *run, const char *id) {
        for (size_t i = 0; i < run->ctx.n_items; i++)
                if (streq(run->ctx.items[i].id, id))
                        return &run->ctx.items[i];
        return NULL;
}

TEST(hooks_writable_by_judges_owner_other_and_non_root_group) {
        struct stat st = { .st_uid = 0, .st_gid = 0, .st_mode = S_IFDIR | 0755 };

        ASSERT_TRUE(agent_hooks_writable_by(&st, 1001) == NULL);
        st.st_mode = S_IFDIR | 0775; /* root's group may write: the CI user is never in it */
        ASSERT_TRUE(agent_hooks_writable_by(&st, 1001) == NULL);
        st.st_gid = 1001;
        ASSERT_CONTAINS(agent_hooks_writable_by(&st, 1001), "group");
        st.st_mode = S_IFDIR | 01777;
        st.st_gid = 0;
        ASSERT_CONTAINS(agent_hooks_writable_by(&st, 1001), "every user");
        st.st_mode = S_IFREG | 0555;
        st.st_uid = 1001;
        ASSERT_CONTAINS(agent_hooks_writable_by(&st, 1001), "owned by the CI user");
}

TEST(hooks_missing_offline_is_a_warning_naming_the_directory) {
        const char *root = test_tmpdir();
        Run run;

        make_home(root);
        run_agent(&run, root, VERB_CHECK, NULL);
        ASSERT_EQ(count(&run, "agent.hooks", ITEM_WARN, "does not exist"), 1);
        ASSERT_EQ(count(&run, "agent.hooks", ITEM_FAIL, NULL), 0);
        run_done(&run);
}

TEST(hooks_installed_by_root_pass_and_a_writable_component_fails) {
        const char *root = test_tmpdir();
        char rel[256];
        Run run;

        make_home(root);
        make_hooks(root);
        if (getuid() == 0) {
                /* As the package leaves them: root's, 0755. */
                run_agent(&run, root, VERB_CHECK, NULL);
                if (count(&run, "agent.hooks", ITEM_PASS, NULL) != 1)
                        dump(&run);
                ASSERT_EQ(count(&run, "agent.hooks", ITEM_PASS, "root's and writable by nobody else"), 1);
                ASSERT_EQ(count(&run, "agent.hooks", ITEM_FAIL, NULL), 0);
                run_done(&run);
        }

        /*
         * A component on the way (usr/share) writable by everyone: FAIL naming it, in check and apply alike.
         * Not root, the test's own files are the CI user's, and that (said first) is the reason given.
         */
        ASSERT_OK(chmod(P(root, "usr/share"), 0777));
        run_agent(&run, root, VERB_CHECK, NULL);
        ASSERT_EQ(count(&run, "agent.hooks", ITEM_FAIL,
                        getuid() == 0 ? "every user can write it" : "share: it is owned by the CI user"), 1);
        {
                char id[PATH_MAX + 32];
                snprintf(id, sizeof(id), "agent.hooks:%s/usr/share", root);
                ASSERT_TRUE(find_item(&run, id) != NULL);
        }
        ASSERT_TRUE(run.ctx.any_failed);
        run_done(&run);
        ASSERT_OK(chmod(P(root, "usr/share"), 0755));

        /* A hook the CI user owns. */
        snprintf(rel, sizeof(rel), "%s/pre-exit", &HOOKS_DIR[1]);
        if (getuid() == 0)
                ASSERT_OK(chown(P(root, rel), fake_ci_uid(), fake_ci_gid()));
        run_agent(&run, root, VERB_APPLY, NULL);
        ASSERT_EQ(count(&run, "agent.hooks", ITEM_FAIL, "owned by the CI user"), getuid() == 0 ? 1 : 4 + 3);
        run_done(&run);

        /* A hook replaced by a symlink: never followed, a FAIL of its own. */
        ASSERT_OK(unlink(P(root, rel)));
        ASSERT_OK(symlink("/tmp/planted", P(root, rel)));
        run_agent(&run, root, VERB_CHECK, NULL);
        ASSERT_EQ(count(&run, "agent.hooks", ITEM_FAIL, "a symlink"), 1);
        run_done(&run);
}

TEST(hooks_a_symlink_or_a_file_on_the_way_stops_the_look_there) {
        const char *root = test_tmpdir();
        char rel[300], dir[256];
        const char *slash;
        Run run;

        make_home(root);
        make_hooks(root);
        /* The hooks' directory's parent (usr/share/rootless-ci) moved aside and a symlink to it put in its place. */
        slash = strrchr(HOOKS_DIR, '/');
        snprintf(dir, sizeof(dir), "%.*s", (int) (slash - HOOKS_DIR - 1), &HOOKS_DIR[1]);
        snprintf(rel, sizeof(rel), "%s.real", dir);
        ASSERT_OK(rename(P(root, dir), P(root, rel)));
        ASSERT_OK(symlink(strrchr(rel, '/') + 1, P(root, dir)));
        run_agent(&run, root, VERB_CHECK, NULL);
        ASSERT_EQ(count(&run, "agent.hooks", ITEM_FAIL, "a symlink on the way to rootless-ci's hooks: not followed"), 1);
        ASSERT_EQ(count(&run, "agent.hooks", ITEM_FAIL, "pre-exit"), 0);
        run_done(&run);

        /* A file in its place: not a directory, and nothing below it is looked at. */
        ASSERT_OK(unlink(P(root, dir)));
        test_write(root, dir, "x\n");
        run_agent(&run, root, VERB_CHECK, NULL);
        ASSERT_EQ(count(&run, "agent.hooks", ITEM_FAIL, "not a directory"), 1);
        ASSERT_EQ(count(&run, "agent.hooks", ITEM_FAIL, "pre-exit"), 0);
        run_done(&run);
}

TEST(version_compare_knows_epochs_numbers_and_pre_releases) {
        ASSERT_EQ(agent_version_compare("3.89.0", "3.89.0"), 0);
        ASSERT_TRUE(agent_version_compare("3.88.1", "3.89.0") < 0);
        ASSERT_TRUE(agent_version_compare("3.100.0", "3.89.0") > 0);
        ASSERT_TRUE(agent_version_compare("3.9.0", "3.89.0") < 0);
        ASSERT_TRUE(agent_version_compare("4.0", "3.89.0") > 0);
        ASSERT_TRUE(agent_version_compare("3.89.0-1", "3.89.0") == 0);
        ASSERT_TRUE(agent_version_compare("3.89.0~beta.1", "3.89.0") < 0);
        ASSERT_TRUE(agent_version_compare("1:2.0.0", "3.89.0") > 0);
        ASSERT_TRUE(agent_version_compare("", "3.89.0") < 0);
        ASSERT_TRUE(agent_version_compare("garbage", "3.89.0") < 0);
        ASSERT_TRUE(agent_version_compare("99999999999999999999999.0", "3.89.0") > 0);
}

TEST(dpkg_status_gives_the_installed_version_only) {
        char *v = NULL;
        const char *text =
                "Package: buildkite-agent-extra\nStatus: install ok installed\nVersion: 9.9.9\n\n"
                "Package: buildkite-agent\nStatus: install ok installed\nArchitecture: amd64\nVersion: 3.88.1-5678\n"
                "Description: x\n continued\n\n"
                "Package: zsh\nStatus: install ok installed\nVersion: 5.9\n";

        ASSERT_EQ(dpkg_status_installed_version(text, "buildkite-agent", &v), 1);
        ASSERT_STREQ(v, "3.88.1-5678");
        free(v);
        ASSERT_EQ(dpkg_status_installed_version("Package: buildkite-agent\nStatus: deinstall ok config-files\nVersion: 3.90.0\n",
                                                "buildkite-agent", &v), 0);
        ASSERT_TRUE(v == NULL);
        ASSERT_EQ(dpkg_status_installed_version("Package: buildkite-agent\nStatus: install ok half-installed\nVersion: 3.90.0",
                                                "buildkite-agent", &v), 0);
        ASSERT_EQ(dpkg_status_installed_version("Package: buildkite-agent\nVersion: 3.95.0\nStatus: install ok installed",
                                                "buildkite-agent", &v), 1);
        ASSERT_STREQ(v, "3.95.0");
        free(v);
        ASSERT_EQ(dpkg_status_installed_version("", "buildkite-agent", &v), 0);
        /* Only a stanza's own Package: line counts, not one in another package's description. */
        ASSERT_EQ(dpkg_status_installed_version("Package: zsh\nStatus: install ok installed\nVersion: 5.9\n"
                                                "Description: x\n Package: buildkite-agent\n\n",
                                                "buildkite-agent", &v), 0);
        ASSERT_EQ(dpkg_status_installed_version("Package: zsh\nVersion: 5.9\n\nPackage: buildkite-agent\n"
                                                "Version: 3.91.0\nStatus: install ok installed\n\nPackage: z\n",
                                                "buildkite-agent", &v), 1);
        ASSERT_STREQ(v, "3.91.0");
        free(v);
}

TEST(an_agent_too_old_for_the_hooks_is_named) {
        const char *root = test_tmpdir();
        const Item *it;
        Run run;

        make_home(root);
        run_agent(&run, root, VERB_CHECK, NULL);
        ASSERT_EQ(count(&run, "agent.version", ITEM_PASS, "not installed"), 1);
        run_done(&run);

        test_write(root, "usr/bin/buildkite-agent", "#!/bin/sh\n");
        run_agent(&run, root, VERB_CHECK, NULL);
        ASSERT_EQ(count(&run, "agent.version", ITEM_WARN, "version is unknown"), 1);
        run_done(&run);

        test_write(root, "var/lib/dpkg/status", "Package: buildkite-agent\nStatus: install ok installed\nVersion: 3.88.1\n");
        run_agent(&run, root, VERB_CHECK, NULL);
        it = find_item(&run, "agent.version");
        ASSERT_TRUE(it != NULL);
        ASSERT_EQ(it->status, ITEM_FAIL);
        ASSERT_CONTAINS(it->message, "buildkite-agent 3.88.1 (dpkg) is older than 3.89.0");
        ASSERT_CONTAINS(it->fix, "upgrade buildkite-agent");
        run_done(&run);

        test_write(root, "var/lib/dpkg/status", "Package: buildkite-agent\nStatus: install ok installed\nVersion: 3.120.2\n");
        run_agent(&run, root, VERB_CHECK, NULL);
        ASSERT_EQ(count(&run, "agent.version", ITEM_PASS, "3.120.2 reads BUILDKITE_ADDITIONAL_HOOKS_PATHS"), 1);
        run_done(&run);
}

/* ---- tenants (issue 16): one agent instance, drop-in and configuration file each -------------------------- */

#define MAIN_GID 1001
#define PR_GID 1002

/* The status of item id; _ITEM_STATUS_MAX when there is none (so a missing item fails, not crashes). */
static ItemStatus status_of(const Run *run, const char *id) {
        const Item *it = find_item(run, id);
        return it ? it->status : _ITEM_STATUS_MAX;
}

static void add_tenant(Config *c, const char *name, const char *user, const char *config, Trust trust) {
        Tenant *t = ARRAY_PUSH(c->tenants, c->n_tenants);
        char unit[128];

        ASSERT_TRUE(t != NULL);
        snprintf(unit, sizeof(unit), "buildkite-agent@%s.service", name);
        *t = (Tenant) { .name = strdup(name), .user = strdup(user), .agent_unit = strdup(unit),
                        .agent_config = strdup(config), .trust = trust };
}

static void make_tenant_account(Account *a, uid_t uid, const char *home, const char *builds) {
        a->state = ACCOUNT_KNOWN;
        a->uid = uid;
        a->gid = uid;
        a->home = strdup(home);
        a->builds_dir = strdup(builds);
        a->gids = calloc(1, sizeof(gid_t));
        a->gids[0] = uid;
        a->n_gids = 1;
}

/*
 * main (trusted, user buildkite) and pr (untrusted, user buildkite-pr), as
 * the [Tenant] parser fills Config.tenants, with the accounts the user and
 * storage steps would leave. pr_config: AgentConfig= of pr. extra_pr_gid:
 * a group pr's user is in besides its own (0: none).
 */
static void run_tenants(Run *run, const char *root, Verb verb, const char *pr_config, gid_t extra_pr_gid) {
        Account *acc;

        if (getuid() != 0) {
                /* Two users with groups of their own need two IDs the test can give files to. */
                test_skip("two tenants' owners need root");
                return;
        }
        *run = (Run) {};
        if (config_init(&run->config) < 0)
                abort();
        add_tenant(&run->config, "main", "buildkite", "/etc/buildkite-agent/main.cfg", TRUST_TRUSTED);
        add_tenant(&run->config, "pr", "buildkite-pr", pr_config ? pr_config : "/etc/buildkite-agent/pr.cfg",
                   TRUST_UNTRUSTED);
        units_set_dir(UNITS_SOURCE_DIR);
        if (context_init(&run->ctx, verb, root, &run->config) < 0)
                abort();
        ASSERT_EQ(run->ctx.n_accounts, 2);
        acc = run->ctx.accounts;
        make_tenant_account(&acc[0], MAIN_GID, "/home/buildkite", "/srv/rootless-ci/buildkite/builds");
        make_tenant_account(&acc[1], PR_GID, "/home/buildkite-pr", "/srv/rootless-ci/buildkite-pr/builds");
        if (extra_pr_gid) {
                gid_t *g = ARRAY_PUSH(acc[1].gids, acc[1].n_gids);
                ASSERT_TRUE(g != NULL);
                *g = extra_pr_gid;
        }
        test_capture_stderr_begin();
        run->r = engine_run_steps(&run->ctx, agent_only, 1);
        run->err = test_capture_stderr_end();
        if (getenv("RCI_TEST_VERBOSE"))
                dump(run);
}

static void make_tenant_homes(const char *root) {
        ASSERT_OK(mkdir(P(root, "home"), 0755));
        ASSERT_OK(mkdir(P(root, "home/buildkite"), 0750));
        ASSERT_OK(mkdir(P(root, "home/buildkite-pr"), 0750));
        ASSERT_OK(chown(P(root, "home/buildkite"), MAIN_GID, MAIN_GID));
        ASSERT_OK(chown(P(root, "home/buildkite-pr"), PR_GID, PR_GID));
}

/* Each tenant's own file as an operator may leave it: readable by everyone, owned by whoever wrote it. */
static void make_tenant_configs(const char *root) {
        test_write(root, "etc/buildkite-agent/main.cfg", "token=\"main-" TOKEN "\"\n");
        test_write(root, "etc/buildkite-agent/pr.cfg", "token=\"pr-" TOKEN "\"\n");
        ASSERT_OK(chmod(P(root, "etc/buildkite-agent/main.cfg"), 0644));
        ASSERT_OK(chmod(P(root, "etc/buildkite-agent/pr.cfg"), 0600));
        ASSERT_OK(chown(P(root, "etc/buildkite-agent/main.cfg"), 4242, 4242));
}

/* Two tenants' homes, the package's tree and each tenant's own file, as an operator may leave them. */
static void make_tenant_tree(const char *root) {
        make_tenant_homes(root);
        make_package_tree(root, 4242);
        make_tenant_configs(root);
}

static const char *const untrusted_env[] = {
        "\nEnvironment=BUILDKITE_CLEAN_CHECKOUT=true\n",
        "\nEnvironment=BUILDKITE_NO_LOCAL_HOOKS=true\n",
        "\nEnvironment=GIT_CONFIG_COUNT=2\n"
        "Environment=GIT_CONFIG_KEY_0=core.hooksPath\n"
        "Environment=GIT_CONFIG_VALUE_0=/dev/null\n"
        "Environment=GIT_CONFIG_KEY_1=core.fsmonitor\n"
        "Environment=GIT_CONFIG_VALUE_1=false\n",
};

static void assert_no_untrusted_env(const char *text) {
        ASSERT_NOT_CONTAINS(text, "BUILDKITE_CLEAN_CHECKOUT");
        ASSERT_NOT_CONTAINS(text, "BUILDKITE_NO_LOCAL_HOOKS");
        ASSERT_NOT_CONTAINS(text, "GIT_CONFIG_");
}

TEST(tenants_each_agent_instance_runs_as_its_user_with_its_config_and_the_hooks) {
        const char *root = test_tmpdir();
        _cleanup_free_ char *main_text = NULL, *pr_text = NULL;
        Run run;

        make_tenant_tree(root);
        make_hooks(root);
        run_tenants(&run, root, VERB_APPLY, NULL, 0);
        if (test_skipped_flag)
                return;
        if (run.r < 0 || run.ctx.any_failed)
                dump(&run);
        ASSERT_OK(run.r);
        ASSERT_TRUE(find_item(&run, "agent.dropin:main") != NULL);
        ASSERT_TRUE(find_item(&run, "agent.dropin:pr") != NULL);

        main_text = test_read(root, "etc/systemd/system/buildkite-agent@main.service.d/zz-rootless-ci.conf");
        pr_text = test_read(root, "etc/systemd/system/buildkite-agent@pr.service.d/zz-rootless-ci.conf");
        ASSERT_TRUE(main_text != NULL);
        ASSERT_TRUE(pr_text != NULL);
        /* No drop-in for the package's own unit: each tenant has its instance. */
        ASSERT_TRUE(test_read(root, "etc/systemd/system/buildkite-agent.service.d/zz-rootless-ci.conf") == NULL);

        ASSERT_CONTAINS(main_text, "\nUser=buildkite\nGroup=1001\n");
        ASSERT_CONTAINS(main_text, "\nEnvironment=HOME=/home/buildkite\n");
        ASSERT_CONTAINS(main_text, "\nEnvironment=DOCKER_HOST=unix:///run/user/1001/docker.sock\n");
        ASSERT_CONTAINS(main_text, "\nEnvironment=BUILDKITE_BUILD_PATH=/srv/rootless-ci/buildkite/builds\n");
        ASSERT_CONTAINS(main_text, "\nEnvironment=BUILDKITE_AGENT_CONFIG=/etc/buildkite-agent/main.cfg\n");
        ASSERT_CONTAINS(main_text, "\nEnvironment=BUILDKITE_ADDITIONAL_HOOKS_PATHS=" HOOKS_DIR "\n");
        ASSERT_CONTAINS(main_text, "\nWants=user@1001.service\nAfter=user@1001.service\n");
        ASSERT_CONTAINS(main_text, "--user=buildkite --ready-timeout");
        /* Trusted: no untrusted environment. */
        assert_no_untrusted_env(main_text);

        ASSERT_CONTAINS(pr_text, "\nUser=buildkite-pr\nGroup=1002\n");
        ASSERT_CONTAINS(pr_text, "\nEnvironment=HOME=/home/buildkite-pr\n");
        ASSERT_CONTAINS(pr_text, "\nEnvironment=DOCKER_HOST=unix:///run/user/1002/docker.sock\n");
        ASSERT_CONTAINS(pr_text, "\nEnvironment=XDG_RUNTIME_DIR=/run/user/1002\n");
        ASSERT_CONTAINS(pr_text, "\nEnvironment=BUILDKITE_BUILD_PATH=/srv/rootless-ci/buildkite-pr/builds\n");
        ASSERT_CONTAINS(pr_text, "\nEnvironment=BUILDKITE_PLUGINS_PATH=/srv/rootless-ci/buildkite-pr/builds/.plugins\n");
        ASSERT_CONTAINS(pr_text, "\nRequiresMountsFor=/srv/rootless-ci/buildkite-pr/builds\n");
        ASSERT_CONTAINS(pr_text, "\nEnvironment=BUILDKITE_AGENT_CONFIG=/etc/buildkite-agent/pr.cfg\n");
        ASSERT_CONTAINS(pr_text, "\nEnvironment=BUILDKITE_ADDITIONAL_HOOKS_PATHS=" HOOKS_DIR "\n");
        ASSERT_CONTAINS(pr_text, "--user=buildkite-pr --ready-timeout");
        for (size_t i = 0; i < ELEMENTSOF(untrusted_env); i++)
                ASSERT_CONTAINS(pr_text, untrusted_env[i]);
        /* After the [Service] settings of every account, in a section of its own. */
        ASSERT_TRUE(strstr(pr_text, "GIT_CONFIG_COUNT") > strstr(pr_text, "TimeoutStartSec="));
        for (const char *a = strchr(pr_text, '@'); a; a = strchr(a + 1, '@'))
                ASSERT_FALSE(a[1] >= 'A' && a[1] <= 'Z');

        /* rootless-ci's hooks, judged for each tenant's user; one agent package: its version once, no tenant. */
        ASSERT_TRUE(find_item(&run, "agent.hooks:main") != NULL);
        ASSERT_TRUE(find_item(&run, "agent.hooks:pr") != NULL);
        ASSERT_EQ(count(&run, "agent.version", _ITEM_STATUS_MAX, NULL), 1);
        ASSERT_TRUE(find_item(&run, "agent.version") != NULL);
        run_done(&run);
}

TEST(tenants_each_config_file_is_root_and_its_tenants_group_0640) {
        const char *root = test_tmpdir();
        Run run;

        make_tenant_tree(root);
        run_tenants(&run, root, VERB_CHECK, NULL, 0);
        if (test_skipped_flag)
                return;
        ASSERT_EQ(status_of(&run, "agent.config-file:main"), ITEM_FAIL);
        ASSERT_EQ(status_of(&run, "agent.config-file:pr"), ITEM_FAIL);
        run_done(&run);

        run_tenants(&run, root, VERB_APPLY, NULL, 0);
        if (run.r < 0 || run.ctx.any_failed)
                dump(&run);
        ASSERT_EQ(status_of(&run, "agent.config-file:main"), ITEM_CHANGE);
        ASSERT_EQ(status_of(&run, "agent.config-file:pr"), ITEM_CHANGE);
        /* The tree is about the host: its ids name no tenant, and it leaves the tenants' files to them. */
        {
                char id[PATH_MAX + 32];
                snprintf(id, sizeof(id), "agent.config:%s/etc/buildkite-agent/buildkite-agent.cfg", root);
                ASSERT_TRUE(find_item(&run, id) != NULL);
                snprintf(id, sizeof(id), "agent.config:%s/etc/buildkite-agent/main.cfg", root);
                ASSERT_TRUE(find_item(&run, id) == NULL);
        }
        ASSERT_EQ(count(&run, "agent.config:main", _ITEM_STATUS_MAX, NULL), 0);
        run_done(&run);

        ASSERT_TRUE(owner_mode_is(root, "etc/buildkite-agent/main.cfg", 0, MAIN_GID, 0640));
        ASSERT_TRUE(owner_mode_is(root, "etc/buildkite-agent/pr.cfg", 0, PR_GID, 0640));
        /* No tenant's group: no tenant reads the package's own file, nor writes anything in the tree. */
        ASSERT_TRUE(owner_mode_is(root, "etc/buildkite-agent/buildkite-agent.cfg", 0, 0, 0640));
        ASSERT_TRUE(owner_mode_is(root, "etc/buildkite-agent", 0, 0, 0755));
        ASSERT_TRUE(owner_mode_is(root, "etc/buildkite-agent/hooks", 0, 0, 0755));
        ASSERT_TRUE(owner_mode_is(root, "etc/buildkite-agent/bootstrap.sh", 0, 0, 0750));
        {
                _cleanup_free_ char *t = test_read(root, "etc/buildkite-agent/pr.cfg");
                ASSERT_STREQ(t, "token=\"pr-" TOKEN "\"\n");
        }

        /* Converged: nothing changes, check holds. */
        run_tenants(&run, root, VERB_APPLY, NULL, 0);
        ASSERT_FALSE(run.ctx.any_changed);
        run_done(&run);
        run_tenants(&run, root, VERB_CHECK, NULL, 0);
        if (run.ctx.any_failed)
                dump(&run);
        ASSERT_FALSE(run.ctx.any_failed);
        ASSERT_EQ(status_of(&run, "agent.config-file:pr"), ITEM_PASS);
        ASSERT_TRUE(find_item(&run, "agent.config-file:pr") != NULL);
        ASSERT_CONTAINS(find_item(&run, "agent.config-file:pr")->message, "readable by buildkite-pr");
        run_done(&run);
}

TEST(tenants_a_missing_config_file_is_a_warning_and_never_created) {
        const char *root = test_tmpdir();
        const Verb verbs[] = { VERB_PLAN, VERB_CHECK, VERB_APPLY };
        Run run;

        make_tenant_homes(root);
        make_package_tree(root, 4242);
        test_write(root, "etc/buildkite-agent/main.cfg", "token=\"main-" TOKEN "\"\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                const Item *it;

                run_tenants(&run, root, verbs[i], NULL, 0);
                if (test_skipped_flag)
                        return;
                it = find_item(&run, "agent.config-file:pr");
                ASSERT_TRUE(it != NULL);
                ASSERT_EQ(it->status, ITEM_WARN);
                ASSERT_CONTAINS(it->message, "pr.cfg does not exist");
                ASSERT_CONTAINS(it->message, "never writes a token");
                ASSERT_CONTAINS(it->fix, "install -o root -g 1002 -m 0640 /dev/null");
                /* Apply secures the rest and succeeds: the token is the operator's to write. */
                if (verbs[i] == VERB_APPLY) {
                        if (run.r < 0)
                                dump(&run);
                        ASSERT_OK(run.r);
                }
                run_done(&run);
                ASSERT_TRUE(access(P(root, "etc/buildkite-agent/pr.cfg"), F_OK) < 0);
        }
        /* The drop-in is written all the same: the agent starts once the operator writes the file. */
        ASSERT_TRUE(access(P(root, "etc/systemd/system/buildkite-agent@pr.service.d/zz-rootless-ci.conf"), F_OK) == 0);
}

TEST(tenants_another_tenants_user_in_the_group_fails) {
        const char *root = test_tmpdir();
        const Item *it;
        Run run;

        make_tenant_tree(root);
        /* buildkite-pr is also in buildkite's group: pr's jobs could read main's token. */
        run_tenants(&run, root, VERB_CHECK, NULL, MAIN_GID);
        if (test_skipped_flag)
                return;
        ASSERT_EQ(status_of(&run, "agent.config-group:main"), ITEM_FAIL);
        it = find_item(&run, "agent.config-group:main");
        ASSERT_CONTAINS(it->message, "buildkite-pr (user of other tenants) is in group 1001");
        ASSERT_TRUE(find_item(&run, "agent.config-group:pr") == NULL);
        run_done(&run);

        run_tenants(&run, root, VERB_CHECK, NULL, 0);
        ASSERT_TRUE(find_item(&run, "agent.config-group:main") == NULL);
        run_done(&run);
}

TEST(tenants_a_config_file_others_can_replace_or_the_tenant_cannot_reach_fails) {
        const char *root = test_tmpdir();
        const Item *it;
        Run run;

        make_tenant_tree(root);
        /* Outside /etc/buildkite-agent, in a directory everyone can write: anyone could swap the file. */
        test_write(root, "srv/agent-config/pr.cfg", "token=\"pr\"\n");
        ASSERT_OK(chmod(P(root, "srv/agent-config"), 01777));
        run_tenants(&run, root, VERB_APPLY, "/srv/agent-config/pr.cfg", 0);
        if (test_skipped_flag)
                return;
        ASSERT_EQ(status_of(&run, "agent.config-file:pr"), ITEM_FAIL);
        it = find_item(&run, "agent.config-file:pr");
        ASSERT_CONTAINS(it->message, "someone other than root can replace");
        ASSERT_CONTAINS(it->fix, "chmod go-w");
        ASSERT_CONTAINS(test_read_kept(root, "etc/systemd/system/buildkite-agent@pr.service.d/zz-rootless-ci.conf"),
                        "\nEnvironment=BUILDKITE_AGENT_CONFIG=/srv/agent-config/pr.cfg\n");
        run_done(&run);

        /* Root's alone but closed to the tenant: its agent cannot read the file. */
        ASSERT_OK(chmod(P(root, "srv/agent-config"), 0750));
        run_tenants(&run, root, VERB_CHECK, "/srv/agent-config/pr.cfg", 0);
        ASSERT_EQ(status_of(&run, "agent.config-file:pr"), ITEM_FAIL);
        it = find_item(&run, "agent.config-file:pr");
        ASSERT_CONTAINS(it->message, "buildkite-pr cannot pass through it");
        run_done(&run);

        /* A symlink is never followed. */
        ASSERT_OK(chmod(P(root, "srv/agent-config"), 0755));
        ASSERT_OK(unlink(P(root, "etc/buildkite-agent/pr.cfg")));
        ASSERT_OK(symlink("/srv/agent-config/pr.cfg", P(root, "etc/buildkite-agent/pr.cfg")));
        run_tenants(&run, root, VERB_APPLY, NULL, 0);
        ASSERT_EQ(status_of(&run, "agent.config-file:pr"), ITEM_FAIL);
        it = find_item(&run, "agent.config-file:pr");
        ASSERT_CONTAINS(it->message, "is a symlink");
        run_done(&run);
}

TEST(without_tenants_nothing_is_added) {
        const char *root = test_tmpdir();
        _cleanup_free_ char *text = NULL;
        Run run;

        make_home(root);
        make_package_tree(root, 4242);
        run_agent(&run, root, VERB_APPLY, NULL);
        text = test_read(root, "etc/systemd/system/buildkite-agent.service.d/zz-rootless-ci.conf");
        ASSERT_TRUE(text != NULL);
        assert_no_untrusted_env(text);
        ASSERT_EQ(count(&run, "agent.config-file", _ITEM_STATUS_MAX, NULL), 0);
        ASSERT_EQ(count(&run, "agent.config-group", _ITEM_STATUS_MAX, NULL), 0);
        for (size_t i = 0; i < run.ctx.n_items; i++)
                ASSERT_FALSE(strstr(run.ctx.items[i].id, ":main") || strstr(run.ctx.items[i].id, ":pr"));
        run_done(&run);
        /* The package's file is the CI user's group's, as before tenants. */
        if (getuid() == 0)
                ASSERT_TRUE(owner_mode_is(root, "etc/buildkite-agent/buildkite-agent.cfg", 0, fake_ci_gid(), 0640));
}
