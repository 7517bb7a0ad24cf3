/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
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
 * (see judge_link()). The files' contents are never read: the
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

#define TREE_MAX_DEPTH 16

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

typedef struct TreeWalk {
        StepRun *run;
        int root_fd;
        gid_t gid;              /* the CI user's; root's with tenants (no one tenant's group) */
        char **skip;            /* tenants' configuration files (as shown): each tenant's config-file part's */
        size_t n_skip;
        const char *tree;       /* /etc/buildkite-agent as shown (under the root) */
        const char *prefix;     /* the root as shown before an in-root path: "" live, else --root's DIR */
        struct stat root;       /* the root directory, where ".." stays */
        unsigned in_place, changed, left_alone, failed, links;
} TreeWalk;

static const char *type_name(mode_t m) {
        return S_ISLNK(m) ? "symlink" : S_ISFIFO(m) ? "FIFO" : S_ISSOCK(m) ? "socket" : S_ISCHR(m) || S_ISBLK(m) ? "device node" : "special file";
}

/* Every entry of the directory dfd but . and .., in readdir's order; stops at the first error. */
static int for_each_entry(int dfd, const char *shown, int (*f)(void *userdata, int dfd, const char *name),
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

/*
 * ---- where a symlink leads: root's alone, or not ----
 *
 * The agent follows a symlink in its tree every time it loads what is
 * there, so the link is only as safe as whatever can change where it leads.
 * It is judged as the kernel resolves it, from inside the root: every
 * directory a name is looked up in on the way (the one each symlink
 * followed lives in included, "..", and the directories it ends in and
 * everything below them) and what it ends at must be "root's alone": owned
 * by root and writable by neither group nor others (an ACL's write access
 * shows in the group bits, its mask). Then nobody but root can write it,
 * nor create, rename or remove a name on the way. A link that leads to a
 * name that does not exist is dangling: fine only where the directory that
 * would hold it is root's alone too (only root can create it), else anyone
 * who can write that directory decides what the agent loads later. The
 * root itself (--root=DIR, or /) is the operator's and not judged.
 */

#define JUDGE_MAX_LINKS 40
#define JUDGE_MAX_ENTRIES 100000U

typedef struct Judge {
        const TreeWalk *w;
        unsigned entries;       /* looked at so far: a link to / must not walk the whole disk */
        char *why;              /* the first thing someone other than root could change; NULL: none */
        char *dangling;         /* the first name on the way that does not exist */
} Judge;

static void judge_done(Judge *j) {
        FREE_MANY(j->why, j->dangling);
}

static int judge_fail(Judge *j, const char *fmt, ...) _printf_(2, 3);
static int judge_fail(Judge *j, const char *fmt, ...) {
        va_list ap;
        int r;

        if (j->why)
                return 0;
        va_start(ap, fmt);
        r = vasprintf(&j->why, fmt, ap);
        va_end(ap);
        if (r < 0) {
                j->why = NULL;
                return -ENOMEM;
        }
        return 0;
}

/* The tree itself and what is in it: the walk judges (and apply fixes) those, not the judge. */
static bool judge_in_tree(const Judge *j, const char *shown) {
        size_t l = strlen(j->w->tree);
        return strncmp(shown, j->w->tree, l) == 0 && (shown[l] == 0 || shown[l] == '/');
}

/* Is shown, by its stat, root's alone (and a directory or a regular file)? If not, why. */
static int judge_stat(Judge *j, const char *shown, const struct stat *st) {
        if (!S_ISDIR(st->st_mode) && !S_ISREG(st->st_mode))
                return judge_fail(j, "%s is a %s", shown, type_name(st->st_mode));
        if (st->st_uid != 0)
                return judge_fail(j, "%s is owned by UID %u", shown, (unsigned) st->st_uid);
        if (st->st_mode & 0022)
                return judge_fail(j, "%s is writable by %s (%04o)", shown,
                                  (st->st_mode & 0022) == 0022 ? "group and others"
                                  : (st->st_mode & 0020)       ? "its group"
                                                               : "others",
                                  (unsigned) (st->st_mode & 07777));
        return 0;
}

static int judge_link(Judge *j, int dirfd, const char *name, const char *dir_shown, unsigned depth);

typedef struct JudgeDir {
        Judge *j;
        const char *shown;
        unsigned depth;
} JudgeDir;

static int judge_dir(Judge *j, int dfd, const char *shown, unsigned depth);

static int judge_entry(void *userdata, int dfd, const char *name) {
        JudgeDir *jd = userdata;
        Judge *j = jd->j;
        _cleanup_free_ char *shown = NULL;
        _cleanup_close_ int fd = -1;
        struct stat st, st2;
        int r;

        if (j->why)
                return 0;
        if (asprintf(&shown, "%s/%s", jd->shown, name) < 0)
                return -ENOMEM;
        if (++j->entries > JUDGE_MAX_ENTRIES)
                return judge_fail(j, "what it leads to holds more than %u entries (%s among them): too many to vouch "
                                  "for", JUDGE_MAX_ENTRIES, shown);
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : judge_fail(j, "%s cannot be looked at (%s)", shown, strerror(errno));
        if (S_ISLNK(st.st_mode))
                return judge_link(j, dfd, name, jd->shown, jd->depth);
        r = judge_stat(j, shown, &st);
        if (r < 0 || j->why || !S_ISDIR(st.st_mode))
                return r;
        fd = openat(dfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st2) < 0 || st2.st_dev != st.st_dev || st2.st_ino != st.st_ino)
                return judge_fail(j, "%s changed while it was being looked at", shown);
        return judge_dir(j, fd, shown, jd->depth + 1);
}

