/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/step.h"
#include "steps/agent/agent.h"
#include "steps/daemon/daemon.h"
#include "steps/steps.h"
#include "steps/tenants/tenants.h"
#include "util/bus.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/userdb.h"

/*
 * The tenants step, after the agent step: what rootless-ci remembers of
 * the tenants it set up (record.c), and what still runs for one that is no
 * longer configured. Its parts:
 *
 *   removed  each recorded tenant the configuration no longer has: a WARN,
 *            tenants.removed:NAME, naming what still runs for it (its agent
 *            instance enabled or active, its drop-in, its user's Docker,
 *            linger, the user manager's mount drop-in), in every verb;
 *            apply takes nothing down. With --retire=NAME (apply, and plan
 *            to show it): one change per thing that still runs, in the
 *            order the tenant was set up backwards: the agent first (no job
 *            starts any more), its drop-in, the user's Docker, linger, the
 *            manager's drop-in. Never its user, home, builds, Docker data or
 *            agent configuration. What a configured tenant uses too (the
 *            user, or the agent unit, of a tenant that kept them when
 *            [User]/[Agent] became [Tenant] sections) is not touched.
 *   record   the record rewritten (an item_file: atomic, read back) with
 *            every configured tenant, once apply got here (every step before
 *            it is done for them), and every removed tenant not retired in
 *            this run. A retire that fails stops the step before, so the
 *            record keeps the tenant until its retire is done.
 */

/* What the agent step and the daemon step write for a tenant: their own names (agent.h, daemon.h). */
#define USER_DOCKER_UNIT UNIT_NAME
#define STOP_TIMEOUT_USEC (5ULL * 60ULL * 1000000ULL)
#define SYSTEM_UNIT_DIR "/etc/systemd/system"
#define ENABLE_LINKS_MAX 8

/* What is left of a removed tenant, as the look found it. Paths and texts are the run's. */
typedef struct Leftover {
        const TenantRecord *e;
        bool live;                  /* systemd was asked (else: files only) */
        const char *agent_shared;   /* a configured tenant's name, when it runs the same agent unit */
        const char *user_shared;    /* ... the same user */
        bool user_untrusted;        /* and that tenant is untrusted */
        bool agent_active, agent_enabled;
        /* Offline: how the tree enables the agent unit, its links in SYSTEM_UNIT_DIR/<target>.wants/ */
        const char *enable_links[ENABLE_LINKS_MAX];
        size_t n_enable_links;
        const char *agent_dropin;   /* the path, when it is there */
        bool have_uid;
        uid_t uid;
        bool docker_active;
        const char *linger;         /* the path, when it is there */
        const char *mount_dropin;   /* the path, when it is there */
} Leftover;

typedef struct TenantsState {
        TenantRecords record;
        bool record_loaded;
        Leftover *leftovers;        /* one per removed tenant (record.n_entries allocated): what its changes apply */
        size_t n_leftovers;
} TenantsState;

static bool entry_exists(StepRun *run, const char *path) {
        _cleanup_close_ int fd = safe_openat(run_root_fd(run), path, O_PATH | O_NOFOLLOW, 0, RESOLVE_POLICY_IN_ROOT);
        return fd >= 0;
}

/* Is the unit running or starting (a stop is owed), by its ActiveState? */
static bool state_running(const char *active_state) {
        return streq_ptr(active_state, "active") || streq_ptr(active_state, "activating") ||
               streq_ptr(active_state, "reloading");
}

/* The user's docker.service, when its manager runs: read only. */
static int docker_look(StepRun *run, Leftover *l) {
        _cleanup_bus_ sd_bus *user_bus = NULL;
        UnitState mgr = {}, docker = {};
        int r;

        r = run_user_manager_state(run, l->uid, NULL, &mgr);
        if (r < 0)
                return r;
        l->docker_active = streq_ptr(mgr.active_state, "active");
        unit_state_done(&mgr);
        if (!l->docker_active)
                return 0;
        if (bus_open_user_manager(l->e->user, &user_bus) < 0 ||
            bus_get_unit_state(user_bus, USER_DOCKER_UNIT, &docker) < 0) {
                /* Its manager runs but does not answer us: count the daemon as running, retire stops it. */
                log_warning("Could not ask %s's manager about %s; taking it as running", l->e->user, USER_DOCKER_UNIT);
                return 0;
        }
        l->docker_active = state_running(docker.active_state);
        unit_state_done(&docker);
        return 0;
}

