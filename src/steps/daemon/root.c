/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "steps/daemon/daemon.h"
#include "steps/daemon/sockperm.h"
#include "util/bus.h"
#include "util/clock.h"
#include "util/fs.h"
#include "util/proc.h"
#include "util/killpoint.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/root-sockets.h"

/*
 * The daemon step's system side: the CI user's manager as the system sees
 * it, the root daemon out of reach (masked, stopped, its sockets gone), the
 * one reload of the system manager and the restarts that follow the
 * files, and invariant I1's check that no root daemon's socket is
 * reachable.
 */

const char *const root_daemon_units[N_ROOT_UNITS] = { "docker.socket", "docker.service" };

/*
 * Invariant I1 in live credentials: a user manager started while the CI
 * user was in a privileged group keeps that group, and so does everything
 * it starts (the daemon, its containers), whatever /etc/group says now.
 * Returns 1 when its main process holds one (*ret_gid), 0 when not (or it
 * is gone), < 0 when its status cannot be read.
 */
static int user_manager_holds_privileged_group(StepRun *run, uint32_t main_pid, gid_t *ret_gid) {
        const HostFacts *f = run_facts(run);
        int r = pid_holds_gid((pid_t) main_pid, f->privileged_gids, f->n_privileged_gids, ret_gid);

        if (r < 0)
                return log_error_errno(r, "Failed to read the credentials of PID %u, the CI user's manager: %m",
                                       (unsigned) main_pid);
        return r;
}

/*
 * With tenants, the same for another tenant's group (the user step takes
 * the user out of it): what that group opens is the other tenant's (its
 * Docker data, its agent's token). Returns 1 with *ret_other, 0, or < 0.
 */
static int user_manager_holds_tenant_group(StepRun *run, const Account *a, uint32_t main_pid,
                                           const Account **ret_other) {
        size_t n;
        const Account *accounts = run_accounts(run, &n);

        for (size_t i = 0; i < n; i++) {
                const Account *o = &accounts[i];
                int r;

                if (o == a || !o->tenant || o->state != ACCOUNT_KNOWN || o->gid == a->gid)
                        continue;
                r = pid_holds_gid((pid_t) main_pid, &o->gid, 1, NULL);
                if (r < 0)
                        return log_error_errno(r, "Failed to read the credentials of PID %u, %s's manager: %m",
                                               (unsigned) main_pid, a->name);
                if (r > 0) {
                        *ret_other = o;
                        return 1;
                }
        }
        return 0;
}

/*
 * The CI user's manager, user@UID.service, as the system manager sees it
 * (the part "manager"): whether it ran before this apply, whether systemd
 * still has to load its files, and whether it holds a group that leads to
 * root (plan says it restarts; check leaves that to credentials.groups).
 */
int daemon_manager_look(StepRun *run, Account *a) {
        DaemonState *st = run_state(run);
        _cleanup_free_ char *mgr = NULL, *msg = NULL;
        UnitState s = {};
        int r;

        if (st->skip || !st->live || a->state != ACCOUNT_KNOWN)
                return 0;
        r = run_user_manager_state(run, a->uid, &mgr, &s);
        if (r < 0)
                return r;
        st->mgr_was_active = streq_ptr(s.active_state, "active");
        /* Its files changed on disk but the manager has not reloaded (a run killed in between). */
        if (s.need_daemon_reload)
                st->need_reload = true;
        if (st->mgr_was_active) {
                gid_t gid = (gid_t) -1;
                const Account *other = NULL;
                r = user_manager_holds_privileged_group(run, s.main_pid, &gid);
                if (r == 0)
                        r = user_manager_holds_tenant_group(run, a, s.main_pid, &other);
                if (r > 0 && other && asprintf(&st->mgr_held_why, "so it and what it runs drop GID %u, the group of "
                                               "%s (tenant %s), which %s kept from before it left the group",
                                               (unsigned) other->gid, other->name, other->tenant, a->name) < 0)
                        r = -ENOMEM;
                else if (r > 0 && !other &&
                         asprintf(&st->mgr_held_why, "so it and what it runs drop GID %u, a group that leads "
                                  "to root, which %s kept from before it left the group", (unsigned) gid,
                                  a->name) < 0)
                        r = -ENOMEM;
                if (r > 0 && asprintf(&msg, "restart %s %s", mgr, st->mgr_held_why) < 0)
                        r = -ENOMEM;
                if (r > 0)
                        item_finding_ex(run, &(Finding) { .id = "daemon.user-manager", .status = ITEM_CHANGE,
                                                          .message = msg, .hidden_in = IN_CHECK | IN_APPLY });
        }
        unit_state_done(&s);
        return r < 0 ? r : 0;
}

