/* SPDX-License-Identifier: MIT */
/* [Tenant] sections (issue 16): each rule of src/config-tenant.c, one test each. */
#define _GNU_SOURCE
#include <stdio.h>

#include "tests.h"
#include "config.h"
#include "config-test.h"
#include "util/error.h"
#include "util/macro.h"

/* A tenant text "[Tenant]\nName=<name>\nUser=<user>\n" plus more lines. */
#define TENANT(name, user, more) "[Tenant]\nName=" name "\nUser=" user "\n" more

/* Every field of the Tenant t. */
#define ASSERT_TENANT(t, name_, user_, agent_unit_, agent_config_, trust_)        \
        do {                                                                      \
                ASSERT_STREQ((t).name, name_);                                    \
                ASSERT_STREQ((t).user, user_);                                    \
                ASSERT_STREQ((t).agent_unit, agent_unit_);                        \
                ASSERT_STREQ((t).agent_config, agent_config_);                    \
                ASSERT_EQ((t).trust, trust_);                                     \
        } while (0)

TEST(tenant_two_sections_every_field_and_default) {
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *log = NULL;
        static const char text[] =
                "# pull requests and main on one VM\n"
                "[Tenant]\n"                                   /* 2 */
                "Name=main\n"
                "User=buildkite\n"
                "AgentUnit=buildkite-agent-main.service\n"
                "AgentConfig=/etc/buildkite-agent/main-agent.cfg\n"
                "Trust=trusted\n"
                "\n"
                "[Disk]\n"
                "MountPoint=/data\n"
                "\n"
                "[Tenant]\n"                                   /* 12 */
                "Name=pr\n"
                "User=buildkite-pr\n";

        ASSERT_OK(config_init(&c));
        ASSERT_EQ(parse(&c, text, strlen(text), &log), 0);
        ASSERT_STREQ(log, "");
        ASSERT_EQ(c.n_tenants, 2);

        ASSERT_TENANT(c.tenants[0], "main", "buildkite", "buildkite-agent-main.service",
                      "/etc/buildkite-agent/main-agent.cfg", TRUST_TRUSTED);
        ASSERT_STREQ(c.tenants[0].origin, "test.conf:2");

        /* Only Name= and User= given: every default. */
        ASSERT_TENANT(c.tenants[1], "pr", "buildkite-pr", "buildkite-agent@pr.service", "/etc/buildkite-agent/pr.cfg",
                      TRUST_UNTRUSTED);
        ASSERT_STREQ(c.tenants[1].origin, "test.conf:12");

        /* A section between them does not end the list; the host-wide keys are read as ever. */
        ASSERT_STREQ(c.mount_point, "/data");
        /* [User] and [Agent] keep their defaults; the engine does not use them with tenants. */
        ASSERT_STREQ(c.user_name, "buildkite");
        ASSERT_STREQ(c.agent_unit, "buildkite-agent.service");
        ASSERT_TRUE(c.single_origin == NULL);
}

TEST(tenant_none_means_no_tenants) {
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *log = NULL;
        static const char text[] = "[User]\nName=ci\n[Agent]\nUnit=ci-agent.service\n";

        ASSERT_OK(config_init(&c));
        ASSERT_EQ(parse(&c, text, strlen(text), &log), 0);
        ASSERT_EQ(c.n_tenants, 0);
        ASSERT_TRUE(c.tenants == NULL);
        ASSERT_STREQ(c.user_name, "ci");
        ASSERT_STREQ(c.agent_unit, "ci-agent.service");
}

TEST(tenant_key_twice_in_one_section_names_the_first_line) {
        ASSERT_REFUSED("[Tenant]\nName=a\nUser=x\n\nUser=y\n", "test.conf:5: [Tenant] User= is set again (first set on line 3)");
        ASSERT_REFUSED("[Tenant]\nTrust=trusted\nName=a\nUser=x\nTrust=untrusted\n",
                       "test.conf:5: [Tenant] Trust= is set again (first set on line 2)");
        /* The same key in another [Tenant] is another tenant's. */
        ASSERT_ACCEPTED(TENANT("a", "x", "Trust=trusted\n") TENANT("b", "y", "Trust=trusted\n"));
}

TEST(tenant_unknown_key) {
        ASSERT_REFUSED("[Tenant]\nName=a\nUser=x\nUnit=a.service\n", "test.conf:4: unknown key Unit= in [Tenant]");
        ASSERT_REFUSED("[Tenant]\nname=a\n", "test.conf:2: unknown key name= in [Tenant]");
        /* Section names are case-sensitive. */
        ASSERT_REFUSED("[tenant]\nName=a\n", "test.conf:1: unknown section [tenant]");
}

