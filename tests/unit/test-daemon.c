/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "fake-tree.h"
#include "engine/engine.h"
#include "engine/markers.h"
#include "steps/daemon/apparmor.h"
#include "steps/daemon/daemon.h"
#include "steps/steps.h"
#include "tests.h"
#include "units.h"
#include "util/error.h"
#include "wait.h"

/*
 * The daemon step on fake trees (--root): everything but the live part,
 * which the machine tier proves.
 */

static const Step *const daemon_only[] = { &step_daemon };

static void make_tree(const char *root) {
        test_write(root, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\nbuildkite:x:1001:1001::/home/buildkite:/bin/sh\n");
        test_write(root, "usr/bin/rootlesskit", "#!/bin/sh\n");
}

/* The cgroup hierarchy preflight would have found (tests that care set it). */
static CgroupHierarchy test_cgroup = CGROUP_UNKNOWN;

/* Tenants for the next run_verb() (none: [User] as before): buildkite (UID 1001) and buildkite-pr (1003). */
static size_t test_n_tenants = 0;

static int run_verb(const char *root, Verb verb, bool apparmor, const char *storage, Context *ret) {
        static Config c;
        int r;

        config_done(&c);
        if (config_init(&c) < 0)
                return -1;
        fake_config_tenants(&c, fake_two_tenants, test_n_tenants);
        units_set_dir(UNITS_SOURCE_DIR);
        if (context_init(ret, verb, root, &c) < 0)
                return -1;
        ret->facts.dockerd_rootless_path = strdup("/usr/share/docker.io/contrib/dockerd-rootless.sh");
        ret->facts.rootlesskit_path = strdup("/usr/bin/rootlesskit");
        ret->facts.network_driver = strdup("slirp4netns");
        ret->facts.storage_driver = storage ? strdup(storage) : NULL;
        ret->facts.apparmor_restricts_userns = apparmor;
        ret->facts.cgroup = test_cgroup;
        /* What the user step would have found in the tree. */
        for (size_t i = 0; i < ret->n_accounts; i++) {
                char line[64];

                snprintf(line, sizeof(line), "\n%s:", ret->accounts[i].name);
                if (strstr(test_read_kept(root, "etc/passwd") ?: "", line)) {
                        ret->accounts[i].state = ACCOUNT_KNOWN;
                        ret->accounts[i].uid = 1001 + 2 * i;
                        ret->accounts[i].gid = 1001 + 2 * i;
                } else if (verb != VERB_APPLY)
                        ret->accounts[i].state = ACCOUNT_PLANNED;
        }
        r = engine_run_steps(ret, daemon_only, 1);
        if (getenv("RCI_TEST_VERBOSE"))
                for (size_t i = 0; i < ret->n_items; i++)
                        printf("# %-6s %s: %s%s%s\n", item_status_to_string(ret->items[i].status), ret->items[i].id,
                               ret->items[i].message, ret->items[i].fix ? " | fix: " : "", strempty(ret->items[i].fix));
        return r;
}

static const Item *find_item(const Context *ctx, const char *id) {
        for (size_t i = 0; i < ctx->n_items; i++)
                if (streq(ctx->items[i].id, id))
                        return &ctx->items[i];
        return NULL;
}

static char *link_target(const char *root, const char *rel) {
        char p[PATH_MAX], buf[PATH_MAX];
        ssize_t n;

        snprintf(p, sizeof(p), "%s/%s", root, rel);
        n = readlink(p, buf, sizeof(buf) - 1);
        if (n < 0)
                return NULL;
        buf[n] = 0;
        return strdup(buf);
}

TEST(offline_apply_installs_unit_dropins_masks_and_linger) {
        const char *root = test_tmpdir();
        Context ctx;
        char *s;

        make_tree(root);
        ASSERT_OK(run_verb(root, VERB_APPLY, false, "overlay2", &ctx));
        ASSERT_TRUE(ctx.any_changed);
        ASSERT_FALSE(ctx.any_failed);
        context_done(&ctx);

        s = test_read(root, "etc/systemd/user/docker.service");
        ASSERT_TRUE(s);
        ASSERT_TRUE(strstr(s, "\nConditionUser=buildkite\n"));
        ASSERT_TRUE(strstr(s, "\nExecStart=/usr/share/docker.io/contrib/dockerd-rootless.sh --storage-driver=overlay2\n"));
        ASSERT_TRUE(strstr(s, "\nEnvironment=PATH=/usr/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin:/bin\n"));
        free(s);

        s = link_target(root, "etc/systemd/user/default.target.wants/docker.service");
        ASSERT_STREQ(s, "/etc/systemd/user/docker.service");
        free(s);

        s = test_read(root, "etc/systemd/system/user@1001.service.d/rootless-ci-mount.conf");
        ASSERT_TRUE(s && strstr(s, "\nRequiresMountsFor=/srv/rootless-ci\n"));
        free(s);
        s = test_read(root, "etc/systemd/system/user@.service.d/rootless-ci-delegate.conf");
        ASSERT_TRUE(s && strstr(s, "\nDelegate=cpu cpuset io memory pids\n"));
        free(s);

        s = link_target(root, "etc/systemd/system/docker.service");
        ASSERT_STREQ(s, "/dev/null");
        free(s);
        s = link_target(root, "etc/systemd/system/docker.socket");
        ASSERT_STREQ(s, "/dev/null");
        free(s);

        s = test_read(root, "var/lib/systemd/linger/buildkite");
        ASSERT_STREQ(s, "");
        free(s);

        /* No AppArmor restriction: no profile. */
        s = test_read(root, "etc/apparmor.d/rootless-ci-rootlesskit");
        ASSERT_TRUE(s == NULL);
}

TEST(second_apply_changes_nothing_and_check_passes) {
        const char *root = test_tmpdir();
        Context ctx;

        make_tree(root);
        ASSERT_OK(run_verb(root, VERB_APPLY, false, "overlay2", &ctx));
        context_done(&ctx);
        ASSERT_OK(run_verb(root, VERB_APPLY, false, "overlay2", &ctx));
        ASSERT_FALSE(ctx.any_changed);
        ASSERT_FALSE(ctx.any_failed);
        context_done(&ctx);
        ASSERT_OK(run_verb(root, VERB_CHECK, false, "overlay2", &ctx));
        ASSERT_FALSE(ctx.any_failed);
        ASSERT_EQ(find_item(&ctx, "daemon.unit")->status, ITEM_PASS);
        context_done(&ctx);
}

TEST(offline_the_user_namespace_is_skipped_with_the_reason) {
        const char *root = test_tmpdir();
        static const Verb verbs[] = { VERB_PLAN, VERB_APPLY, VERB_CHECK };
        const Item *item;
        Context ctx;

        make_tree(root);
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                ASSERT_OK(run_verb(root, verbs[i], false, "overlay2", &ctx));
                item = find_item(&ctx, "daemon.userns");
                ASSERT_TRUE(item);
                ASSERT_EQ(item->status, ITEM_SKIP);
                ASSERT_CONTAINS(item->message, "offline tree");
                ASSERT_CONTAINS(item->message, "checked on the live host");
                context_done(&ctx);
        }
}