/* A directory the agent may load from (judged already): everything below it. */
static int judge_dir(Judge *j, int dfd, const char *shown, unsigned depth) {
        JudgeDir jd = { .j = j, .shown = shown, .depth = depth };

        if (depth > TREE_MAX_DEPTH)
                return judge_fail(j, "%s is nested deeper than %u levels (a symlink loop?)", shown[0] ? shown : "/",
                                  TREE_MAX_DEPTH);
        return for_each_entry(dfd, shown[0] ? shown : "/", judge_entry, &jd);
}

static char *shown_dirname(const char *shown) {
        const char *slash = strrchr(shown, '/');
        return strndup(shown, slash ? (size_t) (slash - shown) : 0);
}

/*
 * Resolve the symlink dirfd/name (its directory shown as dir_shown, judged
 * by the caller) component by component, never through a path the kernel
 * would resolve on its own, judging each directory entered and what it
 * ends at. Verdict in j->why (not root's alone) or j->dangling.
 */
static int judge_link(Judge *j, int dirfd, const char *name, const char *dir_shown, unsigned depth) {
        const TreeWalk *w = j->w;
        _cleanup_free_ char *todo = strdup(name), *shown = strdup(dir_shown);
        _cleanup_close_ int cur = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
        unsigned links = 0;
        int r;

        if (!todo || !shown)
                return -ENOMEM;
        if (cur < 0)
                return log_error_errno(negative_errno(), "Failed to duplicate a directory fd: %m");

        while (todo[0] && !j->why) {
                _cleanup_free_ char *child = NULL;
                char *comp = todo, *rest = todo + strcspn(todo, "/");
                struct stat st;

                if (todo[0] == '/') {
                        /* Absolute: from the root, as the agent sees it. */
                        safe_close(cur);
                        cur = fcntl(w->root_fd, F_DUPFD_CLOEXEC, 3);
                        if (cur < 0)
                                return log_error_errno(negative_errno(), "Failed to duplicate the root fd: %m");
                        free(shown);
                        shown = strdup(w->prefix);
                        if (!shown)
                                return -ENOMEM;
                        memmove(todo, todo + strspn(todo, "/"), strlen(todo + strspn(todo, "/")) + 1);
                        continue;
                }
                if (*rest)
                        *rest++ = 0;
                rest += strspn(rest, "/");

                if (streq(comp, "..")) {
                        struct stat here;
                        if (fstat(cur, &here) < 0)
                                return log_error_errno(negative_errno(), "Failed to stat %s: %m", shown);
                        if (here.st_dev != w->root.st_dev || here.st_ino != w->root.st_ino) {
                                int up = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
                                char *parent = shown_dirname(shown);

                                if (up < 0 || !parent || fstat(up, &st) < 0) {
                                        safe_close(up);
                                        free(parent);
                                        return judge_fail(j, "the directory above %s cannot be looked at", shown);
                                }
                                safe_close(cur);
                                cur = up;
                                free(shown);
                                shown = parent;
                                /* The root is the operator's; the tree is the walk's. */
                                r = (st.st_dev == w->root.st_dev && st.st_ino == w->root.st_ino) || judge_in_tree(j, shown)
                                            ? 0
                                            : judge_stat(j, shown, &st);
                                if (r < 0)
                                        return r;
                        }
                } else if (comp[0] && !streq(comp, ".")) {
                        if (asprintf(&child, "%s/%s", shown, comp) < 0)
                                return -ENOMEM;
                        if (fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                                if (errno != ENOENT && errno != ENOTDIR)
                                        return judge_fail(j, "%s cannot be looked at (%s)", child, strerror(errno));
                                /* Whoever may create it there decides; the directory was judged on entering. */
                                if (!j->dangling)
                                        j->dangling = TAKE_PTR(child);
                                return 0;
                        }
                        if (S_ISLNK(st.st_mode)) {
                                char target[PATH_MAX];
                                ssize_t n;
                                char *next;

                                if (++links > JUDGE_MAX_LINKS)
                                        return judge_fail(j, "more than %u symlinks on the way (a loop?) at %s",
                                                          JUDGE_MAX_LINKS, child);
                                n = readlinkat(cur, comp, target, sizeof(target) - 1);
                                if (n < 0)
                                        return judge_fail(j, "%s cannot be read (%s)", child, strerror(errno));
                                target[n] = 0;
                                if (asprintf(&next, "%s%s%s", target, *rest ? "/" : "", rest) < 0)
                                        return -ENOMEM;
                                free(todo);
                                todo = next;
                                continue;
                        }
                        if (!S_ISDIR(st.st_mode)) {
                                if (*rest) {
                                        /* Not a directory, so the rest does not resolve: like a missing name. */
                                        if (!j->dangling)
                                                j->dangling = TAKE_PTR(child);
                                        return 0;
                                }
                                return judge_in_tree(j, child) ? 0 : judge_stat(j, child, &st);
                        }
                        {
                                int fd = openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                                struct stat st2;

                                if (fd < 0 || fstat(fd, &st2) < 0 || st2.st_dev != st.st_dev || st2.st_ino != st.st_ino) {
                                        safe_close(fd);
                                        return judge_fail(j, "%s changed while it was being looked at", child);
                                }
                                safe_close(cur);
                                cur = fd;
                        }
                        free(shown);
                        shown = TAKE_PTR(child);
                        r = judge_in_tree(j, shown) ? 0 : judge_stat(j, shown, &st);
                        if (r < 0)
                                return r;
                }
                memmove(todo, rest, strlen(rest) + 1);
        }
        if (j->why || judge_in_tree(j, shown))
                return 0;
        /* It ends at a directory: whatever the agent finds in it counts too. */
        return judge_dir(j, cur, shown, depth + 1);
}

