/* SPDX-License-Identifier: MIT */
#include "tests.h"
#include "cli.h"

TEST(cli_verb_required) {
        char *argv[] = { (char *) "rootless-ci", NULL };
        Cli cli;
        ASSERT_TRUE(cli_parse(1, argv, &cli) < 0);
}
