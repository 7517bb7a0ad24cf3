/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <stdarg.h>

#include "tests.h"
#include "cli.h"
#include "config.h"
#include "util/error.h"
#include "util/macro.h"

/* Parse a NULL-terminated argument list (after "rootless-ci"); what was logged goes to *ret_log. */
static int parse_args(Cli *cli, char **ret_log, ...) {
        char *argv[32] = { (char *) "rootless-ci" };
        int argc = 1, r;
        va_list ap;

        va_start(ap, ret_log);
        for (const char *a; (a = va_arg(ap, const char *)) && argc < 31; )
                argv[argc++] = (char *) a;
        va_end(ap);
        argv[argc] = NULL;

        *cli = (Cli) {};
        test_capture_stderr_begin();
        r = cli_parse(argc, argv, cli);
        *ret_log = test_capture_stderr_end();
        return r;
}

#define ASSERT_PARSES(cli, ...)                                                   \
        do {                                                                      \
                char *_plog = NULL;                                               \
                int _pr = parse_args((cli), &_plog, __VA_ARGS__, NULL);           \
                if (_pr < 0) {                                                    \
                        test_fail(__FILE__, __LINE__, "%s: refused (%d): %s", #__VA_ARGS__, _pr, _plog); \
                        free(_plog);                                              \
                        return;                                                   \
                }                                                                 \
                free(_plog);                                                      \
        } while (0)

#define ASSERT_USAGE_ERROR(want, ...)                                             \
        do {                                                                      \
                Cli _pcli;                                                        \
                char *_plog = NULL;                                               \
                int _pr = parse_args(&_pcli, &_plog, __VA_ARGS__, NULL);          \
                if (_pr != -ERCI_USAGE || !strstr(_plog, (want))) {               \
                        test_fail(__FILE__, __LINE__, "%s: want -ERCI_USAGE and \"%s\", got %d and \"%s\"", \
                                  #__VA_ARGS__, (want), _pr, _plog);              \
                        free(_plog);                                              \
                        return;                                                   \
                }                                                                 \
                free(_plog);                                                      \
        } while (0)

static const CliSetting *find_setting(const Cli *cli, const char *option) {
        for (unsigned i = 0; i < cli->n_settings; i++)
                if (streq(cli->settings[i].option, option))
                        return &cli->settings[i];
        return NULL;
}

TEST(cli_verbs) {
        Cli cli;

        ASSERT_PARSES(&cli, "apply");
        ASSERT_EQ(cli.verb, CLI_VERB_APPLY);
        ASSERT_EQ((int) cli.verb, (int) VERB_APPLY);
        ASSERT_PARSES(&cli, "plan");
        ASSERT_EQ(cli.verb, CLI_VERB_PLAN);
        ASSERT_EQ((int) cli.verb, (int) VERB_PLAN);
        ASSERT_PARSES(&cli, "check");
        ASSERT_EQ(cli.verb, CLI_VERB_CHECK);
        ASSERT_EQ((int) cli.verb, (int) VERB_CHECK);
        ASSERT_PARSES(&cli, "wait");
        ASSERT_EQ(cli.verb, CLI_VERB_WAIT);
        ASSERT_PARSES(&cli, "wait", "--user=ci", "--ready-timeout=5");
        ASSERT_EQ(cli.verb, CLI_VERB_WAIT);
        ASSERT_EQ(cli.n_settings, 2);
        ASSERT_PARSES(&cli, "version");
        ASSERT_EQ(cli.verb, CLI_VERB_VERSION);
        ASSERT_PARSES(&cli, "--version");
        ASSERT_EQ(cli.verb, CLI_VERB_VERSION);
        ASSERT_PARSES(&cli, "help");
        ASSERT_EQ(cli.verb, CLI_VERB_HELP);
        ASSERT_PARSES(&cli, "--help");
        ASSERT_EQ(cli.verb, CLI_VERB_HELP);
        ASSERT_PARSES(&cli, "-h");
        ASSERT_EQ(cli.verb, CLI_VERB_HELP);
        /* --help wins over anything else, even a mistake that follows it. */
        ASSERT_PARSES(&cli, "plan", "--help", "--bogus");
        ASSERT_EQ(cli.verb, CLI_VERB_HELP);
}

TEST(cli_defaults) {
        Cli cli;

        ASSERT_PARSES(&cli, "plan");
        ASSERT_TRUE(cli.config_path == NULL);
        ASSERT_TRUE(cli.root == NULL);
        ASSERT_FALSE(cli.json);
        ASSERT_EQ(cli.verbose, 0);
        ASSERT_EQ(cli_lock_timeout_sec(&cli, 120), 600);
        ASSERT_EQ(cli_lock_timeout_sec(&cli, 900), 2160);
        ASSERT_EQ(cli.n_settings, 0);
}

TEST(cli_options_before_and_after_the_verb) {
        Cli cli;

        ASSERT_PARSES(&cli, "--root=/img", "-v", "plan", "--json", "--config", "/x.conf", "-v");
        ASSERT_EQ(cli.verb, CLI_VERB_PLAN);
        ASSERT_STREQ(cli.root, "/img");
        ASSERT_STREQ(cli.config_path, "/x.conf");
        ASSERT_TRUE(cli.json);
        ASSERT_EQ(cli.verbose, 2);

        ASSERT_PARSES(&cli, "check", "--root", "/img", "--disk=/dev/vdb");
        ASSERT_EQ(cli.verb, CLI_VERB_CHECK);
        ASSERT_STREQ(cli.root, "/img");
        ASSERT_EQ(cli.n_settings, 1);

        ASSERT_PARSES(&cli, "--wipe", "--disk", "/dev/vdb", "apply");
        ASSERT_EQ(cli.verb, CLI_VERB_APPLY);
        ASSERT_EQ(cli.n_settings, 2);
}

TEST(cli_config_options_become_settings) {
        static const struct {
                const char *arg, *option, *section, *key, *value;
        } cases[] = {
                { "--disk=/dev/vdb", "--disk", "Disk", "Device", "/dev/vdb" },
                { "--filesystem=xfs", "--filesystem", "Disk", "FileSystem", "xfs" },
                { "--mount-point=/data", "--mount-point", "Disk", "MountPoint", "/data" },
                { "--wipe", "--wipe", "Disk", "Wipe", "yes" },
                { "--user=ci", "--user", "User", "Name", "ci" },
                { "--agent-unit=agent.service", "--agent-unit", "Agent", "Unit", "agent.service" },
                { "--ready-timeout=30", "--ready-timeout", "Daemon", "ReadyTimeoutSec", "30" },
        };
        Cli cli;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const CliSetting *s;

                ASSERT_PARSES(&cli, "apply", cases[i].arg);
                ASSERT_EQ(cli.n_settings, 1);
                s = find_setting(&cli, cases[i].option);
                ASSERT_TRUE(s != NULL);
                ASSERT_STREQ(s->section, cases[i].section);
                ASSERT_STREQ(s->key, cases[i].key);
                ASSERT_STREQ(s->value, cases[i].value);
        }

        /* All at once: each is kept, in order. */
        ASSERT_PARSES(&cli, "apply", "--disk=/dev/vdb", "--filesystem=xfs", "--mount-point=/data", "--wipe",
                      "--user=ci", "--agent-unit=agent.service", "--ready-timeout=30");
        ASSERT_EQ(cli.n_settings, ELEMENTSOF(cases));
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                ASSERT_STREQ(cli.settings[i].option, cases[i].option);
}

TEST(cli_command_line_wins_over_the_files) {
        const char *root = test_tmpdir();
        _cleanup_(config_done) Config c = {};
        Cli cli;

        test_write(root, "etc/rootless-ci.conf",
                   "[Disk]\nDevice=/dev/vda9\nMountPoint=/data\nFileSystem=xfs\n[User]\nName=fromfile\n"
                   "[Daemon]\nReadyTimeoutSec=5\n");
        test_write(root, "etc/rootless-ci.conf.d/10.conf", "[User]\nName=fromdropin\n[Agent]\nUnit=dropin.service\n");

        ASSERT_PARSES(&cli, "--disk=/dev/vdb", "apply", "--user=fromcli", "--filesystem=ext4", "--wipe");
        ASSERT_OK(config_init(&c));
        ASSERT_OK(config_load(&c, root, NULL));
        ASSERT_STREQ(c.user_name, "fromdropin");
        ASSERT_OK(cli_apply_settings(&cli, &c));

        ASSERT_STREQ(c.disk_device, "/dev/vdb");
        ASSERT_STREQ(c.user_name, "fromcli");
        ASSERT_EQ(c.filesystem, FILESYSTEM_EXT4);
        ASSERT_TRUE(c.wipe);
        /* What the command line did not say stays as the files set it. */
        ASSERT_STREQ(c.mount_point, "/data");
        ASSERT_STREQ(c.agent_unit, "dropin.service");
        ASSERT_EQ(c.ready_timeout_sec, 5);
}

TEST(cli_settings_are_validated_like_the_files) {
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *log = NULL;
        Cli cli;

        ASSERT_PARSES(&cli, "apply", "--user=ci", "--mount-point=/etc/ci");
        ASSERT_OK(config_init(&c));
        test_capture_stderr_begin();
        ASSERT_EQ(cli_apply_settings(&cli, &c), -ERCI_USAGE);
        log = test_capture_stderr_end();
        ASSERT_CONTAINS(log, "--mount-point=/etc/ci: lies inside a system or kernel directory");

        free(log);
        ASSERT_PARSES(&cli, "apply", "--ready-timeout=0");
        test_capture_stderr_begin();
        ASSERT_EQ(cli_apply_settings(&cli, &c), -ERCI_USAGE);
        log = test_capture_stderr_end();
        ASSERT_CONTAINS(log, "--ready-timeout=0: must be a whole number of seconds");

        free(log);
        ASSERT_PARSES(&cli, "apply", "--user=root");
        test_capture_stderr_begin();
        ASSERT_EQ(cli_apply_settings(&cli, &c), -ERCI_USAGE);
        log = test_capture_stderr_end();
        ASSERT_CONTAINS(log, "--user=root: must not be root");
}

/* argv applied to the configuration text: cli_apply_settings()'s result, what it logged in *ret_log. */
static int apply_to_text(Config *c, const char *text, char **ret_log, ...) {
        char *argv[8] = { (char *) "rootless-ci" };
        int argc = 1, r;
        va_list ap;
        Cli cli;

        *ret_log = NULL;
        va_start(ap, ret_log);
        for (const char *a; (a = va_arg(ap, const char *)) && argc < 7; )
                argv[argc++] = (char *) a;
        va_end(ap);

        r = config_init(c);
        if (r >= 0)
                r = config_parse_text(c, "t.conf", text, strlen(text));
        if (r < 0)
                return r;
        test_capture_stderr_begin();
        r = cli_parse(argc, argv, &cli);
        if (r >= 0)
                r = cli_apply_settings(&cli, c);
        *ret_log = test_capture_stderr_end();
        return r;
}

TEST(cli_user_and_agent_unit_with_tenants_are_refused) {
        static const char tenants[] = "[Disk]\nWipe=no\n[Tenant]\nName=main\nUser=buildkite\nTrust=trusted\n"
                                      "[Tenant]\nName=pr\nUser=buildkite-pr\n";
        static const char *const verbs[] = { "apply", "plan", "check" };

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                _cleanup_(config_done) Config c = {};
                _cleanup_free_ char *log = NULL;

                ASSERT_EQ(apply_to_text(&c, tenants, &log, verbs[i], "--user=bob", NULL), -ERCI_USAGE);
                ASSERT_CONTAINS(log, "--user=bob cannot be combined with [Tenant] at t.conf:3: with [Tenant] sections "
                                "each tenant names its own User= and AgentUnit=");
                /* Even naming a tenant's own user. */
                config_done(&c);
                free(log);
                ASSERT_EQ(apply_to_text(&c, tenants, &log, verbs[i], "--user=buildkite-pr", NULL), -ERCI_USAGE);
                ASSERT_CONTAINS(log, "--user=buildkite-pr cannot be combined with [Tenant] at t.conf:3");
                config_done(&c);
                free(log);
                ASSERT_EQ(apply_to_text(&c, tenants, &log, verbs[i], "--agent-unit=a.service", NULL), -ERCI_USAGE);
                ASSERT_CONTAINS(log, "--agent-unit=a.service cannot be combined with [Tenant] at t.conf:3");
                /* The host-wide options are fine. */
                config_done(&c);
                free(log);
                ASSERT_EQ(apply_to_text(&c, tenants, &log, verbs[i], "--mount-point=/data", "--ready-timeout=7", NULL), 0);
                ASSERT_STREQ(c.mount_point, "/data");
                ASSERT_EQ(c.ready_timeout_sec, 7);
        }
}

