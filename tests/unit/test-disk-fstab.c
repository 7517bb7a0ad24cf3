/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "steps/disk/fstab.h"
#include "tests.h"
#include "util/error.h"

#define UUID_A "0b7d3a2c-1111-4e0f-9d7a-5d1c2e3f4a5b"
#define UUID_B "9f8e7d6c-2222-4b3a-8c9d-0e1f2a3b4c5d"
#define OUR_LINE_A "UUID=" UUID_A " /srv/rootless-ci ext4 defaults,nofail,x-rootless-ci 0 2"

static const FstabWant want_a = { .uuid = UUID_A, .target = "/srv/rootless-ci", .fstype = "ext4" };

/* An fstab as operators write them: comments, tabs, odd spacing, a line libmount cannot parse. */
static const char messy[] =
        "# /etc/fstab: static file system information.\n"
        "#\n"
        "UUID=1234-ABCD\t/boot/efi\tvfat\tumask=0077\t0\t1\n"
        "   /dev/vda1    /     ext4    errors=remount-ro   0   1   \n"
        "\n"
        "tmpfs /tmp tmpfs defaults,size=1G 0 0 # trailing comment\n"
        "this-line-is-garbage\n"
        "\t# indented comment\r\n"
        "proc /proc proc defaults 0 0";  /* no newline at the end */

static FstabPlan plan_ok(const char *text, const FstabWant *want) {
        FstabPlan p = {};
        char *err = NULL;
        int r = fstab_plan("fstab", text, strlen(text), want, &p, &err);
        if (r < 0) {
                printf("# fstab_plan: %d %s\n", r, err ? err : "");
                test_failed_flag = 1;
        }
        free(err);
        return p;
}

TEST(fstab_empty_file_gets_our_line) {
        FstabPlan p = plan_ok("", &want_a);
        ASSERT_EQ(p.action, FSTAB_ADD);
        ASSERT_STREQ(p.text, OUR_LINE_A "\n");
        fstab_plan_done(&p);
}

TEST(fstab_add_keeps_every_other_byte) {
        FstabPlan p = plan_ok(messy, &want_a);
        size_t l = strlen(messy);

        ASSERT_EQ(p.action, FSTAB_ADD);
        /* The old text, a newline for the unterminated last line, then ours. */
        ASSERT_EQ(p.size, l + 1 + strlen(OUR_LINE_A) + 1);
        ASSERT_TRUE(memcmp(p.text, messy, l) == 0);
        ASSERT_STREQ(p.text + l, "\n" OUR_LINE_A "\n");
        fstab_plan_done(&p);
}

TEST(fstab_unparsable_lines_are_reported_not_dropped) {
        FstabPlan p = plan_ok(messy, &want_a);
        ASSERT_EQ(p.n_unparsable, 1);
        ASSERT_EQ(p.unparsable[0], 7);
        ASSERT_TRUE(strstr(p.text, "\nthis-line-is-garbage\n") != NULL);
        fstab_plan_done(&p);
}

TEST(fstab_rerun_never_duplicates) {
        FstabPlan p1 = plan_ok(messy, &want_a), p2;
        ASSERT_EQ(p1.action, FSTAB_ADD);
        p2 = plan_ok(p1.text, &want_a);
        ASSERT_EQ(p2.action, FSTAB_KEEP);
        ASSERT_EQ(p2.line, 10);
        ASSERT_TRUE(p2.text == NULL);
        fstab_plan_done(&p1);
        fstab_plan_done(&p2);
}

TEST(fstab_changed_mount_point_replaces_our_line_in_place) {
        const char *old = "# head\n" OUR_LINE_A "\n/dev/x /data xfs defaults 0 0\n";
        FstabWant w = { .uuid = UUID_A, .target = "/srv/ci data", .fstype = "ext4" };
        FstabPlan p = plan_ok(old, &w);

        ASSERT_EQ(p.action, FSTAB_REPLACE);
        ASSERT_EQ(p.line, 2);
        ASSERT_STREQ(p.old_line, OUR_LINE_A);
        /* The blank in the mount point is escaped as fstab wants. */
        ASSERT_STREQ(p.text, "# head\nUUID=" UUID_A " /srv/ci\\040data ext4 defaults,nofail,x-rootless-ci 0 2\n"
                             "/dev/x /data xfs defaults 0 0\n");
        /* ...and read back as the same mount point. */
        {
                FstabPlan q = plan_ok(p.text, &w);
                ASSERT_EQ(q.action, FSTAB_KEEP);
                fstab_plan_done(&q);
        }
        fstab_plan_done(&p);
}

