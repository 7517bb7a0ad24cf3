/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <assert.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "clock.h"
#include "log.h"
#include "macro.h"

#define SD_DEST "org.freedesktop.systemd1"
#define SYSTEMD_PRIVATE_SOCKET "/run/systemd/private"
#define SD_PATH "/org/freedesktop/systemd1"
#define SD_MANAGER "org.freedesktop.systemd1.Manager"
#define SD_UNIT "org.freedesktop.systemd1.Unit"
#define SD_SERVICE "org.freedesktop.systemd1.Service"

#define BUS_POLL_INTERVAL_USEC (50ULL * 1000)

void unit_state_done(UnitState *s) {
        FREE_MANY(s->active_state, s->sub_state, s->result, s->unit_file_state, s->load_state);
        *s = (UnitState) {};
}

int bus_open_system(sd_bus **ret) {
        int r = WAITING(sd_bus_open_system(ret));
        if (r < 0)
                return log_error_errno(r, "Failed to connect to the system bus: %m");
        return 0;
}

int bus_open_user_manager(const char *user, sd_bus **ret) {
        _cleanup_free_ char *machine = NULL;
        int r;

        if (asprintf(&machine, "%s@", user) < 0)
                return -ENOMEM;
        r = WAITING(sd_bus_open_user_machine(ret, machine));
        if (r < 0)
                return log_error_errno(r, "Failed to connect to %s's service manager (%s): %m", user, machine);
        return 0;
}

int bus_open_system_manager(sd_bus **ret) {
        _cleanup_bus_ sd_bus *bus = NULL;
        int r;

        /*
         * As root, systemd's own socket, as systemctl does: no bus daemon
         * between us and the manager, so each call is one hop each way and
         * the connection needs no Hello. Anywhere else, the system bus.
         */
        if (geteuid() == 0 && access(SYSTEMD_PRIVATE_SOCKET, F_OK) == 0) {
                r = sd_bus_new(&bus);
                if (r >= 0)
                        r = sd_bus_set_address(bus, "unix:path=" SYSTEMD_PRIVATE_SOCKET);
                if (r >= 0)
                        r = WAITING(sd_bus_start(bus));
                if (r >= 0) {
                        *ret = TAKE_PTR(bus);
                        return 0;
                }
                log_debug("Failed to connect to %s, using the system bus: %s", SYSTEMD_PRIVATE_SOCKET, strerror(-r));
                bus = sd_bus_flush_close_unref(bus);
        }
        return bus_open_system(ret);
}

int bus_set_linger(uid_t uid) {
        _cleanup_bus_error_ sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_bus_ sd_bus *bus = NULL;
        int r;

        /* logind is on the system bus (the manager's own socket does not reach it). */
        r = bus_open_system(&bus);
        if (r < 0)
                return r;

        /* SetUserLinger(uid, enable, interactive) */
        r = WAITING(sd_bus_call_method(bus, "org.freedesktop.login1", "/org/freedesktop/login1",
                                       "org.freedesktop.login1.Manager", "SetUserLinger", &error, NULL, "ubb",
                                       (uint32_t) uid, 1, 0));
        if (r < 0)
                return log_error_errno(r, "Failed to enable lingering for UID %u through logind: %s", (unsigned) uid,
                                       error.message ? error.message : strerror(-r));
        return 0;
}

/* One property of a pipelined read: where its value goes and how the call ended. */
typedef struct PropertyRead {
        const char *iface, *name;
        char type;             /* 's', 'b' or 'u' */
        void *dest;            /* char **, bool *, uint32_t * */
        bool optional;         /* a missing property is no error */
        int r;                 /* 1 pending, 0 read, < 0 failed */
} PropertyRead;

