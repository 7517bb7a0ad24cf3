/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "steps/daemon/daemon.h"
#include "steps/daemon/journal.h"
#include "steps/daemon/ping.h"
#include "util/bus.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/killpoint.h"
#include "util/log.h"
#include "util/macro.h"

/*
 * The daemon step's user side: linger, then the CI user's manager and its
 * docker.service. Its manager: reload only if our unit changed, restart
 * only if it changed while running, start if not running, and wait for
 * GET /_ping. When nothing drifted, no bus connection to the user's manager
 * is made and nothing is restarted.
 */

#define JOURNAL_LINES 20

/* ---- linger --------------------------------------------------------------------------------------------- */

static int linger_exists(StepRun *run, const Account *a) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -1;

        if (asprintf(&path, LINGER_DIR "/%s", a->name) < 0)
                return -ENOMEM;
        fd = safe_openat(run_root_fd(run), path, O_PATH, 0, RESOLVE_POLICY_IN_ROOT);
        return fd >= 0;
}

static int linger_apply(StepRun *run, Change *c) {
        const DaemonState *st = run_state(run);
        const Account *a = c->data;
        int r;

        if (st->live) {
                r = bus_set_linger(a->uid, true);
                if (r < 0)
                        return r;
        } else {
                /* Offline tree: logind reads this directory at boot. */
                _cleanup_free_ char *path = NULL;
                _cleanup_close_ int dfd = safe_mkdir_p(run_root_fd(run), LINGER_DIR, 0755, RESOLVE_POLICY_IN_ROOT);
                if (dfd < 0)
                        return log_error_errno(dfd, "Failed to create %s: %m", LINGER_DIR);
                if (asprintf(&path, LINGER_DIR "/%s", a->name) < 0)
                        return -ENOMEM;
                r = write_file_atomic(run_root_fd(run), path, "", 0, 0644, (uid_t) -1, (gid_t) -1,
                                      RESOLVE_POLICY_IN_ROOT);
                if (r < 0)
                        return log_error_errno(r, "Failed to write %s: %m", path);
        }
        if (!linger_exists(run, a))
                return log_error_errno(-EIO, "Linger for %s is still off after enabling it", a->name);
        killpoint("daemon-linger");
        change_done(run, c->id, ITEM_CREATE, "enabled linger for %s", a->name);
        return 0;
}

/*
 * The part "linger", after the manager's restart: enabling linger starts
 * user@UID, which must find the drop-ins already loaded by the one reload.
 */
int daemon_linger_look(StepRun *run, Account *a) {
        const DaemonState *st = run_state(run);
        bool planned = a->state == ACCOUNT_PLANNED;

        if (st->skip)
                return 0;
        if (!planned && linger_exists(run, a)) {
                item_ok(run, "daemon.linger", "%s's manager runs without a login (linger)", a->name);
                return 0;
        }
        item_change(run, &(Change) {
                .id = "daemon.linger",
                .state = ITEM_CREATE,
                .plan = run_asprintf(run, "enable linger for %s (through logind)", a->name),
                .problem = run_asprintf(run, "linger is off for %s: its Docker would not start at boot", a->name),
                .hidden_in = st->hide,
                .apply = linger_apply,
                .data = a,
        });
        return 0;
}

/* ---- the user's docker.service -------------------------------------------------------------------------- */

/* Print what went wrong with the user's docker.service: its state, its log, a likely cause. */
static void explain_failure(const Account *a, sd_bus *user_bus) {
        _cleanup_free_ char *log = NULL;
        UnitState s = {};
        const char *hint;

        if (user_bus && bus_get_unit_state(user_bus, UNIT_NAME, &s) >= 0)
                log_error("%s's %s is %s (%s), result: %s", a->name, UNIT_NAME, strempty(s.active_state),
                          strempty(s.sub_state), strempty(s.result));
        if (journal_user_unit_tail(a->uid, UNIT_NAME, JOURNAL_LINES, &log) >= 0 && log && *log)
                log_error("Last lines of its journal:\n%s", log);
        else
                log_error("Its journal has no lines (look with: journalctl _UID=%u --user-unit=%s)", (unsigned) a->uid,
                          UNIT_NAME);
        hint = rootless_docker_failure_hint(s.result && streq(s.result, "start-limit-hit") ? "start-limit-hit" : log);
        if (hint)
                log_error("Likely cause: %s", hint);
        unit_state_done(&s);
}