static bool is_wants_dir(const struct dirent *de) {
        return endswith(de->d_name, ".wants") || endswith(de->d_name, ".requires");
}

/* Offline (no systemd to ask): the agent unit is enabled in the tree by its links in SYSTEM_UNIT_DIR/<target>.wants/. */
static int enable_links_look(StepRun *run, Leftover *l) {
        _cleanup_strv_free_ char **dirs = NULL;
        size_t n = 0;
        int r;

        r = dir_list_sorted_at(run_root_fd(run), SYSTEM_UNIT_DIR, RESOLVE_POLICY_IN_ROOT, is_wants_dir, &dirs, &n);
        if (r < 0)
                return log_error_errno(r, "Failed to list %s: %m", SYSTEM_UNIT_DIR);
        for (size_t i = 0; i < n; i++) {
                const char *link = run_asprintf(run, SYSTEM_UNIT_DIR "/%s/%s", dirs[i], l->e->agent_unit);
                if (!entry_exists(run, link))
                        continue;
                /* Never "disabled" with a link left behind. */
                if (l->n_enable_links >= ENABLE_LINKS_MAX)
                        return log_error_errno(-E2BIG, "%s is enabled by more than %d links in %s/*.wants/; disable "
                                               "it by hand", l->e->agent_unit, ENABLE_LINKS_MAX, SYSTEM_UNIT_DIR);
                l->enable_links[l->n_enable_links++] = link;
        }
        l->agent_enabled = l->n_enable_links > 0;
        return 0;
}

/* Look at what still runs, or is still there, for the removed tenant e. */
static int leftover_look(StepRun *run, const TenantRecord *e, Leftover *l) {
        const HostFacts *f = run_facts(run);
        _cleanup_(userdb_done) UserDb db = {};
        const char *path;
        size_t n;
        const Account *accounts = run_accounts(run, &n);
        int r;

        *l = (Leftover) { .e = e, .live = run_live(run) && f->systemd_running };
        for (size_t i = 0; i < n; i++) {
                if (!l->agent_shared && streq(accounts[i].agent_unit, e->agent_unit))
                        l->agent_shared = tenant_record_name(accounts[i].tenant);
                if (!l->user_shared && streq(accounts[i].name, e->user)) {
                        l->user_shared = tenant_record_name(accounts[i].tenant);
                        l->user_untrusted = accounts[i].trust == TRUST_UNTRUSTED;
                }
        }

        if (!l->agent_shared) {
                _cleanup_free_ char *dropin = agent_dropin_path(e->agent_unit);

                if (!dropin)
                        return -ENOMEM;
                path = run_asprintf(run, "%s", dropin);
                if (entry_exists(run, path))
                        l->agent_dropin = path;
                if (l->live) {
                        UnitState s = {};
                        sd_bus *bus = NULL;

                        r = run_system_bus(run, &bus);
                        if (r >= 0)
                                r = bus_get_unit_state(bus, e->agent_unit, &s);
                        if (r < 0)
                                return log_error_errno(r, "Failed to read the state of %s: %m", e->agent_unit);
                        l->agent_active = state_running(s.active_state);
                        l->agent_enabled = startswith(strempty(s.unit_file_state), "enabled") != NULL;
                        unit_state_done(&s);
                } else {
                        r = enable_links_look(run, l);
                        if (r < 0)
                                return r;
                }
        }
        if (l->user_shared)
                return 0;

        path = run_asprintf(run, LINGER_DIR "/%s", e->user);
        if (entry_exists(run, path))
                l->linger = path;
        r = userdb_load(&db, run_root_fd(run));
        if (r < 0)
                return log_error_errno(r, "Failed to read the accounts of %s: %m", run_root(run));
        {
                const PasswdEntry *pw = userdb_find_user(&db, e->user);
                if (!pw)
                        return 0;    /* no user: no manager, no daemon, no drop-in of its UID to find */
                l->have_uid = true;
                l->uid = pw->uid;
        }
        path = run_asprintf(run, MOUNT_DROPIN_FMT, (unsigned) l->uid);
        if (entry_exists(run, path))
                l->mount_dropin = path;
        return l->live ? docker_look(run, l) : 0;
}