TEST(drifted_unit_is_planned_checked_and_rewritten) {
        const char *root = test_tmpdir();
        Context ctx;
        char *s;

        make_tree(root);
        ASSERT_OK(run_verb(root, VERB_APPLY, false, "overlay2", &ctx));
        context_done(&ctx);
        test_write(root, "etc/systemd/user/docker.service", "[Service]\nExecStart=/bin/evil\n");

        ASSERT_OK(run_verb(root, VERB_PLAN, false, "overlay2", &ctx));
        ASSERT_EQ(find_item(&ctx, "daemon.unit")->status, ITEM_CHANGE);
        ASSERT_FALSE(ctx.any_changed);
        context_done(&ctx);
        s = test_read(root, "etc/systemd/user/docker.service");
        ASSERT_STREQ(s, "[Service]\nExecStart=/bin/evil\n");  /* plan changed nothing */
        free(s);

        ASSERT_OK(run_verb(root, VERB_CHECK, false, "overlay2", &ctx));
        ASSERT_EQ(find_item(&ctx, "daemon.unit")->status, ITEM_FAIL);
        context_done(&ctx);

        ASSERT_OK(run_verb(root, VERB_APPLY, false, "overlay2", &ctx));
        ASSERT_EQ(find_item(&ctx, "daemon.unit")->status, ITEM_CHANGE);
        ASSERT_TRUE(find_item(&ctx, "daemon.unit")->changed);
        context_done(&ctx);
        s = test_read(root, "etc/systemd/user/docker.service");
        ASSERT_TRUE(s && strstr(s, "dockerd-rootless.sh --storage-driver=overlay2"));
        free(s);
}

TEST(storage_driver_follows_the_fact) {
        const char *root = test_tmpdir();
        Context ctx;
        char *s;

        make_tree(root);
        ASSERT_OK(run_verb(root, VERB_APPLY, false, "fuse-overlayfs", &ctx));
        context_done(&ctx);
        s = test_read(root, "etc/systemd/user/docker.service");
        ASSERT_TRUE(s && strstr(s, " --storage-driver=fuse-overlayfs\n"));
        free(s);
}

TEST(unknown_storage_driver_installs_no_unit) {
        const char *root = test_tmpdir();
        Context ctx;
        char *s;

        /* Offline, preflight cannot see the kernel: no unit rather than one that lets dockerd pick vfs. */
        make_tree(root);
        ASSERT_OK(run_verb(root, VERB_APPLY, false, NULL, &ctx));
        ASSERT_EQ(find_item(&ctx, "daemon.unit")->status, ITEM_SKIP);
        context_done(&ctx);
        s = test_read(root, "etc/systemd/user/docker.service");
        ASSERT_TRUE(s == NULL);
}

TEST(apparmor_profile_only_where_userns_is_restricted) {
        const char *root = test_tmpdir();
        Context ctx;
        char *s;

        make_tree(root);
        test_write(root, "etc/apparmor.d/abi/4.0", "# AppArmor 4.0's policy ABI\n");
        ASSERT_OK(run_verb(root, VERB_APPLY, true, "overlay2", &ctx));
        ASSERT_FALSE(ctx.any_failed);
        context_done(&ctx);
        s = test_read(root, "etc/apparmor.d/rootless-ci-rootlesskit");
        ASSERT_TRUE(s && strstr(s, "profile rootless-ci-rootlesskit /usr/bin/rootlesskit flags=(unconfined) {\n  userns,\n"));
        free(s);
        ASSERT_OK(run_verb(root, VERB_CHECK, true, "overlay2", &ctx));
        ASSERT_EQ(find_item(&ctx, "daemon.apparmor")->status, ITEM_PASS);
        context_done(&ctx);
}

