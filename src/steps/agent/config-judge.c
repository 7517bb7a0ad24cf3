/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "steps/agent/config-tree.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"

static const char *type_name(mode_t m) {
        return S_ISLNK(m) ? "symlink" : S_ISFIFO(m) ? "FIFO" : S_ISSOCK(m) ? "socket" : S_ISCHR(m) || S_ISBLK(m) ? "device node" : "special file";
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
        return agent_tree_for_each_entry(dfd, shown[0] ? shown : "/", judge_entry, &jd);
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
int agent_tree_judge_other(TreeWalk *w, int dirfd, const char *name, const char *shown, const struct stat *st) {
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