static bool unit_state_enabled(const char *s) {
        return s && (startswith(s, "enabled") || streq(s, "static") || streq(s, "alias") || streq(s, "indirect") ||
                     streq(s, "generated") || streq(s, "linked"));
}

/* Live: disable, mask and stop one of the root daemon's units. */
static int root_unit_apply(StepRun *run, Change *c) {
        DaemonState *st = run_state(run);
        const RootUnit *u = c->data;
        sd_bus *bus = NULL;
        bool changed = false, running = u->running;
        int r;

        r = run_system_bus(run, &bus);
        if (r < 0)
                return r;
        if (running) {
                /* Stopping docker.socket, the change before, stops the docker.service that requires it. */
                UnitState now = {};

                r = bus_get_unit_state(bus, u->unit, &now);
                if (r < 0)
                        return r;
                running = !streq_ptr(now.active_state, "inactive") && !streq_ptr(now.active_state, "failed");
                unit_state_done(&now);
        }
        if (u->enabled) {
                r = bus_disable_unit_file(bus, u->unit, &changed);
                if (r < 0)
                        return r;
                st->need_reload = true;
        }
        if (!u->masked) {
                r = bus_mask_unit_file(bus, u->unit, &changed);
                if (r < 0)
                        return r;
                st->need_reload = true;
        }
        killpoint_at("daemon-root-masked", u->unit);
        if (running) {
                _cleanup_free_ char *result = NULL;
                r = bus_unit_job(bus, "StopUnit", u->unit, now_usec() + 90ULL * 1000000ULL, &result);
                if (r < 0) {
                        log_error("Stopping %s ended with \"%s\"", u->unit, strempty(result));
                        return r;
                }
        }
        change_done(run, c->id, ITEM_REMOVE, "%s%s%sthe root daemon's %s", u->enabled ? "disabled, " : "",
                    u->masked ? "" : "masked, ", running ? "stopped " : "", u->unit);
        return 0;
}

/* Live: docker.socket and docker.service masked and stopped. */
static int root_units_live_look(StepRun *run, DaemonState *st) {
        sd_bus *bus = NULL;
        int r;

        r = run_system_bus(run, &bus);
        if (r < 0)
                return r;
        for (size_t i = 0; i < N_ROOT_UNITS; i++) {
                RootUnit *u = &st->root[i];
                _cleanup_free_ char *id = NULL, *msg = NULL, *plan = NULL, *problem = NULL;
                UnitState s = {};
                bool absent;

                if (asprintf(&id, "daemon.root-%s", root_daemon_units[i]) < 0)
                        return -ENOMEM;
                r = bus_get_unit_state(bus, root_daemon_units[i], &s);
                if (r < 0)
                        return r;
                *u = (RootUnit) {
                        .unit = root_daemon_units[i],
                        .masked = streq_ptr(s.load_state, "masked") || streq_ptr(s.unit_file_state, "masked"),
                        .enabled = unit_state_enabled(s.unit_file_state),
                        .running = !streq_ptr(s.active_state, "inactive") && !streq_ptr(s.active_state, "failed"),
                };
                if (s.need_daemon_reload)
                        st->need_reload = true;
                absent = streq_ptr(s.load_state, "not-found") && !u->running;

                if (absent || (u->masked && !u->enabled && !u->running))
                        r = asprintf(&msg, "the root daemon's %s is %s", u->unit,
                                     absent ? "not installed" : "masked and stopped");
                else
                        r = asprintf(&plan, "%s%s%sthe root daemon's %s (now %s, %s)", u->enabled ? "disable, " : "",
                                     u->masked ? "" : "mask, ", u->running ? "stop " : "", u->unit,
                                     strempty(s.unit_file_state), strempty(s.active_state)) < 0 ||
                                            asprintf(&problem, "the root daemon's %s is %s and %s: it hands root to "
                                                     "anyone who can reach it", u->unit, strempty(s.unit_file_state),
                                                     strempty(s.active_state)) < 0
                                    ? -1
                                    : 0;
                unit_state_done(&s);
                if (r < 0)
                        return -ENOMEM;
                item_change(run, &(Change) {
                        .id = id,
                        .state = msg ? ITEM_OK : ITEM_REMOVE,
                        .plan = msg ?: plan,
                        .problem = problem,
                        .hidden_in = st->host_hide,
                        .apply = root_unit_apply,
                        .data = u,
                });
        }
        return 0;
}

