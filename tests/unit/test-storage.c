/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake-tree.h"
#include "json-check.h"
#include "tests.h"
#include "util/error.h"

/*
 * The storage step on fake --root trees. The hostile-home cases plant links
 * at the paths the step works on, pointing at directories of the same test
 * tree (by their absolute path on this machine, so a step that followed one
 * would reach them), and prove each target unchanged: owner, group, mode,
 * size, content and ctime of everything below it.
 */

/* A few buffers in turn, so two paths can be used in one call. */
static const char *P(const char *d, const char *rel) {
        static char bufs[4][4096];
        static unsigned i;
        char *b = bufs[i++ % 4];

        snprintf(b, sizeof(bufs[0]), "%s/%s", d, rel);
        return b;
}

static FILE *snap_out;

static int snap_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
        (void) flag;
        (void) ftw;
        fprintf(snap_out, "%s %u:%u %o %lld %lld.%09ld %lu", p, (unsigned) st->st_uid, (unsigned) st->st_gid,
                (unsigned) st->st_mode, (long long) st->st_size, (long long) st->st_ctim.tv_sec, st->st_ctim.tv_nsec,
                (unsigned long) st->st_nlink);
        if (S_ISREG(st->st_mode)) {
                char *c = test_read("/", p);
                fprintf(snap_out, " [%s]", c ? c : "(unreadable)");
                free(c);
        }
        fputc('\n', snap_out);
        return 0;
}

/* Everything below path (not following symlinks): owner, mode, size, ctime, links, content. */
static char *snapshot(const char *path) {
        char *buf = NULL;
        size_t size = 0;

        snap_out = open_memstream(&buf, &size);
        if (nftw(path, snap_one, 16, FTW_PHYS) < 0)
                fprintf(snap_out, "(missing)\n");
        fclose(snap_out);
        return buf;
}

/* A tree with the CI user and decoys: etc/ with a shadow file, root/, var/lib/docker, another user's home. */
static void populate(const char *d) {
        fake_tree_populate(d, true);
        /* The user step has nothing to do here, so anything that changes below is the storage step's doing. */
        test_write(d, "etc/subuid", "buildkite:100000:65536\n");
        test_write(d, "etc/subgid", "buildkite:100000:65536\n");
        test_write(d, "etc/shadow", "root:$y$secret:19000:0:99999:7:::\n");
        if (chmod(P(d, "etc/shadow"), 0640) < 0)
                abort();
        test_write(d, "etc/systemd/system/important.service", "[Service]\nExecStart=/bin/true\n");
        test_write(d, "root/.bashrc", "root's\n");
        test_write(d, "var/lib/docker/volumes/v/data", "root daemon's\n");
        test_write(d, "home/alice/.local/share/x", "alice's\n");
}

static void symlink_in_home(const char *d, const char *rel, const char *target_rel) {
        char target[4096];

        snprintf(target, sizeof(target), "%s/%s", d, target_rel);
        if (symlink(target, P(d, rel)) < 0)
                abort();
        if (getuid() == 0 && lchown(P(d, rel), fake_ci_uid(), fake_ci_gid()) < 0)
                abort();
}

static void mkdir_in_home(const char *d, const char *rel) {
        if (mkdir(P(d, rel), 0700) < 0)
                abort();
        if (getuid() == 0 && chown(P(d, rel), fake_ci_uid(), fake_ci_gid()) < 0)
                abort();
}

static int chown_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st;
        (void) flag;
        (void) ftw;
        return lchown(p, fake_ci_uid(), fake_ci_gid());
}

/* Give everything below rel to the CI user (as root; as anyone else it is theirs already). */
static void give_to_ci(const char *d, const char *rel) {
        if (getuid() == 0 && nftw(P(d, rel), chown_one, 16, FTW_PHYS) != 0)
                abort();
}

static bool link_is(const char *d, const char *rel, const char *target) {
        char buf[4096];
        ssize_t n = readlink(P(d, rel), buf, sizeof(buf) - 1);

        if (n < 0)
                return false;
        buf[n] = 0;
        return strcmp(buf, target) == 0;
}

static bool has_mode(const char *d, const char *rel, unsigned mode, uid_t uid) {
        struct stat st;
        return lstat(P(d, rel), &st) >= 0 && (st.st_mode & 07777) == mode && st.st_uid == uid;
}