/* "buildkite-agent@pr.service (enabled, running), its drop-in ..., ...": what is left, or NULL when nothing is. */
static char *leftover_describe(StepRun *run, const Leftover *l) {
        _cleanup_free_ char *s = NULL;
        const char *parts[6];
        size_t n = 0;

        if (l->agent_active || l->agent_enabled)
                parts[n++] = run_asprintf(run, "%s (%s)", l->e->agent_unit,
                                          l->agent_active && l->agent_enabled ? "enabled, running"
                                          : l->agent_active                  ? "running"
                                                                             : "enabled");
        if (l->agent_dropin)
                parts[n++] = run_asprintf(run, "the drop-in %s", l->agent_dropin);
        if (l->docker_active)
                parts[n++] = run_asprintf(run, "%s's Docker (%s in its manager)", l->e->user, USER_DOCKER_UNIT);
        if (l->linger)
                parts[n++] = run_asprintf(run, "linger for %s", l->e->user);
        if (l->mount_dropin)
                parts[n++] = run_asprintf(run, "the drop-in %s", l->mount_dropin);
        if (n == 0)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                char *t;
                if (asprintf(&t, "%s%s%s", strempty(s), i == 0 ? "" : i + 1 == n ? " and " : ", ", parts[i]) < 0)
                        abort();
                free(s);
                s = t;
        }
        return run_asprintf(run, "%s", s);
}

/* ---- retire: the changes ---------------------------------------------------------------------------- */

static int remove_path(StepRun *run, const char *path);

static int retire_agent_apply(StepRun *run, Change *c) {
        const Leftover *l = c->data;
        _cleanup_free_ char *result = NULL;
        sd_bus *bus = NULL;
        bool changed = false;
        int r;

        if (!l->live) {
                /* Offline: disabled as systemctl --root disables, by its links; nothing runs. */
                for (size_t i = 0; i < l->n_enable_links; i++) {
                        r = remove_path(run, l->enable_links[i]);
                        if (r < 0)
                                return r;
                }
                change_done(run, c->id, ITEM_REMOVE, "disabled %s (removed its link%s in %s)", l->e->agent_unit,
                            l->n_enable_links == 1 ? "" : "s", SYSTEM_UNIT_DIR);
                return 0;
        }
        r = run_system_bus(run, &bus);
        if (r < 0)
                return r;
        if (l->agent_active) {
                log_info("Stopping %s (tenant %s is retired)", l->e->agent_unit, l->e->name);
                r = bus_unit_job(bus, "StopUnit", l->e->agent_unit, now_usec() + STOP_TIMEOUT_USEC, &result);
                if (r < 0)
                        return log_error_errno(r == -EIO ? -ERCI_FAILED : r, "Stopping %s ended with \"%s\" (see: "
                                               "journalctl -u %s)", l->e->agent_unit, strempty(result),
                                               l->e->agent_unit);
        }
        r = bus_disable_unit_file(bus, l->e->agent_unit, &changed);
        if (r < 0)
                return r;
        change_done(run, c->id, ITEM_REMOVE, "%s %s", l->agent_active ? "stopped and disabled" : "disabled",
                    l->e->agent_unit);
        return 0;
}

