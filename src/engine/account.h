/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdbool.h>
#include <sys/types.h>

#include "util/subid.h"

/*
 * The account a per-user step works for: the parameter of every part of a
 * step with Step.per_account set (issue 15). One today ([User] Name=,
 * [Agent] Unit=); one per tenant later.
 *
 * The engine keeps it for the run (Context.account): the user step
 * (Step.writes_account) writes what it found or made, and every later
 * per-account step gets that account. Transition: until that step has run
 * (tests that set ctx->facts.user_* and run a later step alone), the engine
 * fills it from the facts before each per-account step
 * (engine/run.c, account_from_facts()); the user step keeps the facts filled
 * too, and the pointers here are borrowed from them until they go.
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
        /*
         * The user's subordinate IDs once apply is done, every range in file
         * order (what rootlesskit maps, one after the other; none: not
         * settled), and its groups as the files say, primary first. Written
         * by the user step; borrowed from the facts during the transition.
         */
        const SubIdRange *subuids;
        size_t n_subuids;
        const SubIdRange *subgids;
        size_t n_subgids;
        const gid_t *gids;
        size_t n_gids;

        /* What the storage step made: <MountPoint>/<user>/builds (borrowed from the facts, transition) */
        const char *builds_dir;

        /* The daemon step's verdict on root daemons' API sockets (I1, repeated by the agent as agent.docker-host) */
        bool root_sockets_checked;
        unsigned root_sockets_reachable;
} Account;