TEST(storage_plan_describes_every_item) {
        const char *d = test_tmpdir();
        FakeRun run = {};

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        fake_run(&run, d, VERB_PLAN, true);
        ASSERT_OK(run.r);
        ASSERT_EQ(fake_count(&run, "storage.mount-point", ITEM_CREATE, "/srv/rootless-ci (0755, root; no data disk is configured"), 1);
        ASSERT_EQ(fake_count(&run, "storage.dir", ITEM_CREATE, "/srv/rootless-ci/buildkite (0755, root)"), 1);
        ASSERT_EQ(fake_count(&run, "storage.docker", ITEM_CREATE, "/srv/rootless-ci/buildkite/docker (0700, owner buildkite)"), 1);
        ASSERT_EQ(fake_count(&run, "storage.builds", ITEM_CREATE, "/srv/rootless-ci/buildkite/builds (0700, owner buildkite)"), 1);
        ASSERT_EQ(fake_count(&run, "storage.home-local", ITEM_CREATE, "/home/buildkite/.local (0700"), 1);
        ASSERT_EQ(fake_count(&run, "storage.home-local-share", ITEM_CREATE, "/home/buildkite/.local/share (0700"), 1);
        ASSERT_EQ(fake_count(&run, "storage.home-link", ITEM_CREATE, "/home/buildkite/.local/share/docker -> /srv/rootless-ci/buildkite/docker"), 1);
        /* The daemon's data root: where the link planned above points (was facts.docker_dir, which no step read). */
        ASSERT_EQ(fake_count(&run, "storage.home-link", ITEM_CREATE, "-> /srv/rootless-ci/buildkite/docker"), 1);
        ASSERT_STREQ(run.ctx.accounts[0].builds_dir, "/srv/rootless-ci/buildkite/builds");
        fake_run_done(&run);
        ASSERT_TRUE(access(P(d, "srv"), F_OK) < 0);
        ASSERT_TRUE(access(P(d, "home/buildkite/.local"), F_OK) < 0);
}

TEST(storage_apply_makes_layout_with_owners_and_modes_then_nothing) {
        const char *d = test_tmpdir();
        FakeRun run = {};
        uid_t root_uid = getuid();

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_OK(run.r);
        ASSERT_FALSE(run.ctx.any_failed);
        fake_run_done(&run);

        ASSERT_TRUE(has_mode(d, "srv/rootless-ci", 0755, root_uid));
        ASSERT_TRUE(has_mode(d, "srv/rootless-ci/buildkite", 0755, root_uid));
        ASSERT_TRUE(has_mode(d, "srv/rootless-ci/buildkite/docker", 0700, fake_ci_uid()));
        ASSERT_TRUE(has_mode(d, "srv/rootless-ci/buildkite/builds", 0700, fake_ci_uid()));
        ASSERT_TRUE(has_mode(d, "home/buildkite/.local", 0700, fake_ci_uid()));
        ASSERT_TRUE(has_mode(d, "home/buildkite/.local/share", 0700, fake_ci_uid()));
        ASSERT_TRUE(link_is(d, "home/buildkite/.local/share/docker", "/srv/rootless-ci/buildkite/docker"));
        {
                struct stat st;
                ASSERT_OK(lstat(P(d, "home/buildkite/.local/share/docker"), &st));
                ASSERT_EQ(st.st_uid, fake_ci_uid());
        }

        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_OK(run.r);
        ASSERT_FALSE(run.ctx.any_changed);
        fake_run_done(&run);

        fake_run(&run, d, VERB_CHECK, true);
        ASSERT_FALSE(run.ctx.any_failed);
        ASSERT_EQ(fake_count(&run, "storage.home-link", ITEM_PASS, "-> /srv/rootless-ci/buildkite/docker"), 1);
        fake_run_done(&run);
}

TEST(storage_accepts_dockerd_0710_and_repairs_other_modes) {
        const char *d = test_tmpdir();
        FakeRun run = {};

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        fake_run(&run, d, VERB_APPLY, true);
        fake_run_done(&run);

        ASSERT_OK(chmod(P(d, "srv/rootless-ci/buildkite/docker"), 0710));
        fake_run(&run, d, VERB_CHECK, true);
        ASSERT_FALSE(run.ctx.any_failed);
        fake_run_done(&run);

        ASSERT_OK(chmod(P(d, "srv/rootless-ci/buildkite/docker"), 0755));
        ASSERT_OK(chmod(P(d, "srv/rootless-ci/buildkite/builds"), 0777));
        ASSERT_OK(chmod(P(d, "srv/rootless-ci/buildkite"), 0777));
        fake_run(&run, d, VERB_CHECK, true);
        ASSERT_EQ(fake_count(&run, "storage.docker", ITEM_FAIL, "chmod 0700"), 1);
        ASSERT_EQ(fake_count(&run, "storage.builds", ITEM_FAIL, NULL), 1);
        ASSERT_EQ(fake_count(&run, "storage.dir", ITEM_FAIL, "chmod 0755"), 1);
        fake_run_done(&run);

        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_OK(run.r);
        fake_run_done(&run);
        ASSERT_TRUE(has_mode(d, "srv/rootless-ci/buildkite", 0755, getuid()));
        ASSERT_TRUE(has_mode(d, "srv/rootless-ci/buildkite/docker", 0700, fake_ci_uid()));
        ASSERT_TRUE(has_mode(d, "srv/rootless-ci/buildkite/builds", 0700, fake_ci_uid()));
}

/* The engine refuses it before any step (config_verify_in_root); the step judges it again before acting. */
TEST(storage_mount_point_writable_by_others_is_a_configuration_error) {
        const char *d = test_tmpdir();
        FakeRun run = {};

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        test_write(d, "srv/rootless-ci/.keep", "");
        ASSERT_OK(chmod(P(d, "srv/rootless-ci"), 0777));
        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_EQ(run.r, -ERCI_USAGE);
        ASSERT_EQ(fake_count(&run, "storage.mount-point", ITEM_FAIL, "is writable by its group and others (mode 0777)"), 1);
        fake_run_done(&run);
        ASSERT_TRUE(access(P(d, "srv/rootless-ci/buildkite"), F_OK) < 0);
}