static int retire_docker_apply(StepRun *run, Change *c) {
        const Leftover *l = c->data;
        _cleanup_bus_ sd_bus *user_bus = NULL;
        _cleanup_free_ char *result = NULL;
        int r;

        r = bus_open_user_manager(l->e->user, &user_bus);
        if (r < 0)
                return log_error_errno(r, "Failed to connect to %s's manager: %m", l->e->user);
        log_info("Stopping %s in %s's manager (tenant %s is retired)", USER_DOCKER_UNIT, l->e->user, l->e->name);
        r = bus_unit_job(user_bus, "StopUnit", USER_DOCKER_UNIT, now_usec() + STOP_TIMEOUT_USEC, &result);
        if (r < 0)
                return log_error_errno(r == -EIO ? -ERCI_FAILED : r, "Stopping %s's Docker ended with \"%s\" (see: "
                                       "journalctl _UID=%u --user-unit=%s)", l->e->user, strempty(result),
                                       (unsigned) l->uid, USER_DOCKER_UNIT);
        change_done(run, c->id, ITEM_REMOVE, "stopped %s's Docker; its data stays where it is", l->e->user);
        return 0;
}

static int remove_path(StepRun *run, const char *path) {
        _cleanup_free_ char *shown = run_shown(run, path);
        int r = remove_file_at(run_root_fd(run), path, RESOLVE_POLICY_IN_ROOT);

        if (r < 0 && r != -ENOENT)
                return log_error_errno(r, "Failed to remove %s: %m", shown ?: path);
        return 0;
}

static int retire_linger_apply(StepRun *run, Change *c) {
        const Leftover *l = c->data;
        int r;

        /* logind keeps the file; offline it reads the directory at boot. */
        r = l->live && l->have_uid ? bus_set_linger(l->uid, false) : remove_path(run, l->linger);
        if (r < 0)
                return r;
        if (entry_exists(run, l->linger))
                return log_error_errno(-EIO, "Linger for %s is still on after disabling it", l->e->user);
        change_done(run, c->id, ITEM_REMOVE, "disabled linger for %s: its manager no longer starts at boot",
                    l->e->user);
        return 0;
}

/* c->data: the path of a drop-in (a run text); its directory goes too once it is empty. */
static int retire_file_apply(StepRun *run, Change *c) {
        const char *path = c->data;
        _cleanup_free_ char *dir = strdup(path), *name = NULL;
        _cleanup_close_ int parent = -1;
        bool dir_removed = false;
        int r;

        if (!dir)
                return -ENOMEM;
        r = remove_path(run, path);
        if (r < 0)
                return r;
        /* A unit's ".d" directory that rootless-ci made for this drop-in alone: anything else in it stays. */
        *strrchr(dir, '/') = 0;
        parent = open_parent_dir(run_root_fd(run), dir, RESOLVE_POLICY_IN_ROOT, &name);
        dir_removed = parent >= 0 && unlinkat(parent, name, AT_REMOVEDIR) >= 0 && fsync_dir(parent) >= 0;
        change_done(run, c->id, ITEM_REMOVE, "removed %s%s", path, dir_removed ? " and its empty directory" : "");
        return 0;
}

/* plan, apply --retire=NAME: one change per thing left, in this order. l: the step state's, for the applies. */
static void retire_describe(StepRun *run, const Leftover *l) {
        const bool agent = l->agent_active || l->agent_enabled;
        const struct {
                const char *kind;     /* tenants.retire-KIND:NAME */
                const char *plan;     /* NULL: nothing of this kind is left */
                int (*apply)(StepRun *run, Change *c);
                const void *data;
                unsigned effects;
        } changes[] = {
                { "agent", agent ? run_asprintf(run, "%s %s", l->agent_active ? "stop and disable" : "disable",
                                                l->e->agent_unit) : NULL,
                  retire_agent_apply, l },
                { "agent-dropin", l->agent_dropin ? run_asprintf(run, "remove %s", l->agent_dropin) : NULL,
                  retire_file_apply, l->agent_dropin, EFFECT_SYSTEM_RELOAD },
                { "docker", l->docker_active ? run_asprintf(run, "stop %s's Docker (%s in its manager; its data is "
                                                            "kept)", l->e->user, USER_DOCKER_UNIT) : NULL,
                  retire_docker_apply, l },
                { "linger", l->linger ? run_asprintf(run, "disable linger for %s", l->e->user) : NULL,
                  retire_linger_apply, l },
                { "mount-dropin", l->mount_dropin ? run_asprintf(run, "remove %s", l->mount_dropin) : NULL,
                  retire_file_apply, l->mount_dropin, EFFECT_SYSTEM_RELOAD },
        };

        for (size_t i = 0; i < ELEMENTSOF(changes); i++)
                if (changes[i].plan)
                        item_change(run, &(Change) {
                                .id = run_asprintf(run, "tenants.retire-%s:%s", changes[i].kind, l->e->name),
                                .state = ITEM_REMOVE,
                                .plan = changes[i].plan,
                                .effects = changes[i].effects,
                                .apply = changes[i].apply,
                                .data = (void *) changes[i].data,
                        });
}

