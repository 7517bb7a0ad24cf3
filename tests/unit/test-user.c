/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake-tree.h"
#include "tests.h"
#include "util/error.h"

/* The user step on fake --root trees: what plan says, what apply writes, byte for byte. */

TEST(user_plan_creates_missing_user_and_its_ranges) {
        const char *d = test_tmpdir();
        FakeRun run = {};

        fake_tree_populate(d, false);
        fake_run(&run, d, VERB_PLAN, true);
        ASSERT_OK(run.r);
        ASSERT_EQ(fake_count(&run, "user.account", ITEM_CREATE, "create user buildkite (its own group, home /home/buildkite, shell /bin/bash)"), 1);
        ASSERT_EQ(fake_count(&run, "user.subuid", ITEM_CREATE, "add buildkite:100000:65536"), 1);
        ASSERT_EQ(fake_count(&run, "user.subgid", ITEM_CREATE, "add buildkite:100000:65536"), 1);
        ASSERT_EQ(fake_count(&run, "storage.home-link", ITEM_CREATE, "in the home useradd creates"), 1);
        ASSERT_TRUE(run.ctx.accounts[0].state == ACCOUNT_PLANNED);
        ASSERT_FALSE(run.ctx.accounts[0].state == ACCOUNT_KNOWN);
        /* plan changes nothing */
        ASSERT_STREQ(test_read_kept(d, "etc/subuid"), "");
        ASSERT_TRUE(test_read_kept(d, "srv") == NULL);
        fake_run_done(&run);
}

TEST(user_plan_adopts_existing_user_and_exports_facts) {
        const char *d = test_tmpdir();
        FakeRun run = {};

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        fake_tree_populate(d, true);
        test_write(d, "etc/subuid", "buildkite:300000:65536\n");
        test_write(d, "etc/subgid", "buildkite:300000:65536\n");
        fake_run(&run, d, VERB_PLAN, false);
        ASSERT_OK(run.r);
        ASSERT_EQ(fake_count(&run, "user.account", ITEM_OK, "adopted"), 1);
        ASSERT_EQ(fake_count(&run, "user.subuid", ITEM_OK, "buildkite has 300000:65536"), 1);
        ASSERT_TRUE(run.ctx.accounts[0].state == ACCOUNT_KNOWN);
        ASSERT_EQ(run.ctx.accounts[0].uid, fake_ci_uid());
        ASSERT_EQ(run.ctx.accounts[0].gid, fake_ci_gid());
        ASSERT_STREQ(run.ctx.accounts[0].home, "/home/buildkite");
        ASSERT_EQ(run.ctx.accounts[0].subuids[0].start, 300000);
        ASSERT_EQ(run.ctx.accounts[0].subuids[0].count, 65536);
        ASSERT_EQ(run.ctx.accounts[0].subgids[0].start, 300000);
        ASSERT_FALSE(run.ctx.any_failed);
        fake_run_done(&run);
}

/* Every line of the user's that is kept reaches the facts, as newuidmap will map them all; a dropped one does not. */
TEST(user_facts_hold_every_kept_range) {
        const char *d = test_tmpdir();
        FakeRun run = {};

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        fake_tree_populate(d, true);
        test_write(d, "etc/subuid", "buildkite:300000:65536\nbuildkite:500000:100\nbuildkite:700000:65536\n");
        test_write(d, "etc/subgid", "buildkite:300000:65536\n");
        fake_run(&run, d, VERB_CHECK, false);
        ASSERT_OK(run.r);
        ASSERT_EQ(run.ctx.accounts[0].subuids[0].start, 300000);
        ASSERT_EQ(run.ctx.accounts[0].n_subuids, 2);  /* 500000:100 is too small: apply drops it */
        ASSERT_EQ(run.ctx.accounts[0].subuids[0].start, 300000);
        ASSERT_EQ(run.ctx.accounts[0].subuids[1].start, 700000);
        ASSERT_EQ(run.ctx.accounts[0].subuids[1].count, 65536);
        ASSERT_EQ(run.ctx.accounts[0].n_subgids, 1);
        ASSERT_EQ(run.ctx.accounts[0].subgids[0].start, 300000);
        fake_run_done(&run);

        /* No line at all: the one apply allocates. */
        test_write(d, "etc/subuid", "");
        fake_run(&run, d, VERB_PLAN, false);
        ASSERT_OK(run.r);
        ASSERT_EQ(run.ctx.accounts[0].n_subuids, 1);
        ASSERT_EQ(run.ctx.accounts[0].subuids[0].start, 100000);  /* the range user.subuid plans */
        ASSERT_EQ(run.ctx.accounts[0].subuids[0].count, 65536);
        fake_run_done(&run);
}