TEST(storage_offline_with_data_disk_defers_directories_but_links) {
        const char *d = test_tmpdir();
        FakeRun run = { .disk_device = "/dev/disk/by-id/virtio-data" };

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_OK(run.r);
        ASSERT_EQ(fake_count(&run, "storage.dirs", ITEM_SKIP, "made on the data disk at first boot"), 1);
        fake_run_done(&run);
        ASSERT_TRUE(access(P(d, "srv"), F_OK) < 0);
        ASSERT_TRUE(link_is(d, "home/buildkite/.local/share/docker", "/srv/rootless-ci/buildkite/docker"));
}

/* With Device= on a live host, the disk step's facts decide; the storage step does not look again. */
TEST(storage_live_data_disk_not_mounted_by_the_disk_step_blocks_the_directories) {
        const char *d = test_tmpdir();
        FakeRun run = { .disk_device = "/dev/disk/by-id/virtio-data", .live = true };

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        /* A plain directory where the disk should be: the root disk, which must not get Docker's data. */
        ASSERT_OK(mkdir(P(d, "srv"), 0755));
        ASSERT_OK(mkdir(P(d, "srv/rootless-ci"), 0755));
        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_EQ(fake_count(&run, "storage.mount-point", ITEM_FAIL, "the data disk is not mounted at"), 1);
        fake_run_done(&run);
        ASSERT_TRUE(access(P(d, "srv/rootless-ci/buildkite"), F_OK) < 0);

        fake_run(&run, d, VERB_CHECK, true);
        ASSERT_EQ(fake_count(&run, "storage.mount-point", ITEM_FAIL, "the data disk is not mounted at"), 1);
        fake_run_done(&run);
}

TEST(storage_live_data_disk_mounted_by_the_disk_step_gets_the_layout) {
        const char *d = test_tmpdir();
        FakeRun run = { .disk_device = "/dev/disk/by-id/virtio-data", .live = true, .data_mounted = true };

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        ASSERT_OK(mkdir(P(d, "srv"), 0755));
        ASSERT_OK(mkdir(P(d, "srv/rootless-ci"), 0755));
        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_OK(run.r);
        ASSERT_FALSE(run.ctx.any_failed);
        fake_run_done(&run);
        ASSERT_TRUE(has_mode(d, "srv/rootless-ci/buildkite/docker", 0700, fake_ci_uid()));
        ASSERT_TRUE(has_mode(d, "srv/rootless-ci/buildkite/builds", 0700, fake_ci_uid()));

        fake_run(&run, d, VERB_CHECK, true);
        ASSERT_FALSE(run.ctx.any_failed);
        ASSERT_EQ(fake_count(&run, "storage.mount-point", ITEM_PASS, "the data disk is mounted"), 1);
        fake_run_done(&run);
}

TEST(storage_live_plan_follows_the_disk_step) {
        const char *d = test_tmpdir();
        FakeRun run = { .disk_device = "/dev/disk/by-id/virtio-data", .live = true, .data_mount_planned = true };

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        fake_run(&run, d, VERB_PLAN, true);
        ASSERT_OK(run.r);
        ASSERT_EQ(fake_count(&run, "storage.mount-point", ITEM_CREATE, "is not mounted yet"), 1);
        ASSERT_EQ(fake_count(&run, "storage.docker", ITEM_CREATE, "/srv/rootless-ci/buildkite/docker (0700, owner buildkite)"), 1);
        fake_run_done(&run);

        /* The disk step cannot mount it (and said why): storage does not fail a second time. */
        run = (FakeRun) { .disk_device = "/dev/disk/by-id/virtio-data", .live = true };
        fake_run(&run, d, VERB_PLAN, true);
        ASSERT_OK(run.r);
        ASSERT_EQ(fake_count(&run, "storage.mount-point", ITEM_SKIP, "wait for the data disk"), 1);
        ASSERT_EQ(fake_count(&run, "storage", ITEM_FAIL, NULL), 0);
        fake_run_done(&run);
        ASSERT_TRUE(access(P(d, "srv"), F_OK) < 0);
}

/* One hostile-home case: plant, apply, expect the item, prove the target unchanged. */
static void hostile_case(const char *d, const char *target_rel, const char *id, ItemStatus expect, const char *needle) {
        FakeRun run = {};
        char *before = snapshot(P(d, target_rel)), *after;

        fake_run(&run, d, VERB_APPLY, true);
        if (fake_count(&run, id, expect, needle) != 1) {
                fake_dump(&run);
                test_fail(__FILE__, __LINE__, "expected a %s item containing \"%s\"", item_status_to_string(expect), needle);
        }
        fake_run_done(&run);
        after = snapshot(P(d, target_rel));
        if (strcmp(before, after) != 0)
                test_fail(__FILE__, __LINE__, "%s changed:\n--- before\n%s--- after\n%s", target_rel, before, after);
        free(before);
        free(after);
}

TEST(hostile_local_symlink_to_etc_is_refused_and_etc_untouched) {
        const char *d = test_tmpdir();

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        symlink_in_home(d, "home/buildkite/.local", "etc");
        hostile_case(d, "etc", "storage.home-local", ITEM_FAIL, "/home/buildkite/.local is a symlink to");
        ASSERT_TRUE(access(P(d, "etc/share"), F_OK) < 0);
}

