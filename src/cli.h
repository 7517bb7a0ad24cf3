/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

#include "config.h"
#include "engine.h"

typedef enum CliVerb {
        CLI_VERB_APPLY = VERB_APPLY,
        CLI_VERB_PLAN = VERB_PLAN,
        CLI_VERB_CHECK = VERB_CHECK,
        CLI_VERB_WAIT,
        CLI_VERB_VERSION,
        CLI_VERB_HELP,
} CliVerb;

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
        unsigned lock_timeout_sec;
        CliSetting settings[16];
        unsigned n_settings;
} Cli;

/* Parse argv. Errors are logged; returns -ERCI_USAGE. */
int cli_parse(int argc, char *argv[], Cli *ret);

/* Apply the command-line settings to c, so they win over the files. */
int cli_apply_settings(const Cli *cli, Config *c);

void cli_help(void);