TEST(cli_wait_with_tenants_takes_a_tenant_user) {
        static const char tenants[] = "[Tenant]\nName=main\nUser=buildkite\n[Tenant]\nName=pr\nUser=buildkite-pr\n";
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *log = NULL;

        /* The agent's drop-in runs wait --user=USER: with tenants that picks the tenant. */
        ASSERT_EQ(apply_to_text(&c, tenants, &log, "wait", "--user=buildkite-pr", "--ready-timeout=5", NULL), 0);
        ASSERT_STREQ(c.user_name, "buildkite-pr");
        ASSERT_EQ(c.ready_timeout_sec, 5);

        config_done(&c);
        free(log);
        /* A removed tenant's agent, not yet retired, still waits for its own user's Docker. */
        ASSERT_EQ(apply_to_text(&c, tenants, &log, "wait", "--user=bob", NULL), 0);
        ASSERT_STREQ(c.user_name, "bob");
        config_done(&c);
        free(log);
        /* Without --user, wait is for every tenant's daemon (wait.c). */
        ASSERT_EQ(apply_to_text(&c, tenants, &log, "wait", NULL), 0);
        config_done(&c);
        free(log);
        ASSERT_EQ(apply_to_text(&c, tenants, &log, "wait", "--user=buildkite", "--agent-unit=a.service", NULL), -ERCI_USAGE);
        ASSERT_CONTAINS(log, "--agent-unit=a.service cannot be combined with [Tenant] at t.conf:1");

        /* Without tenants, wait is what it was: --user or the default user. */
        config_done(&c);
        free(log);
        ASSERT_EQ(apply_to_text(&c, "", &log, "wait", NULL), 0);
        ASSERT_STREQ(c.user_name, "buildkite");
        config_done(&c);
        free(log);
        ASSERT_EQ(apply_to_text(&c, "[User]\nName=ci\n", &log, "apply", "--user=bob", NULL), 0);
        ASSERT_STREQ(c.user_name, "bob");
}

