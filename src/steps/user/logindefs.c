/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "logindefs.h"
#include "util/macro.h"

void login_defs_init(LoginDefs *d) {
        /* shadow's compiled-in defaults (useradd(8), login.defs(5)) */
        *d = (LoginDefs) {
                .uid_min = 1000, .uid_max = 60000,
                .gid_min = 1000, .gid_max = 60000,
                .sub_uid_min = 100000, .sub_uid_max = 600100000, .sub_uid_count = 65536,
                .sub_gid_min = 100000, .sub_gid_max = 600100000, .sub_gid_count = 65536,
        };
}

static int parse_id(const char *s, size_t len, uint32_t *ret) {
        uint64_t v = 0;

        if (len == 0 || len > 10)
                return -1;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -1;
                v = v * 10 + (uint64_t) (s[i] - '0');
        }
        if (v > UINT32_MAX - 1)  /* (uid_t) -1 is never an ID */
                return -1;
        *ret = (uint32_t) v;
        return 0;
}

void login_defs_parse(LoginDefs *d, const char *text) {
        static const struct {
                const char *key;
                size_t offset;
        } keys[] = {
                { "UID_MIN", offsetof(LoginDefs, uid_min) },
                { "UID_MAX", offsetof(LoginDefs, uid_max) },
                { "GID_MIN", offsetof(LoginDefs, gid_min) },
                { "GID_MAX", offsetof(LoginDefs, gid_max) },
                { "SUB_UID_MIN", offsetof(LoginDefs, sub_uid_min) },
                { "SUB_UID_MAX", offsetof(LoginDefs, sub_uid_max) },
                { "SUB_UID_COUNT", offsetof(LoginDefs, sub_uid_count) },
                { "SUB_GID_MIN", offsetof(LoginDefs, sub_gid_min) },
                { "SUB_GID_MAX", offsetof(LoginDefs, sub_gid_max) },
                { "SUB_GID_COUNT", offsetof(LoginDefs, sub_gid_count) },
        };
        unsigned lineno = 0;

        for (const char *p = text; *p; ) {
                const char *eol = strchrnul(p, '\n'), *k, *v, *ve;
                size_t kl;

                lineno++;
                /* Like shadow's getdef: "KEY<blanks>VALUE", '#' starts a comment line, a value may be quoted. */
                k = p + strspn(p, " \t");
                kl = strcspn(k, " \t\n");
                if (k + kl > eol)
                        kl = (size_t) (eol - k);
                v = k + kl;
                v += strspn(v, " \t");
                if (v > eol)
                        v = eol;
                ve = eol;
                while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t' || ve[-1] == '\r'))
                        ve--;
                if (ve - v >= 2 && v[0] == '"' && ve[-1] == '"') {
                        v++;
                        ve--;
                }

                if (kl > 0 && *k != '#')
                        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                                uint32_t val;

                                if (strlen(keys[i].key) != kl || strncmp(k, keys[i].key, kl) != 0)
                                        continue;
                                if (parse_id(v, (size_t) (ve - v), &val) < 0) {
                                        if (d->bad_line == 0) {
                                                d->bad_line = lineno;
                                                snprintf(d->bad_key, sizeof(d->bad_key), "%s", keys[i].key);
                                        }
                                        break;
                                }
                                *(uint32_t *) ((char *) d + keys[i].offset) = val;
                                break;
                        }

                p = *eol ? eol + 1 : eol;
        }
}
