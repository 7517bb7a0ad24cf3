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
 *
 * A tenant (issue 16) gets the same drop-in for its own instance (AgentUnit=,
 * by default buildkite-agent@<Name>.service: the package's template unit
 * runs "buildkite-agent start --name %H-%i" as User=buildkite-agent, with no
 * --config, so BUILDKITE_AGENT_CONFIG below names the file), with its user,
 * daemon, builds path and AgentConfig=. An untrusted tenant's drop-in goes on
 * with agent-dropin-untrusted.conf.in: what the agent and git read from the
 * environment, checked in the agent's source (v4.0.0-beta HEAD):
 *   BUILDKITE_AGENT_CONFIG     "agent start --config"'s variable (clicommand/agent_start.go);
 *                              a file named so that does not exist stops the agent
 *                              ("a configuration file could not be found", cliconfig/loader.go)
 *   BUILDKITE_CLEAN_CHECKOUT   read by the job's executor (internal/job/config.go): it removes
 *                              the checkout after the pre-checkout hooks, before checking out
 *   BUILDKITE_NO_LOCAL_HOOKS   "agent start --no-local-hooks" (agent PR #707, March 2018; the job's
 *                              executor honours the variable too); it turns plugins off as well
 *                              unless the configuration sets no-plugins itself
 *   GIT_CONFIG_COUNT/_KEY_n/_VALUE_n  git 2.31 and later; the agent passes its environment to
 *                              every job (agent/job_runner.go: os.Environ() first, the job's
 *                              own variables after it, so a job can override them for itself)
 * All of these predate 3.89.0, the version agent.version already requires.
 */

char *agent_dropin_path(const char *unit) {
        char *p;
        return asprintf(&p, "/etc/systemd/system/%s.d/" AGENT_DROPIN_NAME, unit) < 0 ? NULL : p;
}

int agent_dropin_render(const Config *config, const Account *a, char **ret) {
        _cleanup_free_ char *uid = NULL, *gid = NULL, *plugins = NULL, *ready = NULL, *start = NULL, *text = NULL,
                            *untrusted = NULL;
        /* Without tenants: the package's own file, as before. */
        const char *agent_config = a->agent_config ?: AGENT_CONFIG_FILE;
        const struct { const char *what, *value; } plain[] = {
                { "the user name", a->name },
                { "the CI user's home", a->home },
                { "the builds directory", a->builds_dir },
                { "the agent's configuration file", agent_config },
        };
        int r;

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
                { "AGENT_CONFIG", agent_config },
                { "SBINDIR", SBINDIR },
                { "HOOKS_DIR", HOOKS_DIR },
                { "READY_TIMEOUT", ready },
                { "START_TIMEOUT", start },
        };
        r = unit_template_render(units_dir(), "agent-dropin.conf.in", values, ELEMENTSOF(values), &text);
        if (r < 0)
                return r;
        /* Trusted tenants, and the one account without tenants, get nothing more. */
        if (!a->tenant || a->trust != TRUST_UNTRUSTED) {
                *ret = TAKE_PTR(text);
                return 0;
        }

        UnitValue untrusted_values[] = {
                { "TENANT", a->tenant },
                { "AGENT_CONFIG", agent_config },
        };
        r = unit_template_render(units_dir(), "agent-dropin-untrusted.conf.in", untrusted_values,
                                 ELEMENTSOF(untrusted_values), &untrusted);
        if (r < 0)
                return r;
        if (asprintf(ret, "%s%s", text, untrusted) < 0)
                return -ENOMEM;
        return 0;
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