static int on_property(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        PropertyRead *p = userdata;
        const sd_bus_error *e;
        int r;

        e = sd_bus_message_get_error(m);
        if (e) {
                log_debug("Failed to read %s.%s: %s", p->iface, p->name, e->message ? e->message : e->name);
                p->r = -sd_bus_message_get_errno(m) ?: -EIO;
                return 0;
        }
        r = sd_bus_message_enter_container(m, 'v', (const char[]) { p->type, 0 });
        if (r >= 0)
                switch (p->type) {
                case 's': {
                        const char *v = NULL;
                        r = sd_bus_message_read_basic(m, 's', &v);
                        if (r >= 0 && !(*(char **) p->dest = strdup(v)))
                                r = -ENOMEM;
                        break;
                }
                case 'b': {
                        int v = 0;
                        r = sd_bus_message_read_basic(m, 'b', &v);
                        *(bool *) p->dest = v;
                        break;
                }
                default:
                        r = sd_bus_message_read_basic(m, 'u', p->dest);
                }
        p->r = r < 0 ? r : 0;
        return 0;
}

#define PROPERTY_READ_TIMEOUT_USEC (25ULL * 1000000ULL)

/*
 * Read several properties of one object with all the calls in flight at once:
 * one round trip to the manager instead of one per property.
 */
static int read_properties(sd_bus *bus, const char *path, PropertyRead *reads, size_t n) {
        sd_bus_slot *slots[16] = {};
        unsigned long long deadline = now_usec() + PROPERTY_READ_TIMEOUT_USEC;
        int r = 0;

        assert(n <= ELEMENTSOF(slots));
        for (size_t i = 0; i < n; i++) {
                reads[i].r = 1;
                r = sd_bus_call_method_async(bus, &slots[i], SD_DEST, path, "org.freedesktop.DBus.Properties", "Get",
                                             on_property, &reads[i], "ss", reads[i].iface, reads[i].name);
                if (r < 0)
                        goto finish;
        }
        for (;;) {
                bool pending = false;
                unsigned long long t;

                for (size_t i = 0; i < n; i++)
                        pending = pending || reads[i].r == 1;
                if (!pending)
                        break;
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        goto finish;
                if (r > 0)
                        continue;
                t = now_usec();
                if (t >= deadline) {
                        r = -ETIMEDOUT;
                        goto finish;
                }
                r = WAITING(sd_bus_wait(bus, deadline - t));
                if (r < 0)
                        goto finish;
        }
        r = 0;
        for (size_t i = 0; i < n && r == 0; i++)
                if (reads[i].r < 0 && !reads[i].optional)
                        r = reads[i].r;
finish:
        for (size_t i = 0; i < n; i++)
                sd_bus_slot_unref(slots[i]);
        return r;
}

int bus_get_unit_state(sd_bus *bus, const char *unit, UnitState *ret) {
        _cleanup_free_ char *path = NULL;
        UnitState s = {};
        bool is_service = strlen(unit) > 8 && streq(unit + strlen(unit) - 8, ".service");
        int r;

        r = sd_bus_path_encode(SD_PATH "/unit", unit, &path);
        if (r < 0)
                return r;

        PropertyRead reads[] = {
                { SD_UNIT, "ActiveState", 's', &s.active_state },
                { SD_UNIT, "SubState", 's', &s.sub_state },
                { SD_UNIT, "LoadState", 's', &s.load_state },
                { SD_UNIT, "UnitFileState", 's', &s.unit_file_state },
                { SD_UNIT, "NeedDaemonReload", 'b', &s.need_daemon_reload },
                /* Services only; for other unit types these stay empty. */
                { SD_SERVICE, "Result", 's', &s.result, .optional = true },
                { SD_SERVICE, "MainPID", 'u', &s.main_pid, .optional = true },
        };
        r = read_properties(bus, path, reads, is_service ? ELEMENTSOF(reads) : ELEMENTSOF(reads) - 2);
        if (r < 0) {
                unit_state_done(&s);
                return log_error_errno(r, "Failed to read the state of %s: %m", unit);
        }
        *ret = s;
        return 0;
}

#define BUS_PROGRESS_EVERY_USEC (5ULL * 1000000ULL)

