/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests.h"
#include "util/fs.h"
#include "util/macro.h"
#include "steps/user/sudoers.h"

static const char *const ci_groups[] = { "buildkite", "ci" };
static const gid_t ci_gids[] = { 1001, 1002 };

static const SudoersIdentity ci_user = {
        .user = "buildkite",
        .uid = 1001,
        .groups = ci_groups,
        .gids = ci_gids,
        .n_groups = 2,
};

/* The number of rules in text that apply to ci_user, with the line and entry of the first. */
static size_t count_matches(const char *text, unsigned *first_line, char *via, size_t via_size) {
        Sudoers s = {};
        SudoersMatch *m = NULL;
        size_t n = 0;

        if (sudoers_parse_text(&s, "/etc/sudoers", text) < 0 || sudoers_match(&s, &ci_user, &m, &n) < 0)
                abort();
        if (n > 0) {
                if (first_line)
                        *first_line = m[0].line;
                if (via)
                        snprintf(via, via_size, "%s", m[0].via);
        }
        sudoers_matches_free(m, n);
        sudoers_done(&s);
        return n;
}

TEST(sudoers_debian_default_does_not_apply_outside_sudo_group) {
        const char *text = "Defaults\tenv_reset\n"
                           "Defaults\tmail_badpass\n"
                           "Defaults:buildkite !requiretty\n"
                           "root\tALL=(ALL:ALL) ALL\n"
                           "%sudo\tALL=(ALL:ALL) ALL\n"
                           "@includedir /etc/sudoers.d\n";
        ASSERT_EQ(count_matches(text, NULL, NULL, 0), 0);
}

TEST(sudoers_rule_by_name_found_with_its_line) {
        unsigned line = 0;
        char via[64];

        ASSERT_EQ(count_matches("# hello\nroot ALL=(ALL) ALL\n\nbuildkite ALL=(ALL) NOPASSWD: /usr/bin/apt\n", &line,
                                via, sizeof(via)), 1);
        ASSERT_EQ(line, 4);
        ASSERT_STREQ(via, "buildkite");
}

TEST(sudoers_rule_by_group_uid_and_gid) {
        char via[64];

        ASSERT_EQ(count_matches("%ci ALL=(ALL) ALL\n", NULL, via, sizeof(via)), 1);
        ASSERT_STREQ(via, "%ci");
        ASSERT_EQ(count_matches("#1001 ALL=(ALL) ALL\n", NULL, NULL, 0), 1);
        ASSERT_EQ(count_matches("%#1002 ALL=(ALL) ALL\n", NULL, NULL, 0), 1);
        ASSERT_EQ(count_matches("#1000 ALL=(ALL) ALL\n%#999 ALL=(ALL) ALL\n%docker ALL=ALL\n", NULL, NULL, 0), 0);
}

TEST(sudoers_rule_for_all_applies) {
        char via[64];

        ASSERT_EQ(count_matches("ALL ALL=(ALL) NOPASSWD: /bin/true\n", NULL, via, sizeof(via)), 1);
        ASSERT_STREQ(via, "ALL");
}

TEST(sudoers_lists_with_spaces_and_negation_follow_last_match) {
        ASSERT_EQ(count_matches("alice, bob ,buildkite ALL=ALL\n", NULL, NULL, 0), 1);
        /* "ALL except buildkite" does not apply to buildkite... */
        ASSERT_EQ(count_matches("ALL, !buildkite ALL=ALL\n", NULL, NULL, 0), 0);
        /* ...but "not buildkite, then ALL" does: the last match decides. */
        ASSERT_EQ(count_matches("!buildkite, ALL ALL=ALL\n", NULL, NULL, 0), 1);
        ASSERT_EQ(count_matches("%ci, !%ci ALL=ALL\n", NULL, NULL, 0), 0);
        ASSERT_EQ(count_matches("! ! buildkite ALL=ALL\n", NULL, NULL, 0), 1);
}

