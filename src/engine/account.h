/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

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

        /* What the storage step made: <MountPoint>/<user>/builds (borrowed from the facts, transition) */
        const char *builds_dir;

        /* The daemon step's verdict on root daemons' API sockets (I1, repeated by the agent as agent.docker-host) */
        bool root_sockets_checked;
        unsigned root_sockets_reachable;
} Account;