TEST(cli_same_option_twice_is_refused) {
        ASSERT_USAGE_ERROR("--disk given more than once", "apply", "--disk=/dev/vdb", "--disk=/dev/vdc");
        ASSERT_USAGE_ERROR("--wipe given more than once", "--wipe", "apply", "--wipe");
        ASSERT_USAGE_ERROR("--user given more than once", "--user=a", "plan", "--user", "a");
        ASSERT_USAGE_ERROR("--root given more than once", "--root=/a", "plan", "--root=/b");
        ASSERT_USAGE_ERROR("--config given more than once", "--config=/a.conf", "plan", "--config=/b.conf");
        ASSERT_USAGE_ERROR("--lock-timeout given more than once", "--lock-timeout=1", "plan", "--lock-timeout=2");
}

TEST(cli_unknown_option_is_refused) {
        ASSERT_USAGE_ERROR("Unknown or malformed option '--bogus'", "plan", "--bogus");
        ASSERT_USAGE_ERROR("Unknown or malformed option '--bogus=1'", "--bogus=1", "plan");
        ASSERT_USAGE_ERROR("Unknown or malformed option '-x'", "plan", "-x");
        /* A flag given a value is as wrong as an unknown option, and named as given. */
        ASSERT_USAGE_ERROR("'--wipe=no'", "apply", "--wipe=no");
        ASSERT_USAGE_ERROR("'--json=yes'", "plan", "--json=yes");
}