TEST(user_system_account_is_refused_and_nothing_else_runs) {
        const char *d = test_tmpdir();
        FakeRun run = {};

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        fake_tree_populate(d, true);
        test_write(d, "etc/login.defs", "UID_MIN 60001\n");
        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_EQ(fake_count(&run, "user.account", ITEM_FAIL, "is a system account"), 1);
        ASSERT_EQ(fake_count(&run, "user.subuid", _ITEM_STATUS_MAX, NULL), 0);
        ASSERT_EQ(fake_count(&run, "storage", _ITEM_STATUS_MAX, NULL), 0);  /* apply stopped after the user step */
        ASSERT_TRUE(run.r < 0);
        ASSERT_STREQ(test_read_kept(d, "etc/subuid"), "");
        fake_run_done(&run);
}

TEST(user_root_and_shared_uid_are_refused) {
        const char *d = test_tmpdir();
        FakeRun run = {};

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        fake_tree_populate(d, true);
        test_write(d, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\nbuildkite:x:0:0::/home/buildkite:/bin/bash\n");
        fake_run(&run, d, VERB_CHECK, false);
        ASSERT_EQ(fake_count(&run, "user.account", ITEM_FAIL, "system account (UID 0"), 1);
        fake_run_done(&run);

        fake_tree_write_ids(d, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\nbuildkite:x:@UID@:@GID@::/home/buildkite:/bin/bash\n"
                                             "alias:x:@UID@:@GID@::/home/alias:/bin/sh\n");
        fake_run(&run, d, VERB_CHECK, false);
        ASSERT_EQ(fake_count(&run, "user.account", ITEM_FAIL, "shares UID"), 1);
        fake_run_done(&run);
}

TEST(user_missing_with_leftover_home_or_shared_group_is_refused) {
        const char *d = test_tmpdir();
        FakeRun run = {};
        char p[4096];

        fake_tree_populate(d, false);
        test_write(d, "home/buildkite/old", "someone's\n");
        fake_run(&run, d, VERB_PLAN, false);
        ASSERT_EQ(fake_count(&run, "user.account", ITEM_FAIL, "will not hand an existing directory to a new account"), 1);
        fake_run_done(&run);

        fake_tree_populate(d, false);
        test_write(d, "etc/group", "root:x:0:\nbuildkite:x:1500:alice\n");
        snprintf(p, sizeof(p), "%s/home/buildkite/old", d);
        ASSERT_OK(unlink(p));
        snprintf(p, sizeof(p), "%s/home/buildkite", d);
        ASSERT_OK(rmdir(p));
        fake_run(&run, d, VERB_PLAN, false);
        ASSERT_EQ(fake_count(&run, "user.account", ITEM_FAIL, "shared with other users"), 1);
        fake_run_done(&run);

        /* A lone group of that name with a regular GID becomes the new user's group. */
        test_write(d, "etc/group", "root:x:0:\nbuildkite:x:1500:\n");
        fake_run(&run, d, VERB_PLAN, false);
        ASSERT_EQ(fake_count(&run, "user.account", ITEM_CREATE, "the existing group of that name"), 1);
        fake_run_done(&run);
}

static const char *group_before =
        "root:x:0:\n"
        "sudo:x:27:alice,buildkite\n"
        "docker:x:999:buildkite,alice\n"
        "kvm:x:104:buildkite\n"
        "video:x:44:buildkite,alice\n"
        "# a comment line\n"
        "alice:x:@ALICE@:\n"
        "buildkite:x:@GID@:\n";
static const char *group_after =
        "root:x:0:\n"
        "sudo:x:27:alice\n"
        "docker:x:999:alice\n"
        "kvm:x:104:\n"
        "video:x:44:buildkite,alice\n"
        "# a comment line\n"
        "alice:x:@ALICE@:\n"
        "buildkite:x:@GID@:\n";

TEST(user_apply_removes_only_the_user_from_privileged_groups) {
        const char *d = test_tmpdir();
        FakeRun run = {};
        char *expected;
        struct stat st;
        char p[4096];

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        fake_tree_populate(d, true);
        fake_tree_write_ids(d, "etc/group", group_before);
        test_write(d, "etc/gshadow", "root:*::\nsudo:*:buildkite:alice,buildkite\ndocker:!:alice:buildkite,alice\nvideo:!::buildkite\n");
        snprintf(p, sizeof(p), "%s/etc/gshadow", d);
        ASSERT_OK(chmod(p, 0640));

        fake_run(&run, d, VERB_APPLY, false);
        ASSERT_OK(run.r);
        ASSERT_EQ(fake_count(&run, "user.groups", ITEM_REMOVE, "removed buildkite from group"), 3);
        ASSERT_EQ(fake_count(&run, "user.groups", ITEM_REMOVE, "group video"), 0);
        ASSERT_EQ(run.ctx.accounts[0].n_gids, 2);  /* its own group and video */
        fake_run_done(&run);

        /* Nothing left to remove: the fact stays false. */
        fake_run(&run, d, VERB_APPLY, false);
        ASSERT_EQ(run.ctx.accounts[0].n_gids, 2);
        fake_run_done(&run);

        fake_tree_write_ids(d, "etc/expected", group_after);
        expected = test_read(d, "etc/expected");
        ASSERT_STREQ(test_read_kept(d, "etc/group"), expected);
        ASSERT_STREQ(test_read_kept(d, "etc/gshadow"), "root:*::\nsudo:*::alice\ndocker:!:alice:alice\nvideo:!::buildkite\n");
        /* gshadow keeps its mode; no lock files are left behind */
        ASSERT_OK(stat(p, &st));
        ASSERT_EQ(st.st_mode & 07777, 0640);
        ASSERT_TRUE(test_read_kept(d, "etc/group.lock") == NULL);
        ASSERT_TRUE(test_read_kept(d, "etc/gshadow.lock") == NULL);
        ASSERT_TRUE(test_read_kept(d, "etc/subuid.lock") == NULL);
        free(expected);
}

TEST(user_apply_writes_ranges_keeps_malformed_lines_and_is_idempotent) {
        const char *d = test_tmpdir();
        FakeRun run = {};

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        fake_tree_populate(d, true);
        test_write(d, "etc/subuid", "alice:100000:65536\nnot a range\nbuildkite:120000:65536\n");
        test_write(d, "etc/subgid", "alice:100000:65536");
        fake_run(&run, d, VERB_APPLY, false);
        ASSERT_OK(run.r);
        ASSERT_EQ(fake_count(&run, "user.subuid", ITEM_WARN, ":2: \"not a range\" is not owner:start:count; kept as it is"), 1);
        ASSERT_EQ(fake_count(&run, "user.subuid", ITEM_CHANGE, "drop line 3 \"buildkite:120000:65536\" (overlaps another owner's range); add buildkite:165536:65536"), 1);
        ASSERT_EQ(fake_count(&run, "user.subgid", ITEM_CREATE, "add buildkite:165536:65536"), 1);
        ASSERT_TRUE(run.ctx.any_changed);
        fake_run_done(&run);
        ASSERT_STREQ(test_read_kept(d, "etc/subuid"), "alice:100000:65536\nnot a range\nbuildkite:165536:65536\n");
        ASSERT_STREQ(test_read_kept(d, "etc/subgid"), "alice:100000:65536\nbuildkite:165536:65536\n");

        fake_run(&run, d, VERB_APPLY, false);
        ASSERT_OK(run.r);
        ASSERT_FALSE(run.ctx.any_changed);
        fake_run_done(&run);

        fake_run(&run, d, VERB_CHECK, false);
        ASSERT_FALSE(run.ctx.any_failed);
        ASSERT_EQ(fake_count(&run, "user.subuid", ITEM_PASS, NULL), 1);
        fake_run_done(&run);
}

TEST(user_check_reports_drift_with_the_fix) {
        const char *d = test_tmpdir();
        FakeRun run = {};

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        fake_tree_populate(d, true);
        fake_tree_write_ids(d, "etc/group", group_before);
        fake_run(&run, d, VERB_CHECK, false);
        ASSERT_TRUE(run.ctx.any_failed);
        ASSERT_EQ(fake_count(&run, "user.subuid", ITEM_FAIL, "add buildkite:100000:65536"), 1);
        ASSERT_EQ(fake_count(&run, "user.groups", ITEM_FAIL, "remove buildkite from group docker"), 1);
        for (size_t i = 0; i < run.ctx.n_items; i++)
                if (run.ctx.items[i].status == ITEM_FAIL && strncmp(run.ctx.items[i].id, "user.sub", 8) == 0)
                        ASSERT_STREQ(run.ctx.items[i].fix, "rootless-ci apply");
        /* The %sudo rule does not count: apply takes buildkite out of sudo. */
        ASSERT_EQ(fake_count(&run, "user.sudoers", ITEM_FAIL, NULL), 0);
        fake_run_done(&run);
        ASSERT_STREQ(test_read_kept(d, "etc/subuid"), "");
}

TEST(user_sudoers_rule_fails_apply_with_file_and_line) {
        const char *d = test_tmpdir();
        FakeRun run = {};

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        fake_tree_populate(d, true);
        fake_tree_write_ids(d, "etc/group", "root:x:0:\nci:x:1500:buildkite\nbuildkite:x:@GID@:\n");
        test_write(d, "etc/sudoers.d/ci", "# CI may restart things\n%ci ALL=(root) NOPASSWD: /bin/systemctl\n");
        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_EQ(fake_count(&run, "user.sudoers", ITEM_FAIL, "/etc/sudoers.d/ci:2: a sudoers rule applies to buildkite (through \"%ci\")"), 1);
        ASSERT_EQ(run.r, -ERCI_FAILED);
        ASSERT_EQ(fake_count(&run, "storage", _ITEM_STATUS_MAX, NULL), 0);
        /* sudoers is never edited */
        ASSERT_STREQ(test_read_kept(d, "etc/sudoers.d/ci"), "# CI may restart things\n%ci ALL=(root) NOPASSWD: /bin/systemctl\n");
        fake_run_done(&run);
}

TEST(user_privileged_primary_group_fails_and_is_not_changed) {
        const char *d = test_tmpdir();
        FakeRun run = {};

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        fake_tree_populate(d, true);
        fake_tree_write_ids(d, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\nbuildkite:x:@UID@:999::/home/buildkite:/bin/bash\n");
        fake_tree_write_ids(d, "etc/group", group_before);
        fake_run(&run, d, VERB_APPLY, false);
        ASSERT_EQ(fake_count(&run, "user.primary-group", ITEM_FAIL, "the primary group of buildkite is docker (GID 999)"), 1);
        ASSERT_TRUE(run.ctx.any_failed);
        fake_run_done(&run);
        /* Refused before anything changed: no ranges, no group edits. */
        ASSERT_STREQ(test_read_kept(d, "etc/subuid"), "");
        {
                char *expected;
                fake_tree_write_ids(d, "etc/expected", group_before);
                expected = test_read(d, "etc/expected");
                ASSERT_STREQ(test_read_kept(d, "etc/group"), expected);
                free(expected);
        }
}

TEST(user_group_owning_a_root_daemon_socket_is_privileged) {
        const char *d = test_tmpdir();
        FakeRun run = {};
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (getuid() != 0) {
                test_skip("needs root to make a root-owned socket in the fake tree");
                return;
        }
        fake_tree_populate(d, true);
        fake_tree_write_ids(d, "etc/group", "root:x:0:\ndockerroot:x:990:buildkite,alice\nbuildkite:x:@GID@:\n");
        test_write(d, "run/.keep", "");
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/run/docker.sock", d);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        ASSERT_OK(fd);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof(sa)));
        ASSERT_OK(chown(sa.sun_path, 0, 990));
        ASSERT_OK(chmod(sa.sun_path, 0660));

        fake_run(&run, d, VERB_PLAN, false);
        ASSERT_EQ(fake_count(&run, "user.groups", ITEM_REMOVE, "remove buildkite from group dockerroot (membership there is root: the group can write /run/docker.sock"), 1);
        fake_run_done(&run);

        /* Not group-writable: not a way in. */
        ASSERT_OK(chmod(sa.sun_path, 0640));
        fake_run(&run, d, VERB_PLAN, false);
        ASSERT_EQ(fake_count(&run, "user.groups", ITEM_REMOVE, NULL), 0);
        fake_run_done(&run);
        close(fd);
}

static bool gids_contain(const gid_t *gids, size_t n, gid_t gid) {
        for (size_t i = 0; i < n; i++)
                if (gids[i] == gid)
                        return true;
        return false;
}

/*
 * The kernel knows GIDs, not names: another line carrying disk's GID
 * (disk2), a second "kvm" line, a second "docker" line with a GID of its
 * own, a line with GID 0 are each as privileged as the first, and taken
 * out like it.
 */
TEST(user_privileged_groups_are_judged_by_gid) {
        const char *d = test_tmpdir();
        FakeRun run = {};
        const HostFacts *f = &run.ctx.facts;
        const Account *a;
        char *expected;
        char p[4096];

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        fake_tree_populate(d, true);
        fake_tree_write_ids(d, "etc/group",
                            "root:x:0:\n"
                            "disk:x:6:\n"
                            "disk2:x:6:buildkite,alice\n"
                            "kvm:x:104:\n"
                            "kvm:x:104:buildkite\n"
                            "docker:x:999:\n"
                            "docker:x:998:buildkite\n"
                            "wheel0:x:0:buildkite\n"
                            "video:x:44:buildkite\n"
                            "buildkite:x:@GID@:\n");
        test_write(d, "etc/gshadow", "root:*::\ndisk:!::\ndisk2:!:buildkite:buildkite,alice\nvideo:!::buildkite\n");
        snprintf(p, sizeof(p), "%s/etc/gshadow", d);
        ASSERT_OK(chmod(p, 0640));
        /* A rule for disk2 reaches the user only until apply takes it out of disk2: not a sudoers failure. */
        test_write(d, "etc/sudoers", "%disk2 ALL=(ALL) ALL\n");

        fake_run(&run, d, VERB_CHECK, false);
        ASSERT_EQ(fake_count(&run, "user.groups", ITEM_FAIL,
                             "remove buildkite from group disk2 (GID 6, the GID of disk: membership there is root: "
                             "the group reads and writes raw disks)"), 1);
        ASSERT_EQ(fake_count(&run, "user.groups", ITEM_FAIL, "from group kvm (the group opens /dev/kvm"), 1);
        ASSERT_EQ(fake_count(&run, "user.groups", ITEM_FAIL, "from group docker (membership there is root"), 1);
        ASSERT_EQ(fake_count(&run, "user.groups", ITEM_FAIL, "from group wheel0 (GID 0, the GID of root:"), 1);
        ASSERT_EQ(fake_count(&run, "user.groups", ITEM_FAIL, "video"), 0);
        ASSERT_EQ(fake_count(&run, "user.sudoers", ITEM_FAIL, NULL), 0);
        ASSERT_TRUE(gids_contain(f->privileged_gids, f->n_privileged_gids, 6));
        ASSERT_TRUE(gids_contain(f->privileged_gids, f->n_privileged_gids, 998));
        ASSERT_TRUE(gids_contain(f->privileged_gids, f->n_privileged_gids, 999));
        ASSERT_FALSE(gids_contain(f->privileged_gids, f->n_privileged_gids, 44));
        fake_run_done(&run);

        fake_run(&run, d, VERB_APPLY, false);
        ASSERT_OK(run.r);
        ASSERT_EQ(fake_count(&run, "user.groups", ITEM_REMOVE, "removed buildkite from group"), 4);
        /* What its processes get from now on: its own group and video. */
        a = &run.ctx.accounts[0];
        ASSERT_EQ(a->n_gids, 2);
        ASSERT_EQ(a->gids[0], fake_ci_gid());
        ASSERT_EQ(a->gids[1], 44);
        fake_run_done(&run);

        fake_tree_write_ids(d, "etc/expected",
                            "root:x:0:\n"
                            "disk:x:6:\n"
                            "disk2:x:6:alice\n"
                            "kvm:x:104:\n"
                            "kvm:x:104:\n"
                            "docker:x:999:\n"
                            "docker:x:998:\n"
                            "wheel0:x:0:\n"
                            "video:x:44:buildkite\n"
                            "buildkite:x:@GID@:\n");
        expected = test_read(d, "etc/expected");
        ASSERT_STREQ(test_read_kept(d, "etc/group"), expected);
        free(expected);
        ASSERT_STREQ(test_read_kept(d, "etc/gshadow"), "root:*::\ndisk:!::\ndisk2:!::alice\nvideo:!::buildkite\n");

        fake_run(&run, d, VERB_CHECK, false);
        ASSERT_FALSE(run.ctx.any_failed);
        fake_run_done(&run);
}

TEST(user_killed_after_writing_subuid_is_completed_by_next_run) {
        const char *d = test_tmpdir();
        FakeRun run = {};
        pid_t pid;
        int status;

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        fake_tree_populate(d, true);
        fake_tree_write_ids(d, "etc/group", group_before);
        fflush(stdout);
        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0) {
                setenv("RCI_KILL_AT", "user-subuid-written", 1);
                fake_run(&run, d, VERB_APPLY, false);
                _exit(0);
        }
        ASSERT_OK(waitpid(pid, &status, 0));
        ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        ASSERT_STREQ(test_read_kept(d, "etc/subuid"), "buildkite:100000:65536\n");
        ASSERT_STREQ(test_read_kept(d, "etc/subgid"), "");

        /*
         * The dead run's lock files name a PID that is gone: stale, removed,
         * and so is a lock's link source FILE.PID, which a locker killed
         * between link() and unlink() leaves (a useradd killed with us).
         */
        {
                char lock[4096], source[4096];

                snprintf(lock, sizeof(lock), "%s/etc/group.lock", d);
                snprintf(source, sizeof(source), "%s/etc/group.%ld", d, (long) pid);
                ASSERT_OK(link(lock, source));
                fake_run(&run, d, VERB_APPLY, false);
                ASSERT_OK(run.r);
                fake_run_done(&run);
                ASSERT_TRUE(access(source, F_OK) < 0 && errno == ENOENT);
                ASSERT_TRUE(access(lock, F_OK) < 0 && errno == ENOENT);
        }
        ASSERT_STREQ(test_read_kept(d, "etc/subgid"), "buildkite:100000:65536\n");
        {
                char *expected;
                fake_tree_write_ids(d, "etc/expected", group_after);
                expected = test_read(d, "etc/expected");
                ASSERT_STREQ(test_read_kept(d, "etc/group"), expected);
                free(expected);
        }
        fake_run(&run, d, VERB_CHECK, false);
        ASSERT_FALSE(run.ctx.any_failed);
        fake_run_done(&run);
}

/* The step writes the Account the later steps get (issue 15), the one home of the account's data. */
TEST(user_writes_the_account) {
        const char *d = test_tmpdir();
        const Account *a;
        FakeRun run = {};

        fake_tree_populate(d, false);
        fake_run(&run, d, VERB_PLAN, false);
        ASSERT_OK(run.r);
        a = &run.ctx.accounts[0];
        ASSERT_EQ(a->state, ACCOUNT_PLANNED);
        ASSERT_STREQ(a->name, "buildkite");
        ASSERT_STREQ(a->home, "/home/buildkite");
        ASSERT_EQ(a->n_subuids, 1);
        ASSERT_EQ(a->subuids[0].start, 100000);
        ASSERT_EQ(a->n_gids, 0);
        fake_run_done(&run);

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        fake_tree_populate(d, true);
        test_write(d, "etc/subuid", "buildkite:300000:65536\nbuildkite:700000:65536\n");
        test_write(d, "etc/subgid", "buildkite:400000:65536\n");
        fake_run(&run, d, VERB_CHECK, false);
        a = &run.ctx.accounts[0];
        ASSERT_EQ(a->state, ACCOUNT_KNOWN);
        ASSERT_EQ(a->uid, fake_ci_uid());
        ASSERT_EQ(a->gid, fake_ci_gid());
        ASSERT_STREQ(a->home, "/home/buildkite");
        ASSERT_EQ(a->n_subuids, 2);
        ASSERT_EQ(a->subuids[1].start, 700000);
        ASSERT_EQ(a->n_subgids, 1);
        ASSERT_EQ(a->subgids[0].start, 400000);
        ASSERT_EQ(a->n_gids, 1);
        ASSERT_EQ(a->gids[0], fake_ci_gid());
        fake_run_done(&run);

        /* refused: unusable, nothing more decided */
        test_write(d, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\nbuildkite:x:0:0::/home/buildkite:/bin/bash\n");
        fake_run(&run, d, VERB_PLAN, false);
        ASSERT_EQ(run.ctx.accounts[0].state, ACCOUNT_UNUSABLE);
        ASSERT_EQ(run.ctx.accounts[0].n_subuids, 0);
        fake_run_done(&run);
}

/* ---- tenants (issue 16): ranges of their own, planned or written ---- */

/* plan: the second tenant's range keeps clear of the first's, which is only planned (no line yet). */
TEST(user_tenants_plan_disjoint_ranges_before_any_is_written) {
        const char *d = test_tmpdir();
        FakeRun run = { .tenants = { fake_two_tenants[0], fake_two_tenants[1] }, .n_tenants = 2 };

        fake_tree_populate(d, false);
        fake_run(&run, d, VERB_PLAN, false);
        ASSERT_OK(run.r);
        ASSERT_EQ(fake_count(&run, "user.account:main", ITEM_CREATE, "create user buildkite "), 1);
        ASSERT_EQ(fake_count(&run, "user.account:pr", ITEM_CREATE, "create user buildkite-pr "), 1);
        ASSERT_EQ(fake_count(&run, "user.subuid:main", ITEM_CREATE, "add buildkite:100000:65536"), 1);
        ASSERT_EQ(fake_count(&run, "user.subuid:pr", ITEM_CREATE, "add buildkite-pr:165536:65536"), 1);
        ASSERT_EQ(fake_count(&run, "user.subgid:main", ITEM_CREATE, "add buildkite:100000:65536"), 1);
        ASSERT_EQ(fake_count(&run, "user.subgid:pr", ITEM_CREATE, "add buildkite-pr:165536:65536"), 1);
        ASSERT_EQ(run.ctx.accounts[1].subuids[0].start, 165536);
        ASSERT_EQ(run.ctx.accounts[1].subgids[0].start, 165536);
        ASSERT_STREQ(test_read_kept(d, "etc/subuid"), "");
        fake_run_done(&run);
}

/* apply writes what plan said, each tenant its own line; the next apply changes nothing, check passes. */
TEST(user_tenants_apply_writes_disjoint_ranges_then_nothing) {
        const char *d = test_tmpdir();
        FakeRun run = { .tenants = { fake_two_tenants[0], fake_two_tenants[1] }, .n_tenants = 2 };

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        fake_tree_populate_tenants(d, true);
        fake_run(&run, d, VERB_PLAN, false);
        ASSERT_EQ(fake_count(&run, "user.subuid:pr", ITEM_CREATE, "add buildkite-pr:165536:65536"), 1);
        fake_run_done(&run);
        fake_run(&run, d, VERB_APPLY, false);
        ASSERT_OK(run.r);
        ASSERT_EQ(fake_count(&run, "user.account:main", ITEM_OK, "adopted"), 1);
        ASSERT_EQ(fake_count(&run, "user.account:pr", ITEM_OK, "adopted"), 1);
        fake_run_done(&run);
        ASSERT_STREQ(test_read_kept(d, "etc/subuid"), "buildkite:100000:65536\nbuildkite-pr:165536:65536\n");
        ASSERT_STREQ(test_read_kept(d, "etc/subgid"), "buildkite:100000:65536\nbuildkite-pr:165536:65536\n");

        fake_run(&run, d, VERB_APPLY, false);
        ASSERT_OK(run.r);
        ASSERT_FALSE(run.ctx.any_changed);
        fake_run_done(&run);
        fake_run(&run, d, VERB_CHECK, false);
        ASSERT_FALSE(run.ctx.any_failed);
        ASSERT_EQ(fake_count(&run, "user.subuid:pr", ITEM_PASS, "buildkite-pr has 165536:65536"), 1);
        fake_run_done(&run);
}

/* Two tenants' lines that share IDs: a FAIL for each, with its fix; nothing is moved or kept silently. */
TEST(user_tenants_sharing_ids_fail_and_nothing_is_written) {
        const char *d = test_tmpdir();
        FakeRun run = { .tenants = { fake_two_tenants[0], fake_two_tenants[1] }, .n_tenants = 2 }, legacy = {};
        const char *subuid = "buildkite:100000:65536\nbuildkite-pr:150000:65536\n";

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        fake_tree_populate_tenants(d, true);
        test_write(d, "etc/subuid", subuid);
        test_write(d, "etc/subgid", "buildkite:100000:65536\nbuildkite-pr:200000:65536\n");
        fake_run(&run, d, VERB_APPLY, false);
        ASSERT_TRUE(run.r < 0);
        ASSERT_EQ(fake_count(&run, "user.subuid:main", ITEM_FAIL,
                             ":1: the range 100000:65536 of buildkite (tenant main) shares IDs with 150000:65536 of "
                             "buildkite-pr (tenant pr)"), 1);
        ASSERT_EQ(fake_count(&run, "user.subuid:pr", ITEM_FAIL,
                             ":2: the range 150000:65536 of buildkite-pr (tenant pr) shares IDs with 100000:65536 of "
                             "buildkite (tenant main)"), 1);
        ASSERT_EQ(fake_count(&run, "user.subgid", ITEM_OK, NULL), 2);
        ASSERT_EQ(run.ctx.accounts[0].n_subuids, 0);
        fake_run_done(&run);
        ASSERT_STREQ(test_read_kept(d, "etc/subuid"), subuid);

        /* Without tenants the same line of another owner's is a range apply moves, as before. */
        fake_run(&legacy, d, VERB_PLAN, false);
        ASSERT_EQ(fake_count(&legacy, "user.subuid", ITEM_CHANGE, "drop line 1"), 1);
        fake_run_done(&legacy);
}

/* /etc/login.defs is the host's: what of it is unusable is said once, without a tenant; legacy as before. */
TEST(user_tenants_login_defs_warning_is_said_once) {
        const char *d = test_tmpdir();
        FakeRun run = { .tenants = { fake_two_tenants[0], fake_two_tenants[1] }, .n_tenants = 2 }, legacy = {};

        fake_tree_populate(d, false);
        test_write(d, "etc/login.defs", "SUB_UID_COUNT lots\n");
        fake_run(&run, d, VERB_PLAN, false);
        ASSERT_EQ(fake_count(&run, "user.login-defs", ITEM_WARN, "the value of SUB_UID_COUNT is not a number"), 1);
        ASSERT_EQ(fake_count(&run, "user.login-defs:", _ITEM_STATUS_MAX, NULL), 0);
        fake_run_done(&run);
        fake_run(&legacy, d, VERB_PLAN, false);
        ASSERT_EQ(fake_count(&legacy, "user.login-defs", ITEM_WARN, "the value of SUB_UID_COUNT is not a number"), 1);
        ASSERT_TRUE(strcmp(legacy.ctx.items[0].id, "user.login-defs") == 0);
        fake_run_done(&legacy);
}

/* A tenant's user in another tenant's group: removed (that group opens the other's data and token); a shared primary group refused. */
TEST(user_tenants_keep_out_of_each_others_groups) {
        const char *d = test_tmpdir();
        FakeRun run = { .tenants = { fake_two_tenants[0], fake_two_tenants[1] }, .n_tenants = 2 };
        _cleanup_free_ char *group = NULL, *passwd = NULL;

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        fake_tree_populate_tenants(d, true);
        if (asprintf(&group, "root:x:0:\nalice:x:%u:\nbuildkite:x:%u:buildkite-pr\nbuildkite-pr:x:%u:buildkite\n",
                     (unsigned) fake_ci_uid() + 1, (unsigned) fake_ci_gid(), (unsigned) fake_pr_uid()) < 0)
                abort();
        test_write(d, "etc/group", group);
        test_write(d, "etc/gshadow", "root:*::\n");
        fake_run(&run, d, VERB_APPLY, false);
        ASSERT_OK(run.r);
        ASSERT_EQ(fake_count(&run, "user.groups:main", ITEM_REMOVE,
                             "removed buildkite from group buildkite-pr (the group of buildkite-pr, tenant pr's user"), 1);
        ASSERT_EQ(fake_count(&run, "user.groups:pr", ITEM_REMOVE,
                             "removed buildkite-pr from group buildkite (the group of buildkite, tenant main's user"), 1);
        /* Not root's: the later steps' privileged GIDs do not hold them. */
        for (size_t i = 0; i < run.ctx.facts.n_privileged_gids; i++)
                ASSERT_TRUE(run.ctx.facts.privileged_gids[i] != fake_ci_gid() &&
                            run.ctx.facts.privileged_gids[i] != fake_pr_uid());
        fake_run_done(&run);
        ASSERT_TRUE(strstr(test_read_kept(d, "etc/group"), "\nbuildkite:x:") &&
                    strstr(test_read_kept(d, "etc/group"), ":\nbuildkite-pr:x:") &&
                    !strstr(test_read_kept(d, "etc/group"), ":buildkite"));

        /* One primary group for both: refused for the second, nothing changed for it. */
        if (asprintf(&passwd, "%sbuildkite-pr:x:%u:%u::/home/buildkite-pr:/bin/bash\n",
                     "root:x:0:0:root:/root:/bin/bash\n", (unsigned) fake_pr_uid(), (unsigned) fake_ci_gid()) < 0)
                abort();
        fake_tree_write_ids(d, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\nbuildkite:x:@UID@:@GID@::/home/buildkite:/bin/bash\n");
        {
                _cleanup_free_ char *both = NULL;
                if (asprintf(&both, "%s%s", test_read_kept(d, "etc/passwd"), passwd + strlen("root:x:0:0:root:/root:/bin/bash\n")) < 0)
                        abort();
                test_write(d, "etc/passwd", both);
        }
        fake_run(&run, d, VERB_CHECK, false);
        ASSERT_EQ(fake_count(&run, "user.primary-group:pr", ITEM_FAIL,
                             "the primary group of buildkite-pr is buildkite (GID "), 1);
        ASSERT_EQ(fake_count(&run, "user.primary-group:main", ITEM_FAIL, "each tenant's data would be open to the other"), 1);
        fake_run_done(&run);
}
