/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "steps/steps.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/killpoint.h"
#include "util/log.h"
#include "util/macro.h"

/*
 * Step 6, agent: the Buildkite agent runs as the CI user against that
 * user's rootless Docker, and cannot change what it loads for later jobs.
 * Its parts, in order:
 *
 *   user         an account that is not there yet: what plan can say
 *   config       /etc/buildkite-agent taken back from the package's user
 *                (config-tree.c); killpoint agent-config-secured. About the
 *                host: one tree serves every tenant's agent
 *   config-file  a tenant's own configuration file (config-file.c): root,
 *                the tenant's group, 0640; tenants only
 *   home-config  ~CI_USER/.buildkite-agent/buildkite-agent.cfg looked at
 *                (never read) without following a symlink: a warning when
 *                it exists, since the agent would prefer it to /etc
 *                without the pinned BUILDKITE_AGENT_CONFIG
 *   hooks        rootless-ci's hooks (hooks.c), judged for each user
 *   version      the agent's version (hooks.c): one package, about the host
 *   dropin       the agent's drop-in (dropin.c); killpoint agent-dropin-written
 *   docker-host  jobs can set DOCKER_HOST themselves; that is only safe
 *                because no root-owned Docker socket is reachable, which
 *                the daemon step checked: its verdict (the account's
 *                root_sockets_*) is repeated here
 *   reload       apply: daemon-reload when owed (service.c)
 *   service      the running agent restarted when it must be (service.c)
 */

/*
 * An account that is not usable or not there yet. plan lists what apply
 * would make for the user to come; check skips; apply stops without an
 * item of its own (the user step said why): a change shown in no verb but
 * apply, whose apply is that error.
 */
static int user_missing_apply(StepRun *run, Change *c) {
        return log_error_errno(-ERCI_FAILED, "User %s does not exist (see the user step)", (const char *) c->data);
}

static int agent_user_look(StepRun *run, Account *a) {
        _cleanup_free_ char *path = NULL, *dropin = NULL, *config = NULL, *skip = NULL, *tenant_config = NULL;
        bool planned = a->state == ACCOUNT_PLANNED;

        if (a->state == ACCOUNT_KNOWN)
                return 0;
        item_change(run, &(Change) {
                .id = "agent.user",
                .state = ITEM_CHANGE,
                .hidden_in = IN_PLAN | IN_CHECK,
                .apply = user_missing_apply,
                .data = (void *) a->name,
        });
        path = agent_dropin_path(a->agent_unit);
        if (!path)
                return -ENOMEM;
        /* plan, the user to come: every change, one line each (the drop-in names the UID to come). */
        if (asprintf(&dropin, "write %s (runs %s as %s, DOCKER_HOST=unix:///run/user/UID/docker.sock; UID chosen "
                     "when the user is created)", path, a->agent_unit, a->name) < 0 ||
            asprintf(&config, "/etc/buildkite-agent is judged against %s's groups once the user exists", a->name) < 0 ||
            asprintf(&skip, planned ? "user %s does not exist yet (apply creates it first): the agent's drop-in and "
                                      "ownership depend on its UID"
                                    : "the CI user %s is not usable (see the user step)", a->name) < 0)
                return -ENOMEM;
        /* A tenant: the tree is root's (the config part says so); its own file waits for its group. */
        if (a->tenant && asprintf(&tenant_config, "%s is judged once %s exists: it must be root:%s's group 0640",
                                  a->agent_config, a->name, a->name) < 0)
                return -ENOMEM;
        if (planned) {
                item_finding_ex(run, &(Finding) { .id = "agent.dropin", .status = ITEM_CREATE, .message = dropin,
                                                  .hidden_in = IN_CHECK | IN_APPLY });
                item_finding_ex(run, &(Finding) { .id = a->tenant ? "agent.config-file" : "agent.config",
                                                  .status = ITEM_SKIP, .message = a->tenant ? tenant_config : config,
                                                  .hidden_in = IN_CHECK | IN_APPLY });
        }
        item_finding_ex(run, &(Finding) { .id = "agent.user", .status = ITEM_SKIP, .message = skip,
                                          .hidden_in = IN_APPLY | (planned ? IN_PLAN : 0) });
        return 0;
}

