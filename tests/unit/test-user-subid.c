/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "tests.h"
#include "steps/user/logindefs.h"
#include "steps/user/subid-plan.h"

static const SubIdPolicy default_policy = {
        .min = 100000,
        .max = 600100000,
        .count = 65536,
};

/* Parse text, plan for user, render; returns the new text (malloc'd) or NULL on -ENOSPC. */
static char *plan_and_render(const char *text, const char *user, uid_t uid, const SubIdPolicy *policy,
                             SubIdPlan *ret_plan) {
        SubIdFile f;
        SubIdPlan p;
        char *out = NULL;
        size_t size;

        if (subid_file_parse(&f, text, strlen(text)) < 0)
                abort();
        if (subid_plan(&f, user, uid, policy, &p) < 0) {
                subid_file_done(&f);
                return NULL;
        }
        if (subid_render(&f, &p, user, &out, &size) < 0)
                abort();
        if (strlen(out) != size)
                abort();
        if (ret_plan) {
                *ret_plan = p;
                ret_plan->drop = NULL;
                ret_plan->verdict = NULL;
        }
        subid_plan_done(&p);
        subid_file_done(&f);
        return out;
}

TEST(subid_empty_file_gets_first_range_at_sub_uid_min) {
        SubIdPlan p;
        char *out = plan_and_render("", "buildkite", 1001, &default_policy, &p);

        ASSERT_STREQ(out, "buildkite:100000:65536\n");
        ASSERT_TRUE(p.allocate);
        free(out);
}

TEST(subid_valid_existing_range_is_kept_and_file_unchanged) {
        const char *text = "alice:100000:65536\nbuildkite:231072:65536\n";
        SubIdPlan p;
        char *out = plan_and_render(text, "buildkite", 1001, &default_policy, &p);

        ASSERT_STREQ(out, text);
        ASSERT_FALSE(p.allocate);
        ASSERT_EQ(p.start, 231072);
        ASSERT_EQ(p.count, 65536);
        free(out);
}

TEST(subid_numeric_owner_counts_as_the_user) {
        const char *text = "1001:300000:65536\n";
        SubIdPlan p;
        char *out = plan_and_render(text, "buildkite", 1001, &default_policy, &p);

        ASSERT_STREQ(out, text);
        ASSERT_FALSE(p.allocate);
        ASSERT_EQ(p.start, 300000);
        free(out);
}

TEST(subid_numeric_owner_of_another_uid_is_not_the_user) {
        SubIdPlan p;
        char *out = plan_and_render("1000:100000:65536\n", "buildkite", 1001, &default_policy, &p);

        ASSERT_STREQ(out, "1000:100000:65536\nbuildkite:165536:65536\n");
        ASSERT_EQ(p.start, 165536);
        free(out);
}

TEST(subid_allocation_skips_occupied_aligned_slots_and_finds_gap) {
        /* 100000 and 165536 are taken; 231072 is a gap; 296608 taken. */
        const char *text = "a:100000:65536\nb:165536:65536\nc:296608:65536\n";
        SubIdPlan p;
        char *out = plan_and_render(text, "buildkite", 1001, &default_policy, &p);

        ASSERT_STREQ(out, "a:100000:65536\nb:165536:65536\nc:296608:65536\nbuildkite:231072:65536\n");
        free(out);
}

TEST(subid_allocation_avoids_partial_overlap_with_unaligned_entry) {
        /* An entry straddling two aligned slots blocks both. */
        const char *text = "odd:160000:10000\n";
        SubIdPlan p;
        char *out = plan_and_render(text, "buildkite", 1001, &default_policy, &p);

        ASSERT_TRUE(out != NULL);
        ASSERT_EQ(p.start, 231072);
        free(out);
}

TEST(subid_overlapping_range_is_replaced_in_place) {
        const char *text = "alice:100000:65536\nbuildkite:150000:65536\nzed:400000:65536\n";
        SubIdPlan p;
        char *out = plan_and_render(text, "buildkite", 1001, &default_policy, &p);

        ASSERT_STREQ(out, "alice:100000:65536\nbuildkite:165536:65536\nzed:400000:65536\n");
        ASSERT_TRUE(p.allocate);
        free(out);
}

TEST(subid_too_small_range_is_replaced) {
        const char *text = "buildkite:100000:1000\n";
        SubIdPlan p;
        char *out = plan_and_render(text, "buildkite", 1001, &default_policy, &p);

        /* The space of its own bad line is free again. */
        ASSERT_STREQ(out, "buildkite:100000:65536\n");
        free(out);
}