/* A rule naming the CI user in a long list: sudo reads every entry, and so must we (no false negative). */
TEST(sudoers_long_lists_are_read_to_the_end) {
        _cleanup_free_ char *text = NULL, *alias = NULL;
        char via[64];
        FILE *f;
        size_t size = 0;

        f = open_memstream(&text, &size);
        ASSERT_TRUE(f);
        for (unsigned i = 0; i < 1000; i++)
                fprintf(f, "user%u, ", i);
        fputs("buildkite ALL=(ALL) NOPASSWD: ALL\n", f);
        fclose(f);
        ASSERT_EQ(count_matches(text, NULL, via, sizeof(via)), 1);
        ASSERT_STREQ(via, "buildkite");
        free(text);
        text = NULL;

        /* The last entry decides: one entry past the thousandth takes the rule away again. */
        f = open_memstream(&text, &size);
        ASSERT_TRUE(f);
        fputs("buildkite", f);
        for (unsigned i = 0; i < 1000; i++)
                fprintf(f, ", user%u", i);
        fputs(", !buildkite ALL=ALL\n", f);
        fclose(f);
        ASSERT_EQ(count_matches(text, NULL, NULL, 0), 0);
        free(text);
        text = NULL;

        /* An entry longer than any buffer does not end the list, nor does an alias name. */
        f = open_memstream(&text, &size);
        ASSERT_TRUE(f);
        for (unsigned i = 0; i < 3000; i++)
                fputc('x', f);
        fputs(", buildkite ALL=ALL\n", f);
        fclose(f);
        ASSERT_EQ(count_matches(text, NULL, NULL, 0), 1);
        free(text);
        text = NULL;

        alias = malloc(501);
        ASSERT_TRUE(alias);
        memset(alias, 'A', 500);
        alias[500] = 0;
        ASSERT_TRUE(asprintf(&text, "User_Alias %s = buildkite\n%s ALL=ALL\n", alias, alias) > 0);
        ASSERT_EQ(count_matches(text, NULL, NULL, 0), 1);
}

TEST(sudoers_user_alias_is_resolved_recursively) {
        char via[64];
        const char *text = "User_Alias INNER = %ci : OTHER = alice\n"
                           "User_Alias OUTER = bob, INNER\n"
                           "OTHER ALL=ALL\n"
                           "OUTER ALL=(ALL) ALL\n";
        unsigned line = 0;

        ASSERT_EQ(count_matches(text, &line, via, sizeof(via)), 1);
        ASSERT_EQ(line, 4);
        ASSERT_STREQ(via, "OUTER");
        /* A self-referencing alias does not loop forever. */
        ASSERT_EQ(count_matches("User_Alias LOOP = LOOP\nLOOP ALL=ALL\n", NULL, NULL, 0), 0);
}

TEST(sudoers_comments_continuations_and_non_rules) {
        unsigned line = 0;
        const char *text = "# buildkite ALL=ALL\n"
                           "Cmnd_Alias BUILDKITE = /bin/ls\n"
                           "Host_Alias HOSTS = buildkite\n"
                           "alice ALL=ALL # buildkite ALL=ALL\n"
                           "alice, \\\n"
                           "  buildkite ALL = ALL\n"
                           "buildkite\n";
        ASSERT_EQ(count_matches(text, &line, NULL, 0), 1);
        ASSERT_EQ(line, 5);
}

TEST(sudoers_load_follows_includes_and_skips_names_sudo_skips) {
        const char *d = test_tmpdir();
        Sudoers s = {};
        SudoersMatch *m = NULL;
        size_t n = 0;
        int root_fd;

        test_write(d, "etc/sudoers", "root ALL=ALL\n@includedir /etc/sudoers.d\n#include /etc/sudoers.extra\n");
        test_write(d, "etc/sudoers.extra", "buildkite ALL=ALL\n");
        test_write(d, "etc/sudoers.d/10-ci", "%ci ALL=ALL\n");
        test_write(d, "etc/sudoers.d/README.md", "buildkite ALL=ALL\n");
        test_write(d, "etc/sudoers.d/20-old~", "buildkite ALL=ALL\n");
        test_write(d, "etc/sudoers.d/30-rel", "@include ../sudoers.rel\n");
        test_write(d, "etc/sudoers.rel", "#1001 ALL=ALL\n");

        root_fd = open_root(d);
        ASSERT_OK(root_fd);
        ASSERT_OK(sudoers_load(&s, root_fd));
        ASSERT_OK(sudoers_match(&s, &ci_user, &m, &n));
        ASSERT_EQ(n, 3);
        for (size_t i = 0; i < n; i++) {
                ASSERT_TRUE(strstr(m[i].file, ".md") == NULL);
                ASSERT_TRUE(strstr(m[i].file, "~") == NULL);
        }
        ASSERT_STREQ(m[0].file, "/etc/sudoers.d/10-ci");
        ASSERT_STREQ(m[1].file, "/etc/sudoers.extra");
        /* Relative to the including file's directory. */
        ASSERT_STREQ(m[2].file, "/etc/sudoers.d/../sudoers.rel");
        sudoers_matches_free(m, n);
        sudoers_done(&s);
        close(root_fd);
}

TEST(sudoers_d_is_read_even_when_not_included) {
        const char *d = test_tmpdir();
        Sudoers s = {};
        SudoersMatch *m = NULL;
        size_t n = 0;
        int root_fd;

        test_write(d, "etc/sudoers.d/ci", "buildkite ALL=ALL\n");
        root_fd = open_root(d);
        ASSERT_OK(root_fd);
        ASSERT_OK(sudoers_load(&s, root_fd));
        ASSERT_OK(sudoers_match(&s, &ci_user, &m, &n));
        ASSERT_EQ(n, 1);
        sudoers_matches_free(m, n);
        sudoers_done(&s);
        close(root_fd);
}
