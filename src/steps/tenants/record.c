/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "steps/tenants/tenants.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"

/*
 * The record of the tenants apply has set up, TENANTS_RECORD_PATH: one line
 * per tenant, "NAME USER AGENT-UNIT AGENT-CONFIG" ("-": none), after a comment header. Written only
 * by the tenants step (an item_file: atomic, read back), read by it and by
 * --retire's check. Every field is a name the configuration validated
 * (no blanks in any of them), and is validated again when read.
 */

#define RECORD_MAX (256 * 1024)

#define RECORD_HEADER                                                                                          \
        "# The tenants rootless-ci apply has set up: NAME USER AGENT-UNIT AGENT-CONFIG, one a line.\n"        \
        "# A tenant removed from the configuration stays here until\n"                                        \
        "# \"rootless-ci apply --retire=NAME\" has taken it down. Written by rootless-ci; do not edit.\n"

/*
 * A [Tenant] Name= (valid_tenant_name(), as the parser allows it) or the legacy
 * tenant's, maybe with "~N": that tenant as it was set up before its User=
 * or AgentUnit= changed (never a configured name).
 */
static bool record_name_valid(const char *s) {
        _cleanup_free_ char *base = strndup(s, strcspn(s, "~"));
        const char *n = s + strcspn(s, "~");

        if (!base)
                abort(); /* as run_asprintf() */
        if (*n && (!n[1] || strlen(n + 1) > 9 || strspn(n + 1, "0123456789") != strlen(n + 1)))
                return false;
        return streq(base, TENANT_LEGACY_NAME) || valid_tenant_name(base);
}

static void tenant_record_done(TenantRecord *e) {
        free(e->name);
        free(e->user);
        free(e->agent_unit);
        free(e->agent_config);
}

void tenant_records_done(TenantRecords *t) {
        for (size_t i = 0; i < t->n_entries; i++)
                tenant_record_done(&t->entries[i]);
        free(t->entries);
        *t = (TenantRecords) {};
}

/* One line (without its newline) into *ret: NULL when it is fine, else why not. */
static const char *record_line_parse(char *line, TenantRecord *ret) {
        char *fields[4], *save = NULL;

        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                fields[i] = strtok_r(i == 0 ? line : NULL, " \t", &save);
                if (!fields[i])
                        return "not NAME USER AGENT-UNIT AGENT-CONFIG";
        }
        if (strtok_r(NULL, " \t", &save))
                return "more than NAME USER AGENT-UNIT AGENT-CONFIG";
        if (!record_name_valid(fields[0]))
                return "not a tenant name";
        if (!valid_user_name(fields[1]))
                return "not a user name";
        if (!valid_unit_name(fields[2]))
                return "not a .service unit name";
        /* "-": none (the legacy tenant: the agent package's own file). */
        if (!streq(fields[3], "-") && !valid_absolute_path(fields[3]))
                return "not an absolute path or -";
        *ret = (TenantRecord) {
                .name = strdup(fields[0]),
                .user = strdup(fields[1]),
                .agent_unit = strdup(fields[2]),
                .agent_config = streq(fields[3], "-") ? NULL : strdup(fields[3]),
        };
        if (!ret->name || !ret->user || !ret->agent_unit || (!ret->agent_config && !streq(fields[3], "-")))
                abort(); /* as run_asprintf(): a record we cannot hold is not half read */
        return NULL;
}

int tenant_records_parse(const char *text, TenantRecords *ret) {
        _cleanup_free_ char *copy = strdup(text);
        TenantRecords t = {};
        unsigned n = 0;

        if (!copy)
                return -ENOMEM;
        for (char *line = copy, *next; line; line = next) {
                TenantRecord e, *slot;
                const char *why;

                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                n++;
                line += strspn(line, " \t");
                if (!*line || *line == '#')
                        continue;
                why = record_line_parse(line, &e);
                if (!why && tenant_records_find(&t, e.name)) {
                        tenant_record_done(&e);
                        why = "a tenant named twice";
                }
                if (why) {
                        if (t.bad_line == 0) {
                                t.bad_line = n;
                                t.bad_why = why;
                        }
                        continue;
                }
                slot = ARRAY_PUSH(t.entries, t.n_entries);
                if (!slot) {
                        tenant_record_done(&e);
                        tenant_records_done(&t);
                        return -ENOMEM;
                }
                *slot = e;
        }
        *ret = t;
        return 0;
}