TEST(subid_range_containing_an_existing_uid_is_replaced) {
        uint32_t used[] = { 0, 1000, 1001, 170000 };
        SubIdPolicy policy = default_policy;
        SubIdFile f;
        SubIdPlan p;

        policy.used_ids = used;
        policy.n_used_ids = 4;
        ASSERT_OK(subid_file_parse(&f, "buildkite:165536:65536\n", strlen("buildkite:165536:65536\n")));
        ASSERT_OK(subid_plan(&f, "buildkite", 1001, &policy, &p));
        ASSERT_TRUE(p.allocate);
        ASSERT_EQ(p.verdict[0], SUBID_OVERLAPS_ID);
        ASSERT_EQ(p.conflict_id, 170000);
        /* Not 165536 again (it holds UID 170000), but the lowest free slot. */
        ASSERT_EQ(p.start, 100000);
        subid_plan_done(&p);
        subid_file_done(&f);
}

TEST(subid_range_below_65536_is_replaced) {
        SubIdPlan p;
        char *out = plan_and_render("buildkite:1000:65536\n", "buildkite", 1001, &default_policy, &p);

        ASSERT_STREQ(out, "buildkite:100000:65536\n");
        free(out);
}

TEST(subid_range_past_the_last_id_is_replaced) {
        SubIdPlan p;
        char *out = plan_and_render("buildkite:4294900000:100000\n", "buildkite", 1001, &default_policy, &p);

        ASSERT_STREQ(out, "buildkite:100000:65536\n");
        free(out);
}

TEST(subid_malformed_lines_are_kept_byte_for_byte) {
        const char *text = "# a comment\n"
                           "garbage without colons\n"
                           "x:y:z\n"
                           "  \t\n"
                           "alice:100000:65536:extra\n"
                           "buildkite:abc:65536\n"
                           "crlf:300000:65536\r\n"
                           "\n";
        SubIdFile f;
        SubIdPlan p;
        char *out = plan_and_render(text, "buildkite", 1001, &default_policy, &p);
        size_t malformed = 0;

        ASSERT_TRUE(out != NULL);
        /* Everything is still there, unchanged, and one line is added at the end. */
        ASSERT_TRUE(strncmp(out, text, strlen(text)) == 0);
        ASSERT_STREQ(out + strlen(text), "buildkite:100000:65536\n");
        free(out);

        ASSERT_OK(subid_file_parse(&f, text, strlen(text)));
        for (size_t i = 0; i < f.n_lines; i++)
                if (f.lines[i].kind == SUBID_LINE_MALFORMED)
                        malformed++;
        /* garbage, x:y:z, four fields, non-numeric start, CRLF; comment and blanks are not malformed */
        ASSERT_EQ(malformed, 5);
        subid_file_done(&f);
}

TEST(subid_last_line_without_newline_is_kept_and_terminated) {
        SubIdPlan p;
        char *out = plan_and_render("alice:100000:65536", "buildkite", 1001, &default_policy, &p);

        ASSERT_STREQ(out, "alice:100000:65536\nbuildkite:165536:65536\n");
        free(out);
}

TEST(subid_replacing_unterminated_last_line) {
        SubIdPlan p;
        char *out = plan_and_render("alice:100000:65536\nbuildkite:5:5", "buildkite", 1001, &default_policy, &p);

        ASSERT_STREQ(out, "alice:100000:65536\nbuildkite:165536:65536\n");
        free(out);
}

TEST(subid_extra_bad_lines_dropped_when_a_valid_one_exists) {
        const char *text = "buildkite:1:5\nalice:100000:65536\nbuildkite:300000:65536\nbuildkite:100005:70000\n";
        SubIdPlan p;
        char *out = plan_and_render(text, "buildkite", 1001, &default_policy, &p);

        ASSERT_FALSE(p.allocate);
        ASSERT_EQ(p.start, 300000);
        ASSERT_EQ(p.n_dropped, 2);
        ASSERT_STREQ(out, "alice:100000:65536\nbuildkite:300000:65536\n");
        free(out);
}

TEST(subid_other_users_lines_never_touched_even_when_overlapping_each_other) {
        const char *text = "a:100000:65536\nb:100000:65536\nbuildkite:400000:65536\n";
        char *out = plan_and_render(text, "buildkite", 1001, &default_policy, NULL);

        ASSERT_STREQ(out, text);
        free(out);
}

TEST(subid_bounds_respected_and_no_space_is_enospc) {
        SubIdPolicy policy = default_policy;

        /* Room for exactly one range, which alice has. */
        policy.max = 100000 + 65536 - 1;
        ASSERT_TRUE(plan_and_render("alice:100000:65536\n", "buildkite", 1001, &policy, NULL) == NULL);
        /* One more ID of room is still not a whole range. */
        policy.max = 100000 + 65536 + 65536 - 2;
        ASSERT_TRUE(plan_and_render("alice:100000:65536\n", "buildkite", 1001, &policy, NULL) == NULL);
        policy.max = 100000 + 65536 + 65536 - 1;
        {
                SubIdPlan p;
                char *out = plan_and_render("alice:100000:65536\n", "buildkite", 1001, &policy, &p);
                ASSERT_TRUE(out != NULL);
                ASSERT_EQ(p.start + p.count - 1, policy.max);
                free(out);
        }
}

