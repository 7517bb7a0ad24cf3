/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "util/error.h"
#include "util/fileio.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"

/*
 * A tenant's own agent configuration file (AgentConfig=, by default
 * /etc/buildkite-agent/<Name>.cfg; issue 16): it holds the registration
 * token of that tenant's queue, so it is root:<the tenant user's group>
 * 0640 and no other tenant's jobs can read it. The look walks to it without
 * following a symlink and never reads it; apply fixes the owner and mode
 * through the fd it opened and checked (as the config tree does), and never
 * creates the file: the token is the operator's, and an invented one would
 * only register nothing. Every directory on the way outside
 * /etc/buildkite-agent (which the config part secures) must be root's
 * alone, and every one must let the tenant's user through.
 *
 * Without tenants there is no such part: the package's own file is the
 * config tree's, as before.
 */

typedef struct ConfigFileLook {
        StepRun *run;
        const Account *a;
        const char *shown;          /* the file as shown */
        const char *tree;           /* /etc/buildkite-agent as shown: the config part judges what is in it */
        bool done;                  /* an item was reported */
} ConfigFileLook;

static bool in_tree(const char *tree, const char *shown) {
        size_t l = strlen(tree);
        return strncmp(shown, tree, l) == 0 && (shown[l] == 0 || shown[l] == '/');
}

/* Whether uid/gid may pass through (search) the directory st describes. */
static bool dir_lets_through(const struct stat *st, uid_t uid, gid_t gid) {
        if (st->st_uid == uid)
                return st->st_mode & S_IXUSR;
        if (st->st_gid == gid)
                return st->st_mode & S_IXGRP;
        return st->st_mode & S_IXOTH;
}

static void config_file_missing(ConfigFileLook *l) {
        const Account *a = l->a;

        item_finding(l->run, "agent.config-file", ITEM_WARN,
                     run_asprintf(l->run, "write it yourself with the registration token of tenant %s's queue (see "
                                  "buildkite-agent.cfg.example in rootless-ci's documentation): install -o root -g %u "
                                  "-m 0640 /dev/null %s, edit it, then run rootless-ci apply", a->tenant,
                                  (unsigned) a->gid, l->shown),
                     "%s does not exist: %s does not start without it (the agent stops when the file "
                     "BUILDKITE_AGENT_CONFIG names is missing); rootless-ci never writes a token", l->shown,
                     a->agent_unit);
        l->done = true;
}

