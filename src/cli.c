/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "build-config.h"
#include "cli.h"
#include "util/error.h"
#include "util/log.h"

enum {
        OPT_CONFIG = 0x100,
        OPT_ROOT,
        OPT_JSON,
        OPT_DISK,
        OPT_FILESYSTEM,
        OPT_MOUNT_POINT,
        OPT_WIPE,
        OPT_USER,
        OPT_AGENT_UNIT,
        OPT_READY_TIMEOUT,
        OPT_LOCK_TIMEOUT,
        OPT_VERSION,
        OPT_BUILDS_DIR,
        OPT_RETIRE,
};

void cli_help(void) {
        printf("Usage: rootless-ci [OPTIONS] VERB\n"
               "\n"
               "Turn this host into a CI host whose build user runs its own rootless Docker.\n"
               "\n"
               "Verbs:\n"
               "  apply     converge the host (first run and repair)\n"
               "  plan      print every change apply would make; change nothing\n"
               "  check     verify the host is converged and every invariant holds\n"
               "  wait      wait (at most ReadyTimeoutSec) until the CI user's Docker answers GET /_ping;\n"
               "            exit 0 when it does, 1 when it did not; changes nothing (the agent's\n"
               "            drop-in runs it before the agent starts)\n"
               "  explain   (run by rootless-ci's pre-command agent hook, as the CI user) explain in the job\n"
               "            log the job's docker plugin options that mean something else under rootless\n"
               "            Docker, from BUILDKITE_PLUGINS; changes nothing (rootless-ci explain --help)\n"
               "  reclaim [--builds-dir=DIR] PATH...\n"
               "            run as the CI user (not root): give what its containers' subordinate IDs\n"
               "            own below each job checkout PATH (below DIR, default $BUILDKITE_BUILD_PATH)\n"
               "            back to it and open its directories, so the next job can clean or remove\n"
               "            them; takes no lock, reads no configuration (the agent's hooks run it)\n"
               "  version   print the version\n"
               "\n"
               "apply and plan take, repeated for several tenants:\n"
               "  --retire=NAME          take down the recorded tenant NAME that is no longer configured:\n"
               "                         stop and disable its agent instance, stop its user's Docker,\n"
               "                         disable linger, remove rootless-ci's drop-ins for it, forget it;\n"
               "                         never deletes its user, home, builds, Docker data or configuration\n"
               "                         (plan, check and apply report such a tenant as tenants.removed:NAME)\n"
               "\n"
               "Options (each but the first five is also a configuration key; the command line wins):\n"
               "  --config=FILE          read only FILE instead of /etc/rootless-ci.conf{,.d/*.conf}\n"
               "  --root=DIR             work on the tree below DIR (image baking); live-only steps are skipped\n"
               "  --json                 print the report as JSON on stdout\n"
               "  -v, --verbose          more detail on stderr\n"
               "  --lock-timeout=SEC     wait this long for another run's lock\n"
               "                         (default: 2 x ReadyTimeoutSec + 360, i.e. 600)\n"
               "  --disk=DEVICE          [Disk] Device=      whole disk, e.g. /dev/disk/by-id/...\n"
               "  --filesystem=ext4|xfs  [Disk] FileSystem=  default ext4\n"
               "  --mount-point=DIR      [Disk] MountPoint=  default /srv/rootless-ci\n"
               "  --wipe                 [Disk] Wipe=yes     allow destroying existing signatures on the disk\n"
               "  --user=NAME            [User] Name=        default buildkite\n"
               "  --agent-unit=UNIT      [Agent] Unit=       default buildkite-agent.service\n"
               "  --ready-timeout=SEC    [Daemon] ReadyTimeoutSec= default 120\n"
               "With [Tenant] sections --user and --agent-unit are refused; wait waits for every\n"
               "tenant's Docker, or with --user=USER for that tenant user's alone.\n"
               "\n"
               "Exit status: 0 done / nothing to do / all checks hold; 1 failed, or check found a\n"
               "problem; 2 usage or configuration error (nothing changed); 3 refused to protect\n"
               "existing data (nothing changed).\n");
}

