/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config-tenant.h"
#include "units.h"
#include "util/error.h"
#include "util/log.h"
#include "util/macro.h"

/*
 * [Tenant] (issue 16): one section per tenant, repeated. Tenants are added
 * in the order the files are read (/etc/rootless-ci.conf, then the drop-ins
 * in lexical order), never merged or overridden: a drop-in adds tenants,
 * and a Name=, User=, AgentUnit= or AgentConfig= that another tenant in any
 * file already has is an error. [Tenant] excludes [User] and [Agent], which
 * describe the one tenant of a configuration without [Tenant].
 */

static const char *const trust_table[_TRUST_MAX] = {
        [TRUST_UNTRUSTED] = "untrusted",
        [TRUST_TRUSTED] = "trusted",
};

const char *trust_to_string(Trust t) {
        return t >= 0 && t < _TRUST_MAX ? trust_table[t] : NULL;
}

Trust trust_from_string(const char *s) {
        return string_table_index(trust_table, _TRUST_MAX, s);
}

void tenant_done(Tenant *t) {
        FREE_MANY(t->name, t->user, t->agent_unit, t->agent_config, t->origin);
        *t = (Tenant) {};
}

bool valid_tenant_name(const char *s) {
        size_t l = strlen(s);

        if (l == 0 || l > TENANT_NAME_MAX || s[0] == '-')
                return false;
        return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == l;
}

/* The keys of [Tenant]; those no two tenants may share say why, and where their value is. */
static const struct {
        const char *name;
        const char *unique_why;   /* NULL: tenants may share it */
        size_t offset;            /* with unique_why: of its char * in Tenant */
} tenant_keys[_TENANT_KEY_MAX] = {
        [TENANT_KEY_NAME] = { "Name", "it names the tenant in ids, logs and files", offsetof(Tenant, name) },
        [TENANT_KEY_USER] = { "User", "each tenant's jobs run as a user of its own", offsetof(Tenant, user) },
        [TENANT_KEY_AGENT_UNIT] = { "AgentUnit", "each tenant has an agent instance of its own",
                                    offsetof(Tenant, agent_unit) },
        [TENANT_KEY_AGENT_CONFIG] = { "AgentConfig",
                                      "two tenants with one agent configuration would share its registration token",
                                      offsetof(Tenant, agent_config) },
        [TENANT_KEY_TRUST] = { "Trust" },
};

static char *tenant_field(const Tenant *t, size_t offset) {
        return *(char *const *) ((const char *) t + offset);
}

int tenant_section_begin(Config *c, TenantSection *s, const char *path, unsigned line) {
        _cleanup_free_ char *origin = NULL, *what = NULL;
        Tenant *t;

        if (asprintf(&origin, "%s:%u", path, line) < 0)
                return -ENOMEM;
        if (c->single_origin) {
                if (asprintf(&what, "%s: [Tenant]", origin) < 0)
                        return -ENOMEM;
                return config_refuse_mixed(what, c->single_origin);
        }
        if (c->n_tenants >= TENANTS_MAX)
                return log_error_errno(-ERCI_USAGE, "%s: more than %u [Tenant] sections; each tenant runs a Docker "
                                       "daemon and an agent of its own, so %u is the most one host takes.",
                                       origin, TENANTS_MAX, TENANTS_MAX);
        t = ARRAY_PUSH(c->tenants, c->n_tenants);
        if (!t)
                return -ENOMEM;
        *t = (Tenant) { .trust = TRUST_UNTRUSTED, .origin = TAKE_PTR(origin) };
        *s = (TenantSection) { .path = path, .line = line };
        return 0;
}

int tenant_set_key(Config *c, TenantSection *s, const char *key, const char *value, unsigned line,
                   const char **ret_error) {
        Tenant *t = &c->tenants[c->n_tenants - 1];
        TenantKey k = 0;
        int r;

        *ret_error = NULL;
        while (k < _TENANT_KEY_MAX && !streq(key, tenant_keys[k].name))
                k++;
        switch (k) {
        case TENANT_KEY_NAME:
                if (!valid_tenant_name(value)) {
                        *ret_error = "must be 1 to 32 of a-z, 0-9 and '-', starting with a letter or digit "
                                     "(it names the agent instance buildkite-agent@NAME.service and the file NAME.cfg)";
                        return -ERCI_USAGE;
                }
                r = free_and_strdup(&t->name, value);
                break;
        case TENANT_KEY_USER:
                r = config_set_user_name(&t->user, value, ret_error);
                break;
        case TENANT_KEY_AGENT_UNIT:
                r = config_set_unit_name(&t->agent_unit, value, ret_error);
                break;
        case TENANT_KEY_AGENT_CONFIG:
                /* A file ("/" would be the whole tree), named unquoted in the agent's drop-in (BUILDKITE_AGENT_CONFIG=). */
                if (!valid_absolute_path(value) || streq(value, "/") || !unit_value_is_plain(value)) {
                        *ret_error = "must be the absolute, normalised path of a file (no '.', '..' or '//'), of "
                                     "letters, digits and '/._+-' only: it stands unquoted in the agent's drop-in";
                        return -ERCI_USAGE;
                }
                /*
                 * apply makes the file root:<tenant's group> 0640: anywhere else (AgentConfig=/etc/shadow,
                 * a slip of root's) that would hand a system file to the tenant's jobs. The package's own
                 * file is made root:root with tenants, so no tenant may share it either.
                 */
                {
                        const char *f = startswith(value, AGENT_CONFIG_DIR "/");
                        if (!f || strchr(f, '/') || streq(f, "buildkite-agent.cfg")) {
                                *ret_error = "must be a file directly in " AGENT_CONFIG_DIR "/ other than the "
                                             "package's own buildkite-agent.cfg: apply gives it to the tenant's group";
                                return -ERCI_USAGE;
                        }
                }
                r = free_and_strdup(&t->agent_config, value);
                break;
        case TENANT_KEY_TRUST:
                if (trust_from_string(value) == _TRUST_MAX) {
                        *ret_error = "must be trusted or untrusted";
                        return -ERCI_USAGE;
                }
                t->trust = trust_from_string(value);
                r = 0;
                break;
        default:
                *ret_error = "unknown key";
                return -ERCI_USAGE;
        }
        if (r >= 0)
                s->key_line[k] = line;
        return r;
}