TEST(fstab_new_filesystem_uuid_replaces_our_line) {
        FstabWant w = { .uuid = UUID_B, .target = "/srv/rootless-ci", .fstype = "xfs" };
        FstabPlan p = plan_ok(OUR_LINE_A "\n", &w);
        ASSERT_EQ(p.action, FSTAB_REPLACE);
        ASSERT_STREQ(p.text, "UUID=" UUID_B " /srv/rootless-ci xfs defaults,nofail,x-rootless-ci 0 0\n");
        fstab_plan_done(&p);
}

TEST(fstab_operator_options_on_our_line_are_kept) {
        const char *t = "UUID=" UUID_A "  /srv/rootless-ci  ext4  defaults,noatime,nofail,x-rootless-ci  0  2\n";
        FstabPlan p = plan_ok(t, &want_a);
        ASSERT_EQ(p.action, FSTAB_KEEP);
        fstab_plan_done(&p);
}

TEST(fstab_our_line_without_nofail_is_rewritten) {
        const char *t = "UUID=" UUID_A " /srv/rootless-ci ext4 defaults,x-rootless-ci 0 2\n";
        FstabPlan p = plan_ok(t, &want_a);
        ASSERT_EQ(p.action, FSTAB_REPLACE);
        ASSERT_STREQ(p.text, OUR_LINE_A "\n");
        fstab_plan_done(&p);
}

TEST(fstab_duplicates_of_our_line_are_dropped) {
        const char *t = OUR_LINE_A "\n# keep me\n" OUR_LINE_A "\n";
        FstabPlan p = plan_ok(t, &want_a);
        ASSERT_EQ(p.action, FSTAB_REPLACE);
        ASSERT_EQ(p.n_removed, 1);
        ASSERT_STREQ(p.text, OUR_LINE_A "\n# keep me\n");
        fstab_plan_done(&p);
}

TEST(fstab_someone_elses_line_at_our_mount_point_is_refused) {
        const char *t = "# x\n/dev/sdc1 /srv/rootless-ci ext4 defaults 0 2\n";
        FstabPlan p = {};
        char *err = NULL;
        ASSERT_EQ(fstab_plan("/etc/fstab", t, strlen(t), &want_a, &p, &err), -ERCI_REFUSED);
        ASSERT_TRUE(err && strstr(err, "/etc/fstab:2") && strstr(err, "/dev/sdc1"));
        free(err);
}

TEST(fstab_our_filesystem_mounted_elsewhere_by_another_line_is_refused) {
        const char *t = "UUID=" UUID_A " /data ext4 defaults 0 2\n";
        FstabPlan p = {};
        char *err = NULL;
        ASSERT_EQ(fstab_plan("/etc/fstab", t, strlen(t), &want_a, &p, &err), -ERCI_REFUSED);
        ASSERT_TRUE(err && strstr(err, "/etc/fstab:1") && strstr(err, "/data"));
        free(err);
}

TEST(fstab_operators_own_line_for_our_filesystem_is_adopted) {
        const char *t = "UUID=" UUID_A " /srv/rootless-ci ext4 defaults 0 2\n";
        FstabPlan p = plan_ok(t, &want_a);
        ASSERT_EQ(p.action, FSTAB_KEEP);
        ASSERT_TRUE(p.adopted);
        fstab_plan_done(&p);
}

TEST(fstab_unparsable_line_with_our_marker_stops) {
        const char *t = "UUID=" UUID_A "\tx-rootless-ci\n";
        FstabPlan p = {};
        char *err = NULL;
        int r = fstab_plan("/etc/fstab", t, strlen(t), &want_a, &p, &err);
        /* If this libmount can parse it after all, it is simply not our line. */
        if (r == 0) {
                fstab_plan_done(&p);
                test_skip("libmount parses a two-field line");
                return;
        }
        ASSERT_EQ(r, -ERCI_FAILED);
        ASSERT_TRUE(err && strstr(err, "/etc/fstab:1"));
        free(err);
}

TEST(fstab_nul_byte_stops) {
        const char t[] = "proc /proc proc defaults 0 0\n\0garbage\n";
        FstabPlan p = {};
        char *err = NULL;
        ASSERT_EQ(fstab_plan("/etc/fstab", t, sizeof(t) - 1, &want_a, &p, &err), -ERCI_FAILED);
        free(err);
}

TEST(fstab_find_ours_finds_the_marked_line) {
        char *src = NULL, *tgt = NULL;
        unsigned line = 0;
        const char *t = "# a\nproc /proc proc defaults 0 0\n" OUR_LINE_A "\n";
        ASSERT_EQ(fstab_find_ours(t, strlen(t), &line, &src, &tgt), 1);
        ASSERT_EQ(line, 3);
        ASSERT_STREQ(src, "UUID=" UUID_A);
        ASSERT_STREQ(tgt, "/srv/rootless-ci");
        free(src);
        free(tgt);
        ASSERT_EQ(fstab_find_ours("proc /proc proc defaults 0 0\n", 29, &line, &src, &tgt), 0);
}
