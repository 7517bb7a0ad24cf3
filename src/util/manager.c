/* SPDX-License-Identifier: MIT */
#include <sys/stat.h>

#include "macro.h"
#include "manager.h"


bool manager_is_running(void) {
        struct stat st;
        return lstat("/run/systemd/system", &st) == 0 && S_ISDIR(st.st_mode);
}