int bus_wait_unit_active(sd_bus *bus, const char *unit, unsigned long long deadline, UnitState *ret_state) {
        unsigned long long start = now_usec(), next_progress = start + BUS_PROGRESS_EVERY_USEC;

        for (;;) {
                UnitState s = {};
                int r;

                r = bus_get_unit_state(bus, unit, &s);
                if (r < 0)
                        return r;
                if (streq(s.active_state, "active")) {
                        if (ret_state)
                                *ret_state = s;
                        else
                                unit_state_done(&s);
                        return 0;
                }
                if (streq(s.active_state, "failed") || now_usec() >= deadline) {
                        r = streq(s.active_state, "failed") ? -EIO : -ETIMEDOUT;
                        if (ret_state)
                                *ret_state = s;
                        else
                                unit_state_done(&s);
                        return r;
                }
                if (now_usec() >= next_progress) {
                        log_info("Still waiting for %s to become active: %llu s of %llu s (now %s/%s)", unit,
                                 (now_usec() - start) / 1000000ULL, (deadline - start + 999999ULL) / 1000000ULL,
                                 strempty(s.active_state), strempty(s.sub_state));
                        next_progress += BUS_PROGRESS_EVERY_USEC;
                }
                unit_state_done(&s);

                /* Poll the state, bounded by the deadline. */
                r = WAITING(sd_bus_wait(bus, BUS_POLL_INTERVAL_USEC));
                if (r < 0)
                        return r;
                while ((r = sd_bus_process(bus, NULL)) > 0)
                        ;
                if (r < 0)
                        return r;
        }
}

typedef struct JobWait {
        const char *job_path;   /* set once the method has answered */
        char *result;
        bool done;
} JobWait;

static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        JobWait *w = userdata;
        const char *path = NULL, *unit = NULL, *result = NULL;
        uint32_t id;
        int r;

        r = sd_bus_message_read(m, "uoss", &id, &path, &unit, &result);
        if (r < 0)
                return 0;
        if (!w->job_path || !streq(path, w->job_path) || w->done)
                return 0;
        w->result = strdup(result);
        w->done = true;
        return 0;
}

int bus_unit_job(sd_bus *bus, const char *method, const char *unit, unsigned long long deadline,
                 char **ret_result) {
        _cleanup_bus_error_ sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_bus_message_ sd_bus_message *reply = NULL;
        _cleanup_bus_slot_ sd_bus_slot *slot = NULL;
        JobWait w = {};
        const char *job = NULL;
        unsigned long long t0 = now_usec(), progress = 0;
        int r;

        /* Listen before asking, so the job's end cannot slip past. */
        /* On a direct connection to the manager messages carry no sender to match. */
        r = sd_bus_match_signal(bus, &slot, sd_bus_is_bus_client(bus) > 0 ? SD_DEST : NULL, SD_PATH, SD_MANAGER,
                                "JobRemoved", on_job_removed, &w);
        if (r < 0)
                return log_error_errno(r, "Failed to watch for systemd job results: %m");

        r = WAITING(sd_bus_call_method(bus, SD_DEST, SD_PATH, SD_MANAGER, method, &error, &reply, "ss", unit, "replace"));
        if (r < 0)
                return log_error_errno(r, "Failed to %s %s: %s", method, unit, error.message ? error.message : strerror(-r));
        r = sd_bus_message_read(reply, "o", &job);
        if (r < 0)
                return log_error_errno(r, "Failed to read the job of %s %s: %m", method, unit);
        w.job_path = job;

        while (!w.done) {
                unsigned long long n = now_usec();

                if (n >= t0 + BUS_PROGRESS_EVERY_USEC * (progress + 1)) {
                        progress++;
                        log_info("Waiting for the %s job of %s: %llu s of %llu s", method, unit, (n - t0) / 1000000ULL,
                                 (deadline - t0 + 999999ULL) / 1000000ULL);
                }

                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        return log_error_errno(r, "Failed to wait for the %s job of %s: %m", method, unit);
                if (r > 0)
                        continue;
                if (n >= deadline) {
                        free(w.result);
                        return log_error_errno(-ETIMEDOUT, "Timed out waiting for the %s job of %s", method, unit);
                }
                /* Wake at least for the next progress line. */
                r = WAITING(sd_bus_wait(bus, deadline - n < BUS_PROGRESS_EVERY_USEC ? deadline - n : BUS_PROGRESS_EVERY_USEC));
                if (r < 0)
                        return log_error_errno(r, "Failed to wait for the %s job of %s: %m", method, unit);
        }

        log_debug("Timing: %s %s (systemd job) %.1f ms", method, unit, (double) (now_usec() - t0) / 1e3);
        r = streq(w.result, "done") ? 0 : -EIO;
        if (ret_result)
                *ret_result = w.result;
        else
                free(w.result);
        return r;
}

