/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "engine/step.h"
#include "steps/daemon/ping.h"
#include "util/idmap.h"
#include "util/proc.h"
#include "util/subid.h"

/* Between the files of the daemon step (steps/daemon/): not for other steps. */

#define UNIT_NAME "docker.service"
#define USER_UNIT_PATH "/etc/systemd/user/" UNIT_NAME
#define USER_UNIT_ENABLE_LINK "/etc/systemd/user/default.target.wants/" UNIT_NAME
/* The user manager's ordering after the data mount, of user@UID.service (printf: the UID). */
#define MOUNT_DROPIN_FMT "/etc/systemd/system/user@%u.service.d/rootless-ci-mount.conf"
#define DELEGATE_DROPIN_PATH "/etc/systemd/system/user@.service.d/rootless-ci-delegate.conf"
#define APPARMOR_PROFILE_NAME "rootless-ci-rootlesskit"
#define APPARMOR_PROFILE_PATH "/etc/apparmor.d/" APPARMOR_PROFILE_NAME
#define LINGER_DIR "/var/lib/systemd/linger"
#define MARKER_DAEMON_RESTART "daemon-restart-pending"
#define MARKER_USER_MANAGER_RESTART "user-manager-restart-pending"

/* The root daemon's units, socket first so it cannot start the service again. */
#define N_ROOT_UNITS 2
extern const char *const root_daemon_units[N_ROOT_UNITS];
#define N_ROOT_SOCKET_PATHS 2

/* One root daemon unit as the look found it (live), for its apply. */
typedef struct RootUnit {
        const char *unit;
        bool enabled, masked, running;
} RootUnit;

/* A socket the stopped root daemon left behind, as the look found it. */
typedef struct RootSocket {
        const char *path;
        int parent_fd;
        char *name;
} RootSocket;

/*
 * The step's state for one account (run_state), written by the looks and
 * read by later parts and the applies, in part order.
 */
typedef struct DaemonState {
        bool skip;              /* the account is not usable: the user step said why, nothing to look at */
        unsigned hide;          /* IN_CHECK for a planned account: check shows daemon.user alone */
        /*
         * The same for the host-wide parts (the unit, the delegation
         * drop-in, AppArmor, the root daemon), which serve every tenant:
         * skipped when no account is usable, hidden in check while none
         * exists yet. Without tenants: skip and hide.
         */
        bool host_skip;
        unsigned host_hide;
        bool any_known;         /* an account exists: a running manager may owe a restart */
        bool live;              /* the live host with systemd running: managers to talk to */
        bool link_changed;      /* daemon.enable is not in place */
        bool dropins_changed;   /* daemon.delegate or daemon.mount-order is not in place */
        bool apparmor_written;  /* our profile is not in place: apparmor.service loads it after */
        bool need_reload;       /* the system manager has not loaded a unit's files, or apply changed some */
        bool mgr_was_active;    /* user@UID ran before this apply changed anything */
        char *mgr_held_why;     /* user@UID holds a privileged group: why it restarts */
        RootUnit root[N_ROOT_UNITS];
        RootSocket sockets[N_ROOT_SOCKET_PATHS];
        /* the service part: what its look found, for its apply */
        bool service_looked;    /* it ran (in apply: nothing had failed before it), so the checks run */
        char *mgr_active_state; /* user@UID's ActiveState when the service part looked */
        char *sock;
        char *userns_msg;
        int userns;             /* 1 holds, 0 not (or no answer) */
        bool answering;
        bool unit_changed;      /* the unit changes, or a killed run owes its restart */
} DaemonState;

/* files.c */
char *unit_search_path(const char *rootlesskit_path);
int daemon_render(const char *template_name, const void *values, size_t n, char **ret);
int daemon_unit_look(StepRun *run, Account *a);
/* Do the unit texts old and new differ, and only in whom it is for (ConditionUser=, Description=, comments: a tenant added or removed)? */
bool unit_differs_in_users_only(const char *old, const char *new);
int daemon_delegate_look(StepRun *run, Account *a);
int daemon_mount_order_look(StepRun *run, Account *a);
int daemon_apparmor_look(StepRun *run, Account *a);
int daemon_delegation_look(StepRun *run, Account *a);

/* root.c */
int daemon_root_look(StepRun *run, Account *a);
int daemon_restart_settle(StepRun *run, Account *a);
int daemon_checks_look(StepRun *run, Account *a);
int daemon_manager_look(StepRun *run, Account *a);

/* manager.c */
int daemon_linger_look(StepRun *run, Account *a);
int daemon_service_look(StepRun *run, Account *a);
int daemon_service_settle(StepRun *run, Account *a);
int daemon_offline_look(StepRun *run, Account *a);

/* userns-check.c */
/* The CI user as rootless Docker should run: its IDs and all its subordinate ranges (none: n = 0). */
typedef struct RootlessIds {
        uid_t uid;
        gid_t gid;
        const SubIdRange *subuids;
        size_t n_subuids;
        const SubIdRange *subgids;
        size_t n_subgids;
} RootlessIds;

/*
 * Does the process run the rootless way for the CI user? Its UIDs and GIDs
 * on the host must all be the user's; in each map container ID 0 must map
 * to the user's ID with a count of 1, and every other extent lie inside the
 * user's subordinate ranges (their union: newuidmap maps each of the user's
 * lines). Returns 1 when it does, with *ret_message describing the maps
 * ("runs in a user namespace: 0 → 1000, …"); 0 when it does not, with
 * *ret_message saying why ("runs with host UIDs 0 0 0 0 …"), to follow
 * "PID N, which serves …'s Docker socket,"; -ENOMEM.
 */
int rootless_ids_judge(const ProcessIds *p, const char *user, const RootlessIds *want, char **ret_message);

int inspect_userns(const Account *a, const DockerPeer *peer, char **ret_message);
char *userns_check_fix(const Account *a);
