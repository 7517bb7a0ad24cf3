/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

/* The host runs systemd as its init: /run/systemd/system exists. */
bool manager_is_running(void);