/* Offline: mask by link, which needs no running manager. */
static int root_units_offline_look(StepRun *run, DaemonState *st) {
        for (size_t i = 0; i < N_ROOT_UNITS; i++) {
                _cleanup_free_ char *id = NULL, *path = NULL;
                int r;

                if (asprintf(&id, "daemon.root-%s", root_daemon_units[i]) < 0 ||
                    asprintf(&path, "/etc/systemd/system/%s", root_daemon_units[i]) < 0)
                        return -ENOMEM;
                r = item_symlink(run, &(SymlinkWant) {
                        .id = id,
                        .path = path,
                        .target = "/dev/null",
                        .what = "mask the root daemon's unit",
                        .hidden_in = st->host_hide,
                });
                if (r < 0)
                        return r;
        }
        return 0;
}

static int root_socket_apply(StepRun *run, Change *c) {
        const RootSocket *s = c->data;

        if (unlinkat(s->parent_fd, s->name, 0) < 0) {
                if (errno == ENOENT)
                        return 0; /* gone since the look: the same socket by its other name (/var/run is /run) */
                return log_error_errno(negative_errno(), "Failed to remove %s: %m", s->path);
        }
        change_done(run, c->id, ITEM_REMOVE, "removed the root daemon's socket %s", s->path);
        return 0;
}

/* Root-owned Docker sockets the stopped daemon left behind (check: the reachability check judges them). */
static int stale_root_sockets_look(StepRun *run, DaemonState *st) {
        static const char *const paths[N_ROOT_SOCKET_PATHS] = { "/run/docker.sock", "/var/run/docker.sock" };

        for (size_t i = 0; i < N_ROOT_SOCKET_PATHS; i++) {
                RootSocket *s = &st->sockets[i];
                _cleanup_free_ char *plan = NULL;
                char id[64];
                struct stat st_sock;

                s->path = paths[i];
                s->parent_fd = safe_open_parent(run_root_fd(run), paths[i], RESOLVE_POLICY_IN_ROOT, &s->name);
                if (s->parent_fd < 0 || fstatat(s->parent_fd, s->name, &st_sock, AT_SYMLINK_NOFOLLOW) < 0 ||
                    !S_ISSOCK(st_sock.st_mode))
                        continue;
                snprintf(id, sizeof(id), "daemon.root-socket:%s", paths[i]);
                if (asprintf(&plan, "remove the root daemon's socket %s", paths[i]) < 0)
                        return -ENOMEM;
                item_change(run, &(Change) {
                        .id = id,
                        .state = ITEM_REMOVE,
                        .plan = plan,
                        .hidden_in = IN_CHECK | st->host_hide,
                        .apply = root_socket_apply,
                        .data = s,
                });
        }
        return 0;
}

/* The part "root", host-wide: the root daemon's units and the sockets it left. */
int daemon_root_look(StepRun *run, Account *a) {
        DaemonState *st = run_state(run);
        int r;

        if (st->host_skip)
                return 0;
        r = st->live ? root_units_live_look(run, st) : root_units_offline_look(run, st);
        if (r < 0)
                return r;
        return stale_root_sockets_look(run, st);
}

/*
 * The part "restart", after the files and the root daemon: one reload of
 * the system manager when one of its files changed (or it has not loaded
 * them), AppArmor's profiles loaded when ours was written (both in the
 * first account's run, where the host-wide parts ran), then one restart of
 * the account's running user@UID, for its new drop-ins (only read when it
 * starts) or for a group it holds from before the user left it.
 */