/* Between ping attempts: give up early once the unit has failed for good. */
static int unit_still_starting(void *userdata) {
        sd_bus *user_bus = userdata;
        UnitState s = {};
        int r;

        r = bus_get_unit_state(user_bus, UNIT_NAME, &s);
        if (r < 0)
                return r;
        r = streq_ptr(s.active_state, "failed") || streq_ptr(s.active_state, "inactive") ? -ESRCH : 0;
        unit_state_done(&s);
        return r;
}

/* user@UID not running: logind starts it when linger is switched on; else start it as logind does, and wait. */
static int user_manager_wait(StepRun *run, const Account *a, const char *active_state, unsigned long long deadline) {
        unsigned timeout = run_config(run)->ready_timeout_sec;
        unsigned long long t0 = now_usec();
        _cleanup_free_ char *user_manager = NULL;
        sd_bus *system_bus = NULL;
        UnitState mgr = {};
        int r;

        if (asprintf(&user_manager, "user@%u.service", (unsigned) a->uid) < 0)
                return -ENOMEM;
        r = run_system_bus(run, &system_bus);
        if (r < 0)
                return r;
        /* When linger was on already, it was stopped since (its data mount went away, RequiresMountsFor=). */
        if (!streq_ptr(active_state, "activating")) {
                _cleanup_free_ char *job_result = NULL;
                log_info("Starting %s", user_manager);
                (void) bus_unit_job(system_bus, "StartUnit", user_manager, deadline, &job_result);
        }
        log_info("Waiting for %s (up to %u s)", user_manager, timeout);
        killpoint("daemon-waiting-for-manager");
        r = bus_wait_unit_active(system_bus, user_manager, deadline, &mgr);
        if (r >= 0)
                log_info("%s is active after %.2f s", user_manager, (double) (now_usec() - t0) / 1e6);
        if (r < 0) {
                log_error("%s did not become active: %s (%s, result %s)", user_manager,
                          r == -ETIMEDOUT ? "timed out" : "it failed", strempty(mgr.active_state),
                          strempty(mgr.result));
                log_error("Likely cause: the data mount %s is missing (the manager requires it), or logind "
                          "could not start the user's session",
                          run_config(run)->mount_point);
                unit_state_done(&mgr);
                return -ERCI_FAILED;
        }
        unit_state_done(&mgr);
        return 0;
}

/*
 * Apply, when the daemon does not answer, or its unit, its link or its user
 * namespace is to change: start or restart it in the user's manager (a
 * reload of that manager first if our files changed and it ran before this
 * apply: if it did not, whatever it runs now was started from the new
 * files and needs no restart), and wait for GET /_ping.
 */
