/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/*
 * The tenants step (step.c): rootless-ci remembers the tenants apply has set
 * up, in a root-owned record (record.c), so that one removed from the
 * configuration is noticed (tenants.removed:NAME, a WARN naming what still
 * runs for it) and taken down only when asked (apply --retire=NAME:
 * retire.c). Nothing of its data is ever deleted.
 */

/* Persistent (a reboot keeps it, unlike /run/rootless-ci's restart markers), root's, 0644. */
#define TENANTS_RECORD_PATH "/var/lib/rootless-ci/tenants"

/*
 * The name the record gives the one tenant of [User] Name= and [Agent]
 * Unit= (no [Tenant]: Account.tenant is NULL). '_' is not allowed in a
 * [Tenant] Name=, so it is never a configured tenant's.
 */
#define TENANT_LEGACY_NAME "_legacy"

/* One line of the record: a tenant apply set up, with what it ran for it ("NAME USER AGENT-UNIT AGENT-CONFIG"). */
typedef struct TenantRecord {
        char *name;         /* [Tenant] Name=, or TENANT_LEGACY_NAME */
        char *user;
        char *agent_unit;
        char *agent_config; /* AgentConfig=; NULL for the legacy tenant (the agent package's own file) */
} TenantRecord;

typedef struct TenantRecords {
        TenantRecord *entries;
        size_t n_entries;
        /* The first line that did not parse (0: none), and why: such a record is never rewritten. */
        unsigned bad_line;
        const char *bad_why;
} TenantRecords;

void tenant_records_done(TenantRecords *t);

/* Parse the record's text; malformed lines are noted in bad_line/bad_why, not fatal. -ENOMEM. */
int tenant_records_parse(const char *text, TenantRecords *ret);

/*
 * Read TENANTS_RECORD_PATH below root_fd, as c sees it: a tenant whose
 * User= or AgentUnit= changed since it was recorded is there twice, under
 * its name as configured now (apply records it so) and as NAME~N, which is
 * what ran for its old settings: a removed tenant like any other, until it
 * is retired (--retire=NAME~N). A missing file is an empty record. < 0:
 * could not read (logged).
 */
int tenant_records_load(int root_fd, const Config *c, TenantRecords *ret);

/* The record's text for these entries (header comment first), malloc'd; NULL on ENOMEM. */
char *tenant_records_render(const TenantRecord *entries, size_t n);

const TenantRecord *tenant_records_find(const TenantRecords *t, const char *name);

/* The record's name of a configured account's tenant: its Name=, or TENANT_LEGACY_NAME. */
const char *tenant_record_name(const char *tenant);

/*
 * Is name one the configuration sets up? Without [Tenant], only
 * TENANT_LEGACY_NAME is; with them, only their names.
 */
bool tenant_configured(const Config *c, const char *name);

/* Does this run retire it (apply --retire=NAME, Config.retire)? */
bool tenant_retiring(const Config *c, const char *name);

/*
 * apply --retire=NAME, before the lock and any step: every NAME must be a
 * tenant of the record (below root, NULL for "/") that the configuration no
 * longer has. Logs and returns -ERCI_USAGE (exit 2, nothing changed)
 * otherwise.
 */
int tenants_verify_retire(const Config *c, const char *root);

/*
 * The recorded tenants the configuration no longer has and that this run
 * does not retire (Config.retire), in the record's order: what runs for
 * them must keep running, and what they read must stay as it is, until
 * they are retired. For the steps that look at what every tenant shares:
 * the daemon step's one unit for every tenant's manager (tenants_removed_users()
 * for its ConditionUser= list: drop such a user and its Docker no longer
 * starts at the next boot), the agent step's /etc/buildkite-agent (such a
 * tenant's AgentConfig= keeps its owner and mode, or its running agent
 * loses its token). < 0: the record could not be read (logged).
 */
int tenants_removed(int root_fd, const Config *c, TenantRecords *ret);

/*
 * Their users that no configured tenant has, each once: a NULL-terminated
 * list in *ret (strv_free()), maybe empty.
 */
int tenants_removed_users(int root_fd, const Config *c, char ***ret);
