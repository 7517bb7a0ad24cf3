/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

/*
 * sd-bus helpers: the system manager, logind, and a user's own manager, all
 * over D-Bus (no systemctl). sd-bus.h brings the cleanup functions:
 * _cleanup_(sd_bus_flush_close_unrefp), _cleanup_(sd_bus_message_unrefp),
 * _cleanup_(sd_bus_slot_unrefp), _cleanup_(sd_bus_error_free).
 */

#define _cleanup_bus_ _cleanup_(sd_bus_flush_close_unrefp)
#define _cleanup_bus_message_ _cleanup_(sd_bus_message_unrefp)
#define _cleanup_bus_slot_ _cleanup_(sd_bus_slot_unrefp)
#define _cleanup_bus_error_ _cleanup_(sd_bus_error_free)

typedef struct UnitState {
        char *active_state;     /* "active", "inactive", "failed", "activating", ... */
        char *sub_state;
        char *result;           /* services: "success", "exit-code", "start-limit-hit", ... */
        char *unit_file_state;  /* "enabled", "disabled", "masked", "" ... */
        char *load_state;       /* "loaded", "not-found", "masked", ... */
        uint32_t main_pid;      /* services; 0 otherwise */
        bool need_daemon_reload;
} UnitState;

void unit_state_done(UnitState *s);

int bus_open_system(sd_bus **ret);

/* The system manager: as root its own socket (/run/systemd/private), else the system bus. */
int bus_open_system_manager(sd_bus **ret);

/* The user's own manager, as "systemctl --user -M USER@" reaches it. */
int bus_open_user_manager(const char *user, sd_bus **ret);

/* logind: keep user@UID.service running without a login session (enable), or no longer. */
int bus_set_linger(uid_t uid, bool enable);

/* Read a unit's state (read-only; loading a unit's description changes nothing on the host). */
int bus_get_unit_state(sd_bus *bus, const char *unit, UnitState *ret);

/*
 * Wait until unit is active, polling its ActiveState until deadline
 * (CLOCK_MONOTONIC usec). -ETIMEDOUT at the deadline; -EIO if it failed
 * (*ret_state then says how).
 */
int bus_wait_unit_active(sd_bus *bus, const char *unit, unsigned long long deadline, UnitState *ret_state);

/*
 * Call Manager.StartUnit/RestartUnit/StopUnit/ReloadOrRestartUnit(unit,
 * "replace") and wait for its JobRemoved; the job's result ("done",
 * "failed", "timeout", "dependency", ...) goes to *ret_result. Returns 0
 * when it is "done", -EIO otherwise, or a negative errno on a bus failure
 * or at the deadline.
 */
int bus_unit_job(sd_bus *bus, const char *method, const char *unit, unsigned long long deadline,
                 char **ret_result);

/* Manager.Reload (daemon-reload); returns once the manager has reloaded. */
/* daemon-reload, waiting up to BUS_RELOAD_TIMEOUT_USEC for it. */
#define BUS_RELOAD_TIMEOUT_USEC (5ULL * 60ULL * 1000000ULL)
int bus_manager_reload(sd_bus *bus);

/* Manager.DisableUnitFiles / MaskUnitFiles for one unit (not runtime). ret_changed: anything changed. */
int bus_disable_unit_file(sd_bus *bus, const char *unit, bool *ret_changed);
int bus_mask_unit_file(sd_bus *bus, const char *unit, bool *ret_changed);