TEST(tenant_name_is_required) {
        ASSERT_REFUSED("[Disk]\nWipe=no\n[Tenant]\nUser=x\nTrust=trusted\n[Disk]\n",
                       "test.conf:3: [Tenant] has no Name=");
        /* At the end of the file too. */
        ASSERT_REFUSED(TENANT("a", "x", "") "[Tenant]\nUser=y\n", "test.conf:4: [Tenant] has no Name=");
        ASSERT_REFUSED("[Tenant]\n", "test.conf:1: [Tenant] has no Name=");
}

TEST(tenant_name_characters_and_length) {
        static const char *const refused[] = {
                "", "Main", "pr_1", "pr.1", "pr/1", "pr 1", "-pr", "pr@1", "pr:1", "\xc3\xa9t\xc3\xa9",
                "a23456789012345678901234567890123", /* 33 */
        };
        static const char *const accepted[] = {
                "a", "pr", "1st", "pr-2", "main-", "a2345678901234567890123456789012", /* 32 */
        };

        for (size_t i = 0; i < ELEMENTSOF(refused); i++) {
                ASSERT_FALSE(valid_tenant_name(refused[i]));
                ASSERT_KEY_REFUSED("Tenant", "Name", refused[i], refused[i], "must be 1 to 32 of a-z, 0-9 and '-'");
        }
        for (size_t i = 0; i < ELEMENTSOF(accepted); i++) {
                _cleanup_free_ char *text = NULL;

                ASSERT_TRUE(valid_tenant_name(accepted[i]));
                ASSERT_TRUE(asprintf(&text, "[Tenant]\nName=%s\nUser=x\n", accepted[i]) > 0);
                ASSERT_ACCEPTED(text);
        }
}

TEST(tenant_name_bound_keeps_the_derived_names_valid) {
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *log = NULL;
        static const char text[] = TENANT("a2345678901234567890123456789012", "x", "") TENANT("b", "y", "");

        ASSERT_OK(config_init(&c));
        ASSERT_EQ(parse(&c, text, strlen(text), &log), 0);
        ASSERT_EQ(c.n_tenants, 2);
        ASSERT_TRUE(valid_unit_name(c.tenants[0].agent_unit));
        ASSERT_TRUE(valid_absolute_path(c.tenants[0].agent_config));
        ASSERT_STREQ(c.tenants[0].agent_unit, "buildkite-agent@a2345678901234567890123456789012.service");
}

TEST(tenant_name_is_unique) {
        ASSERT_REFUSED(TENANT("pr", "x", "") "\n" TENANT("pr", "y", ""),
                       "test.conf:6: Name=pr: tenant pr ([Tenant] at test.conf:1) has it too");
}

TEST(tenant_user_is_required) {
        ASSERT_REFUSED("[Tenant]\nName=pr\nTrust=untrusted\n", "test.conf:1: [Tenant] pr has no User=");
        /* The next header ends a section as the end of the file does. */
        ASSERT_REFUSED("[Tenant]\nName=pr\n[Tenant]\nName=main\nUser=buildkite\n", "test.conf:1: [Tenant] pr has no User=");
}

TEST(tenant_user_is_a_valid_user_name_and_not_root) {
        ASSERT_REFUSED("[Tenant]\nName=pr\nUser=Build:kite\n", "test.conf:3: User=Build:kite: must be a valid user name");
        ASSERT_REFUSED("[Tenant]\nName=pr\nUser=\n", "test.conf:3: User=: must be a valid user name");
        ASSERT_REFUSED("[Tenant]\nName=pr\nUser=a23456789012345678901234567890123\n",
                       "test.conf:3: User=a23456789012345678901234567890123: must be a valid user name");
        ASSERT_REFUSED("[Tenant]\nName=pr\nUser=root\n", "test.conf:3: User=root: must not be root");
        ASSERT_ACCEPTED("[Tenant]\nName=pr\nUser=_ci-pr\n");
}

TEST(tenant_user_is_unique) {
        ASSERT_REFUSED(TENANT("main", "buildkite", "") TENANT("pr", "buildkite", ""),
                       "test.conf:6: User=buildkite: tenant main ([Tenant] at test.conf:1) has it too; each tenant's "
                       "jobs run as a user of its own");
}