static int service_apply(StepRun *run, Change *c) {
        DaemonState *st = run_state(run);
        const Account *a = c->data;
        unsigned timeout = run_config(run)->ready_timeout_sec;
        unsigned long long deadline = now_usec() + (unsigned long long) timeout * 1000000ULL, t0;
        _cleanup_bus_ sd_bus *user_bus = NULL;
        _cleanup_free_ char *result = NULL, *userns_msg = NULL, *fix = NULL;
        _cleanup_(docker_peer_done) DockerPeer peer = DOCKER_PEER_NULL;
        const char *method = NULL;
        bool userns_restart = false;
        UnitState svc = {};
        int r, userns;

        if (st->answering && st->userns == 0) {
                /* A restart maps the IDs of /etc/subuid and /etc/subgid as they are now (and takes the socket back). */
                log_warning("%s; restarting %s", st->userns_msg, UNIT_NAME);
                userns_restart = true;
        }
        if (!streq_ptr(st->mgr_active_state, "active")) {
                r = user_manager_wait(run, a, st->mgr_active_state, deadline);
                if (r < 0)
                        return r;
        }

        r = bus_open_user_manager(a->name, &user_bus);
        if (r < 0)
                return r;
        if ((st->unit_changed || st->link_changed) && st->mgr_was_active) {
                r = bus_manager_reload(user_bus);
                if (r < 0)
                        return r;
        }
        r = bus_get_unit_state(user_bus, UNIT_NAME, &svc);
        if (r < 0)
                return r;
        if (streq_ptr(svc.load_state, "not-found") || streq_ptr(svc.load_state, "masked")) {
                log_error("%s's manager sees %s as %s (a unit in its home overrides ours?)", a->name, UNIT_NAME,
                          svc.load_state);
                unit_state_done(&svc);
                return -ERCI_FAILED;
        }
        /*
         * Running: restart only if its manager ran before our unit changed.
         * Anything else, including a start in progress (the manager started it
         * at boot of the user's manager): StartUnit, which joins a running
         * start job, so its result is what we wait for.
         */
        if (streq_ptr(svc.active_state, "active") || streq_ptr(svc.active_state, "reloading"))
                method = (st->unit_changed && st->mgr_was_active) || userns_restart ? "RestartUnit" : NULL;
        else
                method = "StartUnit";
        if (streq_ptr(svc.active_state, "failed")) {
                /* Clears a start-limit-hit so the start below is really tried. */
                _cleanup_bus_error_ sd_bus_error error = SD_BUS_ERROR_NULL;
                (void) WAITING(sd_bus_call_method(user_bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                                  "org.freedesktop.systemd1.Manager", "ResetFailedUnit", &error, NULL,
                                                  "s", UNIT_NAME));
        }
        unit_state_done(&svc);

        t0 = now_usec();
        if (method) {
                log_info("%s %s in %s's manager", streq(method, "StartUnit") ? "Starting" : "Restarting", UNIT_NAME,
                         a->name);
                killpoint("daemon-before-start");
                r = bus_unit_job(user_bus, method, UNIT_NAME, deadline, &result);
                if (r < 0) {
                        log_error("The %s job of %s ended with \"%s\"", method, UNIT_NAME, strempty(result));
                        explain_failure(a, user_bus);
                        return -ERCI_FAILED;
                }
                log_debug("Timing: %s job of %s %.1f ms", method, UNIT_NAME, (double) (now_usec() - t0) / 1e3);
        }
        killpoint("daemon-waiting-for-ping");
        r = docker_ping_wait(st->sock, a->uid, timeout, "the CI user's Docker", unit_still_starting, user_bus, &peer);
        if (r < 0) {
                log_error("%s's Docker did not answer GET /_ping on %s within %u s: %s", a->name, st->sock, timeout,
                          strerror(-r));
                explain_failure(a, user_bus);
                return -ERCI_FAILED;
        }
        log_info("%s's Docker answered %.2f s after the %s", a->name, (double) (now_usec() - t0) / 1e6,
                 method ? (streq(method, "StartUnit") ? "start request" : "restart request") : "check");
        if (!method && !st->mgr_was_active)
                /* The user's manager, started by this apply, started the daemon. */
                method = "StartUnit";
        if (method)
                change_done(run, c->id, streq(method, "StartUnit") ? ITEM_CREATE : ITEM_CHANGE,
                            "%s %s's Docker%s; it answers on %s", streq(method, "StartUnit") ? "started" : "restarted",
                            a->name, userns_restart ? " (its user namespace was wrong)" : "", st->sock);
        else
                change_note(run, c->id, ITEM_OK, NULL, "%s's Docker answers on %s", a->name, st->sock);

        /* The daemon that answers now: invariant I2 must hold for it. */
        userns = inspect_userns(a, &peer, &userns_msg);
        if (userns < 0)
                return userns;
        if (userns > 0) {
                change_note(run, "daemon.userns", ITEM_OK, NULL, "%s", userns_msg);
                return 0;
        }
        if (asprintf(&fix,
                     "compare %s's lines in /etc/subuid and /etc/subgid with the map above, and see "
                     "journalctl _UID=%u --user-unit=%s",
                     a->name, (unsigned) a->uid, UNIT_NAME) < 0)
                return -ENOMEM;
        change_note(run, "daemon.userns", ITEM_FAIL, fix, "%s", userns_msg);
        return 0;
}

/* Down, in check: say how its manager sees it (stopped, failed, start-limit-hit), a read only. */
static int service_down_verdict(const Account *a, const char *sock, bool mgr_up, char **ret_message,
                                const char **ret_fix) {
        _cleanup_bus_ sd_bus *user_bus = NULL;
        UnitState svc = {};
        int r;

        if (mgr_up && bus_open_user_manager(a->name, &user_bus) >= 0 &&
            bus_get_unit_state(user_bus, UNIT_NAME, &svc) >= 0) {
                *ret_fix = streq_ptr(svc.result, "start-limit-hit")
                                   ? "rootless-ci apply (it resets the start limit and starts it; look at why it "
                                     "kept failing: journalctl --user-unit=docker.service)"
                                   : "rootless-ci apply";
                r = asprintf(ret_message, "%s's Docker does not answer GET /_ping on %s (%s is %s, result %s)",
                             a->name, sock, UNIT_NAME, strempty(svc.active_state), strempty(svc.result));
                unit_state_done(&svc);
        } else {
                *ret_fix = "rootless-ci apply";
                r = asprintf(ret_message, "%s's Docker does not answer GET /_ping on %s", a->name, sock);
        }
        return r < 0 ? -ENOMEM : 0;
}