/* The configured tenant of that record name: its user and agent unit; false when there is none. */
static bool configured_as(const Config *c, const char *name, const char **ret_user, const char **ret_unit) {
        if (c->n_tenants == 0) {
                *ret_user = c->user_name;
                *ret_unit = c->agent_unit;
                return streq(name, TENANT_LEGACY_NAME);
        }
        for (size_t i = 0; i < c->n_tenants; i++)
                if (streq(c->tenants[i].name, name)) {
                        *ret_user = c->tenants[i].user;
                        *ret_unit = c->tenants[i].agent_unit;
                        return true;
                }
        return false;
}

/*
 * A tenant still configured under its name but with another User= or
 * AgentUnit= than it was set up with: what ran for the old ones is a
 * removed tenant of its own, NAME~N (the first N free), reported and
 * retired like one. (A changed AgentConfig= alone is the same tenant.)
 */
static void records_rename_earlier(TenantRecords *t, const Config *c) {
        for (size_t i = 0; i < t->n_entries; i++) {
                TenantRecord *e = &t->entries[i];
                const char *user = NULL, *unit = NULL;
                char *name = NULL;

                if (!configured_as(c, e->name, &user, &unit) || (streq_ptr(e->user, user) && streq_ptr(e->agent_unit, unit)))
                        continue;
                for (unsigned k = 1; !name || tenant_records_find(t, name); k++) {
                        free(name);
                        if (asprintf(&name, "%s~%u", e->name, k) < 0)
                                abort(); /* as run_asprintf() */
                }
                free(e->name);
                e->name = name;
        }
}

int tenant_records_load(int root_fd, const Config *c, TenantRecords *ret) {
        _cleanup_free_ char *text = NULL;
        int r;

        r = read_file_at(root_fd, TENANTS_RECORD_PATH, RESOLVE_POLICY_IN_ROOT, RECORD_MAX, &text, NULL);
        if (r == -ENOENT) {
                *ret = (TenantRecords) {};
                return 0;
        }
        if (r < 0)
                return log_error_errno(r, "Failed to read %s: %m", TENANTS_RECORD_PATH);
        r = tenant_records_parse(text, ret);
        if (r < 0)
                return log_error_errno(r, "Failed to parse %s: %m", TENANTS_RECORD_PATH);
        records_rename_earlier(ret, c);
        return 0;
}

char *tenant_records_render(const TenantRecord *entries, size_t n) {
        _cleanup_fclose_ FILE *f = NULL;
        char *buf = NULL;
        size_t size = 0;

        f = open_memstream(&buf, &size);
        if (!f)
                return NULL;
        fputs(RECORD_HEADER, f);
        for (size_t i = 0; i < n; i++)
                fprintf(f, "%s %s %s %s\n", entries[i].name, entries[i].user, entries[i].agent_unit,
                        entries[i].agent_config ?: "-");
        if (memstream_finish(TAKE_PTR(f), &buf) < 0)
                return NULL;
        return buf;
}

const TenantRecord *tenant_records_find(const TenantRecords *t, const char *name) {
        for (size_t i = 0; i < t->n_entries; i++)
                if (streq(t->entries[i].name, name))
                        return &t->entries[i];
        return NULL;
}

const char *tenant_record_name(const char *tenant) {
        return tenant ?: TENANT_LEGACY_NAME;
}

bool tenant_configured(const Config *c, const char *name) {
        if (c->n_tenants == 0)
                return streq(name, TENANT_LEGACY_NAME);
        for (size_t i = 0; i < c->n_tenants; i++)
                if (streq(c->tenants[i].name, name))
                        return true;
        return false;
}