TEST(cli_option_without_its_value_is_refused) {
        ASSERT_USAGE_ERROR("Option '--disk' needs a value", "apply", "--disk");
        ASSERT_USAGE_ERROR("Option '--root' needs a value", "plan", "--root");
        ASSERT_USAGE_ERROR("--config= needs a file name", "plan", "--config=");
        ASSERT_USAGE_ERROR("--root= needs a directory", "plan", "--root=");
}

TEST(cli_unknown_or_missing_verb_is_refused) {
        ASSERT_USAGE_ERROR("Unknown verb 'destroy'", "destroy");
        ASSERT_USAGE_ERROR("Unknown verb 'Apply'", "Apply");
        ASSERT_USAGE_ERROR("No verb given", "--json");
        ASSERT_USAGE_ERROR("Unexpected argument 'apply'", "plan", "apply");
        ASSERT_USAGE_ERROR("Unexpected argument 'plan'", "version", "plan");
        ASSERT_USAGE_ERROR("'version' takes no other verb", "plan", "--version");
        {
                char *argv[] = { (char *) "rootless-ci", NULL };
                Cli cli;
                char *log;
                int r;

                test_capture_stderr_begin();
                r = cli_parse(1, argv, &cli);
                log = test_capture_stderr_end();
                ASSERT_EQ(r, -ERCI_USAGE);
                free(log);
        }
}

TEST(cli_stray_arguments_are_refused) {
        /* Nothing on the command line may be silently ignored. */
        ASSERT_USAGE_ERROR("Unexpected argument '-'", "plan", "-");
        ASSERT_USAGE_ERROR("Unexpected argument '-'", "-", "plan");
        ASSERT_USAGE_ERROR("Unexpected argument '--wipe'", "apply", "--", "--wipe");
        ASSERT_USAGE_ERROR("Unexpected argument 'x'", "apply", "--", "x");
}