/* ---- the parts ---------------------------------------------------------------------------------------- */

static int state_load(StepRun *run, TenantsState *st) {
        int r;

        if (st->record_loaded)
                return 0;
        r = tenant_records_load(run_root_fd(run), run_config(run), &st->record);
        if (r < 0)
                return r;
        st->record_loaded = true;
        return 0;
}

static void removed_report(StepRun *run, const Leftover *l) {
        const TenantRecord *e = l->e;
        const char *left = leftover_describe(run, l);
        const char *earlier = strchr(e->name, '~');
        const char *what = startswith(e->name, TENANT_LEGACY_NAME)
                                   ? run_asprintf(run, "the tenant of [User] Name=%s and [Agent] Unit=%s (%s; recorded "
                                                  "as %s)", e->user, e->agent_unit,
                                                  earlier ? "as it was set up before" : "before [Tenant] sections",
                                                  e->name)
                           : earlier ? run_asprintf(run, "tenant %.*s as it was set up before, with user %s and %s "
                                                    "(recorded as %s),", (int) (earlier - e->name), e->name, e->user,
                                                    e->agent_unit, e->name)
                                     : run_asprintf(run, "tenant %s (user %s, %s)", e->name, e->user, e->agent_unit);
        bool mixed = l->user_shared && l->user_untrusted && !l->agent_shared && (l->agent_enabled || l->agent_active);
        const char *shared = "";

        if (l->user_shared && l->agent_shared)
                shared = run_asprintf(run, "; its user %s and %s are tenant %s's now and stay", e->user,
                                      e->agent_unit, l->user_shared);
        else if (l->user_shared)
                shared = run_asprintf(run, "; its user %s (with its Docker and linger) is tenant %s's now and stays",
                                      e->user, l->user_shared);
        else if (l->agent_shared)
                shared = run_asprintf(run, "; %s is tenant %s's now and stays", e->agent_unit, l->agent_shared);
        /*
         * Its agent still runs, as a user that is an untrusted tenant's now: that
         * tenant's jobs and the removed tenant's (main's, with its secrets, when
         * [User]/[Agent] became an untrusted [Tenant]'s user) share a user, a home
         * and a Docker. Not a state to warn of: a failure until it is retired.
         */
        if (mixed)
                shared = run_asprintf(run, "%s; and %s still runs jobs as %s, now the untrusted tenant %s's user: "
                                      "they share its home and Docker with %s's jobs", shared, e->agent_unit,
                                      e->user, l->user_shared, l->user_shared);
        item_finding(run, run_asprintf(run, "tenants.removed:%s", e->name), mixed ? ITEM_FAIL : ITEM_WARN,
                     run_asprintf(run, "rootless-ci apply --retire=%s (stops and disables what runs for it and "
                                  "forgets it; deletes no user, home, builds, Docker data or configuration)",
                                  e->name),
                     "%s is no longer configured; %s%s%s. apply takes nothing down without --retire=%s, and keeps "
                     "its data either way%s",
                     what, left ? "still there for it: " : "nothing runs for it any more",
                     left ?: "", l->live ? "" : " (as far as the files tell: systemd was not asked)", e->name,
                     shared);
}

