/* SPDX-License-Identifier: MIT */
#include <grp.h>
#include <string.h>

#include "tests.h"
#include "steps/user/groupfile.h"
#include "util/macro.h"
#include "util/userdb.h"

static char *remove_user(const char *text, GroupFileKind kind, const char *const *groups, size_t n, const char *user,
                         unsigned *changed) {
        char *out = NULL;
        size_t size = 0;

        if (group_file_remove_user(text, strlen(text), kind, groups, n, user, &out, &size, changed) < 0)
                abort();
        if (strlen(out) != size)
                abort();
        return out;
}

TEST(group_removal_touches_only_the_user_in_the_named_groups) {
        static const char *const groups[] = { "docker", "sudo" };
        const char *text = "root:x:0:\n"
                           "sudo:x:27:alice,buildkite,bob\n"
                           "docker:x:999:buildkite\n"
                           "video:x:44:buildkite,alice\n"
                           "buildkite:x:1001:\n";
        unsigned changed;
        char *out = remove_user(text, GROUP_FILE_GROUP, groups, 2, "buildkite", &changed);

        ASSERT_STREQ(out, "root:x:0:\n"
                          "sudo:x:27:alice,bob\n"
                          "docker:x:999:\n"
                          "video:x:44:buildkite,alice\n"
                          "buildkite:x:1001:\n");
        ASSERT_EQ(changed, 2);
        free(out);
}

TEST(group_removal_matches_whole_names_only) {
        static const char *const groups[] = { "docker" };
        const char *text = "docker:x:999:buildkite2,xbuildkite,buildkite-old\n";
        unsigned changed;
        char *out = remove_user(text, GROUP_FILE_GROUP, groups, 1, "buildkite", &changed);

        ASSERT_STREQ(out, text);
        ASSERT_EQ(changed, 0);
        free(out);
}

TEST(group_removal_keeps_odd_lines_and_missing_final_newline) {
        static const char *const groups[] = { "docker" };
        const char *text = "# comment\n"
                           "broken line without colons\n"
                           "docker:x:999:alice,buildkite,buildkite\n"
                           "dockerish:x:5:buildkite\n"
                           "\n"
                           "last:x:1:buildkite";
        unsigned changed;
        char *out = remove_user(text, GROUP_FILE_GROUP, groups, 1, "buildkite", &changed);

        ASSERT_STREQ(out, "# comment\n"
                          "broken line without colons\n"
                          "docker:x:999:alice\n"
                          "dockerish:x:5:buildkite\n"
                          "\n"
                          "last:x:1:buildkite");
        ASSERT_EQ(changed, 1);
        free(out);
}

TEST(gshadow_removal_covers_members_and_administrators) {
        static const char *const groups[] = { "docker", "sudo" };
        const char *text = "docker:!:buildkite:alice,buildkite\n"
                           "sudo:*::buildkite\n"
                           "other:!:buildkite:buildkite\n";
        unsigned changed;
        char *out = remove_user(text, GROUP_FILE_GSHADOW, groups, 2, "buildkite", &changed);

        ASSERT_STREQ(out, "docker:!::alice\n"
                          "sudo:*::\n"
                          "other:!:buildkite:buildkite\n");
        ASSERT_EQ(changed, 2);
        free(out);
}

TEST(group_file_lists_user_sees_gshadow_administrators) {
        const char *text = "docker:!:buildkite:\nsudo:!::alice\n";

        ASSERT_TRUE(group_file_lists_user(text, GROUP_FILE_GSHADOW, "docker", "buildkite"));
        ASSERT_FALSE(group_file_lists_user(text, GROUP_FILE_GSHADOW, "sudo", "buildkite"));
        /* In /etc/group the third field is the GID, not a list. */
        ASSERT_FALSE(group_file_lists_user("docker:x:buildkite:\n", GROUP_FILE_GROUP, "docker", "buildkite"));
}

TEST(userdb_parses_passwd_and_group_skipping_bad_lines) {
        UserDb db = {};
        const PasswdEntry *pw;
        const GroupEntry *g;

        ASSERT_OK(userdb_parse_passwd(&db, "root:x:0:0:root:/root:/bin/bash\n"
                                           "+nisuser::::::\n"
                                           "bad:x:notanumber:1::/:/bin/sh\n"
                                           "buildkite:x:1001:1002:CI:/home/buildkite:/bin/bash\n"
                                           "buildkite:x:1005:1005::/elsewhere:/bin/sh\n"));
        ASSERT_OK(userdb_parse_group(&db, "docker:x:999:alice,buildkite\nempty:x:5:\n"));
        ASSERT_EQ(db.n_users, 3);
        pw = userdb_find_user(&db, "buildkite");
        ASSERT_TRUE(pw != NULL);
        ASSERT_EQ(pw->uid, 1001);   /* the first one, like getpwnam() */
        ASSERT_EQ(pw->gid, 1002);
        ASSERT_STREQ(pw->home, "/home/buildkite");
        g = userdb_find_group(&db, "docker");
        ASSERT_TRUE(g != NULL && group_has_member(g, "buildkite") && group_has_member(g, "alice"));
        g = userdb_find_group(&db, "empty");
        ASSERT_TRUE(g != NULL && g->members[0] == NULL);
        ASSERT_TRUE(userdb_find_uid(&db, 1001, pw) == NULL);
        userdb_done(&db);
}

/*
 * The files' side of the files-vs-NSS rule: the groups the files give a
 * user, as initgroups() over "files" alone would: primary first, then each
 * line listing it (every line of a name, and another name of the same GID),
 * each GID once.
 */
TEST(userdb_user_gids_are_what_the_files_give) {
        _cleanup_free_ gid_t *gids = NULL;
        UserDb db = {};
        size_t n = 0;

        ASSERT_OK(userdb_parse_group(&db, "buildkite:x:1600:\n"
                                          "video:x:44:alice,buildkite\n"
                                          "kvm:x:104:\n"
                                          "kvm:x:104:buildkite\n"
                                          "disk:x:6:buildkite\n"
                                          "disk2:x:6:buildkite\n"
                                          "ci:x:1700:buildkitex\n"
                                          "self:x:1600:buildkite\n"));
        ASSERT_OK(userdb_user_gids(&db, "buildkite", 1600, &gids, &n));
        ASSERT_EQ(n, 4);
        ASSERT_EQ(gids[0], 1600);
        ASSERT_EQ(gids[1], 44);
        ASSERT_EQ(gids[2], 104);
        ASSERT_EQ(gids[3], 6);
        ASSERT_TRUE(gid_list_contains(gids, n, 6));
        ASSERT_FALSE(gid_list_contains(gids, n, 1700));
        userdb_done(&db);
}

/* NSS's side, on this host's own account database: the same list getgrouplist() gives, however long. */
TEST(nss_user_gids_matches_getgrouplist) {
        _cleanup_free_ gid_t *gids = NULL;
        gid_t direct[1024];
        int n_direct = 1024;
        size_t n = 0;

        ASSERT_OK(nss_user_gids("root", 0, &gids, &n));
        ASSERT_TRUE(getgrouplist("root", 0, direct, &n_direct) >= 0);
        ASSERT_EQ(n, (size_t) n_direct);
        ASSERT_EQ(gids[0], 0);
        for (size_t i = 0; i < n; i++)
                ASSERT_EQ(gids[i], direct[i]);
}