TEST(cli_lock_timeout) {
        Cli cli;

        ASSERT_PARSES(&cli, "plan", "--lock-timeout=0");
        ASSERT_EQ(cli.lock_timeout_sec, 0);
        ASSERT_EQ(cli_lock_timeout_sec(&cli, 120), 0);
        ASSERT_PARSES(&cli, "--lock-timeout", "86400", "plan");
        ASSERT_EQ(cli.lock_timeout_sec, 86400);
        ASSERT_PARSES(&cli, "plan", "--lock-timeout=7");
        ASSERT_EQ(cli.lock_timeout_sec, 7);

        ASSERT_USAGE_ERROR("--lock-timeout=86401: must be a whole number of seconds from 0 to 86400", "plan", "--lock-timeout=86401");
        ASSERT_USAGE_ERROR("--lock-timeout=-1: must be", "plan", "--lock-timeout=-1");
        ASSERT_USAGE_ERROR("--lock-timeout=1x: must be", "plan", "--lock-timeout=1x");
        ASSERT_USAGE_ERROR("--lock-timeout=: must be", "plan", "--lock-timeout=");
        ASSERT_USAGE_ERROR("--lock-timeout=99999999999999999999: must be", "plan", "--lock-timeout=99999999999999999999");
        ASSERT_USAGE_ERROR("--lock-timeout=18446744073709551615: must be", "plan", "--lock-timeout=18446744073709551615");
}

TEST(cli_parse_can_run_twice) {
        /* getopt keeps state between calls; cli_parse() must reset it. */
        Cli cli;

        ASSERT_PARSES(&cli, "plan", "--disk=/dev/vdb");
        ASSERT_PARSES(&cli, "check", "--user=x");
        ASSERT_EQ(cli.verb, CLI_VERB_CHECK);
        ASSERT_EQ(cli.n_settings, 1);
        ASSERT_STREQ(cli.settings[0].option, "--user");
}

TEST(cli_reclaim_takes_paths_and_its_own_option_only) {
        Cli cli;

        ASSERT_PARSES(&cli, "reclaim", "/b/a/o/p");
        ASSERT_EQ(cli.verb, CLI_VERB_RECLAIM);
        ASSERT_EQ(cli.n_paths, 1);
        ASSERT_STREQ(cli.paths[0], "/b/a/o/p");
        ASSERT_TRUE(cli.builds_dir == NULL);

        ASSERT_PARSES(&cli, "-v", "reclaim", "--builds-dir=/b", "/b/x", "-v", "/b/y", "--", "/b/z");
        ASSERT_EQ(cli.n_paths, 3);
        ASSERT_STREQ(cli.builds_dir, "/b");
        ASSERT_STREQ(cli.paths[0], "/b/x");
        ASSERT_STREQ(cli.paths[1], "/b/y");
        ASSERT_STREQ(cli.paths[2], "/b/z");
        ASSERT_EQ(cli.verbose, 2);
        ASSERT_PARSES(&cli, "reclaim", "/b/x", "--builds-dir", "/b");
        ASSERT_STREQ(cli.builds_dir, "/b");

        ASSERT_USAGE_ERROR("reclaim needs at least one PATH", "reclaim");
        ASSERT_USAGE_ERROR("reclaim needs at least one PATH", "reclaim", "--builds-dir=/b");
        ASSERT_USAGE_ERROR("reclaim takes only --builds-dir=DIR, -v and PATHs", "--root=/img", "reclaim", "/b/x");
        ASSERT_USAGE_ERROR("reclaim takes only", "reclaim", "/b/x", "--config=/x.conf");
        ASSERT_USAGE_ERROR("reclaim takes only", "reclaim", "/b/x", "--json");
        ASSERT_USAGE_ERROR("reclaim takes only", "reclaim", "/b/x", "--user=ci");
        ASSERT_USAGE_ERROR("reclaim takes only", "reclaim", "/b/x", "--lock-timeout=5");
        ASSERT_USAGE_ERROR("--builds-dir given more than once", "reclaim", "--builds-dir=/a", "--builds-dir=/b", "/b/x");
        ASSERT_USAGE_ERROR("--builds-dir= needs a directory", "reclaim", "--builds-dir=", "/b/x");
        ASSERT_USAGE_ERROR("--builds-dir is an option of reclaim only", "apply", "--builds-dir=/b");
        ASSERT_USAGE_ERROR("Unexpected argument 'reclaim'", "plan", "reclaim");
}