TEST(hostile_local_share_symlink_to_root_is_refused_and_root_untouched) {
        const char *d = test_tmpdir();

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        mkdir_in_home(d, "home/buildkite/.local");
        symlink_in_home(d, "home/buildkite/.local/share", "root");
        hostile_case(d, "root", "storage.home-local-share", ITEM_FAIL, "/home/buildkite/.local/share is a symlink to");
        ASSERT_TRUE(access(P(d, "root/docker"), F_OK) < 0);
}

TEST(hostile_docker_symlink_to_var_lib_docker_is_replaced_not_followed) {
        const char *d = test_tmpdir();

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        mkdir_in_home(d, "home/buildkite/.local");
        mkdir_in_home(d, "home/buildkite/.local/share");
        symlink_in_home(d, "home/buildkite/.local/share/docker", "var/lib/docker");
        hostile_case(d, "var/lib", "storage.home-link", ITEM_CHANGE, "replaced the symlink");
        ASSERT_TRUE(link_is(d, "home/buildkite/.local/share/docker", "/srv/rootless-ci/buildkite/docker"));
}

TEST(hostile_docker_symlink_to_another_home_is_replaced_not_followed) {
        const char *d = test_tmpdir();

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        mkdir_in_home(d, "home/buildkite/.local");
        mkdir_in_home(d, "home/buildkite/.local/share");
        symlink_in_home(d, "home/buildkite/.local/share/docker", "home/alice/.local/share");
        hostile_case(d, "home/alice", "storage.home-link", ITEM_CHANGE, "replaced the symlink");
        ASSERT_TRUE(link_is(d, "home/buildkite/.local/share/docker", "/srv/rootless-ci/buildkite/docker"));
}

TEST(hostile_docker_hard_link_to_shadow_is_refused_and_shadow_untouched) {
        const char *d = test_tmpdir();

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        mkdir_in_home(d, "home/buildkite/.local");
        mkdir_in_home(d, "home/buildkite/.local/share");
        ASSERT_OK(link(P(d, "etc/shadow"), P(d, "home/buildkite/.local/share/docker")));
        hostile_case(d, "etc", "storage.home-link", ITEM_FAIL, "is a regular file with other hard links");
}

TEST(hostile_config_symlinks_are_not_touched) {
        const char *d = test_tmpdir();
        FakeRun run = {};
        char *before, *after;

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        /* ~/.config -> etc, and ~/.local/.config-like decoys: nothing of storage goes there. */
        symlink_in_home(d, "home/buildkite/.config", "etc/systemd");
        before = snapshot(P(d, "etc"));
        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_OK(run.r);
        fake_run_done(&run);
        after = snapshot(P(d, "etc"));
        ASSERT_STREQ(after, before);
        ASSERT_TRUE(link_is(d, "home/buildkite/.local/share/docker", "/srv/rootless-ci/buildkite/docker"));
        free(before);
        free(after);
}

TEST(hostile_home_replaced_by_symlink_is_refused) {
        const char *d = test_tmpdir();
        FakeRun run = {};
        char *before, *after;

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        ASSERT_OK(rename(P(d, "home/buildkite"), P(d, "home/buildkite.real")));
        symlink_in_home(d, "home/buildkite", "home/alice");
        before = snapshot(P(d, "home/alice"));
        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_EQ(fake_count(&run, "storage.home-link", ITEM_FAIL, "is a symlink; rootless-ci never follows one there"), 1);
        fake_run_done(&run);
        after = snapshot(P(d, "home/alice"));
        ASSERT_STREQ(after, before);
        free(before);
        free(after);
}

/* A link target the CI user chose: a forged report line, a terminal escape, bytes outside UTF-8. */
#define FORGED_TARGET "/x\nPASS storage.home-link: all fine\x1b[2K\n\xff\xfe"
#define FORGED_SHOWN "/x\\x0aPASS storage.home-link: all fine\\x1b[2K\\x0a\\xff\\xfe"

TEST(hostile_link_target_forges_no_report_line_and_keeps_json_valid) {
        static const Verb verbs[] = { VERB_PLAN, VERB_CHECK, VERB_APPLY };
        const char *d = test_tmpdir();

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        mkdir_in_home(d, "home/buildkite/.local");
        mkdir_in_home(d, "home/buildkite/.local/share");
        ASSERT_OK(symlink(FORGED_TARGET, P(d, "home/buildkite/.local/share/docker")));
        if (getuid() == 0)
                ASSERT_OK(lchown(P(d, "home/buildkite/.local/share/docker"), fake_ci_uid(), fake_ci_gid()));

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                _cleanup_free_ char *human = NULL, *json = NULL;
                FakeRun run = {};

                fake_run(&run, d, verbs[i], true);
                human = fake_report(&run, false);
                json = fake_report(&run, true);
                fake_run_done(&run);
                ASSERT_JSON_VALID(json);
                /* One line, whole, with the target escaped (paths under --root show the tree's prefix). */
                ASSERT_CONTAINS(human, verbs[i] == VERB_CHECK ? "FAIL storage.home-link: replace the symlink " : "storage.home-link: re");
                ASSERT_CONTAINS(human, "/home/buildkite/.local/share/docker -> " FORGED_SHOWN
                                       " with -> /srv/rootless-ci/buildkite/docker\n");
                ASSERT_NOT_CONTAINS(human, "\nPASS storage.home-link: all fine");
                ASSERT_NOT_CONTAINS(human, "\x1b");
                ASSERT_CONTAINS(json, "/home/buildkite/.local/share/docker -> "
                                      "/x\\\\x0aPASS storage.home-link: all fine\\\\x1b[2K\\\\x0a\\\\xff\\\\xfe with");
        }
        /* apply replaced it, as any wrong link. */
        ASSERT_TRUE(link_is(d, "home/buildkite/.local/share/docker", "/srv/rootless-ci/buildkite/docker"));
}