/* AppArmor attaches by the binary's real path: a symlinked rootlesskit gets its target named, resolved in the root. */
TEST(apparmor_profile_names_rootlesskit_by_its_real_path) {
        const char *root = test_tmpdir();
        char p[PATH_MAX];
        Context ctx;
        char *s;

        make_tree(root);
        test_write(root, "usr/lib/rootlesskit/rootlesskit", "#!/bin/sh\n");
        snprintf(p, sizeof(p), "%s/usr/bin/rootlesskit", root);
        ASSERT_OK(unlink(p));
        /* Absolute: resolved in the root, not on this host. */
        ASSERT_OK(symlink("/usr/lib/rootlesskit/rootlesskit", p));
        ASSERT_OK(run_verb(root, VERB_APPLY, true, "overlay2", &ctx));
        ASSERT_FALSE(ctx.any_failed);
        context_done(&ctx);
        s = test_read(root, "etc/apparmor.d/rootless-ci-rootlesskit");
        ASSERT_TRUE(s && strstr(s, "profile rootless-ci-rootlesskit /usr/lib/rootlesskit/rootlesskit flags=(unconfined)"));
        free(s);

        /* Relative, and through a symlinked directory. */
        ASSERT_OK(unlink(p));
        ASSERT_OK(symlink("../libexec/rk", p));
        snprintf(p, sizeof(p), "%s/usr/libexec", root);
        ASSERT_OK(mkdir(p, 0755));
        snprintf(p, sizeof(p), "%s/usr/libexec/rk", root);
        ASSERT_OK(symlink("/usr/lib/rootlesskit/rootlesskit", p));
        ASSERT_OK(run_verb(root, VERB_CHECK, true, "overlay2", &ctx));
        ASSERT_EQ(find_item(&ctx, "daemon.apparmor")->status, ITEM_PASS);
        context_done(&ctx);
}

TEST(admin_file_in_place_of_mask_is_left_alone) {
        const char *root = test_tmpdir();
        Context ctx;
        char *s;

        make_tree(root);
        test_write(root, "etc/systemd/system/docker.service", "[Service]\nExecStart=/usr/bin/dockerd\n");
        /* apply fails (the engine stops after a failed item) and names the file. */
        ASSERT_TRUE(run_verb(root, VERB_APPLY, false, "overlay2", &ctx) < 0);
        ASSERT_EQ(find_item(&ctx, "daemon.root-docker.service")->status, ITEM_FAIL);
        context_done(&ctx);
        s = test_read(root, "etc/systemd/system/docker.service");
        ASSERT_STREQ(s, "[Service]\nExecStart=/usr/bin/dockerd\n");
        free(s);
}

