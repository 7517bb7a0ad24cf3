/* SPDX-License-Identifier: MIT */
#include <sys/stat.h>
#include <systemd/sd-bus.h>

#include "bus.h"
#include "log.h"
#include "macro.h"
#include "manager.h"

bool manager_is_running(void) {
        struct stat st;
        return lstat("/run/systemd/system", &st) == 0 && S_ISDIR(st.st_mode);
}

int manager_reload(void) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        r = bus_open_system(&bus);
        if (r < 0)
                return r;
        return bus_manager_reload(bus);
}