/* The options that are also configuration keys: --disk=DEVICE is [Disk] Device=DEVICE. */
static const struct {
        int code;
        const char *option, *section, *key;
        const char *value;        /* the value of an option that takes none */
} setting_options[] = {
        { OPT_DISK, "--disk", "Disk", "Device" },
        { OPT_FILESYSTEM, "--filesystem", "Disk", "FileSystem" },
        { OPT_MOUNT_POINT, "--mount-point", "Disk", "MountPoint" },
        { OPT_WIPE, "--wipe", "Disk", "Wipe", "yes" },
        { OPT_USER, "--user", "User", "Name" },
        { OPT_AGENT_UNIT, "--agent-unit", "Agent", "Unit" },
        { OPT_READY_TIMEOUT, "--ready-timeout", "Daemon", "ReadyTimeoutSec" },
};

/* The option of code c, one in setting_options, given value (NULL when it takes none). */
static int add_setting(Cli *cli, int c, const char *value) {
        size_t o = 0;

        while (setting_options[o].code != c)
                o++;
        if (cli->n_settings >= ELEMENTSOF(cli->settings))
                return log_error_errno(-ERCI_USAGE, "Too many options.");
        /* The same option twice is as suspicious on the command line as in a file. */
        for (unsigned i = 0; i < cli->n_settings; i++)
                if (streq(cli->settings[i].option, setting_options[o].option))
                        return log_error_errno(-ERCI_USAGE, "%s given more than once.", setting_options[o].option);
        cli->settings[cli->n_settings++] = (CliSetting) {
                .option = setting_options[o].option, .section = setting_options[o].section,
                .key = setting_options[o].key, .value = setting_options[o].value ?: value,
        };
        return 0;
}

/* --config=, --root=, --builds-dir=: each at most once, never empty. */
static int set_once(const char **slot, const char *option, const char *needs, const char *value) {
        if (*slot)
                return log_error_errno(-ERCI_USAGE, "%s given more than once.", option);
        if (!*value)
                return log_error_errno(-ERCI_USAGE, "%s= needs %s.", option, needs);
        *slot = value;
        return 0;
}

/* --retire=NAME, repeatable; each NAME once (tenants_verify_retire() checks it against the record). */
static int add_retire(Cli *cli, const char *name) {
        if (!*name)
                return log_error_errno(-ERCI_USAGE, "--retire= needs a tenant name.");
        for (size_t i = 0; i < cli->n_retire; i++)
                if (streq(cli->retire[i], name))
                        return log_error_errno(-ERCI_USAGE, "--retire=%s given more than once.", name);
        if (cli->n_retire >= ELEMENTSOF(cli->retire))
                return log_error_errno(-ERCI_USAGE, "--retire takes at most %zu tenants at a time.",
                                       ELEMENTSOF(cli->retire));
        cli->retire[cli->n_retire++] = name;
        return 0;
}

static int add_path(Cli *cli, const char *path) {
        if (cli->n_paths >= ELEMENTSOF(cli->paths))
                return log_error_errno(-ERCI_USAGE, "reclaim takes at most %zu PATHs.", ELEMENTSOF(cli->paths));
        cli->paths[cli->n_paths++] = path;
        return 0;
}

/*
 * reclaim is run by the CI user in every job: it reads no configuration and
 * takes no lock, so the options of the root verbs mean nothing to it, and
 * --builds-dir means nothing to them.
 */
static int check_verb_options(const Cli *cli) {
        if (cli->verb == CLI_VERB_RECLAIM) {
                if (cli->config_path || cli->root || cli->json || cli->n_settings > 0 ||
                    cli->lock_timeout_sec != CLI_LOCK_TIMEOUT_DEFAULT)
                        return log_error_errno(-ERCI_USAGE,
                                               "reclaim takes only --builds-dir=DIR, -v and PATHs (it reads no "
                                               "configuration). See --help.");
                if (cli->n_paths == 0)
                        return log_error_errno(-ERCI_USAGE, "reclaim needs at least one PATH (a job's checkout).");
        } else if (cli->builds_dir)
                return log_error_errno(-ERCI_USAGE, "--builds-dir is an option of reclaim only.");
        /* check judges the host as it is; plan shows what apply --retire would do. */
        if (cli->n_retire > 0 && cli->verb != CLI_VERB_APPLY && cli->verb != CLI_VERB_PLAN)
                return log_error_errno(-ERCI_USAGE, "--retire is an option of apply (and plan) only.");
        return 0;
}