TEST(subid_valid_range_outside_bounds_is_kept_but_flagged) {
        SubIdPlan p;
        char *out = plan_and_render("buildkite:700000000:65536\n", "buildkite", 1001, &default_policy, &p);

        ASSERT_STREQ(out, "buildkite:700000000:65536\n");
        ASSERT_FALSE(p.allocate);
        ASSERT_TRUE(p.outside_bounds);
        free(out);
}

TEST(subid_preferred_start_used_when_free) {
        SubIdPolicy policy = default_policy;
        SubIdPlan p;
        char *out;

        policy.preferred_start = 231072;
        out = plan_and_render("", "buildkite", 1001, &policy, &p);
        ASSERT_EQ(p.start, 231072);
        free(out);

        /* Taken: the lowest free slot instead. */
        out = plan_and_render("x:231072:65536\n", "buildkite", 1001, &policy, &p);
        ASSERT_EQ(p.start, 100000);
        free(out);
}

TEST(subid_count_from_login_defs_above_minimum_is_used) {
        SubIdPolicy policy = default_policy;
        SubIdPlan p;
        char *out;

        policy.count = 131072;
        out = plan_and_render("", "buildkite", 1001, &policy, &p);
        ASSERT_STREQ(out, "buildkite:100000:131072\n");
        free(out);

        /* SUB_UID_COUNT=0 (useradd's allocation off) or too small: 65536 anyway. */
        policy.count = 0;
        out = plan_and_render("", "buildkite", 1001, &policy, &p);
        ASSERT_STREQ(out, "buildkite:100000:65536\n");
        free(out);
}

TEST(login_defs_parses_keys_and_keeps_defaults) {
        LoginDefs d;

        login_defs_init(&d);
        login_defs_parse(&d, "# comment UID_MIN 5\n"
                             "UID_MIN\t\t\t 2000\n"
                             "SUB_UID_MIN   200000\n"
                             "SUB_GID_COUNT \"131072\"\n"
                             "UID_MAXX 7\n"
                             "SUB_UID_MAX 0x10\n");
        ASSERT_EQ(d.uid_min, 2000);
        ASSERT_EQ(d.uid_max, 60000);
        ASSERT_EQ(d.sub_uid_min, 200000);
        ASSERT_EQ(d.sub_uid_max, 600100000);   /* bad value: default kept */
        ASSERT_EQ(d.sub_gid_count, 131072);
        ASSERT_EQ(d.bad_line, 6);
        ASSERT_STREQ(d.bad_key, "SUB_UID_MAX");
}

TEST(login_defs_defaults_are_shadows) {
        LoginDefs d;

        login_defs_init(&d);
        login_defs_parse(&d, "");
        ASSERT_EQ(d.uid_min, 1000);
        ASSERT_EQ(d.sub_uid_min, 100000);
        ASSERT_EQ(d.sub_uid_max, 600100000);
        ASSERT_EQ(d.sub_uid_count, 65536);
        ASSERT_EQ(d.sub_gid_min, 100000);
        ASSERT_EQ(d.bad_line, 0);
}

TEST(subid_user_ranges_are_every_line_of_the_users_as_newuidmap_reads_them) {
        /* By name and by numeric UID, in file order, bad ones too (newuidmap checks only ownership); count 0 is none. */
        static const char text[] = "ci:300000:65536\n"
                                   "other:100000:65536\n"
                                   "# ci:1:2\n"
                                   "1000:700000:100\n"
                                   "ci:900000:0\n"
                                   "ci:garbage\n"
                                   "ci:165536:65536";
        SubIdFile f;
        SubIdRange *r = NULL;
        size_t n = 99;

        ASSERT_OK(subid_file_parse(&f, text, strlen(text)));
        ASSERT_OK(subid_file_user_ranges(&f, "ci", 1000, &r, &n));
        ASSERT_EQ(n, 3);
        ASSERT_EQ(r[0].start, 300000);
        ASSERT_EQ(r[0].count, 65536);
        ASSERT_EQ(r[1].start, 700000);
        ASSERT_EQ(r[1].count, 100);
        ASSERT_EQ(r[2].start, 165536);
        free(r);

        ASSERT_OK(subid_file_user_ranges(&f, "nobody-here", 4242, &r, &n));
        ASSERT_EQ(n, 0);
        ASSERT_TRUE(r == NULL);
        subid_file_done(&f);
}
