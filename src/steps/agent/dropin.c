/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "agent.h"
#include "build-config.h"
#include "units.h"
#include "util/log.h"
#include "util/macro.h"

/*
 * The agent's drop-in, /etc/systemd/system/<Unit>.d/zz-rootless-ci.conf:
 * User=/Group= the CI user, its HOME, DOCKER_HOST and XDG_RUNTIME_DIR, the
 * builds and plugins paths on the data disk, the configuration file pinned
 * to /etc, Wants=/After=user@UID.service (never Requires=: a restart of the
 * manager must not restart the agent and cancel its jobs) and an
 * ExecStartPre= "rootless-ci wait" until the daemon answers. Written
 * whether or not the agent is installed; systemd applies it when the unit
 * appears. A change owes the agent's restart (the service part pays it).
 */

char *agent_dropin_path(const char *unit) {
        char *p;
        return asprintf(&p, "/etc/systemd/system/%s.d/" AGENT_DROPIN_NAME, unit) < 0 ? NULL : p;
}

int agent_dropin_render(const Config *config, const Account *a, char **ret) {
        _cleanup_free_ char *uid = NULL, *gid = NULL, *plugins = NULL, *ready = NULL, *start = NULL;
        const struct { const char *what, *value; } plain[] = {
                { "the user name", a->name },
                { "the CI user's home", a->home },
                { "the builds directory", a->builds_dir },
        };

        /* Each ends up in a directive; nothing that needs quoting or holds a specifier. */
        for (size_t i = 0; i < ELEMENTSOF(plain); i++)
                if (!unit_value_is_plain(plain[i].value))
                        return log_error_errno(-EINVAL, "Cannot write the agent's drop-in: %s \"%s\" has characters "
                                               "that cannot stand unquoted in a unit file",
                                               plain[i].what, strempty(plain[i].value));

        if (asprintf(&uid, "%u", (unsigned) a->uid) < 0 || asprintf(&gid, "%u", (unsigned) a->gid) < 0 ||
            asprintf(&plugins, "%s/.plugins", a->builds_dir) < 0 ||
            asprintf(&ready, "%u", config->ready_timeout_sec) < 0 ||
            /* The wait, then the agent's own start, with room to spare. */
            asprintf(&start, "%us", config->ready_timeout_sec + 60) < 0)
                return -ENOMEM;

        UnitValue values[] = {
                { "AGENT_UNIT", a->agent_unit },
                { "USER", a->name },
                { "UID", uid },
                { "GROUP", gid },
                { "HOME", a->home },
                { "BUILD_PATH", a->builds_dir },
                { "PLUGINS_PATH", plugins },
                { "AGENT_CONFIG", AGENT_CONFIG_FILE },
                { "SBINDIR", SBINDIR },
                { "HOOKS_DIR", HOOKS_DIR },
                { "READY_TIMEOUT", ready },
                { "START_TIMEOUT", start },
        };
        return unit_template_render(units_dir(), "agent-dropin.conf.in", values, ELEMENTSOF(values), ret);
}

int agent_dropin_look(StepRun *run, Account *a) {
        AgentState *st = run_state(run);
        _cleanup_free_ char *text = NULL, *path = agent_dropin_path(a->agent_unit);
        int r;

        if (a->state != ACCOUNT_KNOWN)
                return 0;
        if (!path)
                return -ENOMEM;
        if (!a->builds_dir) {
                item_finding(run, "agent.dropin", ITEM_FAIL,
                             "fix what the storage step reports failed, then run rootless-ci apply",
                             "the builds directory is unknown (see the storage step): the agent's drop-in is not written");
                return 0;
        }
        r = agent_dropin_render(run_config(run), a, &text);
        if (r == -EINVAL) {
                const char *u = a->name;
                const char *fix = run_asprintf(run, "give %s a home whose path has only letters, digits and / . _ + - "
                                               "(usermod --home /home/%s --move-home %s), keep MountPoint= to those "
                                               "characters too, then run rootless-ci apply", u, u, u);
                item_finding(run, "agent.dropin", ITEM_FAIL, fix, "the agent's drop-in cannot be written (see above)");
                return 0;
        }
        if (r < 0)
                return r;
        /*
         * No EFFECT_SYSTEM_RELOAD: as before the redesign, the service part
         * reloads for a changed drop-in (forced), and an apply that stops
         * before it (a failed item) leaves the reload to the next run.
         */
        r = item_file(run, &(FileWant) {
                .id = "agent.dropin",
                .path = path,
                .text = text,
                .what = "the agent's drop-in (runs it as the CI user):",
                .marker = MARKER_AGENT_RESTART,
        });
        if (r < 0)
                return r;
        st->dropin_changed = r > 0;
        return 0;
}