int cli_parse(int argc, char *argv[], Cli *ret) {
        /* These, then one per row of setting_options, named there once. */
        static const struct option own_options[] = {
                { "help", no_argument, NULL, 'h' },
                { "verbose", no_argument, NULL, 'v' },
                { "version", no_argument, NULL, OPT_VERSION },
                { "config", required_argument, NULL, OPT_CONFIG },
                { "root", required_argument, NULL, OPT_ROOT },
                { "json", no_argument, NULL, OPT_JSON },
                { "lock-timeout", required_argument, NULL, OPT_LOCK_TIMEOUT },
                { "builds-dir", required_argument, NULL, OPT_BUILDS_DIR },
                { "retire", required_argument, NULL, OPT_RETIRE },
        };
        struct option options[ELEMENTSOF(own_options) + ELEMENTSOF(setting_options) + 1] = {};
        Cli cli = { .verb = CLI_VERB_HELP, .lock_timeout_sec = CLI_LOCK_TIMEOUT_DEFAULT };
        bool want_version = false, lock_timeout_set = false;
        int c, r, consumed = 0;

        memcpy(options, own_options, sizeof(own_options));
        for (size_t i = 0; i < ELEMENTSOF(setting_options); i++)
                options[ELEMENTSOF(own_options) + i] = (struct option) {
                        .name = startswith(setting_options[i].option, "--"),
                        .has_arg = setting_options[i].value ? no_argument : required_argument,
                        .val = setting_options[i].code,
                };

        opterr = 0;
        optind = 0;
        /* "+": stop at the verb; ":": a missing value is reported as ':', not as an unknown option. */
        while ((c = getopt_long(argc, argv, "+:hv", options, NULL)) >= 0 ||
               (optind < argc && argv[optind][0] != '-')) {
                /* Options may come before and after the verb: step over the verb and go on. */
                if (c < 0) {
                        /*
                         * After "--", getopt points optind back at the first word that
                         * followed it each time it is called again: taken already.
                         */
                        if (optind < consumed) {
                                optind = consumed;
                                break;
                        }
                        /* reclaim's PATHs: every word after the verb. */
                        if (cli.verb == CLI_VERB_RECLAIM) {
                                r = add_path(&cli, argv[optind++]);
                                if (r < 0)
                                        return r;
                                consumed = optind;
                                continue;
                        }
                        if (cli.verb != CLI_VERB_HELP || want_version)
                                return log_error_errno(-ERCI_USAGE, "Unexpected argument '%s'. See --help.", argv[optind]);
                        if (streq(argv[optind], "apply"))
                                cli.verb = CLI_VERB_APPLY;
                        else if (streq(argv[optind], "plan"))
                                cli.verb = CLI_VERB_PLAN;
                        else if (streq(argv[optind], "check"))
                                cli.verb = CLI_VERB_CHECK;
                        else if (streq(argv[optind], "wait"))
                                cli.verb = CLI_VERB_WAIT;
                        else if (streq(argv[optind], "reclaim"))
                                cli.verb = CLI_VERB_RECLAIM;
                        else if (streq(argv[optind], "version"))
                                want_version = true;
                        else if (streq(argv[optind], "help")) {
                                ret->verb = CLI_VERB_HELP;
                                return 0;
                        } else
                                return log_error_errno(-ERCI_USAGE, "Unknown verb '%s'. Verbs: apply, plan, check, wait, reclaim, version.", argv[optind]);
                        consumed = ++optind;
                        continue;
                }

                r = 0;
                switch (c) {
                case 'h':
                        *ret = (Cli) { .verb = CLI_VERB_HELP };
                        return 0;
                case 'v':
                        cli.verbose++;
                        break;
                case OPT_VERSION:
                        want_version = true;
                        break;
                case OPT_CONFIG:
                        r = set_once(&cli.config_path, "--config", "a file name", optarg);
                        break;
                case OPT_ROOT:
                        r = set_once(&cli.root, "--root", "a directory", optarg);
                        break;
                case OPT_JSON:
                        cli.json = true;
                        break;
                case OPT_LOCK_TIMEOUT: {
                        char *end;
                        unsigned long v;
                        if (lock_timeout_set)
                                return log_error_errno(-ERCI_USAGE, "--lock-timeout given more than once.");
                        lock_timeout_set = true;
                        errno = 0;
                        v = strtoul(optarg, &end, 10);
                        if (errno || end == optarg || *end || optarg[0] == '-' || v > 86400)
                                return log_error_errno(-ERCI_USAGE, "--lock-timeout=%s: must be a whole number of seconds from 0 to 86400.", optarg);
                        cli.lock_timeout_sec = (unsigned) v;
                        break;
                }
                case OPT_DISK:
                case OPT_FILESYSTEM:
                case OPT_MOUNT_POINT:
                case OPT_WIPE:
                case OPT_USER:
                case OPT_AGENT_UNIT:
                case OPT_READY_TIMEOUT:
                        r = add_setting(&cli, c, optarg);
                        break;
                case OPT_BUILDS_DIR:
                        r = set_once(&cli.builds_dir, "--builds-dir", "a directory", optarg);
                        break;
                case OPT_RETIRE:
                        r = add_retire(&cli, optarg);
                        break;
                case '?':
                        /* A long option is named as given; optopt holds its value code, not a character. */
                        if (startswith(argv[optind - 1], "--") || optopt <= 0 || optopt >= 0x100)
                                return log_error_errno(-ERCI_USAGE, "Unknown or malformed option '%s'. See --help.", argv[optind - 1]);
                        return log_error_errno(-ERCI_USAGE, "Unknown or malformed option '-%c'. See --help.", optopt);
                default:
                        return log_error_errno(-ERCI_USAGE, "Option '%s' needs a value. See --help.", argv[optind - 1]);
                }
                if (r < 0)
                        return r;
        }

        /* Whatever the loop stopped at ("-", anything after "--") is not silently dropped. */
        if (optind < argc)
                return log_error_errno(-ERCI_USAGE, "Unexpected argument '%s'. See --help.", argv[optind]);

        if (want_version) {
                if (cli.verb != CLI_VERB_HELP)
                        return log_error_errno(-ERCI_USAGE, "'version' takes no other verb.");
                cli.verb = CLI_VERB_VERSION;
        } else if (cli.verb == CLI_VERB_HELP)
                return log_error_errno(-ERCI_USAGE, "No verb given. Verbs: apply, plan, check, wait, reclaim, version. See --help.");

        r = check_verb_options(&cli);
        if (r < 0)
                return r;
        *ret = cli;
        return 0;
}