/* A planned account: what apply starts for the user to come. */
static void service_planned(StepRun *run, const Account *a, const DaemonState *st) {
        _cleanup_free_ char *msg = NULL;

        if (asprintf(&msg, "start %s's Docker in its own manager and wait for /run/user/UID/docker.sock to answer",
                     a->name) < 0)
                abort();
        item_finding_ex(run, &(Finding) { .id = "daemon.service", .status = ITEM_CREATE, .message = msg,
                                          .hidden_in = st->hide });
        item_finding_ex(run, &(Finding) { .id = "daemon.userns", .status = ITEM_SKIP,
                                          .message = "no daemon yet: apply starts it, then checks its user namespace",
                                          .hidden_in = st->hide });
}

/*
 * The part "service" (live): the daemon as it answers now, and invariant
 * I2 judged on the process that answers. plan says what apply would do,
 * check judges, apply starts or restarts it unless nothing drifted and it
 * answers (then no bus connection to the user's manager is made).
 */
int daemon_service_look(StepRun *run, Account *a) {
        DaemonState *st = run_state(run);
        _cleanup_(docker_peer_done) DockerPeer peer = DOCKER_PEER_NULL;
        _cleanup_free_ char *user_manager = NULL, *fix = NULL, *mgr_msg = NULL, *plan_msg = NULL, *check_msg = NULL,
                            *down_msg = NULL, *plan_userns = NULL, *ok_msg = NULL, *skip_msg = NULL,
                            *plan_skip = NULL;
        const char *down_fix = NULL;
        UnitState mgr = {};
        bool mgr_up, fast;
        int r;

        if (st->skip || !st->live)
                return 0;
        st->service_looked = true;
        if (a->state != ACCOUNT_KNOWN) {
                service_planned(run, a, st);
                return 0;
        }
        if (asprintf(&st->sock, "/run/user/%u/docker.sock", (unsigned) a->uid) < 0)
                return -ENOMEM;
        r = run_user_manager_state(run, a->uid, &user_manager, &mgr);
        if (r < 0)
                return r;
        mgr_up = streq_ptr(mgr.active_state, "active");
        st->mgr_active_state = TAKE_PTR(mgr.active_state);
        unit_state_done(&mgr);
        /* The listener of this very connection is what invariant I2 is checked on. */
        st->answering = docker_ping_peer(st->sock, a->uid, 2000, &peer) >= 0;
        if (st->answering) {
                st->userns = inspect_userns(a, &peer, &st->userns_msg);
                if (st->userns < 0)
                        return st->userns;
        }
        fix = userns_check_fix(a);
        if (!fix)
                return -ENOMEM;
        st->unit_changed = owed(run, MARKER_DAEMON_RESTART);
        fast = st->answering && st->userns > 0 && !st->unit_changed && !st->link_changed && mgr_up;

        /* check: the manager first, then the daemon. */
        if (asprintf(&mgr_msg, "%s is %s", user_manager, mgr_up ? "running" : "not running") < 0)
                return -ENOMEM;
        item_finding_ex(run, &(Finding) { .id = "daemon.user-manager", .status = mgr_up ? ITEM_PASS : ITEM_FAIL,
                                          .message = mgr_msg, .fix = mgr_up ? NULL : "rootless-ci apply",
                                          .hidden_in = IN_PLAN | IN_APPLY });
        if (!st->answering) {
                if (asprintf(&skip_msg, "%s's Docker does not answer GET /_ping (see daemon.service): no daemon to "
                             "inspect", a->name) < 0)
                        return -ENOMEM;
                item_finding_ex(run, &(Finding) { .id = "daemon.userns", .status = ITEM_SKIP, .message = skip_msg,
                                                  .hidden_in = IN_PLAN | IN_APPLY });
                r = service_down_verdict(a, st->sock, mgr_up, &down_msg, &down_fix);
                if (r < 0)
                        return r;
        }

        /* daemon.service as plan and check show it; apply reports what its apply did. */
        if (!st->answering)
                r = asprintf(&plan_msg, "start %s's Docker and wait for %s to answer", a->name, st->sock);
        else if (st->unit_changed || st->userns == 0)
                r = asprintf(&plan_msg, "restart %s's Docker (%s)", a->name,
                             st->unit_changed ? "its unit changes" : "see daemon.userns");
        else
                r = 0;
        if (r < 0 || asprintf(&ok_msg, "%s's Docker answers on %s", a->name, st->sock) < 0 ||
            asprintf(&check_msg, "%s's Docker answers GET /_ping on %s", a->name, st->sock) < 0)
                return -ENOMEM;
        item_finding_ex(run, &(Finding) {
                .id = "daemon.service",
                .status = ITEM_OK,
                .message = ok_msg,
                .in_plan = &(Verdict) { plan_msg ? ITEM_CHANGE : ITEM_OK, plan_msg ?: ok_msg, NULL },
                .in_check = st->answering ? &(Verdict) { ITEM_PASS, check_msg, NULL }
                                          : &(Verdict) { ITEM_FAIL, down_msg, down_fix },
                .hidden_in = IN_APPLY,
        });
        item_change(run, &(Change) {
                .id = "daemon.service",
                .state = fast ? ITEM_OK : ITEM_CHANGE,
                .plan = ok_msg,
                .hidden_in = IN_PLAN | IN_CHECK,
                .gate = GATE_CLEAN,
                .apply = service_apply,
                .data = a,
        });

        /* daemon.userns: plan and check (when it answers) judge it here; apply here when nothing changes. */
        if (st->answering &&
            asprintf(&plan_userns, st->userns > 0 ? "%s" : "restart the daemon: %s", st->userns_msg) < 0)
                return -ENOMEM;
        if (asprintf(&plan_skip, "%s's Docker does not answer: apply starts it, then checks its user namespace",
                     a->name) < 0)
                return -ENOMEM;
        item_finding_ex(run, &(Finding) {
                .id = "daemon.userns",
                .status = ITEM_OK,
                .message = st->userns_msg,
                .in_plan = st->answering ? &(Verdict) { st->userns > 0 ? ITEM_OK : ITEM_CHANGE, plan_userns, NULL }
                                         : &(Verdict) { ITEM_SKIP, plan_skip, NULL },
                .in_check = &(Verdict) { st->userns > 0 ? ITEM_PASS : ITEM_FAIL, st->userns_msg,
                                         st->userns > 0 ? NULL : fix },
                .hidden_in = (st->answering ? 0 : IN_CHECK) | (fast ? 0 : IN_APPLY),
        });
        return 0;
}

