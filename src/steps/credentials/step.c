/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/step.h"
#include "steps/steps.h"
#include "util/idmap.h"
#include "util/log.h"
#include "util/macro.h"

/*
 * The last step, invariant I1 in the live credentials: no process of the CI
 * user holds a group that leads to root. The kernel judges a process by the
 * groups it was given when it (or an ancestor) logged in, not by
 * /etc/group: one started while the user was in disk or docker keeps that
 * power after the user step took the user out (a tmux server, a job of an
 * older agent, the user manager itself). The daemon and agent steps restart
 * what rootless-ci runs when it holds one; this step, after them, reads
 * the Groups: line of every process of the UID and fails naming each one
 * that still does. It changes nothing: ending a process rootless-ci did
 * not start is the operator's call.
 */

#define HOLDERS_SHOWN 20

static int credentials_look(StepRun *run, Account *a) {
        const HostFacts *f = run_facts(run);
        const char *user = a->name;
        _cleanup_free_ GroupHolder *holders = NULL;
        _cleanup_free_ char *list = NULL, *pids = NULL;
        const char *fix, *message;
        _cleanup_close_ int proc_fd = -1;
        size_t n = 0, seen = 0;
        int r;

        if (!run_live(run)) {
                item_finding(run, "credentials.groups", ITEM_SKIP, NULL,
                             "the groups of running processes are checked on the live host");
                return 0;
        }
        if (a->state != ACCOUNT_KNOWN) {
                item_finding(run, "credentials.groups", ITEM_SKIP, NULL, "user %s does not exist%s", user,
                             a->state == ACCOUNT_PLANNED ? " yet: it has no processes"
                                                         : " or is not usable (see the user step)");
                return 0;
        }

        proc_fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (proc_fd < 0)
                return log_error_errno(negative_errno(), "Failed to open /proc: %m");
        r = group_holders_find(proc_fd, a->uid, f->privileged_gids, f->n_privileged_gids, &holders, &n, &seen);
        if (r < 0)
                return log_error_errno(r, "Failed to read the credentials of %s's processes in /proc: %m", user);
        if (n == 0) {
                item_ok(run, "credentials.groups",
                        "none of %s's %zu running process%s holds a group that leads to root", user, seen,
                        seen == 1 ? "" : "es");
                return 0;
        }

        {
                size_t lsize = 0, psize = 0;
                _cleanup_fclose_ FILE *l = open_memstream(&list, &lsize), *p = open_memstream(&pids, &psize);

                if (!l || !p)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++) {
                        if (i < HOLDERS_SHOWN)
                                fprintf(l, "%sPID %ld (%s, GID %u)", i > 0 ? ", " : "", (long) holders[i].pid,
                                        holders[i].comm[0] ? holders[i].comm : "?", (unsigned) holders[i].gid);
                        fprintf(p, " %ld", (long) holders[i].pid);
                }
                if (n > HOLDERS_SHOWN)
                        fprintf(l, " and %zu more", n - HOLDERS_SHOWN);
                /* Both are closed, whatever the first gives; its error is the one returned. */
                r = fclose(TAKE_PTR(l)) != 0 ? negative_errno() : 0;
                if (fclose(TAKE_PTR(p)) != 0 && r == 0)
                        r = negative_errno();
                if (r < 0)
                        return r;
        }

        /* plan warns what apply will do about them; check and apply fail, check's fix says apply restarts its own. */
        fix = run_asprintf(run, "end %s (kill%s) or the sessions that run %s; a new process gets only the groups "
                           "/etc/group gives %s", n == 1 ? "it" : "them", pids, n == 1 ? "it" : "them", user);
        message = run_asprintf(run, "%zu process%s of %s still hold%s a group that leads to root, and with it that "
                               "power, whatever /etc/group says now: %s", n, n == 1 ? "" : "es", user,
                               n == 1 ? "s" : "", list);
        item_finding_ex(run, &(Finding) {
                .id = "credentials.groups",
                .status = ITEM_FAIL,
                .message = message,
                .fix = fix,
                .in_plan = &(Verdict) { ITEM_WARN, run_asprintf(run, "%zu process%s of %s hold%s a group that leads "
                                                                "to root: %s; apply restarts %s's manager and the "
                                                                "agent when they hold one, and fails naming whatever "
                                                                "else still does", n, n == 1 ? "" : "es", user,
                                                                n == 1 ? "s" : "", list, user), NULL },
                .in_check = &(Verdict) { ITEM_FAIL, message,
                                         run_asprintf(run, "%s (rootless-ci apply restarts the user manager and "
                                                      "the agent itself when they hold one)", fix) },
        });
        return 0;
}

static const Part credentials_parts[] = {
        { .name = "groups", .look = credentials_look },
};

const Step step_credentials = {
        .name = "credentials",
        STEP_PARTS(credentials_parts),
        .per_account = true,
};
