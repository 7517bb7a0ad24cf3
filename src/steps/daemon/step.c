/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <stdlib.h>

#include "steps/daemon/daemon.h"
#include "steps/steps.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/killpoint.h"
#include "util/macro.h"

/*
 * Daemon: the CI user's rootless dockerd as a systemd user service, and the
 * root daemon out of reach.
 *
 * Where the unit lives: /etc/systemd/user/docker.service, root-owned, read
 * by every user manager; ConditionUser= lets only the CI user's manager run
 * it (with tenants, one ConditionUser=|NAME per tenant's user: each runs its
 * own daemon from the one unit). It is enabled the way "systemctl --global enable" does it, by a
 * root-owned link in /etc/systemd/user/default.target.wants/. So root
 * writes nothing into the CI user's home (hostile ground), the CI user
 * cannot edit or disable the unit for good, the same files work in an
 * offline tree (--root), and every other user's manager skips the unit.
 *
 * The parts, in order (engine/step.h): account (the user step's verdict),
 * unit (the unit and its link; then the killpoint daemon-unit-written),
 * delegate and mount-order (user@.service's drop-ins), apparmor (files.c),
 * manager (user@UID as the system sees it), root (the root daemon masked
 * and stopped, its sockets gone), restart (one daemon-reload of the system
 * manager when one of its files changed, and the restart of a running
 * user@UID its drop-ins or a held group owe: root.c), linger, service (start or restart the daemon and wait for GET
 * /_ping: manager.c), offline (no systemd to talk to) and checks
 * (delegation, root sockets). service is not applied once anything
 * failed (no daemon is started on a half-made set-up), and checks then
 * look at nothing either; a failure of the service's own apply (its user
 * namespace) still gets them, as before.
 */

static void daemon_state_done(void *p) {
        DaemonState *st = p;

        free(st->mgr_held_why);
        for (size_t i = 0; i < N_ROOT_SOCKET_PATHS; i++)
                if (st->sockets[i].path) {
                        safe_close(st->sockets[i].parent_fd);
                        free(st->sockets[i].name);
                }
        free(st->mgr_active_state);
        free(st->sock);
        free(st->userns_msg);
}

/* What the host-wide parts go by (DaemonState.host_skip): every account, not only this run's. */
static void host_view(StepRun *run, DaemonState *st) {
        const Account *accounts;
        bool usable = false;
        size_t n;

        accounts = run_accounts(run, &n);
        for (size_t i = 0; i < n; i++) {
                usable = usable || accounts[i].state != ACCOUNT_UNUSABLE;
                st->any_known = st->any_known || accounts[i].state == ACCOUNT_KNOWN;
        }
        st->host_skip = !usable;
        st->host_hide = st->any_known ? 0 : IN_CHECK;
}

/*
 * The part "account". The user step creates it before apply gets here,
 * and says why when it cannot; plan and check only skip what depends on
 * the UID rather than fail a second time for one cause. A planned account
 * (plan, on a host where apply creates the user) gets every change apply
 * makes, one line each: files whose content does not depend on the UID
 * are compared for real, the rest named with the UID to come; check shows
 * daemon.user alone for it.
 */
static int account_look(StepRun *run, Account *a) {
        DaemonState *st = run_state(run);
        bool planned = a->state == ACCOUNT_PLANNED;
        int r;

        st->live = run_live(run) && run_facts(run)->systemd_running;
        host_view(run, st);
        if (a->state != ACCOUNT_KNOWN) {
                _cleanup_free_ char *msg = NULL;
                if (asprintf(&msg, planned ? "user %s does not exist yet (apply creates it first): the daemon's files "
                                             "depend on its UID"
                                           : "the CI user %s is not usable (see the user step)",
                             a->name) < 0)
                        return -ENOMEM;
                item_finding_ex(run, &(Finding) { .id = "daemon.user", .status = ITEM_SKIP, .message = msg,
                                                  .hidden_in = IN_APPLY | (planned ? IN_PLAN : 0) });
                r = run_stop_quietly(run, STOP_APPLY, -ERCI_FAILED, "User %s does not exist (see the user step)",
                                     a->name);
                if (r < 0)
                        return r;
                st->skip = !planned;
                st->hide = planned ? IN_CHECK : 0;
        }
        return 0;
}

static int unit_settle(StepRun *run, Account *a) {
        killpoint("daemon-unit-written");
        return 0;
}

/* A part whose work is its settle (apply): its look has nothing to describe. */
static int nothing_look(StepRun *run, Account *a) {
        return 0;
}

/*
 * Host-wide parts (the unit and its link, the delegation drop-in, AppArmor,
 * the root daemon) run once, in the first account's run, for every tenant;
 * the others once per account. Without tenants: in the order and with the
 * items of before.
 */
static const Part daemon_parts[] = {
        { .name = "account", .look = account_look },
        { .name = "unit", .look = daemon_unit_look, .settle = unit_settle, .host_wide = true },
        { .name = "delegate", .look = daemon_delegate_look, .host_wide = true },
        { .name = "mount-order", .look = daemon_mount_order_look },
        { .name = "apparmor", .look = daemon_apparmor_look, .host_wide = true },
        { .name = "manager", .look = daemon_manager_look },
        { .name = "root", .look = daemon_root_look, .host_wide = true },
        { .name = "restart", .look = nothing_look, .settle = daemon_restart_settle },
        { .name = "linger", .look = daemon_linger_look },
        { .name = "service", .look = daemon_service_look, .settle = daemon_service_settle, .gate = GATE_CLEAN },
        { .name = "offline", .look = daemon_offline_look },
        { .name = "checks", .look = daemon_checks_look },
};

const Step step_daemon = {
        .name = "daemon",
        .per_account = true,
        STEP_PARTS(daemon_parts),
        .state_size = sizeof(DaemonState),
        .state_done = daemon_state_done,
};
