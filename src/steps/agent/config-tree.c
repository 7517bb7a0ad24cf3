/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "steps/agent/config-tree.h"
#include "steps/tenants/tenants.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/killpoint.h"
#include "util/log.h"
#include "util/macro.h"

/*
 * The agent step's config part, invariant I3: /etc/buildkite-agent (the
 * package chowns it to its own user) becomes root's, with the CI user's
 * group, writable by nobody else; the configuration file 0640. The look
 * walks it without following a symlink and opens each entry once; every
 * directory or file that is not as it should be is a Change of its own
 * (agent.config:PATH) that apply makes through the fd the look opened and
 * checked, never through a name. Symlinks, hard links and special files
 * are not changed but judged: FAIL (in every verb, with the fix) where
 * someone other than root could change what the agent loads through them
 * (see config-judge.c). The files' contents are never read: the
 * configuration holds the registration token.
 *
 * The look walks a directory before apply secures it (apply then secures
 * in walk order, parents before children). So the walk's safety holds as
 * when each directory was secured before its entries were opened: each fd
 * is checked against the name's lstat when it is opened (the identity
 * re-check), apply checks it again (a file must still have one name), and
 * once a directory is secured, nobody but root can add to it: apply lists
 * it again and refuses to go on if an entry appeared or was swapped since
 * the look ("run apply again").
 */

mode_t agent_config_wanted_mode(mode_t have, bool is_config_file) {
        mode_t owner = have & 0700;

        if (is_config_file)
                return 0640;
        return owner | ((owner & 0500) >> 3) | (have & 0005);
}

/* What a directory held when the look listed it: apply compares after securing it. */
typedef struct Seen {
        char *name;
        dev_t dev;
        ino_t ino;
} Seen;

/* One entry to secure: the fd the look opened and checked, and what it saw. */
typedef struct EntryFix {
        int fd;
        char *shown;
        gid_t gid;
        bool is_config_file;
        struct stat looked;
        Seen *children;         /* a directory: its entries at the look */
        size_t n_children;
} EntryFix;

