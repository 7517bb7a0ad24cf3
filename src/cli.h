/* SPDX-License-Identifier: MIT */
#pragma once

#include <limits.h>

#include <stdbool.h>

#include "config.h"
#include "engine/engine.h"

typedef enum CliVerb {
        CLI_VERB_APPLY = VERB_APPLY,
        CLI_VERB_PLAN = VERB_PLAN,
        CLI_VERB_CHECK = VERB_CHECK,
        CLI_VERB_WAIT,
        CLI_VERB_RECLAIM,
        CLI_VERB_VERSION,
        CLI_VERB_HELP,
} CliVerb;

/* reclaim's PATHs: a job passes its checkout, and maybe a few more places. */
#define CLI_PATHS_MAX 32

/* apply --retire=NAME, repeated: a few tenants at a time. */
#define CLI_RETIRE_MAX 16

/* One option given on the command line, applied on top of the files. */
typedef struct CliSetting {
        const char *option;   /* "--disk" for messages */
        const char *section;
        const char *key;
        const char *value;
} CliSetting;

typedef struct Cli {
        CliVerb verb;
        const char *config_path;
        const char *root;
        bool json;
        int verbose;
        unsigned lock_timeout_sec;     /* CLI_LOCK_TIMEOUT_DEFAULT: cli_lock_timeout_sec() decides */
        CliSetting settings[16];
        unsigned n_settings;
        /* apply, plan: --retire=NAME, the tenants to take down (argv's strings) */
        const char *retire[CLI_RETIRE_MAX];
        size_t n_retire;
        /* reclaim: its own option and its PATHs (argv's strings) */
        const char *builds_dir;
        const char *paths[CLI_PATHS_MAX];
        unsigned n_paths;
} Cli;

#define CLI_LOCK_TIMEOUT_DEFAULT UINT_MAX

/*
 * The lock wait in seconds: --lock-timeout, or by default as long as an
 * apply can take with the configured readiness timeout (the user's manager
 * and its Docker, each up to ReadyTimeoutSec, and six minutes for systemd's
 * reloads and jobs): 600 s with the default 120 s. A second apply started
 * while the first is still working then waits for it rather than failing.
 */
unsigned cli_lock_timeout_sec(const Cli *cli, unsigned ready_timeout_sec);

/* Parse argv. Errors are logged; returns -ERCI_USAGE. */
int cli_parse(int argc, char *argv[], Cli *ret);

/* Apply the command-line settings to c, so they win over the files. */
int cli_apply_settings(const Cli *cli, Config *c);

void cli_help(void);