TEST(storage_mount_point_through_a_symlink_is_a_usage_error_for_every_verb) {
        static const Verb verbs[] = { VERB_PLAN, VERB_CHECK, VERB_APPLY };
        const char *d = test_tmpdir();
        char *before, *after;

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        /* MountPoint=/srv/rootless-ci, with /srv -> /etc */
        ASSERT_OK(symlink("/etc", P(d, "srv")));
        before = snapshot(P(d, "etc"));
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                FakeRun run = {};
                fake_run(&run, d, verbs[i], true);
                ASSERT_EQ(run.r, -ERCI_USAGE);
                ASSERT_EQ(fake_count(&run, "storage.mount-point", ITEM_FAIL,
                                     "MountPoint=/srv/rootless-ci goes through the symlink "), 1);
                fake_run_done(&run);
        }
        after = snapshot(P(d, "etc"));
        ASSERT_STREQ(after, before);
        free(before);
        free(after);
}

TEST(storage_empty_docker_directory_becomes_the_symlink) {
        const char *d = test_tmpdir();
        FakeRun run = {};

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        mkdir_in_home(d, "home/buildkite/.local");
        mkdir_in_home(d, "home/buildkite/.local/share");
        mkdir_in_home(d, "home/buildkite/.local/share/docker");
        fake_run(&run, d, VERB_PLAN, true);
        ASSERT_EQ(fake_count(&run, "storage.home-link", ITEM_CHANGE, "replace the empty directory"), 1);
        fake_run_done(&run);
        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_OK(run.r);
        fake_run_done(&run);
        ASSERT_TRUE(link_is(d, "home/buildkite/.local/share/docker", "/srv/rootless-ci/buildkite/docker"));
}

TEST(storage_existing_docker_data_is_moved_onto_the_disk) {
        const char *d = test_tmpdir();
        FakeRun run = {};
        char *before, *after;

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        mkdir_in_home(d, "home/buildkite/.local");
        mkdir_in_home(d, "home/buildkite/.local/share");
        test_write(d, "home/buildkite/.local/share/docker/image/overlay2/repositories.json", "{\"Repositories\":{}}\n");
        symlink_in_home(d, "home/buildkite/.local/share/docker/evil", "etc");
        give_to_ci(d, "home/buildkite/.local/share/docker");
        before = snapshot(P(d, "etc"));

        fake_run(&run, d, VERB_PLAN, true);
        ASSERT_EQ(fake_count(&run, "storage.home-link", ITEM_CHANGE, "move the Docker data in"), 1);
        fake_run_done(&run);

        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_OK(run.r);
        ASSERT_EQ(fake_count(&run, "storage.home-link", ITEM_CHANGE, "moved the Docker data of"), 1);
        fake_run_done(&run);
        ASSERT_TRUE(link_is(d, "home/buildkite/.local/share/docker", "/srv/rootless-ci/buildkite/docker"));
        ASSERT_STREQ(test_read_kept(d, "srv/rootless-ci/buildkite/docker/image/overlay2/repositories.json"), "{\"Repositories\":{}}\n");
        /* The planted symlink travelled as a symlink; nothing was followed. */
        {
                char target[4096];
                snprintf(target, sizeof(target), "%s/etc", d);
                ASSERT_TRUE(link_is(d, "srv/rootless-ci/buildkite/docker/evil", target));
        }
        after = snapshot(P(d, "etc"));
        ASSERT_STREQ(after, before);
        free(before);
        free(after);

        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_FALSE(run.ctx.any_changed);
        fake_run_done(&run);
}

/*
 * A race in the move on one filesystem: right after the exchange (stopped
 * there), the disk's docker directory is replaced and the home's one taken
 * away, so the swap back fails too. apply says so, naming both, and the
 * user's data is wherever the race put it, untouched.
 */
