/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdbool.h>
#include <sys/types.h>

#include "config.h"
#include "util/subid.h"

/*
 * The account a per-user step works for: the parameter of every part of a
 * step with Step.per_account set (issue 15): one per [Tenant], or the one
 * of [User] Name= and [Agent] Unit= (issue 16).
 *
 * The engine keeps one per tenant for the run (Context.accounts, in the
 * configuration's order) and runs every per-account step once for each:
 * context_init() takes its name and agent unit from the configuration, the user step
 * (Step.writes_account) writes what it found or made, the storage step its
 * builds directory, the daemon step its verdict on root sockets, and every
 * later per-account step reads it. It is the one home of the account's
 * data: it owns what it points to (but the name and the unit, which the
 * configuration keeps), freed by account_done() with the run.
 */
typedef enum AccountState {
        ACCOUNT_UNUSABLE,  /* missing or not usable: the user step said why */
        ACCOUNT_PLANNED,   /* plan/check: it does not exist yet, apply would create it (uid is -1) */
        ACCOUNT_KNOWN,     /* it exists (or apply just created it) */
} AccountState;

typedef struct Account {
        /* From the configuration ([Tenant], or [User]/[Agent] without tenants) */
        const char *tenant;       /* Name= of its [Tenant]; NULL without tenants: ids carry no ":tenant" suffix */
        const char *name;         /* the user */
        const char *agent_unit;   /* buildkite-agent.service, buildkite-agent@<tenant>.service */
        const char *agent_config; /* AgentConfig=; NULL without tenants (the agent package's own file) */
        Trust trust;              /* TRUST_TRUSTED without tenants: nothing changes for them */

        /* What the user step found or made */
        AccountState state;
        uid_t uid;               /* valid when ACCOUNT_KNOWN */
        gid_t gid;
        char *home;              /* as in the passwd entry (planned: /home/NAME) */
        /*
         * The user's subordinate IDs once apply is done, every range in file
         * order (what rootlesskit maps, one after the other; none: not
         * settled), and its groups as the files say, primary first. Written
         * by the user step.
         */
        SubIdRange *subuids;
        size_t n_subuids;
        SubIdRange *subgids;
        size_t n_subgids;
        gid_t *gids;
        size_t n_gids;

        /* What the storage step made: <MountPoint>/<user>/builds, the agent's builds path */
        char *builds_dir;

        /* The daemon step's verdict on root daemons' API sockets (I1, repeated by the agent as agent.docker-host) */
        bool root_sockets_checked;
        unsigned root_sockets_reachable;
} Account;

/* Free what the account owns (not the name and unit: the configuration's), and leave it empty. */
void account_done(Account *a);