/*
 * An entry the walk does not change: a symlink (judged where it leads), a
 * file with other names (judged itself), a special file (never belongs).
 * FAIL when someone other than root can change what the agent loads
 * through it; apply changes none of them (it never acts through a name it
 * did not walk, nor deletes an operator's file): the fix says how.
 */
static int tree_judge_other(TreeWalk *w, int dirfd, const char *name, const char *shown, const struct stat *st) {
        _cleanup_(judge_done) Judge j = { .w = w };
        _cleanup_free_ char *fix = NULL, *dir = NULL;
        char id[PATH_MAX + 32], target[PATH_MAX];
        ssize_t n;
        int r;

        /* One item per entry, each with its own id. */
        snprintf(id, sizeof(id), "agent.config-link:%s", shown);
        if (S_ISLNK(st->st_mode)) {
                n = readlinkat(dirfd, name, target, sizeof(target) - 1);
                target[n < 0 ? 0 : n] = 0;
                dir = shown_dirname(shown);
                if (!dir)
                        return -ENOMEM;
                r = judge_link(&j, dirfd, name, dir, 1);
                if (r < 0)
                        return r;
                if (j.why) {
                        w->failed++;
                        if (asprintf(&fix, "remove the link (rm %s), or point it at a file whose every directory, and "
                                     "the file, are owned by root and writable by nobody else; then run rootless-ci "
                                     "check", shown) < 0)
                                return -ENOMEM;
                        item_finding(w->run, id, ITEM_FAIL, fix,
                                    "%s is a symlink to %s, and what it leads through or to is not root's alone: %s. "
                                    "The agent follows it in every job, so a build could decide what it runs; not "
                                    "changed",
                                    shown, n < 0 ? "(unreadable)" : target, j.why);
                } else if (j.dangling) {
                        w->left_alone++;
                        item_finding(w->run, id, ITEM_WARN, "remove the link if nothing should be there",
                                    "%s is a symlink to %s, where %s does not exist; only root can create it there",
                                    shown, target, j.dangling);
                } else
                        w->links++;
                return 0;
        }
        if (S_ISREG(st->st_mode)) {
                r = judge_stat(&j, shown, st);
                if (r < 0)
                        return r;
                if (!j.why) {
                        w->left_alone++;
                        item_finding(w->run, id, ITEM_WARN, "replace the hard link with a copy",
                                    "%s has %ju hard links: not changed (its other names may be anywhere); it is "
                                    "root's and writable by nobody else, so no name of it can change it",
                                    shown, (uintmax_t) st->st_nlink);
                        return 0;
                }
                w->failed++;
                if (asprintf(&fix, "give it a name of its own, once you have read what it holds (cp %s %s.new && "
                             "mv %s.new %s), then run rootless-ci apply", shown, shown, shown, shown) < 0)
                        return -ENOMEM;
                item_finding(w->run, id, ITEM_FAIL, fix,
                            "%s has %ju hard links and %s: its other names may be anywhere, one the CI user controls "
                            "included; not changed (apply never changes a file through a name it did not walk)",
                            shown, (uintmax_t) st->st_nlink, j.why + strlen(shown) + 1);
                return 0;
        }
        w->failed++;
        if (asprintf(&fix, "remove it (rm %s), then run rootless-ci check", shown) < 0)
                return -ENOMEM;
        item_finding(w->run, id, ITEM_FAIL, fix,
                    "%s is a %s: the agent's configuration holds only directories, files and symlinks to them, "
                    "and whoever can write to it could feed the agent; not removed", shown, type_name(st->st_mode));
        return 0;
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
        return S_ISDIR(st.st_mode) ? for_each_entry(e->fd, e->shown, entry_recheck_child, (void *) e) : 0;
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
                return tree_judge_other(w, dirfd, name, shown, &st);
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
        return for_each_entry(dfd, shown, tree_visit_entry, &td);
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
