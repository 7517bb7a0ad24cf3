/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-journal.h>

#include "journal.h"
#include "util/macro.h"

static int add_match_pair(sd_journal *j, const char *field, const char *value, uid_t uid) {
        _cleanup_free_ char *m1 = NULL, *m2 = NULL;
        int r;

        if (asprintf(&m1, "%s=%s", field, value) < 0 || asprintf(&m2, "_UID=%u", (unsigned) uid) < 0)
                return -ENOMEM;
        r = sd_journal_add_match(j, m1, 0);
        if (r >= 0)
                r = sd_journal_add_match(j, m2, 0);
        return r;
}

int journal_user_unit_tail(uid_t uid, const char *unit, size_t n_lines, char **ret) {
        _cleanup_(sd_journal_closep) sd_journal *j = NULL;
        _cleanup_free_ char *out = NULL;
        size_t out_size = 0, n = 0;
        FILE *f;
        int r;

        r = sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY);
        if (r < 0)
                return r;
        /* (_SYSTEMD_USER_UNIT=unit AND _UID=uid) OR (USER_UNIT=unit AND _UID=uid) */
        r = add_match_pair(j, "_SYSTEMD_USER_UNIT", unit, uid);
        if (r >= 0)
                r = sd_journal_add_disjunction(j);
        if (r >= 0)
                r = add_match_pair(j, "USER_UNIT", unit, uid);
        if (r < 0)
                return r;

        r = sd_journal_seek_tail(j);
        if (r < 0)
                return r;
        while (n < n_lines && (r = sd_journal_previous(j)) > 0)
                n++;
        if (r < 0)
                return r;

        f = open_memstream(&out, &out_size);
        if (!f)
                return -ENOMEM;
        /* The cursor stands on the oldest of the n entries; print forward from it. */
        for (size_t i = 0; i < n; i++) {
                const void *d;
                size_t l;

                if (i > 0 && sd_journal_next(j) <= 0)
                        break;
                if (sd_journal_get_data(j, "MESSAGE", &d, &l) < 0)
                        continue;
                fprintf(f, "%s%.*s", ftell(f) > 0 ? "\n" : "", (int) (l - 8), (const char *) d + 8);
        }
        if (fclose(f) != 0)
                return -ENOMEM;
        *ret = TAKE_PTR(out);
        return 0;
}

const char *rootless_docker_failure_hint(const char *log) {
        static const struct {
                const char *needle;
                const char *hint;
        } table[] = {
                { "start-limit-hit", "the unit failed three times within a minute and systemd stopped trying; "
                                     "fix the cause below, then re-run apply (it resets and starts the unit)" },
                { "Start request repeated too quickly", "the unit failed three times within a minute (start limit)" },
                { "/proc/self/exe: permission denied", "AppArmor blocks user namespaces for rootlesskit "
                                                        "(kernel.apparmor_restrict_unprivileged_userns=1)" },
                { "newuidmap", "newuidmap/newgidmap failed: check the user's ranges in /etc/subuid and /etc/subgid "
                               "and that the tools are setuid root" },
                { "lchown", "the subordinate ID range is too small (at least 65536 IDs are needed)" },
                { "/dev/net/tun", "the network driver cannot open /dev/net/tun (mode 0666 needed)" },
                { "Enabling IP forwarding failed", "the network namespace cannot enable IP forwarding" },
                { "Failed to connect to bus", "the user's D-Bus session bus is missing (dbus-user-session)" },
                { "Unable to get the full path to root", "the Docker data root (~/.local/share/docker) is not a "
                                                         "directory the user can use (see the storage step)" },
                { "failed to mount overlay", "overlay2 does not work on the data root's filesystem (an overlayfs, "
                                             "NFS, or XFS without ftype=1?)" },
                { "address already in use", "another daemon already listens on the socket" },
                { "error initializing graphdriver", "the storage driver does not work on the data root's filesystem" },
        };
        if (!log)
                return NULL;
        /* The table is in order of precedence: the most specific causes first. */
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (strcasestr(log, table[i].needle))
                        return table[i].hint;
        return NULL;
}