static int agent_home_config_look(StepRun *run, Account *a) {
        const char *home = a->home, *rel = ".buildkite-agent/buildkite-agent.cfg";
        /* The file the drop-in pins: the tenant's own, or the package's. */
        const char *pinned = a->agent_config ?: AGENT_CONFIG_FILE;
        _cleanup_close_ int hfd = -1, fd = -1;
        _cleanup_free_ char *shown = NULL;

        if (a->state != ACCOUNT_KNOWN || !home)
                return 0;
        if (asprintf(&shown, "%s/%s", home, rel) < 0)
                return -ENOMEM;
        hfd = home_open(run_root_fd(run), home, a->uid, NULL);
        if (hfd < 0) {
                item_finding(run, "agent.home-config", ITEM_SKIP, NULL, "%s not looked at: the home %s cannot be opened "
                             "safely (%s; see the user step)", shown, home, strerror(-hfd));
                return 0;
        }
        /* Only looked at, never read; a symlink anywhere on the way is itself the finding. */
        fd = safe_openat(hfd, rel, O_PATH, 0, RESOLVE_POLICY_NO_SYMLINKS);
        if (fd == -ENOENT || fd == -ENOTDIR) {
                item_ok(run, "agent.home-config", "no %s (the agent reads its configuration from %s only)", shown,
                        pinned);
                return 0;
        }
        item_finding(run, "agent.home-config", ITEM_WARN, "remove it (and ask where it came from)",
                     fd == -ELOOP ? "%s leads through a symlink: builds control it; without the drop-in's "
                                    "BUILDKITE_AGENT_CONFIG the agent would read it instead of %s"
                                  : "%s exists: builds can write it; without the drop-in's BUILDKITE_AGENT_CONFIG the "
                                    "agent would read it instead of %s",
                     shown, pinned);
        return 0;
}

/* Apply: the drop-in is written (the killpoint after it, as before). */
static int agent_dropin_settle(StepRun *run, Account *a) {
        killpoint("agent-dropin-written");
        return 0;
}

static int agent_docker_host_look(StepRun *run, Account *a) {
        if (!a->root_sockets_checked)
                item_finding(run, "agent.docker-host", ITEM_SKIP, NULL,
                             "jobs can set DOCKER_HOST themselves: that is safe only while no root daemon's API socket "
                             "is reachable, which %s",
                             run_live(run) ? "the daemon step could not check in this run (see its items)"
                                           : "is checked on the live host");
        else if (a->root_sockets_reachable > 0)
                item_finding(run, "agent.docker-host", ITEM_FAIL,
                             "make each socket a daemon.root-socket-reachable item names unreachable (its fix says "
                             "how), then run rootless-ci check",
                             "jobs can set DOCKER_HOST themselves, and %u root daemon API socket%s "
                             "reachable by the CI user: any job can become root on this host",
                             a->root_sockets_reachable, a->root_sockets_reachable == 1 ? " is" : "s are");
        else
                item_ok(run, "agent.docker-host",
                        "jobs can set DOCKER_HOST themselves; that is safe only because no root-owned daemon API "
                        "socket (Docker, containerd, ...) is reachable by the CI user (checked by the daemon step)");
        return 0;
}

static void agent_state_done(void *p) {
        AgentState *st = p;

        unit_state_done(&st->unit);
}

/* Its configuration first: whatever the agent loads next is root's. */
static const Part agent_parts[] = {
        { .name = "user", .look = agent_user_look },
        { .name = "config", .look = agent_config_look, .settle = agent_config_settle, .host_wide = true },
        { .name = "config-file", .look = agent_config_file_look },
        { .name = "home-config", .look = agent_home_config_look },
        { .name = "hooks", .look = agent_hooks_look },
        { .name = "version", .look = agent_version_look, .host_wide = true },
        { .name = "dropin", .look = agent_dropin_look, .settle = agent_dropin_settle },
        { .name = "docker-host", .look = agent_docker_host_look },
        { .name = "reload", .look = agent_reload_look, .settle = agent_reload_settle },
        { .name = "service", .look = agent_service_look, .settle = agent_service_settle },
};

const Step step_agent = {
        .name = "agent",
        .per_account = true,
        STEP_PARTS(agent_parts),
        .state_size = sizeof(AgentState),
        .state_done = agent_state_done,
};
