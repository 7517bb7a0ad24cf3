/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/proc.h"
#include "util/killpoint.h"
#include "util/log.h"
#include "util/macro.h"

/*
 * The running agent: a changed drop-in (or a killed run's restart marker)
 * means daemon-reload and, when the agent runs, a restart, and only then.
 * So does an agent that runs as another user, or that still holds a group
 * that leads to root from before (I1). Never on a half-made set-up: not
 * looked at in an apply that has failed, the restart is GATE_CLEAN.
 */

/* The real UID of pid (util/proc's reader of /proc/PID/status), or (uid_t) -1. */
static uid_t process_uid(uint32_t pid) {
        _cleanup_(process_creds_done) ProcessCreds c = {};

        if (pid == 0 || process_creds_read_pid((pid_t) pid, &c) < 0)
                return (uid_t) -1;
        return (uid_t) c.uids[0];
}

/*
 * The UID the unit's main process runs as. Right after a start, systemd's
 * forked child is still root until it drops to User= and execs: a UID of 0
 * (or no main PID yet) is asked again until settle_usec has passed.
 */
static uid_t unit_main_uid(sd_bus *bus, const char *unit, unsigned long long settle_usec) {
        unsigned long long deadline = now_usec() + settle_usec;
        uid_t uid;

        for (;;) {
                UnitState s = {};

                if (bus_get_unit_state(bus, unit, &s) < 0)
                        return (uid_t) -1;
                uid = process_uid(s.main_pid);
                unit_state_done(&s);
                if ((uid != 0 && uid != (uid_t) -1) || now_usec() >= deadline)
                        return uid;
                (void) WAITING(poll(NULL, 0, 50));
        }
}

/* Only live, with systemd running, and not in an apply that has failed (before the redesign: not called). */
static bool service_looked_at(StepRun *run) {
        return run_live(run) && run_facts(run)->systemd_running && !run_gate_closed(run);
}

/* The agent unit's state, read once per run: apply reads it in the reload part (and again after a reload). */
static int service_state(StepRun *run, const Account *a, AgentState *st) {
        sd_bus *bus = NULL;
        int r;

        if (st->have_unit)
                return 0;
        r = run_system_bus(run, &bus);
        if (r < 0)
                return r;
        r = bus_get_unit_state(bus, a->agent_unit, &st->unit);
        if (r < 0)
                return r;
        st->have_unit = true;
        return 0;
}

/* Nothing to describe: the reload is the part's settle, in apply only. */
int agent_reload_look(StepRun *run, Account *a) {
        return 0;
}

/*
 * Apply: daemon-reload before the service is looked at, when the drop-in
 * changed, systemd has not loaded the unit's files (a run killed between
 * writing the drop-in and reloading) or an earlier step owes one.
 */
int agent_reload_settle(StepRun *run, Account *a) {
        AgentState *st = run_state(run);
        int r;

        if (a->state != ACCOUNT_KNOWN || !service_looked_at(run))
                return 0;
        r = service_state(run, a, st);
        if (r < 0)
                return r;
        r = system_reload_if_owed(run, st->dropin_changed || st->unit.need_daemon_reload);
        if (r < 0)
                return log_error_errno(r, "Failed to reload the system manager for the agent's drop-in: %m");
        if (r > 0) {
                unit_state_done(&st->unit);
                st->have_unit = false;
                return service_state(run, a, st);
        }
        return 0;
}

typedef struct Restart {
        const char *unit, *user;
        uid_t uid;
        bool holds_group;
        unsigned ready_timeout_sec;
} Restart;

static int restart_apply(StepRun *run, Change *c) {
        const Restart *x = c->data;
        _cleanup_free_ char *result = NULL;
        unsigned long long deadline = now_usec() + (x->ready_timeout_sec + 90ULL) * 1000000ULL;
        sd_bus *bus = NULL;
        uid_t uid;
        int r;

        r = run_system_bus(run, &bus);
        if (r < 0)
                return r;
        log_notice(x->holds_group ? "Restarting %s: it runs as %s but holds a group that leads to root"
                                  : "Restarting %s so it runs as %s with the new drop-in",
                   x->unit, x->user);
        killpoint("agent-before-restart");
        r = bus_unit_job(bus, "RestartUnit", x->unit, deadline, &result);
        if (r < 0)
                return log_error_errno(r == -EIO ? -ERCI_FAILED : r, "Restarting %s ended with \"%s\" (see: journalctl -u %s)",
                                       x->unit, strempty(result), x->unit);
        uid = unit_main_uid(bus, x->unit, 10000000ULL);
        if (uid != x->uid)
                return log_error_errno(-ERCI_FAILED, "%s still does not run as %s after its restart (UID %d)",
                                       x->unit, x->user, uid == (uid_t) -1 ? -1 : (int) uid);
        change_done(run, c->id, ITEM_CHANGE,
                    x->holds_group ? "restarted %s: it runs as %s, without the group that led to root"
                                   : "restarted %s: it runs as %s now",
                    x->unit, x->user);
        return 0;
}

