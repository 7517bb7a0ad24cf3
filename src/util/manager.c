/* SPDX-License-Identifier: MIT */
#include <sys/stat.h>
#include <systemd/sd-bus.h>

#include "error.h"
#include "log.h"
#include "macro.h"
#include "manager.h"


bool manager_is_running(void) {
        struct stat st;
        return lstat("/run/systemd/system", &st) == 0 && S_ISDIR(st.st_mode);
}

int manager_reload(void) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_open_system(&bus);
        if (r < 0)
                return log_error_errno(r, "Failed to connect to the system bus: %m");

        r = sd_bus_call_method(bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                               "org.freedesktop.systemd1.Manager", "Reload", &error, &reply, NULL);
        if (r < 0) {
                log_error_errno(r, "Failed to reload systemd (daemon-reload): %s",
                                error.message ? error.message : error_to_string(r));
                sd_bus_error_free(&error);
                return r;
        }
        return 0;
}
