/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util/subid.h"

/*
 * The account a per-user step works for: the parameter of every part of a
 * step with Step.per_account set (issue 15). One today ([User] Name=,
 * [Agent] Unit=); one per tenant later.
 *
 * Transition: the engine fills it from ctx->facts.user_* before each
 * per-account step (engine/run.c, account_from_facts()), so converted steps
 * read the account here while the user step still writes the facts. Once the
 * user step is converted it writes these fields itself and `home` becomes
 * owned by the account.
 */
typedef enum AccountState {
        ACCOUNT_UNUSABLE,  /* missing or not usable: the user step said why */
        ACCOUNT_PLANNED,   /* plan/check: it does not exist yet, apply would create it (uid is -1) */
        ACCOUNT_KNOWN,     /* it exists (or apply just created it) */
} AccountState;

typedef struct Account {
        /* From the configuration */
        const char *tenant;      /* NULL today: ids carry no ":tenant" suffix */
        const char *name;        /* the user */
        const char *agent_unit;  /* buildkite-agent.service */

        /* What the user step found or made */
        AccountState state;
        uid_t uid;               /* valid when ACCOUNT_KNOWN */
        gid_t gid;
        const char *home;        /* borrowed from the facts during the transition */
        const SubIdRange *subuids;  /* all its subordinate ranges (borrowed from the facts, as home) */
        size_t n_subuids;
        const SubIdRange *subgids;
        size_t n_subgids;
        const gid_t *gids;       /* its groups as the files say, primary first (borrowed, as home) */
        size_t n_gids;

        /* What the daemon step found (invariant I1; the agent repeats it as agent.docker-host) */
        bool root_sockets_checked;
        unsigned root_sockets_reachable;  /* root daemons' sockets the user can connect to */
} Account;