int agent_service_look(StepRun *run, Account *a) {
        AgentState *st = run_state(run);
        const HostFacts *f = run_facts(run);
        const char *unit = a->agent_unit, *user = a->name;
        _cleanup_free_ char *plan = NULL, *message = NULL, *plan_message = NULL, *check_message = NULL;
        _cleanup_free_ Restart *restart = NULL;
        bool restart_owed, running, holds_group = false;
        Verdict in_check = { ITEM_PASS };
        sd_bus *bus = NULL;
        uid_t uid;
        int r;

        /* Apply after a failed item: the engine stops after this step; nothing is looked at or restarted. */
        if (a->state != ACCOUNT_KNOWN || run_gate_closed(run))
                return 0;
        if (!run_live(run) || !f->systemd_running) {
                item_finding(run, "agent.service", ITEM_SKIP, NULL, "%s: systemd applies the drop-in when %s starts",
                             run_live(run) ? "systemd is not running" : "offline tree", unit);
                return 0;
        }
        r = run_system_bus(run, &bus);
        if (r < 0)
                return r;
        r = service_state(run, a, st);
        if (r < 0)
                return r;
        st->service_looked = true;
        /* A changed drop-in, or (apply) a killed run's marker. */
        restart_owed = owed(run, MARKER_AGENT_RESTART);

        if (streq_ptr(st->unit.load_state, "not-found")) {
                item_ok(run, "agent.service", "%s is not installed: the drop-in takes effect when it is", unit);
                return 0;
        }
        running = streq_ptr(st->unit.active_state, "active") || streq_ptr(st->unit.active_state, "reloading") ||
                  streq_ptr(st->unit.active_state, "activating");
        uid = running ? unit_main_uid(bus, unit, 2000000ULL) : (uid_t) -1;
        /* A running agent that is not the CI user's is what this step exists to prevent: restart it too. */
        if (running && uid != (uid_t) -1 && uid != a->uid)
                restart_owed = true;
        /* Started while the CI user was in a privileged group, it (and every job it runs) keeps the group. */
        if (running && uid == a->uid) {
                r = pid_holds_gid((pid_t) st->unit.main_pid, f->privileged_gids, f->n_privileged_gids, NULL);
                if (r < 0)
                        return log_error_errno(r, "Failed to read the credentials of %s (PID %u): %m", unit,
                                               (unsigned) st->unit.main_pid);
                holds_group = r > 0;
                restart_owed |= holds_group;
        }

        /* check: a pending daemon-reload or another UID fails; a restart owed alone passes. */
        if (st->unit.need_daemon_reload) {
                if (asprintf(&check_message, "systemd has not loaded the current files of %s (daemon-reload pending)",
                             unit) < 0)
                        return -ENOMEM;
                in_check = (Verdict) { ITEM_FAIL, check_message, "rootless-ci apply" };
        } else if (running && uid != (uid_t) -1 && uid != a->uid) {
                if (asprintf(&check_message, "%s runs as UID %d, not as %s (UID %u): restart it", unit,
                             uid == (uid_t) -1 ? -1 : (int) uid, user, (unsigned) a->uid) < 0)
                        return -ENOMEM;
                in_check = (Verdict) { ITEM_FAIL, check_message, "rootless-ci apply" };
        }

        if (running && restart_owed) {
                if (asprintf(&plan, holds_group ? "restart %s: it runs as %s but holds a group that leads to root, "
                                                  "left from before"
                                                : "restart %s so it runs as %s with the new drop-in",
                             unit, user) < 0 ||
                    asprintf(&message, "%s runs as %s", unit, user) < 0)
                        return -ENOMEM;
                if (in_check.status == ITEM_PASS)
                        in_check.message = message;
                restart = calloc(1, sizeof(Restart));
                if (!restart)
                        return -ENOMEM;
                *restart = (Restart) { unit, user, a->uid, holds_group, run_config(run)->ready_timeout_sec };
                item_change(run, &(Change) {
                        .id = "agent.service",
                        .state = ITEM_CHANGE,
                        .plan = plan,
                        .in_check = &in_check,
                        .gate = GATE_CLEAN,
                        .apply = restart_apply,
                        .data = TAKE_PTR(restart),
                        .data_free = free,
                });
                return 0;
        }

        if (asprintf(&message, running ? "%s runs as %s" : "%s is not running; it runs as %s when started", unit,
                     user) < 0 ||
            asprintf(&plan_message, running ? "%s runs as %s"
                                            : "%s is not running (not started by rootless-ci; it runs as %s when started)",
                     unit, user) < 0)
                return -ENOMEM;
        if (in_check.status == ITEM_PASS)
                in_check.message = message;
        item_finding_ex(run, &(Finding) {
                .id = "agent.service",
                .status = ITEM_OK,
                .message = message,
                .in_plan = &(Verdict) { ITEM_OK, plan_message, NULL },
                .in_check = &in_check,
        });
        return 0;
}

/* Apply: the restart is made, or was not owed (not installed, not running): the marker is paid. */
int agent_service_settle(StepRun *run, Account *a) {
        AgentState *st = run_state(run);

        if (!st->service_looked)
                return 0;
        return owed_paid(run, MARKER_AGENT_RESTART);
}