TEST(storage_move_raced_and_its_rollback_failing_is_said) {
        const char *d = test_tmpdir();
        char err_path[4096], raced[4096];
        _cleanup_free_ char *err = NULL;
        FakeRun run = {};
        int status;
        pid_t pid;

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        mkdir_in_home(d, "home/buildkite/.local");
        mkdir_in_home(d, "home/buildkite/.local/share");
        test_write(d, "home/buildkite/.local/share/docker/image/overlay2/repositories.json", "{}\n");
        give_to_ci(d, "home/buildkite/.local/share/docker");
        snprintf(err_path, sizeof(err_path), "%s/apply.err", d);
        fflush(stdout);
        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0) {
                int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                if (fd < 0 || dup2(fd, STDERR_FILENO) < 0)
                        _exit(2);
                setenv("RCI_STOP_AT", "storage-exchanged", 1);
                fake_run(&run, d, VERB_APPLY, true);
                fflush(stderr);
                _exit(run.r < 0 ? 1 : 0);
        }
        ASSERT_OK(waitpid(pid, &status, WUNTRACED));
        ASSERT_TRUE(WIFSTOPPED(status));
        /* Swapped: the data is on the disk, our empty directory in the home. Now the race. */
        snprintf(raced, sizeof(raced), "%s", P(d, "srv/rootless-ci/buildkite/docker.raced"));
        ASSERT_OK(rename(P(d, "srv/rootless-ci/buildkite/docker"), raced));
        ASSERT_OK(mkdir(P(d, "srv/rootless-ci/buildkite/docker"), 0700));
        ASSERT_OK(rmdir(P(d, "home/buildkite/.local/share/docker")));
        ASSERT_OK(kill(pid, SIGCONT));
        ASSERT_OK(waitpid(pid, &status, 0));
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1);

        err = test_read("", err_path);
        ASSERT_CONTAINS(err, "changed while it was being moved to ");
        ASSERT_CONTAINS(err, "and swapping the two back failed: No such file or directory. Both are as the race left them");
        ASSERT_STREQ(test_read_kept(d, "srv/rootless-ci/buildkite/docker.raced/image/overlay2/repositories.json"), "{}\n");
}

TEST(storage_data_in_both_places_is_refused_with_exit_3) {
        const char *d = test_tmpdir();
        FakeRun run = {};
        char *home_before, *disk_before, *home_after, *disk_after;

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        fake_run(&run, d, VERB_APPLY, true);  /* layout in place */
        fake_run_done(&run);
        ASSERT_OK(unlink(P(d, "home/buildkite/.local/share/docker")));
        mkdir_in_home(d, "home/buildkite/.local/share/docker");
        test_write(d, "home/buildkite/.local/share/docker/a", "home data\n");
        test_write(d, "srv/rootless-ci/buildkite/docker/b", "disk data\n");
        home_before = snapshot(P(d, "home/buildkite/.local/share/docker"));
        disk_before = snapshot(P(d, "srv/rootless-ci/buildkite/docker"));

        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_EQ(run.r, -ERCI_REFUSED);
        ASSERT_EQ(exit_status_from_error(run.r), 3);
        ASSERT_EQ(fake_count(&run, "storage.home-link", ITEM_FAIL, "rootless-ci does not merge them"), 1);
        fake_run_done(&run);
        home_after = snapshot(P(d, "home/buildkite/.local/share/docker"));
        disk_after = snapshot(P(d, "srv/rootless-ci/buildkite/docker"));
        ASSERT_STREQ(home_after, home_before);
        ASSERT_STREQ(disk_after, disk_before);
        free(home_before);
        free(disk_before);
        free(home_after);
        free(disk_after);
}

/* Entries of dir named ".#NAME." and 16 lowercase hex digits, symlinks only; -1 for anything else like it. */
static int count_temp_links(const char *dir, const char *name) {
        char prefix[NAME_MAX + 1];
        struct dirent *de;
        DIR *dp = opendir(dir);
        int n = 0;

        if (!dp)
                return -1;
        snprintf(prefix, sizeof(prefix), ".#%s.", name);
        while ((de = readdir(dp))) {
                const char *rest = de->d_name + strlen(prefix);
                if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
                        continue;
                if (de->d_type != DT_LNK || strlen(rest) != 16 || strspn(rest, "0123456789abcdef") != 16) {
                        n = -1;
                        break;
                }
                n++;
        }
        closedir(dp);
        return n;
}

TEST(storage_killed_before_symlink_rename_is_completed_by_next_run) {
        const char *d = test_tmpdir();
        FakeRun run = {};
        pid_t pid;
        int status;
        char *listing;

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        mkdir_in_home(d, "home/buildkite/.local");
        mkdir_in_home(d, "home/buildkite/.local/share");
        symlink_in_home(d, "home/buildkite/.local/share/docker", "var/lib/docker");
        fflush(stdout);
        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0) {
                setenv("RCI_KILL_AT", "home-symlink-before-rename", 1);
                fake_run(&run, d, VERB_APPLY, true);
                _exit(0);
        }
        ASSERT_OK(waitpid(pid, &status, 0));
        ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        /* The dead run left its temporary symlink, named in the one scheme (util/fs.h: temp_name_random()). */
        ASSERT_EQ(count_temp_links(P(d, "home/buildkite/.local/share"), "docker"), 1);

        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_OK(run.r);
        fake_run_done(&run);
        ASSERT_TRUE(link_is(d, "home/buildkite/.local/share/docker", "/srv/rootless-ci/buildkite/docker"));
        /* The dead run's temporary symlink is gone too. */
        listing = snapshot(P(d, "home/buildkite/.local/share"));
        ASSERT_TRUE(strstr(listing, ".#docker.") == NULL);
        free(listing);
}