/*
 * With [Tenant] sections, --user and --agent-unit ([User] Name=, [Agent]
 * Unit=) are refused like the sections, except wait's --user: it names
 * whose Docker to wait for (the agent's drop-in runs wait --user=USER, a
 * removed tenant's not yet retired too); without it wait waits for every tenant's.
 */
static int check_settings_with_tenants(const Cli *cli, const Config *c) {
        if (c->n_tenants == 0)
                return 0;
        for (unsigned i = 0; i < cli->n_settings; i++) {
                const CliSetting *s = &cli->settings[i];
                _cleanup_free_ char *what = NULL, *other = NULL;

                if (!streq(s->section, "User") && !streq(s->section, "Agent"))
                        continue;
                /* wait --user names whose Docker to wait for: a tenant's, or a removed tenant's not yet retired. */
                if (cli->verb == CLI_VERB_WAIT && streq(s->section, "User"))
                        continue;
                if (asprintf(&what, "%s=%s", s->option, s->value) < 0 ||
                    asprintf(&other, "[Tenant] at %s", strempty(c->tenants[0].origin)) < 0)
                        return -ENOMEM;
                return config_refuse_mixed(what, other);
        }
        return 0;
}

int cli_apply_settings(const Cli *cli, Config *c) {
        int r;

        r = check_settings_with_tenants(cli, c);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < cli->n_settings; i++) {
                const CliSetting *s = &cli->settings[i];
                const char *err = NULL;

                r = config_set_key(c, s->section, s->key, s->value, &err);
                if (r < 0)
                        return log_error_errno(r == -ENOMEM ? r : -ERCI_USAGE, "%s=%s: %s", s->option, s->value,
                                               err ? err : error_to_string(r));
        }
        return 0;
}

unsigned cli_lock_timeout_sec(const Cli *cli, unsigned ready_timeout_sec) {
        if (cli->lock_timeout_sec != CLI_LOCK_TIMEOUT_DEFAULT)
                return cli->lock_timeout_sec;
        return 2 * ready_timeout_sec + 360;
}