TEST(missing_user_is_reported_not_guessed) {
        const char *root = test_tmpdir();
        const Item *it;
        Context ctx;

        test_write(root, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
        /* plan, the user to be created: every change listed, the UID named as the one to come, nothing written. */
        ASSERT_OK(run_verb(root, VERB_PLAN, false, "overlay2", &ctx));
        ASSERT_TRUE(find_item(&ctx, "daemon.user") == NULL);
        ASSERT_EQ(find_item(&ctx, "daemon.unit")->status, ITEM_CREATE);
        ASSERT_EQ(find_item(&ctx, "daemon.enable")->status, ITEM_CREATE);
        ASSERT_EQ(find_item(&ctx, "daemon.delegate")->status, ITEM_CREATE);
        it = find_item(&ctx, "daemon.mount-order");
        ASSERT_EQ(it->status, ITEM_CREATE);
        ASSERT_TRUE(strstr(it->message, "user@UID.service.d") != NULL);
        ASSERT_EQ(find_item(&ctx, "daemon.linger")->status, ITEM_CREATE);
        ASSERT_EQ(find_item(&ctx, "daemon.root-docker.service")->status, ITEM_CREATE); /* offline: the mask link */
        context_done(&ctx);
        ASSERT_TRUE(test_read(root, "etc/systemd/user/docker.service") == NULL);
        ASSERT_TRUE(test_read(root, "etc/systemd/system/docker.service") == NULL);
        ASSERT_TRUE(run_verb(root, VERB_APPLY, false, "overlay2", &ctx) < 0);
        context_done(&ctx);
        ASSERT_TRUE(test_read_kept(root, "etc/systemd/user/docker.service") == NULL);
}

#define USER_MANAGER_CONTROLLERS "sys/fs/cgroup/user.slice/user-1001.slice/user@1001.service/cgroup.controllers"

TEST(delegation_on_cgroup_v2_is_checked_where_it_lands) {
        const char *root = test_tmpdir();
        const Item *it;
        Context ctx;

        make_tree(root);
        test_cgroup = CGROUP_V2;
        test_write(root, "sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
        ASSERT_OK(run_verb(root, VERB_APPLY, false, "overlay2", &ctx));
        context_done(&ctx);

        /* The manager has them all. */
        test_write(root, USER_MANAGER_CONTROLLERS, "cpuset cpu io memory pids\n");
        ASSERT_OK(run_verb(root, VERB_CHECK, false, "overlay2", &ctx));
        ASSERT_EQ(find_item(&ctx, "daemon.delegation")->status, ITEM_PASS);
        ASSERT_FALSE(ctx.any_failed);
        context_done(&ctx);

        /* Started before the drop-in (only memory and pids, systemd's defaults): a failure that says to restart it. */
        test_write(root, USER_MANAGER_CONTROLLERS, "memory pids\n");
        ASSERT_OK(run_verb(root, VERB_CHECK, false, "overlay2", &ctx));
        it = find_item(&ctx, "daemon.delegation");
        ASSERT_EQ(it->status, ITEM_FAIL);
        ASSERT_CONTAINS(it->message, "lacks the cgroup controllers cpu cpuset io");
        ASSERT_CONTAINS(it->fix, "systemctl restart user@1001.service");
        ASSERT_TRUE(ctx.any_failed);
        context_done(&ctx);

        /* The kernel has no io controller at all: the fix says so, not a restart. */
        test_write(root, "sys/fs/cgroup/cgroup.controllers", "cpuset cpu memory pids\n");
        test_write(root, USER_MANAGER_CONTROLLERS, "cpuset cpu memory pids\n");
        ASSERT_OK(run_verb(root, VERB_CHECK, false, "overlay2", &ctx));
        it = find_item(&ctx, "daemon.delegation");
        ASSERT_EQ(it->status, ITEM_FAIL);
        ASSERT_CONTAINS(it->fix, "offers the io controller");
        context_done(&ctx);

        /* No cgroup for the manager: it does not run; daemon.user-manager says so on a live host. */
        ASSERT_OK(unlink(test_path(root, USER_MANAGER_CONTROLLERS)));
        ASSERT_OK(run_verb(root, VERB_CHECK, false, "overlay2", &ctx));
        ASSERT_EQ(find_item(&ctx, "daemon.delegation")->status, ITEM_SKIP);
        context_done(&ctx);
        test_cgroup = CGROUP_UNKNOWN;
}

TEST(delegation_on_cgroup_v1_is_skipped_with_the_reason) {
        const char *root = test_tmpdir();
        const Item *it;
        Context ctx;

        make_tree(root);
        test_cgroup = CGROUP_V1;
        test_write(root, USER_MANAGER_CONTROLLERS, "\n");
        ASSERT_OK(run_verb(root, VERB_CHECK, false, "overlay2", &ctx));
        test_cgroup = CGROUP_UNKNOWN;
        it = find_item(&ctx, "daemon.delegation");
        ASSERT_EQ(it->status, ITEM_SKIP);
        ASSERT_CONTAINS(it->message, "cgroup v1");
        context_done(&ctx);
}

/* The profile main's rootless-ci wrote (AppArmor 4), byte for byte: what "ours" means. */
static const char *const our_profile_4_0 =
        "# Installed by rootless-ci as /etc/apparmor.d/rootless-ci-rootlesskit.\n";

#define UBUNTU_ROOTLESSKIT_PROFILE                                                                  \
        "# This profile allows everything and only exists to give the\n"                            \
        "# application a name instead of having the label \"unconfined\"\n"                         \
        "\n"                                                                                        \
        "abi <abi/4.0>,\n"                                                                          \
        "include <tunables/global>\n"                                                               \
        "\n"                                                                                        \
        "profile rootlesskit /usr/bin/rootlesskit flags=(unconfined) {\n"                           \
        "  userns,\n"                                                                               \
        "\n"                                                                                        \
        "  # Site-specific additions and overrides. See local/README for details.\n"                \
        "  include if exists <local/rootlesskit>\n"                                                 \
        "}\n"

static void make_apparmor4_tree(const char *root) {
        make_tree(root);
        test_write(root, "etc/apparmor.d/abi/4.0", "# AppArmor 4.0's policy ABI\n");
        test_write(root, "etc/apparmor.d/tunables/global", "# tunables\n");
        test_write(root, "etc/apparmor.d/usr.sbin.cupsd", "#include <tunables/global>\n/usr/sbin/cupsd flags=(attach_disconnected) {\n  /** r,\n}\n");
}

TEST(apparmor_3_tree_gets_no_abi_4_0_line) {
        const char *root = test_tmpdir();
        Context ctx;
        char *s;

        /* Ubuntu 22.04: AppArmor 3, abi/3.0 only. */
        make_tree(root);
        test_write(root, "etc/apparmor.d/abi/3.0", "# AppArmor 3.0's policy ABI\n");
        ASSERT_OK(run_verb(root, VERB_APPLY, true, "overlay2", &ctx));
        ASSERT_FALSE(ctx.any_failed);
        context_done(&ctx);
        s = test_read(root, "etc/apparmor.d/rootless-ci-rootlesskit");
        ASSERT_TRUE(s != NULL);
        ASSERT_TRUE(strstr(s, "abi <abi/4.0>") == NULL);
        ASSERT_TRUE(strstr(s, "\n  userns,") == NULL);
        ASSERT_CONTAINS(s, "profile rootless-ci-rootlesskit /usr/bin/rootlesskit flags=(unconfined) {\n");
        free(s);
        ASSERT_OK(run_verb(root, VERB_CHECK, true, "overlay2", &ctx));
        ASSERT_EQ(find_item(&ctx, "daemon.apparmor")->status, ITEM_PASS);
        context_done(&ctx);

        /* AppArmor 4 installed since: the profile is rewritten with the 4.0 ABI and its userns rule. */
        test_write(root, "etc/apparmor.d/abi/4.0", "# AppArmor 4.0's policy ABI\n");
        ASSERT_OK(run_verb(root, VERB_APPLY, true, "overlay2", &ctx));
        ASSERT_EQ(find_item(&ctx, "daemon.apparmor")->status, ITEM_CHANGE);
        context_done(&ctx);
        s = test_read(root, "etc/apparmor.d/rootless-ci-rootlesskit");
        ASSERT_CONTAINS(s, "\nabi <abi/4.0>,\ninclude <tunables/global>\n");
        ASSERT_CONTAINS(s, "flags=(unconfined) {\n  userns,\n");
        free(s);
}

TEST(apparmor_existing_profile_for_rootlesskit_is_used_not_doubled) {
        const char *root = test_tmpdir();
        const Item *it;
        Context ctx;

        make_apparmor4_tree(root);
        /* A header attaching to a variable (flags=… on the line is no assignment), in a file of its own. */
        test_write(root, "etc/apparmor.d/rootlesskit",
                   "@{exec_path} = /usr/bin/rootlesskit\n@{exec_path} flags=(unconfined) {\n  userns,\n}\n");
        ASSERT_OK(run_verb(root, VERB_CHECK, true, "overlay2", &ctx));
        it = find_item(&ctx, "daemon.apparmor");
        ASSERT_EQ(it->status, ITEM_PASS);
        ASSERT_CONTAINS(it->message, "has the AppArmor profile @{exec_path} (/etc/apparmor.d/rootlesskit)");
        context_done(&ctx);

        test_write(root, "etc/apparmor.d/rootlesskit", UBUNTU_ROOTLESSKIT_PROFILE);
        static const Verb verbs[] = { VERB_PLAN, VERB_APPLY, VERB_CHECK };
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                ASSERT_OK(run_verb(root, verbs[i], true, "overlay2", &ctx));
                it = find_item(&ctx, "daemon.apparmor");
                ASSERT_EQ(it->status, verbs[i] == VERB_CHECK ? ITEM_PASS : ITEM_OK);
                ASSERT_CONTAINS(it->message, "has the AppArmor profile rootlesskit (/etc/apparmor.d/rootlesskit)");
                ASSERT_CONTAINS(it->message, "writes none of its own");
                context_done(&ctx);
        }
        ASSERT_TRUE(test_read(root, "etc/apparmor.d/rootless-ci-rootlesskit") == NULL);

        /* One without a userns rule in its block: still used (two would be worse), with a warning that says what to add. */
        test_write(root, "etc/apparmor.d/rootlesskit", "profile rootlesskit /usr/bin/rootlesskit {\n  include <abstractions/base>\n}\n");
        ASSERT_OK(run_verb(root, VERB_CHECK, true, "overlay2", &ctx));
        it = find_item(&ctx, "daemon.apparmor");
        ASSERT_EQ(it->status, ITEM_WARN);
        ASSERT_CONTAINS(it->fix, "add \"userns,\" to profile rootlesskit");
        context_done(&ctx);
        ASSERT_TRUE(test_read(root, "etc/apparmor.d/rootless-ci-rootlesskit") == NULL);
}

TEST(apparmor_our_earlier_profile_is_removed_only_while_it_is_ours) {
        const char *root = test_tmpdir();
        const Item *it;
        Context ctx;
        char *ours;

        make_apparmor4_tree(root);
        /* An earlier run wrote ours; then Docker's rootless extras brought one of its own (named by glob). */
        ASSERT_OK(run_verb(root, VERB_APPLY, true, "overlay2", &ctx));
        context_done(&ctx);
        ours = test_read(root, "etc/apparmor.d/rootless-ci-rootlesskit");
        ASSERT_TRUE(ours && startswith(ours, our_profile_4_0));
        test_write(root, "etc/apparmor.d/docker-rootlesskit",
                   "abi <abi/4.0>,\ninclude <tunables/global>\n\n@{bin} = /usr/bin /usr/local/bin\n"
                   "profile docker-rootlesskit @{bin}/rootless{kit,kit-docker-proxy} flags=(unconfined) {\n"
                   "  allow userns,\n}\n");

        /* An edited copy of ours is the operator's: a failure naming both, nothing removed. */
        test_write(root, "etc/apparmor.d/rootless-ci-rootlesskit", "# mine now\n");
        ASSERT_TRUE(run_verb(root, VERB_APPLY, true, "overlay2", &ctx) < 0);
        it = find_item(&ctx, "daemon.apparmor");
        ASSERT_EQ(it->status, ITEM_FAIL);
        ASSERT_CONTAINS(it->message, "two AppArmor profiles attach to rootlesskit");
        ASSERT_CONTAINS(it->message, "docker-rootlesskit in /etc/apparmor.d/docker-rootlesskit");
        context_done(&ctx);
        ASSERT_STREQ(test_read_kept(root, "etc/apparmor.d/rootless-ci-rootlesskit"), "# mine now\n");

        /* Byte for byte ours: plan says it goes, check fails, apply removes it, then all is well. */
        test_write(root, "etc/apparmor.d/rootless-ci-rootlesskit", ours);
        free(ours);
        ASSERT_OK(run_verb(root, VERB_PLAN, true, "overlay2", &ctx));
        ASSERT_EQ(find_item(&ctx, "daemon.apparmor")->status, ITEM_REMOVE);
        context_done(&ctx);
        ASSERT_TRUE(test_read_kept(root, "etc/apparmor.d/rootless-ci-rootlesskit") != NULL);
        ASSERT_OK(run_verb(root, VERB_CHECK, true, "overlay2", &ctx));
        ASSERT_EQ(find_item(&ctx, "daemon.apparmor")->status, ITEM_FAIL);
        context_done(&ctx);
        ASSERT_OK(run_verb(root, VERB_APPLY, true, "overlay2", &ctx));
        it = find_item(&ctx, "daemon.apparmor");
        ASSERT_EQ(it->status, ITEM_REMOVE);
        ASSERT_TRUE(it->changed);
        context_done(&ctx);
        ASSERT_TRUE(test_read_kept(root, "etc/apparmor.d/rootless-ci-rootlesskit") == NULL);
        ASSERT_OK(run_verb(root, VERB_CHECK, true, "overlay2", &ctx));
        ASSERT_EQ(find_item(&ctx, "daemon.apparmor")->status, ITEM_PASS);
        ASSERT_FALSE(ctx.any_failed);
        context_done(&ctx);
}

/* Profiles that do not attach to it, or are not loaded, change nothing: ours is written. */
TEST(apparmor_profiles_for_other_paths_or_disabled_do_not_count) {
        const char *root = test_tmpdir();
        Context ctx;
        char *s;

        make_apparmor4_tree(root);
        test_write(root, "etc/apparmor.d/home.rootlesskit", "profile home-rk @{HOME}/bin/rootlesskit flags=(unconfined) {\n userns,\n}\n");
        test_write(root, "etc/apparmor.d/other", "profile rootlesskit-named-only flags=(unconfined) {\n userns,\n}\n"
                                                 "/usr/bin/rootlesskit2 {\n}\n# /usr/bin/rootlesskit {\n");
        test_write(root, "etc/apparmor.d/rootlesskit", UBUNTU_ROOTLESSKIT_PROFILE);
        test_write(root, "etc/apparmor.d/disable/rootlesskit", "");
        test_write(root, "etc/apparmor.d/rootlesskit.dpkg-old", UBUNTU_ROOTLESSKIT_PROFILE);
        ASSERT_OK(run_verb(root, VERB_APPLY, true, "overlay2", &ctx));
        ASSERT_EQ(find_item(&ctx, "daemon.apparmor")->status, ITEM_CREATE);
        context_done(&ctx);
        s = test_read(root, "etc/apparmor.d/rootless-ci-rootlesskit");
        ASSERT_TRUE(s && strstr(s, "profile rootless-ci-rootlesskit /usr/bin/rootlesskit"));
        free(s);
}

TEST(apparmor_attachment_globs) {
        ASSERT_TRUE(apparmor_glob_match("/usr/bin/rootlesskit", "/usr/bin/rootlesskit"));
        ASSERT_FALSE(apparmor_glob_match("/usr/bin/rootlesskit", "/usr/bin/rootlesskit2"));
        ASSERT_TRUE(apparmor_glob_match("/{usr/,usr/local/,}bin/rootlesskit", "/usr/local/bin/rootlesskit"));
        ASSERT_TRUE(apparmor_glob_match("/{usr/,usr/local/,}bin/rootlesskit", "/bin/rootlesskit"));
        ASSERT_TRUE(apparmor_glob_match("/usr/{lib/{x,rootlesskit},bin}/rootlesskit", "/usr/lib/rootlesskit/rootlesskit"));
        ASSERT_TRUE(apparmor_glob_match("/usr/bin/rootless*", "/usr/bin/rootlesskit"));
        ASSERT_FALSE(apparmor_glob_match("/usr/*/rootlesskit", "/usr/lib/x/rootlesskit"));
        ASSERT_TRUE(apparmor_glob_match("/usr/**/rootlesskit", "/usr/lib/x/rootlesskit"));
        ASSERT_TRUE(apparmor_glob_match("/usr/bin/rootlessk?t", "/usr/bin/rootlesskit"));
        ASSERT_TRUE(apparmor_glob_match("/usr/bin/rootless[a-k]it", "/usr/bin/rootlesskit"));
        ASSERT_FALSE(apparmor_glob_match("/usr/bin/rootless[^k]it", "/usr/bin/rootlesskit"));
        ASSERT_FALSE(apparmor_glob_match("/usr/bin/rootless{kit", "/usr/bin/rootlesskit"));
        ASSERT_TRUE(apparmor_glob_match("/usr/bin/rootless\\kit", "/usr/bin/rootlesskit"));
}

/* ---- tenants (issue 16): one unit for every tenant's manager, the host's items once ---- */

/* run_verb() with the two tenants of fake-tree.h; the next run_verb() has none again. */
static int run_tenants(const char *root, Verb verb, bool apparmor, Context *ret) {
        int r;

        test_n_tenants = 2;
        r = run_verb(root, verb, apparmor, "overlay2", ret);
        test_n_tenants = 0;
        return r;
}

static size_t count_items(const Context *ctx, const char *id_prefix) {
        size_t n = 0;

        for (size_t i = 0; i < ctx->n_items; i++)
                n += strncmp(ctx->items[i].id, id_prefix, strlen(id_prefix)) == 0;
        return n;
}

TEST(tenants_offline_apply_host_items_once_account_items_per_tenant_then_nothing) {
        const char *root = test_tmpdir();
        Context ctx;
        char *s;

        test_write(root, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\nbuildkite:x:1001:1001::/home/buildkite:/bin/sh\n"
                                       "buildkite-pr:x:1003:1003::/home/buildkite-pr:/bin/sh\n");
        test_write(root, "usr/bin/rootlesskit", "#!/bin/sh\n");
        ASSERT_OK(run_tenants(root, VERB_APPLY, true, &ctx));
        ASSERT_FALSE(ctx.any_failed);
        /* The host's: once, without a tenant. */
        ASSERT_EQ(count_items(&ctx, "daemon.unit"), 1);
        ASSERT_EQ(find_item(&ctx, "daemon.unit")->status, ITEM_CREATE);
        ASSERT_EQ(count_items(&ctx, "daemon.enable"), 1);
        ASSERT_EQ(count_items(&ctx, "daemon.delegate"), 1);
        ASSERT_EQ(count_items(&ctx, "daemon.apparmor"), 1);
        ASSERT_TRUE(find_item(&ctx, "daemon.apparmor"));
        ASSERT_EQ(count_items(&ctx, "daemon.root-docker.service"), 1);
        ASSERT_TRUE(find_item(&ctx, "daemon.root-docker.socket"));
        /* The account's: once per tenant, named. */
        ASSERT_EQ(find_item(&ctx, "daemon.mount-order:main")->status, ITEM_CREATE);
        ASSERT_EQ(find_item(&ctx, "daemon.mount-order:pr")->status, ITEM_CREATE);
        ASSERT_EQ(find_item(&ctx, "daemon.linger:main")->status, ITEM_CREATE);
        ASSERT_EQ(find_item(&ctx, "daemon.linger:pr")->status, ITEM_CREATE);
        ASSERT_TRUE(find_item(&ctx, "daemon.service:pr"));
        ASSERT_TRUE(find_item(&ctx, "daemon.delegation:pr"));
        context_done(&ctx);

        s = test_read(root, "etc/systemd/user/docker.service");
        ASSERT_TRUE(s);
        ASSERT_TRUE(strstr(s, "\nConditionUser=|buildkite\nConditionUser=|buildkite-pr\nRequires=dbus.socket\n"));
        ASSERT_TRUE(strstr(s, "(rootless, for each tenant's user)"));
        ASSERT_FALSE(strstr(s, "\nConditionUser=buildkite"));
        free(s);
        s = test_read(root, "etc/systemd/system/user@1001.service.d/rootless-ci-mount.conf");
        ASSERT_TRUE(s && strstr(s, "\nRequiresMountsFor=/srv/rootless-ci\n"));
        free(s);
        s = test_read(root, "etc/systemd/system/user@1003.service.d/rootless-ci-mount.conf");
        ASSERT_TRUE(s && strstr(s, "\nRequiresMountsFor=/srv/rootless-ci\n"));
        free(s);
        ASSERT_STREQ(test_read_kept(root, "var/lib/systemd/linger/buildkite"), "");
        ASSERT_STREQ(test_read_kept(root, "var/lib/systemd/linger/buildkite-pr"), "");

        ASSERT_OK(run_tenants(root, VERB_APPLY, true, &ctx));
        ASSERT_FALSE(ctx.any_changed);
        context_done(&ctx);
        ASSERT_OK(run_tenants(root, VERB_CHECK, true, &ctx));
        ASSERT_FALSE(ctx.any_failed);
        ASSERT_EQ(find_item(&ctx, "daemon.unit")->status, ITEM_PASS);
        ASSERT_EQ(find_item(&ctx, "daemon.linger:pr")->status, ITEM_PASS);
        context_done(&ctx);
}

/* The first tenant's user still to be made: the host's items are planned all the same, and the second's in full. */
TEST(tenants_plan_with_the_first_user_planned_still_plans_the_host_and_the_second) {
        const char *root = test_tmpdir();
        Context ctx;

        test_write(root, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\nbuildkite-pr:x:1003:1003::/home/buildkite-pr:/bin/sh\n");
        test_write(root, "usr/bin/rootlesskit", "#!/bin/sh\n");
        ASSERT_OK(run_tenants(root, VERB_PLAN, false, &ctx));
        ASSERT_EQ(ctx.accounts[0].state, ACCOUNT_PLANNED);
        ASSERT_EQ(count_items(&ctx, "daemon.unit"), 1);
        ASSERT_TRUE(find_item(&ctx, "daemon.unit"));
        ASSERT_EQ(find_item(&ctx, "daemon.unit")->status, ITEM_CREATE);
        ASSERT_EQ(find_item(&ctx, "daemon.mount-order:main")->status, ITEM_CREATE);
        ASSERT_TRUE(strstr(find_item(&ctx, "daemon.mount-order:main")->message, "UID being buildkite's"));
        ASSERT_EQ(find_item(&ctx, "daemon.mount-order:pr")->status, ITEM_CREATE);
        ASSERT_TRUE(strstr(find_item(&ctx, "daemon.mount-order:pr")->message, "user@1003.service.d"));
        context_done(&ctx);

        /* check: the host's items are judged, as an account exists. */
        (void) run_tenants(root, VERB_CHECK, false, &ctx);
        ASSERT_TRUE(find_item(&ctx, "daemon.unit") && find_item(&ctx, "daemon.user:main"));
        ASSERT_EQ(find_item(&ctx, "daemon.unit")->status, ITEM_FAIL);
        ASSERT_EQ(find_item(&ctx, "daemon.user:main")->status, ITEM_SKIP);
        context_done(&ctx);
}

/* A restart a host-wide change owes (the unit all daemons run from) is owed by every tenant; without tenants, one marker. */
TEST(tenants_a_host_wide_change_owes_every_tenant_its_restart) {
        const char *root = test_tmpdir();
        Config c;
        Context ctx;

        for (size_t n = 0; n <= 2; n += 2) {
                ASSERT_OK(config_init(&c));
                fake_config_tenants(&c, fake_two_tenants, n);
                ASSERT_OK(context_init(&ctx, VERB_APPLY, root, &c));
                ctx.live = true;  /* markers are kept on the live host only */
                ASSERT_OK(marker_set(&ctx, "daemon-restart-pending"));
                ctx.current_account = &ctx.accounts[n ? 1 : 0];
                ASSERT_TRUE(marker_exists(&ctx, "daemon-restart-pending"));
                ASSERT_OK(marker_clear(&ctx, "daemon-restart-pending"));
                ASSERT_FALSE(marker_exists(&ctx, "daemon-restart-pending"));
                if (n) {
                        /* pr paid its own; main still owes its restart. */
                        ctx.current_account = &ctx.accounts[0];
                        ASSERT_TRUE(marker_exists(&ctx, "daemon-restart-pending"));
                        ASSERT_TRUE(test_read_kept(root, "run/rootless-ci/daemon-restart-pending:main") != NULL);
                        ASSERT_TRUE(test_read_kept(root, "run/rootless-ci/daemon-restart-pending") == NULL);
                }
                context_done(&ctx);
                config_done(&c);
        }
}

/* wait with tenants: --user names one tenant's user (its agent waits for its own daemon; cli.c refuses another). */
TEST(tenants_wait_takes_a_tenants_user_only) {
        static const FakeTenant missing[] = { { "main", "rci-test-no-such-user" }, { "pr", "rci-test-no-such-pr" } };
        Config c;

        ASSERT_OK(config_init(&c));
        fake_config_tenants(&c, missing, 2);
        c.ready_timeout_sec = 1;
        ASSERT_EQ(wait_for_docker(&c, "rci-test-no-such-pr"), -ERCI_FAILED);  /* a tenant's user: looked up */
        ASSERT_EQ(wait_for_docker(&c, NULL), -ERCI_FAILED);                   /* every tenant's: the first is missing */
        config_done(&c);
}

/* A tenant added or removed changes only ConditionUser=: the other tenants' running daemons owe no restart for it. */
TEST(tenants_unit_change_in_its_users_alone_owes_no_restart) {
        const char *one = "[Unit]\nDescription=x (for a)\nConditionUser=|a\nRequires=dbus.socket\n[Service]\nExecStart=/d\n";
        const char *two = "[Unit]\nDescription=x (for a)\nConditionUser=|a\nConditionUser=|b\nRequires=dbus.socket\n"
                          "[Service]\nExecStart=/d\n";
        const char *other = "[Unit]\nDescription=x (for a)\nConditionUser=|a\nConditionUser=|b\nRequires=dbus.socket\n"
                            "[Service]\nExecStart=/e\n";

        ASSERT_TRUE(unit_differs_in_users_only(one, two));
        ASSERT_TRUE(unit_differs_in_users_only(two, one));
        ASSERT_FALSE(unit_differs_in_users_only(one, other));
        ASSERT_FALSE(unit_differs_in_users_only(two, two));
        ASSERT_FALSE(unit_differs_in_users_only(NULL, two));
        /* [User]/[Agent] becoming [Tenant]s: the Description= named the one user, the condition had no '|'. */
        ASSERT_TRUE(unit_differs_in_users_only("[Unit]\nDescription=x (for a)\nConditionUser=a\n# run as a@\n[Service]\n"
                                               "ExecStart=/d\n",
                                               "[Unit]\nDescription=x (for each tenant's user)\nConditionUser=|a\n"
                                               "ConditionUser=|b\n# run as each tenant's user@\n[Service]\nExecStart=/d\n"));
}