/* Apply (live, after the service): the restart a killed run owed is paid. */
int daemon_service_settle(StepRun *run, Account *a) {
        const DaemonState *st = run_state(run);
        int r;

        if (st->skip || !st->live || a->state != ACCOUNT_KNOWN)
                return 0;
        r = owed_paid(run, MARKER_DAEMON_RESTART);
        if (r < 0)
                return r;
        killpoint("daemon-started");
        return 0;
}

/*
 * The part "offline" (an offline tree, or no systemd): no daemon to start
 * or look at; what Delegate= is for is still judged from the tree.
 */
int daemon_offline_look(StepRun *run, Account *a) {
        const DaemonState *st = run_state(run);
        const char *why = run_live(run) ? "systemd is not running" : "offline tree";

        if (st->skip || st->live)
                return 0;
        {
                _cleanup_free_ char *svc = NULL, *userns = NULL;
                if (asprintf(&svc, "%s: the daemon is started by the first apply on the live host", why) < 0 ||
                    asprintf(&userns, "%s: the daemon's user namespace is checked on the live host, once it runs",
                             why) < 0)
                        return -ENOMEM;
                item_finding_ex(run, &(Finding) { .id = "daemon.service", .status = ITEM_SKIP, .message = svc,
                                                  .hidden_in = st->hide });
                item_finding_ex(run, &(Finding) { .id = "daemon.userns", .status = ITEM_SKIP, .message = userns,
                                                  .hidden_in = st->hide });
        }
        if (a->state != ACCOUNT_KNOWN)
                return 0;
        return daemon_delegation_look(run, a);
}