TEST(tenant_agent_unit_default_validity_and_uniqueness) {
        ASSERT_REFUSED(TENANT("pr", "x", "AgentUnit=buildkite-agent@.service\n"),
                       "test.conf:4: AgentUnit=buildkite-agent@.service: must be a service unit name");
        ASSERT_REFUSED(TENANT("pr", "x", "AgentUnit=buildkite-agent\n"), "test.conf:4: AgentUnit=buildkite-agent: must be a service unit name");
        ASSERT_REFUSED(TENANT("pr", "x", "AgentUnit=\n"), "test.conf:4: AgentUnit=: must be a service unit name");
        /* Two given alike. */
        ASSERT_REFUSED(TENANT("a", "x", "AgentUnit=agent.service\n") TENANT("b", "y", "AgentUnit=agent.service\n"),
                       "test.conf:8: AgentUnit=agent.service: tenant a ([Tenant] at test.conf:1) has it too; each "
                       "tenant has an agent instance of its own");
        /* One given as another's default: named at the header of the one that defaulted. */
        ASSERT_REFUSED(TENANT("a", "x", "AgentUnit=buildkite-agent@b.service\n") "\n" TENANT("b", "y", ""),
                       "test.conf:6: [Tenant] b: AgentUnit=buildkite-agent@b.service (its default): tenant a "
                       "([Tenant] at test.conf:1) has it too");
        ASSERT_REFUSED(TENANT("a", "x", "") TENANT("b", "y", "AgentUnit=buildkite-agent@a.service\n"),
                       "test.conf:7: AgentUnit=buildkite-agent@a.service: tenant a ([Tenant] at test.conf:1) has it too");
        /* The agent package's own unit is a unit like another. */
        ASSERT_ACCEPTED(TENANT("a", "x", "AgentUnit=buildkite-agent.service\n") TENANT("b", "y", ""));
}

TEST(tenant_agent_config_default_validity_and_uniqueness) {
        /* Each value, and as the log shows it (control characters and bytes that are not UTF-8 escaped). */
        static const char *const refused[][2] = {
                { "/", "/" }, { "etc/pr.cfg", "etc/pr.cfg" }, { "/etc//pr.cfg", "/etc//pr.cfg" },
                { "/etc/../pr.cfg", "/etc/../pr.cfg" }, { "/etc/./pr.cfg", "/etc/./pr.cfg" }, { "/etc/pr/", "/etc/pr/" },
                { "/etc/p\tr.cfg", "/etc/p\\x09r.cfg" }, { "/etc/\xff.cfg", "/etc/\\xff.cfg" }, { "", "" },
                /* Valid paths, but the drop-in could not name them unquoted: whitespace, a specifier, a variable, quotes. */
                { "/etc/build kite/pr.cfg", "/etc/build kite/pr.cfg" }, { "/etc/%i.cfg", "/etc/%i.cfg" },
                { "/etc/$HOME.cfg", "/etc/$HOME.cfg" }, { "/etc/\"pr\".cfg", "/etc/\"pr\".cfg" },
                { "/etc/caf\xc3\xa9.cfg", "/etc/caf\xc3\xa9.cfg" },
        };

        for (size_t i = 0; i < ELEMENTSOF(refused); i++)
                ASSERT_KEY_REFUSED("Tenant", "AgentConfig", refused[i][0], refused[i][1],
                                   "must be the absolute, normalised path of a file");
        /* apply gives the file to the tenant's group: only a file of the agent's own directory. */
        static const char *const elsewhere[] = { "/etc/shadow", "/etc/agent.cfg", "/etc/buildkite-agent/hooks/x",
                                                 "/etc/buildkite-agent/buildkite-agent.cfg", "/etc/buildkite-agentx/a.cfg" };
        for (size_t i = 0; i < ELEMENTSOF(elsewhere); i++)
                ASSERT_KEY_REFUSED("Tenant", "AgentConfig", elsewhere[i], elsewhere[i],
                                   "must be a file directly in /etc/buildkite-agent/ other than the package's own");
        ASSERT_REFUSED(TENANT("a", "x", "AgentConfig=/etc/buildkite-agent/x.cfg\n") TENANT("b", "y", "AgentConfig=/etc/buildkite-agent/x.cfg\n"),
                       "test.conf:8: AgentConfig=/etc/buildkite-agent/x.cfg: tenant a ([Tenant] at test.conf:1) has it too; two "
                       "tenants with one agent configuration would share its registration token");
        ASSERT_REFUSED(TENANT("a", "x", "AgentConfig=/etc/buildkite-agent/b.cfg\n") TENANT("b", "y", ""),
                       "test.conf:5: [Tenant] b: AgentConfig=/etc/buildkite-agent/b.cfg (its default): tenant a");
        ASSERT_ACCEPTED(TENANT("a", "x", "AgentConfig=/etc/buildkite-agent/a.cfg\n") TENANT("b", "y", ""));
}

