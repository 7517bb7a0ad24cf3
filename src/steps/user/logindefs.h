/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>

/*
 * The few settings of shadow's /etc/login.defs that decide which accounts are
 * regular users and where subordinate IDs are allocated. Values missing from
 * the file keep shadow's own defaults (login_defs_init()).
 */
typedef struct LoginDefs {
        uint32_t uid_min, uid_max;
        uint32_t gid_min, gid_max;
        uint32_t sub_uid_min, sub_uid_max, sub_uid_count;
        uint32_t sub_gid_min, sub_gid_max, sub_gid_count;

        /* The first line whose value of a key we use could not be parsed (0: none). */
        unsigned bad_line;
        char bad_key[32];
} LoginDefs;

void login_defs_init(LoginDefs *d);

/*
 * Parse the text of login.defs into d (on top of what d holds). A value that
 * is not a plain decimal number in [0, 2^32-2] keeps the previous value and is
 * recorded in bad_line/bad_key (the first one only); parsing goes on.
 */
void login_defs_parse(LoginDefs *d, const char *text);