TEST(storage_killed_between_mkdir_and_chown_in_the_home_is_completed_by_next_run) {
        const char *d = test_tmpdir();
        FakeRun run = {};
        pid_t pid;
        int status;

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        fflush(stdout);
        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0) {
                setenv("RCI_KILL_AT", "home-mkdir-before-chown", 1);
                fake_run(&run, d, VERB_APPLY, true);
                _exit(0);
        }
        ASSERT_OK(waitpid(pid, &status, 0));
        ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        /* Left behind: ~/.local, ours (root's when running as root), 0700, empty. */
        ASSERT_TRUE(has_mode(d, "home/buildkite/.local", 0700, getuid()));

        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_OK(run.r);
        ASSERT_FALSE(run.ctx.any_failed);
        fake_run_done(&run);
        ASSERT_TRUE(has_mode(d, "home/buildkite/.local", 0700, fake_ci_uid()));
        ASSERT_TRUE(link_is(d, "home/buildkite/.local/share/docker", "/srv/rootless-ci/buildkite/docker"));
}

TEST(storage_root_owned_directory_with_content_in_the_home_is_not_taken) {
        const char *d = test_tmpdir();
        FakeRun run = {};

        if (getuid() != 0) {
                test_skip("needs root to leave a root-owned directory in the user's home");
                return;
        }
        populate(d);
        test_write(d, "home/buildkite/.local/root-secret", "root's\n");
        ASSERT_OK(chmod(P(d, "home/buildkite/.local"), 0700));
        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_EQ(fake_count(&run, "storage.home-local", ITEM_FAIL, "/home/buildkite/.local is owned by UID 0, not by buildkite"), 1);
        fake_run_done(&run);
        ASSERT_TRUE(has_mode(d, "home/buildkite/.local", 0700, 0));
        ASSERT_TRUE(has_mode(d, "home/buildkite/.local/root-secret", 0644, 0));
}

/* Something else where a directory belongs: left alone, in the same words for <MountPoint>/<user>, its data directories and the home's. */
TEST(storage_non_directories_are_left_alone_with_their_kind) {
        const char *d = test_tmpdir();
        FakeRun run = {};

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate(d);
        test_write(d, "home/buildkite/.local", "a file\n");
        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_EQ(fake_count(&run, "storage.home-local", ITEM_FAIL,
                             "/home/buildkite/.local is a regular file, not a directory; it is left alone"), 1);
        fake_run_done(&run);
        ASSERT_OK(unlink(P(d, "home/buildkite/.local")));
        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_OK(run.r);
        fake_run_done(&run);

        ASSERT_OK(rmdir(P(d, "srv/rootless-ci/buildkite/builds")));
        test_write(d, "srv/rootless-ci/buildkite/builds", "a file\n");
        fake_run(&run, d, VERB_CHECK, true);
        ASSERT_EQ(fake_count(&run, "storage.builds", ITEM_FAIL,
                             "/srv/rootless-ci/buildkite/builds is a regular file, not a directory; it is left alone"), 1);
        fake_run_done(&run);

        ASSERT_OK(unlink(P(d, "srv/rootless-ci/buildkite/builds")));
        ASSERT_OK(rename(P(d, "srv/rootless-ci/buildkite"), P(d, "srv/rootless-ci/moved")));
        ASSERT_OK(symlink("moved", P(d, "srv/rootless-ci/buildkite")));
        fake_run(&run, d, VERB_CHECK, true);
        ASSERT_EQ(fake_count(&run, "storage.dir", ITEM_FAIL,
                             "/srv/rootless-ci/buildkite is a symlink to moved, not a directory; it is left alone"), 1);
        ASSERT_EQ(fake_count(&run, "storage.builds", ITEM_FAIL, NULL), 0);
        fake_run_done(&run);
        ASSERT_TRUE(link_is(d, "srv/rootless-ci/buildkite", "moved"));
}

/* ---- tenants (issue 16): a subtree and a home of each tenant's own, the mount point judged once ---- */

static void populate_tenants(const char *d) {
        populate(d);
        fake_tree_populate_tenants(d, true);
        test_write(d, "etc/subuid", "buildkite:100000:65536\nbuildkite-pr:165536:65536\n");
        test_write(d, "etc/subgid", "buildkite:100000:65536\nbuildkite-pr:165536:65536\n");
}

