/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

/* The host runs systemd as its init: /run/systemd/system exists. */
bool manager_is_running(void);

/*
 * daemon-reload: ask the system manager (org.freedesktop.systemd1.Manager.
 * Reload on the system bus) to re-read unit files and regenerate units
 * from /etc/fstab. The call returns once the reload is done.
 */
int manager_reload(void);