TEST(tenant_trust) {
        static const char *const refused[] = { "", "yes", "Trusted", "UNTRUSTED", "trusted ", "1" };

        ASSERT_EQ(trust_from_string("trusted"), TRUST_TRUSTED);
        ASSERT_EQ(trust_from_string("untrusted"), TRUST_UNTRUSTED);
        ASSERT_STREQ(trust_to_string(TRUST_TRUSTED), "trusted");
        ASSERT_STREQ(trust_to_string(TRUST_UNTRUSTED), "untrusted");
        ASSERT_TRUE(trust_to_string(_TRUST_MAX) == NULL);

        for (size_t i = 0; i < ELEMENTSOF(refused); i++) {
                ASSERT_EQ(trust_from_string(refused[i]), _TRUST_MAX);
                /* (The parser strips the trailing space: "trusted " is refused by trust_from_string() alone.) */
                if (!streq(refused[i], "trusted "))
                        ASSERT_KEY_REFUSED("Tenant", "Trust", refused[i], refused[i], "must be trusted or untrusted");
        }
}

TEST(tenant_with_user_or_agent_names_both_places) {
        /* [User] first, [Tenant] after. */
        ASSERT_REFUSED("[User]\nName=ci\n\n[Tenant]\nName=a\nUser=x\n",
                       "test.conf:4: [Tenant] cannot be combined with [User] Name= at test.conf:2: with [Tenant] "
                       "sections each tenant names its own User= and AgentUnit=");
        ASSERT_REFUSED("[Agent]\nUnit=a.service\n[Tenant]\nName=a\nUser=x\n",
                       "test.conf:3: [Tenant] cannot be combined with [Agent] Unit= at test.conf:2");
        /* [Tenant] first. */
        ASSERT_REFUSED(TENANT("a", "x", "") "[User]\nName=ci\n",
                       "test.conf:5: [User] Name= cannot be combined with [Tenant] at test.conf:1");
        ASSERT_REFUSED(TENANT("a", "x", "") TENANT("b", "y", "") "[Agent]\nUnit=a.service\n",
                       "test.conf:8: [Agent] Unit= cannot be combined with [Tenant] at test.conf:1");
        /* An empty [User] or [Agent] (as the shipped example has, every key commented out) sets nothing. */
        ASSERT_ACCEPTED("[User]\n#Name=buildkite\n[Agent]\n#Unit=buildkite-agent.service\n" TENANT("a", "x", "") "[User]\n");
        /* [Disk] and [Daemon] are about the host: fine with tenants. */
        ASSERT_ACCEPTED("[Disk]\nMountPoint=/data\n[Daemon]\nReadyTimeoutSec=5\n" TENANT("a", "x", ""));
}

TEST(tenant_count_is_bounded) {
        _cleanup_free_ char *text = NULL, *want = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);

        ASSERT_TRUE(f);
        for (unsigned i = 0; i < TENANTS_MAX; i++)
                fprintf(f, "[Tenant]\nName=t%u\nUser=u%u\n", i, i);
        ASSERT_OK(fflush(f));
        ASSERT_ACCEPTED(text);

        fprintf(f, "[Tenant]\nName=one-more\nUser=one-more\n");
        ASSERT_OK(fclose(f));
        ASSERT_TRUE(asprintf(&want, "test.conf:%u: more than %u [Tenant] sections", 3 * TENANTS_MAX + 1, TENANTS_MAX) > 0);
        ASSERT_REFUSED(text, want);
}

/* Files: the main file, then the drop-ins in lexical order. */

TEST(tenant_dropins_add_tenants_in_order) {
        const char *root = test_tmpdir();
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *log = NULL, *origin = NULL;

        test_write(root, "etc/rootless-ci.conf", "[Disk]\nMountPoint=/data\n" TENANT("main", "buildkite", "Trust=trusted\n"));
        test_write(root, "etc/rootless-ci.conf.d/20-pr.conf", TENANT("pr", "buildkite-pr", ""));
        test_write(root, "etc/rootless-ci.conf.d/10-docs.conf", TENANT("docs", "buildkite-docs", "Trust=trusted\n"));

        ASSERT_OK(config_init(&c));
        ASSERT_EQ(load(&c, root, NULL, &log), 0);
        ASSERT_STREQ(log, "");
        ASSERT_EQ(c.n_tenants, 3);
        ASSERT_STREQ(c.tenants[0].name, "main");
        ASSERT_STREQ(c.tenants[1].name, "docs");
        ASSERT_STREQ(c.tenants[2].name, "pr");
        ASSERT_EQ(c.tenants[1].trust, TRUST_TRUSTED);
        ASSERT_EQ(c.tenants[2].trust, TRUST_UNTRUSTED);
        ASSERT_TRUE(asprintf(&origin, "%s/etc/rootless-ci.conf.d/20-pr.conf:1", root) > 0);
        ASSERT_STREQ(c.tenants[2].origin, origin);
}

