/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build-config.h"
#include "cli.h"
#include "config.h"
#include "engine/engine.h"
#include "explain/explain.h"
#include "reclaim/reclaim.h"
#include "steps/tenants/tenants.h"
#include "util/error.h"
#include "units.h"
#include "util/log.h"
#include "util/testhooks.h"
#include "wait.h"

static int run(int argc, char *argv[]) {
        _cleanup_(config_done) Config config = {};
        const char *err;
        const char *only_steps = NULL;
        Cli cli;
        int r;

        /* Run by an agent hook as the CI user: no configuration, no global options, its own arguments. */
        if (argc > 1 && streq(argv[1], "explain"))
                return explain_main(argc - 1, argv + 1);

        r = cli_parse(argc, argv, &cli);
        if (r < 0)
                return exit_status_from_error(r);

        if (cli.verbose)
                log_set_max_level(LOG_DEBUG);

#if TEST_HOOKS
        /* Test hooks (util/testhooks.h): a build without -Dtest_hooks=true never reads them. */
        /* Run from a build tree (tests, development): use the source's templates. */
        if (getenv("RCI_UNITS_DIR"))
                units_set_dir(getenv("RCI_UNITS_DIR"));
        /* The host tests run the disk step alone (engine/run.c: select_steps()). */
        only_steps = getenv("RCI_ONLY_STEPS");
#endif

        /*
         * The CLI's dispatch: the verbs that are not the engine's (help,
         * version, reclaim, wait) are answered here, before any configuration
         * is read; plan, check and apply go to engine_run(), which owns them.
         */
        switch (cli.verb) {
        case CLI_VERB_HELP:    /* CLI dispatch: usage text, nothing read */
                cli_help();
                return EXIT_OK;
        case CLI_VERB_VERSION: /* CLI dispatch: the version, nothing read */
                /* A test build says so: its hooks let the environment steer a root program. */
                printf("rootless-ci %s%s\n", PACKAGE_VERSION,
                       TEST_HOOKS ? " (test build: test hooks compiled in; not for production)" : "");
                return EXIT_OK;
        default:
                break;
        }

        /* CLI dispatch: the CI user's command, in every job: no configuration, no lock, no daemon. */
        if (cli.verb == CLI_VERB_RECLAIM)
                return exit_status_from_error(reclaim_main(&(ReclaimOptions) {
                        .builds_dir = cli.builds_dir, .paths = cli.paths, .n_paths = cli.n_paths,
                }));

        /* CLI dispatch: a usage error of wait's own, before the configuration is read. */
        if (cli.root && cli.verb == CLI_VERB_WAIT) {
                log_error("wait looks at the live host's Docker; it takes no --root.");
                return EXIT_USAGE;
        }
        if (cli.root) {
                struct stat st;
                if (stat(cli.root, &st) < 0 || !S_ISDIR(st.st_mode)) {
                        log_error("--root=%s: not a directory.", cli.root);
                        return EXIT_USAGE;
                }
        }

        r = config_init(&config);
        if (r < 0)
                return log_error_errno(r, "Failed to initialise configuration: %m"), EXIT_FAILED;
        r = config_load(&config, cli.root, cli.config_path);
        if (r < 0)
                return exit_status_from_error(r);
        r = cli_apply_settings(&cli, &config);
        if (r < 0)
                return exit_status_from_error(r);
        r = config_verify(&config, &err);
        if (r < 0) {
                log_error("Configuration: %s", err);
                return exit_status_from_error(r);
        }
        /* CLI dispatch: --retire names recorded tenants no longer configured, checked before anything runs. */
        config.retire = cli.retire;
        config.n_retire = cli.n_retire;
        r = tenants_verify_retire(&config, cli.root);
        if (r < 0)
                return exit_status_from_error(r);

        /* CLI dispatch: wait needs the configuration (the user, its timeout), not the engine. */
        if (cli.verb == CLI_VERB_WAIT) {
                const char *user = NULL;

                /* --user names one tenant's user; without it, wait is for every tenant's daemon. */
                for (unsigned i = 0; i < cli.n_settings; i++)
                        if (streq(cli.settings[i].option, "--user"))
                                user = cli.settings[i].value;
                return exit_status_from_error(wait_for_docker(&config, user));
        }

        /* CLI dispatch: only apply changes the host; refused for non-root before the engine starts. */
        if (cli.root == NULL && geteuid() != 0 && cli.verb == CLI_VERB_APPLY) {
                log_error("apply changes the host and must run as root (try sudo), or use --root=DIR.");
                return EXIT_FAILED;
        }

        return engine_run(&(EngineOptions) {
                .verb = (Verb) cli.verb,
                .root = cli.root,
                .json = cli.json,
                .lock_timeout_ms = cli_lock_timeout_sec(&cli, config.ready_timeout_sec) * 1000U,
                .only_steps = only_steps,
        }, &config);
}

int main(int argc, char *argv[]) {
        /* Whatever umask we inherit, files we create get the modes we ask for. */
        umask(0022);
        return run(argc, argv);
}