/* Every entry of the directory dfd but . and .., in readdir's order; stops at the first error. */
int agent_tree_for_each_entry(int dfd, const char *shown, int (*f)(void *userdata, int dfd, const char *name),
                              void *userdata) {
        _cleanup_close_ int lfd = -1;
        struct dirent *de;
        DIR *d;
        int r = 0;

        /* Under plan and check the directory may still be writable by others: only looking, that is fine. */
        lfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (lfd < 0)
                return log_error_errno(negative_errno(), "Failed to open %s: %m", shown);
        d = fdopendir(lfd);
        if (!d)
                return log_error_errno(negative_errno(), "Failed to list %s: %m", shown);
        lfd = -1;
        while ((errno = 0, de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                r = f(userdata, dfd, de->d_name);
                if (r < 0)
                        break;
        }
        if (r >= 0 && errno != 0)
                r = log_error_errno(negative_errno(), "Failed to list %s: %m", shown);
        closedir(d);
        return r;
}

static void entry_fix_free(void *p) {
        EntryFix *e = p;

        if (!e)
                return;
        safe_close(e->fd);
        free(e->shown);
        for (size_t i = 0; i < e->n_children; i++)
                free(e->children[i].name);
        free(e->children);
        free(e);
}

/* Once a directory is secured only root can add to it: an entry not there at the look came in between. */
static int entry_recheck_child(void *userdata, int dfd, const char *name) {
        const EntryFix *e = userdata;
        struct stat st;

        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : log_error_errno(negative_errno(), "Failed to stat %s/%s: %m", e->shown, name);
        for (size_t i = 0; i < e->n_children; i++)
                if (streq(e->children[i].name, name) && e->children[i].dev == st.st_dev && e->children[i].ino == st.st_ino)
                        return 0;
        return log_error_errno(-EBUSY, "%s/%s appeared while %s was being secured; run apply again", e->shown, name,
                               e->shown);
}

/* Apply: bring the entry the look opened to root:gid with its wanted mode, through its fd. */
static int entry_fix_apply(StepRun *run, Change *c) {
        const EntryFix *e = c->data;
        struct stat st, now;
        mode_t want;

        /* The fd is the inode the look checked; a file must still have no other name. */
        if (fstat(e->fd, &st) < 0)
                return log_error_errno(negative_errno(), "Failed to stat %s: %m", e->shown);
        if (st.st_dev != e->looked.st_dev || st.st_ino != e->looked.st_ino ||
            (S_ISREG(st.st_mode) && st.st_nlink != 1))
                return log_error_errno(-EBUSY, "%s changed while it was being looked at; run apply again", e->shown);
        want = agent_config_wanted_mode(st.st_mode & 07777, e->is_config_file);
        if (st.st_uid != 0 || st.st_gid != e->gid || (st.st_mode & 07777) != want) {
                /* chown first: it clears setuid/setgid bits, and the mode is set explicitly afterwards. */
                if (fchown(e->fd, 0, e->gid) < 0)
                        return log_error_errno(negative_errno(), "Failed to chown %s to root: %m", e->shown);
                if (fchmod(e->fd, want) < 0)
                        return log_error_errno(negative_errno(), "Failed to chmod %s: %m", e->shown);
                if (fstat(e->fd, &now) < 0 || now.st_uid != 0 || now.st_gid != e->gid || (now.st_mode & 07777) != want)
                        return log_error_errno(-EIO, "%s is not root:%u %04o after fixing it", e->shown,
                                               (unsigned) e->gid, (unsigned) want);
                log_warning("Secured %s: it was %u:%u %04o, %s; now root:%u %04o", e->shown, (unsigned) st.st_uid,
                            (unsigned) st.st_gid, (unsigned) (st.st_mode & 07777),
                            st.st_uid != 0 || (st.st_mode & 0022) ? "which let someone other than root change what "
                                                                    "the agent loads for later jobs"
                                                                  : "not the access rootless-ci gives the agent",
                            (unsigned) e->gid, (unsigned) want);
                change_done(run, c->id, ITEM_CHANGE, "secured %s (was %u:%u %04o, now root:%u %04o)", e->shown,
                            (unsigned) st.st_uid, (unsigned) st.st_gid, (unsigned) (st.st_mode & 07777),
                            (unsigned) e->gid, (unsigned) want);
        }
        return S_ISDIR(st.st_mode) ? agent_tree_for_each_entry(e->fd, e->shown, entry_recheck_child, (void *) e) : 0;
}

int agent_config_describe_fd(StepRun *run, const char *id, int *fd, const char *shown, gid_t gid,
                              bool is_config_file, void **ret_fix) {
        _cleanup_free_ char *plan = NULL, *problem = NULL;
        struct stat st;
        mode_t want;
        EntryFix *e;

        if (ret_fix)
                *ret_fix = NULL;
        if (fstat(*fd, &st) < 0)
                return log_error_errno(negative_errno(), "Failed to stat %s: %m", shown);
        want = agent_config_wanted_mode(st.st_mode & 07777, is_config_file);
        if (st.st_uid == 0 && st.st_gid == gid && (st.st_mode & 07777) == want)
                return 0;
        if (asprintf(&plan, "secure %s: %u:%u %04o → root:%u %04o", shown, (unsigned) st.st_uid,
                     (unsigned) st.st_gid, (unsigned) (st.st_mode & 07777), (unsigned) gid, (unsigned) want) < 0 ||
            asprintf(&problem, "%s is %u:%u %04o, not root:%u %04o: %s", shown, (unsigned) st.st_uid,
                     (unsigned) st.st_gid, (unsigned) (st.st_mode & 07777), (unsigned) gid, (unsigned) want,
                     (st.st_uid != 0 || (st.st_mode & 0022)) ? "someone other than root can change what the agent loads"
                                                              : "its access differs from what rootless-ci sets") < 0)
                return -ENOMEM;
        e = calloc(1, sizeof(EntryFix));
        if (!e || !(e->shown = strdup(shown))) {
                free(e);
                return -ENOMEM;
        }
        e->fd = TAKE_FD(*fd);
        e->gid = gid;
        e->is_config_file = is_config_file;
        e->looked = st;
        item_change(run, &(Change) {
                .id = id,
                .state = ITEM_CHANGE,
                .plan = plan,
                .problem = problem,
                .apply = entry_fix_apply,
                .data = e,
                .data_free = entry_fix_free,
        });
        if (ret_fix)
                *ret_fix = e;
        return 1;
}

/*
 * The open entry fd (a directory or a regular file, already checked): in
 * place, or a Change that brings it to root:gid with its wanted mode. The
 * Change keeps the fd (*ret_fix, for a directory's entries to be added).
 */
static int tree_describe_fd(TreeWalk *w, int *fd, const char *shown, bool is_config_file, EntryFix **ret_fix) {
        char id[PATH_MAX + 32];
        void *fix = NULL;
        int r;

        /* Each entry that is not as it should be is an item of its own: "agent.config:PATH". */
        snprintf(id, sizeof(id), "agent.config:%s", shown);
        r = agent_config_describe_fd(w->run, id, fd, shown, w->gid, is_config_file, &fix);
        if (r < 0)
                return r;
        *ret_fix = fix;
        if (r > 0)
                w->changed++;
        else
                w->in_place++;
        return 0;
}

static int tree_walk_dir(TreeWalk *w, int dfd, const char *shown, unsigned depth, EntryFix *dir_fix);

/* One entry of a directory: look without following, open it once, check the fd is what was looked at. */
static int tree_visit(TreeWalk *w, int dirfd, const char *name, const char *shown, unsigned depth, bool top_level,
                      EntryFix *parent_fix) {
        _cleanup_close_ int fd = -1;
        EntryFix *fix = NULL;
        struct stat st, st2;
        bool is_dir;
        int r;

        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT)
                        return 0;
                return log_error_errno(negative_errno(), "Failed to stat %s: %m", shown);
        }
        if (parent_fix) {
                Seen *n = ARRAY_PUSH(parent_fix->children, parent_fix->n_children);
                if (!n)
                        return -ENOMEM;
                *n = (Seen) { .name = strdup(name), .dev = st.st_dev, .ino = st.st_ino };
                if (!n->name)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < w->n_skip; i++)
                if (streq(shown, w->skip[i]))
                        return 0;
        is_dir = S_ISDIR(st.st_mode);
        if (!is_dir && !(S_ISREG(st.st_mode) && st.st_nlink == 1)) {
                return agent_tree_judge_other(w, dirfd, name, shown, &st);
        }
        /* O_NONBLOCK|O_NOCTTY: harmless on what we checked; safe if something else was swapped in. */
        fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | (is_dir ? O_DIRECTORY : 0));
        if (fd < 0)
                return log_error_errno(negative_errno(), "Failed to open %s: %m", shown);
        if (fstat(fd, &st2) < 0)
                return log_error_errno(negative_errno(), "Failed to stat %s: %m", shown);
        if (st2.st_dev != st.st_dev || st2.st_ino != st.st_ino || !(S_ISDIR(st2.st_mode) || S_ISREG(st2.st_mode)) ||
            (S_ISREG(st2.st_mode) && st2.st_nlink != 1))
                return log_error_errno(-EBUSY, "%s changed while it was being looked at; run apply again", shown);

        r = tree_describe_fd(w, &fd, shown, top_level && S_ISREG(st2.st_mode) && streq(name, "buildkite-agent.cfg"),
                             &fix);
        if (r < 0)
                return r;
        if (is_dir) {
                if (depth >= TREE_MAX_DEPTH)
                        return log_error_errno(-ELOOP, "%s is nested deeper than %u levels", shown, TREE_MAX_DEPTH);
                /* The Change keeps the fd it will secure; the walk goes on through it. */
                return tree_walk_dir(w, fix ? fix->fd : fd, shown, depth + 1, fix);
        }
        return 0;
}