int bus_manager_reload(sd_bus *bus) {
        _cleanup_bus_error_ sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        unsigned long long t0 = now_usec();

        /* A reload can take far longer than sd-bus's default 25 s on a busy machine at boot. */
        r = sd_bus_message_new_method_call(bus, &m, SD_DEST, SD_PATH, SD_MANAGER, "Reload");
        if (r >= 0)
                r = WAITING(sd_bus_call(bus, m, BUS_RELOAD_TIMEOUT_USEC, &error, NULL));
        if (r < 0)
                return log_error_errno(r, "Failed to reload the service manager: %s",
                                       error.message ? error.message : strerror(-r));
        log_debug("Timing: daemon-reload (systemd) %.1f ms", (double) (now_usec() - t0) / 1e3);
        return 0;
}

/* Read the (type, file, destination) changes of an *UnitFiles reply. */
static int read_unit_file_changes(sd_bus_message *reply, bool *ret_changed) {
        const char *type, *file, *dest;
        size_t n = 0;
        int r;

        r = sd_bus_message_enter_container(reply, 'a', "(sss)");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read(reply, "(sss)", &type, &file, &dest)) > 0) {
                log_debug("%s %s %s", type, file, dest);
                n++;
        }
        if (r < 0)
                return r;
        if (ret_changed)
                *ret_changed = n > 0;
        return sd_bus_message_exit_container(reply);
}

static int unit_files_call(sd_bus *bus, const char *method, const char *unit, bool with_force, bool *ret_changed) {
        _cleanup_bus_error_ sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_bus_message_ sd_bus_message *m = NULL, *reply = NULL;
        unsigned long long t0;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, SD_DEST, SD_PATH, SD_MANAGER, method);
        if (r < 0)
                return r;
        r = sd_bus_message_append_strv(m, (char *[]) { (char *) unit, NULL });
        if (r < 0)
                return r;
        r = with_force ? sd_bus_message_append(m, "bb", 0, 0) : sd_bus_message_append(m, "b", 0);
        if (r < 0)
                return r;
        t0 = now_usec();
        r = WAITING(sd_bus_call(bus, m, 0, &error, &reply));
        if (r < 0)
                return log_error_errno(r, "Failed to %s %s: %s", method, unit, error.message ? error.message : strerror(-r));
        log_debug("Timing: %s %s (systemd unit files) %.1f ms", method, unit, (double) (now_usec() - t0) / 1e3);
        /* MaskUnitFiles answers a(sss); DisableUnitFiles too (no carries_install_info). */
        r = read_unit_file_changes(reply, ret_changed);
        if (r < 0)
                return log_error_errno(r, "Failed to read the answer of %s %s: %m", method, unit);
        return 0;
}

int bus_disable_unit_file(sd_bus *bus, const char *unit, bool *ret_changed) {
        return unit_files_call(bus, "DisableUnitFiles", unit, false, ret_changed);
}

int bus_mask_unit_file(sd_bus *bus, const char *unit, bool *ret_changed) {
        return unit_files_call(bus, "MaskUnitFiles", unit, true, ret_changed);
}