/* AgentUnit= or AgentConfig= (k) when not given: made from Name=. */
static int tenant_default(Tenant *t, TenantKey k) {
        char **slot = k == TENANT_KEY_AGENT_UNIT ? &t->agent_unit : &t->agent_config;
        char *v;

        if (*slot)
                return 0;
        if (asprintf(&v, k == TENANT_KEY_AGENT_UNIT ? "buildkite-agent@%s.service" : "/etc/buildkite-agent/%s.cfg",
                     t->name) < 0)
                return -ENOMEM;
        *slot = v;
        return 0;
}

int tenant_section_end(Config *c, TenantSection *s) {
        Tenant *t = &c->tenants[c->n_tenants - 1];
        int r;

        if (!t->name)
                return log_error_errno(-ERCI_USAGE, "%s:%u: [Tenant] has no Name=; every tenant needs one "
                                       "(a-z, 0-9 and '-'), and a User=.", s->path, s->line);
        if (!t->user)
                return log_error_errno(-ERCI_USAGE, "%s:%u: [Tenant] %s has no User=; every tenant needs a user of "
                                       "its own.", s->path, s->line, t->name);
        r = tenant_default(t, TENANT_KEY_AGENT_UNIT);
        if (r >= 0)
                r = tenant_default(t, TENANT_KEY_AGENT_CONFIG);
        if (r < 0)
                return r;

        for (TenantKey k = 0; k < _TENANT_KEY_MAX; k++) {
                const char *v;

                if (!tenant_keys[k].unique_why)
                        continue;
                v = tenant_field(t, tenant_keys[k].offset);
                for (size_t i = 0; i + 1 < c->n_tenants; i++) {
                        const Tenant *o = &c->tenants[i];

                        if (!streq(tenant_field(o, tenant_keys[k].offset), v))
                                continue;
                        /* A default is named at the header of the tenant that took it. */
                        if (s->key_line[k])
                                return log_error_errno(-ERCI_USAGE, "%s:%u: %s=%s: tenant %s ([Tenant] at %s) has it "
                                                       "too; %s.", s->path, s->key_line[k], tenant_keys[k].name, v,
                                                       o->name, strempty(o->origin), tenant_keys[k].unique_why);
                        return log_error_errno(-ERCI_USAGE, "%s:%u: [Tenant] %s: %s=%s (its default): tenant %s "
                                               "([Tenant] at %s) has it too; %s.", s->path, s->line, t->name,
                                               tenant_keys[k].name, v, o->name, strempty(o->origin),
                                               tenant_keys[k].unique_why);
                }
        }
        *s = (TenantSection) {};
        return 0;
}

int config_refuse_mixed(const char *what, const char *other) {
        return log_error_errno(-ERCI_USAGE, "%s cannot be combined with %s: with [Tenant] sections each tenant names "
                               "its own User= and AgentUnit=; remove [User] and [Agent] (and --user, --agent-unit).",
                               what, other);
}

int config_note_single(Config *c, const char *path, unsigned line, const char *section, const char *key) {
        _cleanup_free_ char *what = NULL, *other = NULL;

        if (c->n_tenants > 0) {
                if (asprintf(&what, "%s:%u: [%s] %s=", path, line, section, key) < 0 ||
                    asprintf(&other, "[Tenant] at %s", strempty(c->tenants[0].origin)) < 0)
                        return -ENOMEM;
                return config_refuse_mixed(what, other);
        }
        if (!c->single_origin && asprintf(&what, "[%s] %s= at %s:%u", section, key, path, line) < 0)
                return -ENOMEM;
        if (what)
                c->single_origin = TAKE_PTR(what);
        return 0;
}

const Tenant *config_tenant_by_user(const Config *c, const char *user) {
        for (size_t i = 0; i < c->n_tenants; i++)
                if (streq_ptr(c->tenants[i].user, user))
                        return &c->tenants[i];
        return NULL;
}
