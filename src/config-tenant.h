/* SPDX-License-Identifier: MIT */
#pragma once

#include "config.h"

/*
 * The [Tenant] sections, between the parser (config.c) and config-tenant.c;
 * nothing else includes this. Each [Tenant] header starts a new tenant, as
 * systemd.network repeats [Address]. Its section ends at the next header or
 * at the end of its file: then the required keys, the defaults and the
 * uniqueness against every tenant read before, in any file, are settled.
 */

typedef enum TenantKey {
        TENANT_KEY_NAME,
        TENANT_KEY_USER,
        TENANT_KEY_AGENT_UNIT,
        TENANT_KEY_AGENT_CONFIG,
        TENANT_KEY_TRUST,
        _TENANT_KEY_MAX,
} TenantKey;

/* The section being read: the last of Config.tenants. */
typedef struct TenantSection {
        const char *path;                  /* its file, for messages */
        unsigned line;                     /* of its [Tenant] header; 0: none open */
        unsigned key_line[_TENANT_KEY_MAX]; /* where each key was set; 0: not given */
} TenantSection;

/* At a [Tenant] header: a new tenant with the defaults, or logged and -ERCI_USAGE. */
int tenant_section_begin(Config *c, TenantSection *s, const char *path, unsigned line);

/* One Key=value of the open section; on a bad value *ret_error says why (as config_set_key()). */
int tenant_set_key(Config *c, TenantSection *s, const char *key, const char *value, unsigned line,
                   const char **ret_error);

/* At the next header or the end of the file: logged and -ERCI_USAGE when the tenant is incomplete or not unique. */
int tenant_section_end(Config *c, TenantSection *s);

/*
 * After a [User] or [Agent] key was set at path:line: refused when a
 * [Tenant] was read; otherwise remembered, for a [Tenant] that comes later.
 */
int config_note_single(Config *c, const char *path, unsigned line, const char *section, const char *key);

/* The checks of [User] Name= and [Agent] Unit=, which a tenant's User= and AgentUnit= share. */
int config_set_user_name(char **slot, const char *value, const char **ret_error);
int config_set_unit_name(char **slot, const char *value, const char **ret_error);