TEST(tenant_unique_across_files_names_both) {
        const char *root = test_tmpdir();

        /* A drop-in cannot redefine or amend a tenant of another file: a second tenant of the same Name= is refused. */
        test_write(root, "etc/rootless-ci.conf", "# main\n" TENANT("pr", "buildkite-pr", ""));
        test_write(root, "etc/rootless-ci.conf.d/50-trust.conf", "\n" TENANT("pr", "buildkite-pr", "Trust=trusted\n"));
        ASSERT_LOAD_REFUSED(root, "%s/etc/rootless-ci.conf.d/50-trust.conf:3: Name=pr: tenant pr ([Tenant] at "
                            "%s/etc/rootless-ci.conf:2) has it too", root, root);
}

TEST(tenant_section_ends_with_its_file) {
        const char *root = test_tmpdir();

        /* The main file's tenant is complete at its end, before any drop-in is read. */
        test_write(root, "etc/rootless-ci.conf", "[Tenant]\nName=pr\n");
        test_write(root, "etc/rootless-ci.conf.d/10-user.conf", "User=buildkite-pr\n");
        ASSERT_LOAD_REFUSED(root, "%s/etc/rootless-ci.conf:1: [Tenant] pr has no User=", root);
}

TEST(tenant_with_user_in_another_file_names_both) {
        const char *root = test_tmpdir();

        test_write(root, "etc/rootless-ci.conf", "[Disk]\nWipe=no\n[User]\nName=buildkite\n");
        test_write(root, "etc/rootless-ci.conf.d/10-tenants.conf", "# two tenants\n" TENANT("main", "buildkite", ""));
        ASSERT_LOAD_REFUSED(root, "%s/etc/rootless-ci.conf.d/10-tenants.conf:2: [Tenant] cannot be combined with "
                            "[User] Name= at %s/etc/rootless-ci.conf:4", root, root);

        /* And the other way round. */
        test_write(root, "etc/rootless-ci.conf", TENANT("main", "buildkite", ""));
        test_write(root, "etc/rootless-ci.conf.d/10-tenants.conf", "[Agent]\nUnit=my-agent.service\n");
        ASSERT_LOAD_REFUSED(root, "%s/etc/rootless-ci.conf.d/10-tenants.conf:2: [Agent] Unit= cannot be combined "
                            "with [Tenant] at %s/etc/rootless-ci.conf:1", root, root);
}

/* The shipped example: valid as it is (no tenant), and its commented two-tenant example is valid uncommented. */
TEST(tenant_shipped_example_is_valid_uncommented) {
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *text = test_read(UNITS_SOURCE_DIR "/../conf", "rootless-ci.conf"), *log = NULL;
        char *example, *w;

        ASSERT_TRUE(text);
        ASSERT_OK(config_init(&c));
        ASSERT_EQ(parse(&c, text, strlen(text), &log), 0);
        ASSERT_EQ(c.n_tenants, 0);
        config_done(&c);
        free(log);

        /* From the first "#[Tenant]" on, "#[Section]" and "#Key=" lines lose their '#'. */
        example = strstr(text, "\n#[Tenant]\n");
        ASSERT_TRUE(example);
        w = example;
        for (const char *p = example; *p; p++) {
                if (p[0] == '#' && p[-1] == '\n' && (p[1] == '[' || (p[1] >= 'A' && p[1] <= 'Z')))
                        continue;
                *w++ = *p;
        }
        *w = 0;
        ASSERT_OK(config_init(&c));
        ASSERT_EQ(parse(&c, text, strlen(text), &log), 0);
        ASSERT_STREQ(log, "");
        ASSERT_EQ(c.n_tenants, 2);
        ASSERT_TENANT(c.tenants[0], "main", "buildkite", "buildkite-agent@main.service", "/etc/buildkite-agent/main.cfg",
                      TRUST_TRUSTED);
        ASSERT_TENANT(c.tenants[1], "pr", "buildkite-pr", "buildkite-agent@pr.service", "/etc/buildkite-agent/pr.cfg",
                      TRUST_UNTRUSTED);
}