TEST(storage_tenants_each_get_a_private_subtree_and_home_then_nothing) {
        const char *d = test_tmpdir();
        FakeRun run = { .tenants = { fake_two_tenants[0], fake_two_tenants[1] }, .n_tenants = 2 };
        uid_t root_uid = getuid();

        if (getuid() != 0) {
                test_skip("two tenants need two UIDs to hand directories to: run as root");
                return;
        }
        populate_tenants(d);
        /* An adopted account as Debian's useradd makes it without HOME_MODE: a home others can read. */
        ASSERT_OK(chmod(P(d, "home/buildkite-pr"), 0755));

        fake_run(&run, d, VERB_PLAN, true);
        ASSERT_OK(run.r);
        ASSERT_EQ(fake_count(&run, "storage.mount-point", ITEM_CREATE, NULL), 1);
        ASSERT_EQ(fake_count(&run, "storage.mount-point:", _ITEM_STATUS_MAX, NULL), 0);
        ASSERT_EQ(fake_count(&run, "storage.dir:main", ITEM_CREATE, "/srv/rootless-ci/buildkite (0755, root)"), 1);
        ASSERT_EQ(fake_count(&run, "storage.dir:pr", ITEM_CREATE, "/srv/rootless-ci/buildkite-pr (0755, root)"), 1);
        ASSERT_EQ(fake_count(&run, "storage.docker:pr", ITEM_CREATE,
                             "/srv/rootless-ci/buildkite-pr/docker (0700, owner buildkite-pr)"), 1);
        ASSERT_EQ(fake_count(&run, "storage.home-mode:pr", ITEM_CHANGE, "chmod go-rwx"), 1);
        ASSERT_EQ(fake_count(&run, "storage.home-mode:main", ITEM_OK, "(0700): closed to other tenants"), 1);
        ASSERT_EQ(fake_count(&run, "storage.home-link:pr", ITEM_CREATE,
                             "/home/buildkite-pr/.local/share/docker -> /srv/rootless-ci/buildkite-pr/docker"), 1);
        fake_run_done(&run);

        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_OK(run.r);
        ASSERT_FALSE(run.ctx.any_failed);
        ASSERT_STREQ(run.ctx.accounts[0].builds_dir, "/srv/rootless-ci/buildkite/builds");
        ASSERT_STREQ(run.ctx.accounts[1].builds_dir, "/srv/rootless-ci/buildkite-pr/builds");
        fake_run_done(&run);
        ASSERT_TRUE(has_mode(d, "srv/rootless-ci", 0755, root_uid));
        ASSERT_TRUE(has_mode(d, "srv/rootless-ci/buildkite", 0755, root_uid));
        ASSERT_TRUE(has_mode(d, "srv/rootless-ci/buildkite/docker", 0700, fake_ci_uid()));
        ASSERT_TRUE(has_mode(d, "srv/rootless-ci/buildkite/builds", 0700, fake_ci_uid()));
        ASSERT_TRUE(has_mode(d, "srv/rootless-ci/buildkite-pr", 0755, root_uid));
        ASSERT_TRUE(has_mode(d, "srv/rootless-ci/buildkite-pr/docker", 0700, fake_pr_uid()));
        ASSERT_TRUE(has_mode(d, "srv/rootless-ci/buildkite-pr/builds", 0700, fake_pr_uid()));
        ASSERT_TRUE(has_mode(d, "home/buildkite-pr", 0700, fake_pr_uid()));
        ASSERT_TRUE(has_mode(d, "home/buildkite", 0700, fake_ci_uid()));
        ASSERT_TRUE(link_is(d, "home/buildkite-pr/.local/share/docker", "/srv/rootless-ci/buildkite-pr/docker"));

        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_OK(run.r);
        ASSERT_FALSE(run.ctx.any_changed);
        fake_run_done(&run);
        fake_run(&run, d, VERB_CHECK, true);
        ASSERT_FALSE(run.ctx.any_failed);
        ASSERT_EQ(fake_count(&run, "storage.mount-point", ITEM_PASS, NULL), 1);
        ASSERT_EQ(fake_count(&run, "storage.builds:pr", ITEM_PASS, "(0700, owner buildkite-pr)"), 1);
        fake_run_done(&run);
}

/* The data disk not mounted: said once, and no tenant gets a directory on the root disk. */
TEST(storage_tenants_unmounted_data_disk_blocks_every_tenant) {
        const char *d = test_tmpdir();
        FakeRun run = { .disk_device = "/dev/disk/by-id/virtio-data", .live = true,
                        .tenants = { fake_two_tenants[0], fake_two_tenants[1] }, .n_tenants = 2 };

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate_tenants(d);
        ASSERT_OK(mkdir(P(d, "srv"), 0755));
        ASSERT_OK(mkdir(P(d, "srv/rootless-ci"), 0755));
        fake_run(&run, d, VERB_APPLY, true);
        ASSERT_EQ(fake_count(&run, "storage.mount-point", ITEM_FAIL, "the data disk is not mounted at"), 1);
        ASSERT_EQ(fake_count(&run, "storage.dir", _ITEM_STATUS_MAX, NULL), 0);
        ASSERT_EQ(fake_count(&run, "storage.docker", _ITEM_STATUS_MAX, NULL), 0);
        fake_run_done(&run);
        ASSERT_TRUE(access(P(d, "srv/rootless-ci/buildkite"), F_OK) < 0);
        ASSERT_TRUE(access(P(d, "srv/rootless-ci/buildkite-pr"), F_OK) < 0);
}

/* Offline with a data disk: each tenant says its directories wait for the first boot; the mount point nothing. */
TEST(storage_tenants_offline_with_data_disk_defer_each_tenants_directories) {
        const char *d = test_tmpdir();
        FakeRun run = { .disk_device = "/dev/disk/by-id/virtio-data",
                        .tenants = { fake_two_tenants[0], fake_two_tenants[1] }, .n_tenants = 2 };

        FAKE_SKIP_UNLESS_CI_USER_USABLE();
        populate_tenants(d);
        fake_run(&run, d, VERB_PLAN, true);
        ASSERT_OK(run.r);
        ASSERT_EQ(fake_count(&run, "storage.dirs:main", ITEM_SKIP, "/srv/rootless-ci/buildkite/{docker,builds}"), 1);
        ASSERT_EQ(fake_count(&run, "storage.dirs:pr", ITEM_SKIP, "/srv/rootless-ci/buildkite-pr/{docker,builds}"), 1);
        ASSERT_EQ(fake_count(&run, "storage.mount-point", _ITEM_STATUS_MAX, NULL), 0);
        fake_run_done(&run);
}