int daemon_restart_settle(StepRun *run, Account *a) {
        DaemonState *st = run_state(run);
        _cleanup_free_ char *mgr = NULL;
        sd_bus *system_bus = NULL;
        UnitState s = {};
        int r;

        if (st->skip || !st->live || a->state != ACCOUNT_KNOWN)
                return 0;
        r = system_reload_if_owed(run, st->need_reload || st->dropins_changed);
        if (r < 0)
                return r;
        r = run_system_bus(run, &system_bus);
        if (r < 0)
                return r;
        if (st->apparmor_written) {
                _cleanup_free_ char *result = NULL;
                r = bus_unit_job(system_bus, "ReloadOrRestartUnit", "apparmor.service", now_usec() + 60ULL * 1000000ULL,
                                 &result);
                if (r < 0)
                        return log_error_errno(r, "Failed to load the AppArmor profile (apparmor.service: %s)",
                                               strempty(result));
        }

        if (!owed(run, MARKER_USER_MANAGER_RESTART) && !st->mgr_held_why)
                return 0;
        if (asprintf(&mgr, "user@%u.service", (unsigned) a->uid) < 0)
                return -ENOMEM;
        r = bus_get_unit_state(system_bus, mgr, &s);
        if (r < 0)
                return r;
        if (streq_ptr(s.active_state, "active")) {
                _cleanup_free_ char *result = NULL;
                const char *why = st->mgr_held_why ?: "for its new drop-ins";
                log_notice("Restarting %s %s", mgr, why);
                r = bus_unit_job(system_bus, "RestartUnit", mgr, now_usec() + 90ULL * 1000000ULL, &result);
                if (r < 0) {
                        unit_state_done(&s);
                        return log_error_errno(r, "Restarting %s ended with \"%s\"", mgr, strempty(result));
                }
                change_done(run, "daemon.user-manager", ITEM_CHANGE, "restarted %s %s", mgr, why);
                st->mgr_was_active = false; /* it now runs from the new files */
        }
        unit_state_done(&s);
        return owed_paid(run, MARKER_USER_MANAGER_RESTART);
}

/*
 * Can the CI user connect to path? Decided from the owners, modes and ACLs
 * on the way and of the socket, with the user's groups as the files say
 * (Account.gids; the user step fails when NSS knows more, see user.nss),
 * see sockperm.h for why this is the kernel's own answer: no child that
 * becomes the user, so a converged run starts no process. 1 yes, 0 no,
 * < 0 error.
 */
static int user_can_connect(StepRun *run, const Account *a, const char *path) {
        return unix_socket_reachable(run_root_fd(run), path, a->uid, a->gids, a->n_gids);
}

/* Invariant I1: no root daemon's API socket (util/root-sockets.h) the CI user can connect to. */
static int check_root_sockets_unreachable(StepRun *run, Account *a) {
        size_t reachable = 0, present = 0;

        for (size_t i = 0; i < n_root_daemon_sockets; i++) {
                struct stat st;
                int r;

                if (lstat(root_daemon_sockets[i], &st) < 0 || !S_ISSOCK(st.st_mode) || st.st_uid == a->uid)
                        continue;
                present++;
                r = user_can_connect(run, a, root_daemon_sockets[i]);
                if (r < 0)
                        return log_error_errno(r, "Failed to test whether %s can connect to %s: %m", a->name,
                                               root_daemon_sockets[i]);
                if (r > 0) {
                        _cleanup_free_ char *fix = NULL;
                        char id[128];
                        /* One failure per socket, each its own item. */
                        snprintf(id, sizeof(id), "daemon.root-socket-reachable:%s", root_daemon_sockets[i]);
                        reachable++;
                        if (asprintf(&fix, "stop and disable the root daemon listening on %s (ss -xlp | grep %s names it; "
                                     "rootless-ci apply does this for Docker's docker.service and docker.socket), or "
                                     "take %s out of the socket's group (gpasswd -d %s GROUP)", root_daemon_sockets[i],
                                     root_daemon_sockets[i], a->name, a->name) < 0)
                                return -ENOMEM;
                        item_finding(run, id, ITEM_FAIL, fix,
                                     "%s can connect to %s (owned by UID %u): that is root on this host", a->name,
                                     root_daemon_sockets[i], (unsigned) st.st_uid);
                }
        }
        a->root_sockets_checked = true;
        a->root_sockets_reachable = (unsigned) reachable;
        if (!reachable)
                item_finding(run, "daemon.root-sockets-unreachable", ITEM_PASS, NULL,
                             "%s can reach no root daemon's API socket (Docker, containerd, BuildKit, Podman, CRI-O, "
                             "libvirt, LXD, Incus: %zu present, all refused)", a->name, present);
        return 0;
}

/*
 * The part "checks" (live): what Delegate= is for, and invariant I1's
 * sockets, wherever the service part looked (apply skips it after a
 * failure, and these with it; a failure of the service's apply does not).
 */
int daemon_checks_look(StepRun *run, Account *a) {
        DaemonState *st = run_state(run);
        int r;

        if (st->skip || !st->live || a->state != ACCOUNT_KNOWN || !st->service_looked)
                return 0;
        r = daemon_delegation_look(run, a);
        if (r < 0)
                return r;
        return check_root_sockets_unreachable(run, a);
}