static int removed_look(StepRun *run, Account *unused) {
        TenantsState *st = run_state(run);
        const Config *c = run_config(run);
        int r;

        r = state_load(run, st);
        if (r < 0)
                return r;
        /* main.c checked them before anything ran (tenants_verify_retire()); a run without that check stops here. */
        for (size_t i = 0; i < c->n_retire; i++)
                if (tenant_configured(c, c->retire[i]) || !tenant_records_find(&st->record, c->retire[i]))
                        return item_stop(run, run_asprintf(run, "tenants.retire:%s", c->retire[i]), STOP_ALWAYS,
                                         -ERCI_USAGE, "name a tenant of " TENANTS_RECORD_PATH
                                         " that the configuration no longer has",
                                         "--retire=%s names %s", c->retire[i],
                                         tenant_configured(c, c->retire[i]) ? "a tenant that is still configured"
                                                                            : "no tenant rootless-ci set up");

        st->leftovers = calloc(st->record.n_entries, sizeof(Leftover));
        if (!st->leftovers && st->record.n_entries > 0)
                return -ENOMEM;
        for (size_t i = 0; i < st->record.n_entries; i++) {
                const TenantRecord *e = &st->record.entries[i];
                Leftover *l = &st->leftovers[st->n_leftovers];

                if (tenant_configured(c, e->name))
                        continue;
                r = leftover_look(run, e, l);
                if (r < 0)
                        return r;
                st->n_leftovers++;
                if (tenant_retiring(c, e->name))
                        retire_describe(run, l);
                else
                        removed_report(run, l);
        }
        return 0;
}

static int record_look(StepRun *run, Account *unused) {
        TenantsState *st = run_state(run);
        const Config *c = run_config(run);
        _cleanup_free_ TenantRecord *want = NULL;
        _cleanup_free_ char *text = NULL;
        size_t n_accounts, n = 0;
        const Account *accounts = run_accounts(run, &n_accounts);
        int r;

        r = state_load(run, st);
        if (r < 0)
                return r;
        if (st->record.bad_line > 0) {
                item_finding(run, "tenants.record", ITEM_FAIL,
                             "correct or remove that line (NAME USER AGENT-UNIT AGENT-CONFIG), then run rootless-ci "
                             "apply",
                             "%s:%u: %s; rootless-ci does not rewrite a record it cannot read whole (it would forget "
                             "a tenant)", TENANTS_RECORD_PATH, st->record.bad_line, st->record.bad_why);
                return 0;
        }
        want = calloc(n_accounts + st->record.n_entries, sizeof(TenantRecord));
        if (!want)
                return -ENOMEM;
        /* The configured tenants, in the configuration's order; then the removed ones not retired. */
        for (size_t i = 0; i < n_accounts; i++)
                want[n++] = (TenantRecord) { .name = (char *) tenant_record_name(accounts[i].tenant),
                                             .user = (char *) accounts[i].name,
                                             .agent_unit = (char *) accounts[i].agent_unit,
                                             .agent_config = (char *) accounts[i].agent_config };
        for (size_t i = 0; i < st->record.n_entries; i++) {
                const TenantRecord *e = &st->record.entries[i];
                if (!tenant_configured(c, e->name) && !tenant_retiring(c, e->name))
                        want[n++] = *e;
        }
        text = tenant_records_render(want, n);
        if (!text)
                return -ENOMEM;
        r = item_file(run, &(FileWant) {
                .id = "tenants.record",
                .path = TENANTS_RECORD_PATH,
                .text = text,
                .what = "the tenants record",
                /* apply's bookkeeping, not a property of the host: check judges the host (a record never written
                 * yet, on a host apply has not reached, is no failure of it). */
                .hidden_in = IN_CHECK,
        });
        return r < 0 ? r : 0;
}

static void tenants_state_done(void *p) {
        TenantsState *st = p;

        tenant_records_done(&st->record);
        free(st->leftovers);
}

static const Part tenants_parts[] = {
        { .name = "removed", .look = removed_look },
        { .name = "record", .look = record_look },
};

const Step step_tenants = {
        .name = "tenants",
        STEP_PARTS(tenants_parts),
        .state_size = sizeof(TenantsState),
        .state_done = tenants_state_done,
        .refusal = "Refusing to retire a tenant (see %s).",
};