/* The file itself, in the directory the walk stands in. */
static int config_file_judge(ConfigFileLook *l, const PathWalkStep *s) {
        const Account *a = l->a;
        _cleanup_close_ int fd = -1;
        struct stat st;
        int r;

        l->done = true;
        if (!S_ISREG(s->st->st_mode) || s->st->st_nlink != 1) {
                item_finding(l->run, "agent.config-file", ITEM_FAIL,
                             run_asprintf(l->run, "make %s a regular file of its own, owned by root (cp --remove-destination "
                                          "--dereference %s %s once you have read where it leads), then run "
                                          "rootless-ci apply", l->shown, l->shown, l->shown),
                             "%s is %s: the agent of tenant %s would read its token through it, and rootless-ci "
                             "secures only a file of its own; not changed", l->shown,
                             S_ISLNK(s->st->st_mode) ? "a symlink"
                             : S_ISREG(s->st->st_mode) ? "a file with other hard links (its other names may be anywhere)"
                                                        : "not a regular file",
                             a->tenant);
                return 0;
        }
        /* O_NONBLOCK|O_NOCTTY: harmless on a regular file; safe if something else was swapped in. Never read. */
        fd = openat(s->dir_fd, s->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
                return log_error_errno(negative_errno(), "Failed to open %s: %m", l->shown);
        if (fstat(fd, &st) < 0)
                return log_error_errno(negative_errno(), "Failed to stat %s: %m", l->shown);
        if (st.st_dev != s->st->st_dev || st.st_ino != s->st->st_ino || !S_ISREG(st.st_mode) || st.st_nlink != 1)
                return log_error_errno(-EBUSY, "%s changed while it was being looked at; run apply again", l->shown);

        r = agent_config_describe_fd(l->run, "agent.config-file", &fd, l->shown, a->gid, true, NULL);
        if (r < 0)
                return r;
        if (r == 0)
                item_ok(l->run, "agent.config-file", "%s: root:%u 0640, readable by %s (tenant %s's agent) and root only",
                        l->shown, (unsigned) a->gid, a->name, a->tenant);
        return 0;
}

static int config_file_on_entry(void *userdata, const PathWalkStep *s) {
        ConfigFileLook *l = userdata;
        const Account *a = l->a;
        _cleanup_free_ char *path = NULL, *shown = NULL;

        if (!s->st) {
                config_file_missing(l);
                return 1;
        }
        if (s->last) {
                int r = config_file_judge(l, s);
                return r < 0 ? r : 1;
        }

        if (asprintf(&path, "%s/%s", streq(s->dir_path, "/") ? "" : s->dir_path, s->name) < 0 ||
            !(shown = run_shown(l->run, path)))
                return -ENOMEM;
        if (!S_ISDIR(s->st->st_mode)) {
                item_finding(l->run, "agent.config-file", ITEM_FAIL,
                             run_asprintf(l->run, "make %s a directory owned by root, or point AgentConfig= of tenant %s "
                                          "elsewhere, then run rootless-ci apply", shown, a->tenant),
                             "%s, on the way to %s, is %s: not followed", shown, l->shown,
                             S_ISLNK(s->st->st_mode) ? "a symlink" : "not a directory");
                l->done = true;
                return 1;
        }
        /* Whoever can write a directory on the way can put another file (and token) in its place. */
        if (!in_tree(l->tree, shown) && (s->st->st_uid != 0 || (s->st->st_mode & 0022))) {
                item_finding(l->run, "agent.config-file", ITEM_FAIL,
                             run_asprintf(l->run, "chown root %s && chmod go-w %s, then run rootless-ci check", shown,
                                          shown),
                             "%s, on the way to %s, is %u:%u %04o: someone other than root can replace the file tenant "
                             "%s's agent reads its token and settings from", shown, l->shown,
                             (unsigned) s->st->st_uid, (unsigned) s->st->st_gid, (unsigned) (s->st->st_mode & 07777),
                             a->tenant);
                l->done = true;
                return 1;
        }
        if (!dir_lets_through(s->st, a->uid, a->gid)) {
                item_finding(l->run, "agent.config-file", ITEM_FAIL,
                             run_asprintf(l->run, "chmod o+x %s (it lists nothing; each tenant's file stays 0640 and its "
                                          "group's), then run rootless-ci check", shown),
                             "%s, on the way to %s, is %u:%u %04o: %s cannot pass through it, so tenant %s's agent "
                             "cannot read its configuration", shown, l->shown, (unsigned) s->st->st_uid,
                             (unsigned) s->st->st_gid, (unsigned) (s->st->st_mode & 07777), a->name, a->tenant);
                l->done = true;
                return 1;
        }
        return 0;
}

/* Another tenant's user in this tenant's group reads its token: name each. */
static int config_file_group_look(StepRun *run, const Account *a) {
        _cleanup_free_ char *names = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        const Account *accounts;
        size_t n, size = 0, len = 0;
        int r;

        f = open_memstream(&names, &size);
        if (!f)
                return -ENOMEM;

        accounts = run_accounts(run, &n);
        for (size_t i = 0; i < n; i++) {
                const Account *b = &accounts[i];
                bool member = false;

                if (streq(b->name, a->name) || b->state != ACCOUNT_KNOWN)
                        continue;
                member = b->gid == a->gid;
                for (size_t j = 0; j < b->n_gids && !member; j++)
                        member = b->gids[j] == a->gid;
                if (!member)
                        continue;
                fprintf(f, "%s%s", len > 0 ? ", " : "", b->name);
                len++;
        }
        r = memstream_finish(TAKE_PTR(f), &names);
        if (r < 0)
                return r;
        if (len == 0)
                return 0;
        item_finding(run, "agent.config-group", ITEM_FAIL,
                     run_asprintf(run, "give %s a group of its own (usermod -g) and take %s out of group %u "
                                  "(gpasswd -d USER GROUP), then run rootless-ci apply", a->name, names,
                                  (unsigned) a->gid),
                     "%s (user%s of other tenants) %s in group %u, the group of %s and of tenant %s's configuration "
                     "file: %s jobs can read its registration token", names, len == 1 ? "" : "s",
                     len == 1 ? "is" : "are", (unsigned) a->gid, a->name, a->tenant, len == 1 ? "its" : "their");
        return 0;
}

int agent_config_file_look(StepRun *run, Account *a) {
        _cleanup_free_ char *shown = NULL, *tree = NULL;
        ConfigFileLook l = { .run = run, .a = a };
        int r;

        if (!a->agent_config || a->state != ACCOUNT_KNOWN)
                return 0;
        shown = run_shown(run, a->agent_config);
        tree = run_shown(run, AGENT_CONFIG_DIR);
        if (!shown || !tree)
                return -ENOMEM;
        l.shown = shown;
        l.tree = tree;

        r = config_file_group_look(run, a);
        if (r < 0)
                return r;
        r = path_walk(run_root_fd(run), a->agent_config, WALK_NO_DOTDOT,
                      &(PathWalkVisitor) { .on_entry = config_file_on_entry }, &l, NULL);
        if (r < 0 && !l.done) {
                if (r == -ENOENT) {
                        config_file_missing(&l);
                        return 0;
                }
                return log_error_errno(r, "Failed to look at %s: %m", shown);
        }
        if (r < 0)
                return r;   /* logged where it happened */
        if (!l.done)
                /* A path that names a directory (AgentConfig=/etc/): the walk ended without an entry. */
                item_finding(run, "agent.config-file", ITEM_FAIL, "point AgentConfig= at a file",
                             "%s is not a file", shown);
        return 0;
}