typedef struct TreeDir {
        TreeWalk *w;
        const char *shown;
        unsigned depth;
        EntryFix *fix;
} TreeDir;

static int tree_visit_entry(void *userdata, int dfd, const char *name) {
        TreeDir *td = userdata;
        _cleanup_free_ char *child = NULL;

        if (asprintf(&child, "%s/%s", td->shown, name) < 0)
                return -ENOMEM;
        return tree_visit(td->w, dfd, name, child, td->depth, td->depth == 1, td->fix);
}

static int tree_walk_dir(TreeWalk *w, int dfd, const char *shown, unsigned depth, EntryFix *dir_fix) {
        TreeDir td = { .w = w, .shown = shown, .depth = depth, .fix = dir_fix };
        return agent_tree_for_each_entry(dfd, shown, tree_visit_entry, &td);
}

static void tree_walk_done(TreeWalk *w) {
        for (size_t i = 0; i < w->n_skip; i++)
                free(w->skip[i]);
        free(w->skip);
}

int agent_config_look(StepRun *run, Account *a) {
        AgentState *state = run_state(run);
        _cleanup_free_ char *name = NULL, *shown = run_shown(run, AGENT_CONFIG_DIR);
        _cleanup_close_ int parent = -1;
        /* What run_shown() puts before an in-root path, so the judge's paths compare with shown. */
        _cleanup_free_ char *prefix = strdup(!streq(run_root(run), "/") ? run_root(run) : "");
        /*
         * Without tenants, the CI user's group gets the access the package's
         * user had (as before tenants). With tenants, the tree serves every
         * tenant's agent and belongs to no tenant: root's group, so no
         * tenant's jobs read what the package's user could (its
         * buildkite-agent.cfg, a token of its own, becomes root:root 0640);
         * each tenant's own file is its config-file part's, not the walk's.
         */
        _cleanup_(tree_walk_done) TreeWalk w = { .run = run, .root_fd = run_root_fd(run),
                                                 .gid = a->tenant ? 0 : a->gid };
        const Account *accounts;
        size_t n_accounts;
        struct stat st;
        int r;

        if (!a->tenant && a->state != ACCOUNT_KNOWN)
                return 0;
        if (!shown || !prefix)
                return -ENOMEM;
        accounts = run_accounts(run, &n_accounts);
        for (size_t i = 0; i < n_accounts; i++) {
                char **s;

                if (!accounts[i].agent_config)
                        continue;
                s = ARRAY_PUSH(w.skip, w.n_skip);
                if (!s)
                        return -ENOMEM;
                *s = run_shown(run, accounts[i].agent_config);
                if (!*s)
                        return -ENOMEM;
        }
        {
                /* A removed tenant's file keeps its access until it is retired (steps/tenants/). */
                _cleanup_(tenant_records_done) TenantRecords removed = {};
                r = tenants_removed(run_root_fd(run), run_config(run), &removed);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < removed.n_entries; i++) {
                        char **s = ARRAY_PUSH(w.skip, w.n_skip);
                        if (!s)
                                return -ENOMEM;
                        *s = run_shown(run, removed.entries[i].agent_config ?: AGENT_CONFIG_FILE);
                        if (!*s)
                                return -ENOMEM;
                }
        }
        w.tree = shown;
        w.prefix = prefix;
        if (fstat(w.root_fd, &w.root) < 0)
                return log_error_errno(negative_errno(), "Failed to stat the root directory: %m");
        parent = safe_open_parent(w.root_fd, AGENT_CONFIG_DIR, RESOLVE_POLICY_IN_ROOT, &name);
        if (parent < 0 && parent != -ENOENT)
                return log_error_errno(parent, "Failed to open the directory of %s: %m", shown);
        if (parent == -ENOENT || (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)) {
                item_ok(run, "agent.config", "%s does not exist (the agent is not installed): apply secures it once it is",
                        shown);
                return 0;
        }
        if (S_ISLNK(st.st_mode)) {
                _cleanup_free_ char *fix = NULL;
                char target[PATH_MAX];
                ssize_t n = readlinkat(parent, name, target, sizeof(target) - 1);

                target[n < 0 ? 0 : n] = 0;
                if (asprintf(&fix, "make %s a directory of its own, owned by root (cp -rT %s %s.new && rm %s && mv "
                             "%s.new %s), then run rootless-ci apply", shown, shown, shown, shown, shown, shown) < 0)
                        return -ENOMEM;
                item_finding(run, "agent.config", ITEM_FAIL, fix,
                             "%s is a symlink to %s: the agent follows it, and rootless-ci secures only a directory "
                             "of its own (it never changes what a symlink leads to); not changed", shown, target);
                return 0;
        }
        if (!S_ISDIR(st.st_mode)) {
                item_finding(run, "agent.config", ITEM_WARN, "remove it", "%s is not a directory: left alone", shown);
                return 0;
        }

        r = tree_visit(&w, parent, name, shown, 0, false, NULL);
        if (r < 0)
                return r;
        state->tree_changed = w.changed > 0;
        if (w.changed == 0 && w.failed == 0)
                item_ok(run, "agent.config", "%s: %u entries owned by root, writable by nobody else%s%s", shown,
                        w.in_place, w.links ? ", and symlinks that lead only to what root alone can change" : "",
                        w.left_alone ? " (and what is warned about above, left alone)" : "");
        return 0;
}

/* Apply: the tree is secured (the killpoint between the configuration and the rest, as before). */
int agent_config_settle(StepRun *run, Account *a) {
        killpoint("agent-config-secured");
        return 0;
}