int tenants_verify_retire(const Config *c, const char *root) {
        _cleanup_(tenant_records_done) TenantRecords t = {};
        _cleanup_close_ int root_fd = -1;
        int r;

        if (c->n_retire == 0)
                return 0;
        root_fd = open_root(root ?: "/");
        if (root_fd < 0)
                return log_error_errno(root_fd, "Failed to open root directory %s: %m", root ?: "/");
        r = tenant_records_load(root_fd, c, &t);
        if (r < 0)
                return r;
        for (size_t i = 0; i < c->n_retire; i++) {
                const char *name = c->retire[i];

                if (tenant_configured(c, name))
                        return log_error_errno(-ERCI_USAGE,
                                               streq(name, TENANT_LEGACY_NAME)
                                                       ? "--retire=%s: the tenant of [User] and [Agent] is still "
                                                         "configured (no [Tenant] section); nothing was changed."
                                                       : "--retire=%s: tenant %s is still configured ([Tenant] "
                                                         "Name=%s); remove its section first. Nothing was changed.",
                                               name, name, name);
                if (!tenant_records_find(&t, name))
                        return log_error_errno(-ERCI_USAGE,
                                               "--retire=%s: rootless-ci has set up no tenant %s here (%s names "
                                               "%zu tenant%s); nothing was changed.",
                                               name, name, TENANTS_RECORD_PATH, t.n_entries,
                                               t.n_entries == 1 ? "" : "s");
        }
        return 0;
}

bool tenant_retiring(const Config *c, const char *name) {
        for (size_t i = 0; i < c->n_retire; i++)
                if (streq(c->retire[i], name))
                        return true;
        return false;
}

static bool user_configured(const Config *c, const char *user) {
        if (c->n_tenants == 0)
                return streq_ptr(c->user_name, user);
        for (size_t i = 0; i < c->n_tenants; i++)
                if (streq(c->tenants[i].user, user))
                        return true;
        return false;
}

int tenants_removed(int root_fd, const Config *c, TenantRecords *ret) {
        _cleanup_(tenant_records_done) TenantRecords t = {};
        TenantRecords kept = {};
        int r;

        r = tenant_records_load(root_fd, c, &t);
        if (r < 0)
                return r;
        /* Half a record would drop what a removed tenant still runs on (the tenants step says which line). */
        if (t.bad_line > 0)
                return log_error_errno(-EBADMSG, "%s:%u does not parse (%s): the tenants set up are not known",
                                       TENANTS_RECORD_PATH, t.bad_line, t.bad_why);
        kept.entries = calloc(t.n_entries, sizeof(TenantRecord));
        if (!kept.entries && t.n_entries > 0)
                return -ENOMEM;
        for (size_t i = 0; i < t.n_entries; i++)
                if (!tenant_configured(c, t.entries[i].name) && !tenant_retiring(c, t.entries[i].name)) {
                        kept.entries[kept.n_entries++] = t.entries[i];
                        t.entries[i] = (TenantRecord) {};   /* moved */
                }
        *ret = kept;
        return 0;
}

int tenants_removed_users(int root_fd, const Config *c, char ***ret) {
        _cleanup_(tenant_records_done) TenantRecords t = {};
        _cleanup_strv_free_ char **users = NULL;
        size_t n = 0;
        int r;

        r = tenants_removed(root_fd, c, &t);
        if (r < 0)
                return r;
        users = calloc(t.n_entries + 1, sizeof(char *));
        if (!users)
                return -ENOMEM;
        for (size_t i = 0; i < t.n_entries; i++) {
                bool seen = false;

                for (size_t k = 0; k < n; k++)
                        seen = seen || streq(users[k], t.entries[i].user);
                if (seen || user_configured(c, t.entries[i].user))
                        continue;
                users[n] = strdup(t.entries[i].user);
                if (!users[n++])
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(users);
        return 0;
}
