/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "build-config.h"
#include "files.h"
#include "steps.h"
#include "units.h"
#include "util/bus.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/homefs.h"
#include "util/idmap.h"
#include "util/killpoint.h"
#include "util/log.h"
#include "util/macro.h"

/*
 * Step 6, agent: the Buildkite agent runs as the CI user against that
 * user's rootless Docker, and cannot change what it loads for later jobs.
 *
 *   /etc/systemd/system/<Unit>.d/zz-rootless-ci.conf
 *        User=/Group= the CI user, its HOME, DOCKER_HOST and XDG_RUNTIME_DIR,
 *        the builds and plugins paths on the data disk, the configuration
 *        file pinned to /etc, Wants=/After=user@UID.service (never
 *        Requires=: a restart of the manager must not restart the agent and
 *        cancel its jobs) and an ExecStartPre= "rootless-ci wait" until the
 *        daemon answers. Written
 *        whether or not the agent is installed; systemd applies it when the
 *        unit appears. When it changed: daemon-reload, and a running agent
 *        is restarted (and only then).
 *   /etc/buildkite-agent (the package chowns it to its own user)
 *        every directory and file owned by root with the CI user's group,
 *        writable by nobody else; the configuration file 0640. Walked
 *        without following a symlink, each entry fixed through its own fd
 *        after its directory was fixed, so nothing can be swapped in behind
 *        the walk. Symlinks, hard links and special files are not changed
 *        but judged: FAIL (in every verb, with the fix) where someone other
 *        than root could change what the agent loads through them (see
 *        judge_link()). The files' contents are never read: the
 *        configuration holds the registration token.
 *   ~CI_USER/.buildkite-agent/buildkite-agent.cfg
 *        looked at (never read) without following a symlink: a warning when
 *        it exists, since the agent would prefer it to /etc without the
 *        pinned BUILDKITE_AGENT_CONFIG.
 *
 * Jobs can set DOCKER_HOST themselves; that is only safe because no
 * root-owned Docker socket is reachable, which the daemon step checked:
 * its verdict (ctx->facts) is repeated here as agent.docker-host.
 */

#define MARKER_AGENT_RESTART "agent-restart-pending"
#define TREE_MAX_DEPTH 16

static char *host_path(const Context *ctx, const char *path) {
        return path_join_root(ctx->root, path);
}

char *agent_dropin_path(const char *unit) {
        char *p;
        return asprintf(&p, "/etc/systemd/system/%s.d/" AGENT_DROPIN_NAME, unit) < 0 ? NULL : p;
}

mode_t agent_config_wanted_mode(mode_t have, bool is_config_file) {
        mode_t owner = have & 0700;

        if (is_config_file)
                return 0640;
        return owner | ((owner & 0500) >> 3) | (have & 0005);
}

/* ---- the drop-in ---------------------------------------------------------------------------------------- */

int agent_dropin_render(const Context *ctx, char **ret) {
        const HostFacts *f = &ctx->facts;
        _cleanup_free_ char *uid = NULL, *gid = NULL, *plugins = NULL, *ready = NULL, *start = NULL;
        const struct { const char *what, *value; } plain[] = {
                { "the user name", ctx->config->user_name },
                { "the CI user's home", f->user_home },
                { "the builds directory", f->builds_dir },
        };

        /* Each ends up in a directive; nothing that needs quoting or holds a specifier. */
        for (size_t i = 0; i < ELEMENTSOF(plain); i++)
                if (!unit_value_is_plain(plain[i].value))
                        return log_error_errno(-EINVAL, "Cannot write the agent's drop-in: %s \"%s\" has characters "
                                               "that cannot stand unquoted in a unit file",
                                               plain[i].what, strempty(plain[i].value));

        if (asprintf(&uid, "%u", (unsigned) f->user_uid) < 0 || asprintf(&gid, "%u", (unsigned) f->user_gid) < 0 ||
            asprintf(&plugins, "%s/.plugins", f->builds_dir) < 0 ||
            asprintf(&ready, "%u", ctx->config->ready_timeout_sec) < 0 ||
            /* The wait, then the agent's own start, with room to spare. */
            asprintf(&start, "%us", ctx->config->ready_timeout_sec + 60) < 0)
                return -ENOMEM;

        UnitValue values[] = {
                { "AGENT_UNIT", ctx->config->agent_unit },
                { "USER", ctx->config->user_name },
                { "UID", uid },
                { "GROUP", gid },
                { "HOME", f->user_home },
                { "BUILD_PATH", f->builds_dir },
                { "PLUGINS_PATH", plugins },
                { "AGENT_CONFIG", AGENT_CONFIG_FILE },
                { "SBINDIR", SBINDIR },
                { "HOOKS_DIR", HOOKS_DIR },
                { "READY_TIMEOUT", ready },
                { "START_TIMEOUT", start },
        };
        return unit_template_render(units_dir(), "agent-dropin.conf.in", values, ELEMENTSOF(values), ret);
}

/* Returns 1 when the drop-in changed (apply: was rewritten), 0 if not, < 0 on error. */
static int converge_dropin(Context *ctx) {
        _cleanup_free_ char *text = NULL, *path = agent_dropin_path(ctx->config->agent_unit), *fix = NULL;
        int r;

        if (!path)
                return -ENOMEM;
        if (!ctx->facts.builds_dir) {
                report_item(ctx, "agent.dropin", ITEM_FAIL,
                            "fix what the storage step reports failed, then run rootless-ci apply",
                            "the builds directory is unknown (see the storage step): the agent's drop-in is not written");
                return 0;
        }
        r = agent_dropin_render(ctx, &text);
        if (r == -EINVAL) {
                const char *u = ctx->config->user_name;
                if (asprintf(&fix, "give %s a home whose path has only letters, digits and / . _ + - (usermod --home "
                             "/home/%s --move-home %s), keep MountPoint= to those characters too, then run "
                             "rootless-ci apply", u, u, u) < 0)
                        return -ENOMEM;
                report_item(ctx, "agent.dropin", ITEM_FAIL, fix, "the agent's drop-in cannot be written (see above)");
                return 0;
        }
        if (r < 0)
                return r;
        return converge_file(ctx, "agent.dropin", path, text, "the agent's drop-in (runs it as the CI user):",
                             MARKER_AGENT_RESTART);
}

/* ---- /etc/buildkite-agent ------------------------------------------------------------------------------- */

typedef struct TreeWalk {
        Context *ctx;
        gid_t gid;
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
        free(j->why);
        free(j->dangling);
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
                        cur = fcntl(w->ctx->root_fd, F_DUPFD_CLOEXEC, 3);
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
                        report_item(w->ctx, id, ITEM_FAIL, fix,
                                    "%s is a symlink to %s, and what it leads through or to is not root's alone: %s. "
                                    "The agent follows it in every job, so a build could decide what it runs; not "
                                    "changed",
                                    shown, n < 0 ? "(unreadable)" : target, j.why);
                } else if (j.dangling) {
                        w->left_alone++;
                        report_item(w->ctx, id, ITEM_WARN, "remove the link if nothing should be there",
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
                        report_item(w->ctx, id, ITEM_WARN, "replace the hard link with a copy",
                                    "%s has %ju hard links: not changed (its other names may be anywhere); it is "
                                    "root's and writable by nobody else, so no name of it can change it",
                                    shown, (uintmax_t) st->st_nlink);
                        return 0;
                }
                w->failed++;
                if (asprintf(&fix, "give it a name of its own, once you have read what it holds (cp %s %s.new && "
                             "mv %s.new %s), then run rootless-ci apply", shown, shown, shown, shown) < 0)
                        return -ENOMEM;
                report_item(w->ctx, id, ITEM_FAIL, fix,
                            "%s has %ju hard links and %s: its other names may be anywhere, one the CI user controls "
                            "included; not changed (apply never changes a file through a name it did not walk)",
                            shown, (uintmax_t) st->st_nlink, j.why + strlen(shown) + 1);
                return 0;
        }
        w->failed++;
        if (asprintf(&fix, "remove it (rm %s), then run rootless-ci check", shown) < 0)
                return -ENOMEM;
        report_item(w->ctx, id, ITEM_FAIL, fix,
                    "%s is a %s: the agent's configuration holds only directories, files and symlinks to them, "
                    "and whoever can write to it could feed the agent; not removed", shown, type_name(st->st_mode));
        return 0;
}

/*
 * Bring the open entry fd (a directory or a regular file, already checked)
 * to root:gid with its wanted mode. Returns 0, or < 0 if it could not.
 */
static int tree_fix_fd(TreeWalk *w, int fd, const char *shown, bool is_config_file) {
        Context *ctx = w->ctx;
        char id[PATH_MAX + 32];
        struct stat st;
        mode_t want;

        if (fstat(fd, &st) < 0)
                return log_error_errno(negative_errno(), "Failed to stat %s: %m", shown);
        want = agent_config_wanted_mode(st.st_mode & 07777, is_config_file);
        /* Each entry that is not as it should be is an item of its own: "agent.config:PATH". */
        snprintf(id, sizeof(id), "agent.config:%s", shown);
        if (st.st_uid == 0 && st.st_gid == w->gid && (st.st_mode & 07777) == want) {
                w->in_place++;
                return 0;
        }
        switch (ctx->verb) {
        case VERB_PLAN:
                report_item(ctx, id, ITEM_CHANGE, NULL, "secure %s: %u:%u %04o → root:%u %04o", shown,
                            (unsigned) st.st_uid, (unsigned) st.st_gid, (unsigned) (st.st_mode & 07777),
                            (unsigned) w->gid, (unsigned) want);
                w->changed++;
                return 0;
        case VERB_CHECK:
                report_item(ctx, id, ITEM_FAIL, "rootless-ci apply",
                            "%s is %u:%u %04o, not root:%u %04o: %s", shown, (unsigned) st.st_uid,
                            (unsigned) st.st_gid, (unsigned) (st.st_mode & 07777), (unsigned) w->gid,
                            (unsigned) want,
                            (st.st_uid != 0 || (st.st_mode & 0022)) ? "someone other than root can change what the agent loads"
                                                                     : "its access differs from what rootless-ci sets");
                w->changed++;
                return 0;
        case VERB_APPLY:
                break;
        }
        /* chown first: it clears setuid/setgid bits, and the mode is set explicitly afterwards. */
        if (fchown(fd, 0, w->gid) < 0)
                return log_error_errno(negative_errno(), "Failed to chown %s to root: %m", shown);
        if (fchmod(fd, want) < 0)
                return log_error_errno(negative_errno(), "Failed to chmod %s: %m", shown);
        {
                struct stat now;
                if (fstat(fd, &now) < 0 || now.st_uid != 0 || now.st_gid != w->gid || (now.st_mode & 07777) != want)
                        return log_error_errno(-EIO, "%s is not root:%u %04o after fixing it", shown,
                                               (unsigned) w->gid, (unsigned) want);
        }
        log_warning("Secured %s: it was %u:%u %04o, %s; now root:%u %04o", shown, (unsigned) st.st_uid,
                    (unsigned) st.st_gid, (unsigned) (st.st_mode & 07777),
                    st.st_uid != 0 || (st.st_mode & 0022) ? "which let someone other than root change what the agent "
                                                            "loads for later jobs"
                                                          : "not the access rootless-ci gives the agent",
                    (unsigned) w->gid, (unsigned) want);
        report_changed(ctx, id, ITEM_CHANGE, "secured %s (was %u:%u %04o, now root:%u %04o)", shown,
                       (unsigned) st.st_uid, (unsigned) st.st_gid, (unsigned) (st.st_mode & 07777), (unsigned) w->gid,
                       (unsigned) want);
        w->changed++;
        return 0;
}

static int tree_walk_dir(TreeWalk *w, int dfd, const char *shown, unsigned depth);

/* One entry of a directory already secured: look without following, act through its own fd. */
static int tree_visit(TreeWalk *w, int dirfd, const char *name, const char *shown, unsigned depth, bool top_level) {
        _cleanup_close_ int fd = -1;
        struct stat st, st2;
        bool is_dir;
        int r;

        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT)
                        return 0;
                return log_error_errno(negative_errno(), "Failed to stat %s: %m", shown);
        }
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

        r = tree_fix_fd(w, fd, shown, top_level && S_ISREG(st2.st_mode) && streq(name, "buildkite-agent.cfg"));
        if (r < 0)
                return r;
        if (is_dir) {
                if (depth >= TREE_MAX_DEPTH)
                        return log_error_errno(-ELOOP, "%s is nested deeper than %u levels", shown, TREE_MAX_DEPTH);
                return tree_walk_dir(w, fd, shown, depth + 1);
        }
        return 0;
}

typedef struct TreeDir {
        TreeWalk *w;
        const char *shown;
        unsigned depth;
} TreeDir;

static int tree_visit_entry(void *userdata, int dfd, const char *name) {
        TreeDir *td = userdata;
        _cleanup_free_ char *child = NULL;

        if (asprintf(&child, "%s/%s", td->shown, name) < 0)
                return -ENOMEM;
        return tree_visit(td->w, dfd, name, child, td->depth, td->depth == 1);
}

static int tree_walk_dir(TreeWalk *w, int dfd, const char *shown, unsigned depth) {
        TreeDir td = { .w = w, .shown = shown, .depth = depth };
        return for_each_entry(dfd, shown, tree_visit_entry, &td);
}

static int converge_config_tree(Context *ctx) {
        _cleanup_free_ char *name = NULL, *shown = host_path(ctx, AGENT_CONFIG_DIR);
        _cleanup_close_ int parent = -1;
        /* What path_join_root() puts before an in-root path, so the judge's paths compare with shown. */
        _cleanup_free_ char *prefix = strdup(ctx->root && !streq(ctx->root, "/") ? ctx->root : "");
        TreeWalk w = { .ctx = ctx, .gid = ctx->facts.user_gid };
        struct stat st;
        int r;

        if (!shown || !prefix)
                return -ENOMEM;
        w.tree = shown;
        w.prefix = prefix;
        if (fstat(ctx->root_fd, &w.root) < 0)
                return log_error_errno(negative_errno(), "Failed to stat the root directory: %m");
        parent = safe_open_parent(ctx->root_fd, AGENT_CONFIG_DIR, RESOLVE_POLICY_IN_ROOT, &name);
        if (parent < 0 && parent != -ENOENT)
                return log_error_errno(parent, "Failed to open the directory of %s: %m", shown);
        if (parent == -ENOENT || (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)) {
                report_item(ctx, "agent.config", ctx->verb == VERB_CHECK ? ITEM_PASS : ITEM_OK, NULL,
                            "%s does not exist (the agent is not installed): apply secures it once it is", shown);
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
                report_item(ctx, "agent.config", ITEM_FAIL, fix,
                            "%s is a symlink to %s: the agent follows it, and rootless-ci secures only a directory "
                            "of its own (it never changes what a symlink leads to); not changed", shown, target);
                return 0;
        }
        if (!S_ISDIR(st.st_mode)) {
                report_item(ctx, "agent.config", ITEM_WARN, "remove it", "%s is not a directory: left alone", shown);
                return 0;
        }

        r = tree_visit(&w, parent, name, shown, 0, false);
        if (r < 0)
                return r;
        if (w.changed == 0 && w.failed == 0)
                report_item(ctx, "agent.config", ctx->verb == VERB_CHECK ? ITEM_PASS : ITEM_OK, NULL,
                            "%s: %u entries owned by root, writable by nobody else%s%s", shown, w.in_place,
                            w.links ? ", and symlinks that lead only to what root alone can change" : "",
                            w.left_alone ? " (and what is warned about above, left alone)" : "");
        return 0;
}

/* ---- the CI user's own agent configuration -------------------------------------------------------------- */

static int check_home_config(Context *ctx) {
        const char *home = ctx->facts.user_home, *rel = ".buildkite-agent/buildkite-agent.cfg";
        _cleanup_close_ int hfd = -1, fd = -1;
        _cleanup_free_ char *shown = NULL;

        if (!home)
                return 0;
        if (asprintf(&shown, "%s/%s", home, rel) < 0)
                return -ENOMEM;
        hfd = home_open(ctx->root_fd, home, ctx->facts.user_uid, NULL);
        if (hfd < 0) {
                report_item(ctx, "agent.home-config", ITEM_SKIP, NULL, "%s not looked at: the home %s cannot be opened "
                            "safely (%s; see the user step)", shown, home, strerror(-hfd));
                return 0;
        }
        /* Only looked at, never read; a symlink anywhere on the way is itself the finding. */
        fd = safe_openat(hfd, rel, O_PATH, 0, RESOLVE_POLICY_NO_SYMLINKS);
        if (fd == -ENOENT || fd == -ENOTDIR) {
                report_item(ctx, "agent.home-config", ctx->verb == VERB_CHECK ? ITEM_PASS : ITEM_OK, NULL,
                            "no %s (the agent reads its configuration from %s only)", shown, AGENT_CONFIG_FILE);
                return 0;
        }
        report_item(ctx, "agent.home-config", ITEM_WARN, "remove it (and ask where it came from)",
                    fd == -ELOOP ? "%s leads through a symlink: builds control it; without the drop-in's "
                                   "BUILDKITE_AGENT_CONFIG the agent would read it instead of %s"
                                 : "%s exists: builds can write it; without the drop-in's BUILDKITE_AGENT_CONFIG the "
                                   "agent would read it instead of %s",
                    shown, AGENT_CONFIG_FILE);
        return 0;
}

/* ---- DOCKER_HOST ---------------------------------------------------------------------------------------- */

static void report_docker_host_safety(Context *ctx) {
        const HostFacts *f = &ctx->facts;

        if (!f->root_sockets_checked)
                report_item(ctx, "agent.docker-host", ITEM_SKIP, NULL,
                            "jobs can set DOCKER_HOST themselves: that is safe only while no root daemon's API socket "
                            "is reachable, which %s",
                            ctx->live ? "the daemon step could not check in this run (see its items)"
                                      : "is checked on the live host");
        else if (f->root_sockets_reachable > 0)
                report_item(ctx, "agent.docker-host", ITEM_FAIL,
                            "make each socket a daemon.root-socket-reachable item names unreachable (its fix says "
                            "how), then run rootless-ci check",
                            "jobs can set DOCKER_HOST themselves, and %u root daemon API socket%s "
                            "reachable by the CI user: any job can become root on this host",
                            f->root_sockets_reachable, f->root_sockets_reachable == 1 ? " is" : "s are");
        else
                report_item(ctx, "agent.docker-host", ctx->verb == VERB_CHECK ? ITEM_PASS : ITEM_OK, NULL,
                            "jobs can set DOCKER_HOST themselves; that is safe only because no root-owned daemon API "
                            "socket (Docker, containerd, ...) is reachable by the CI user (checked by the daemon step)");
}

/* ---- the running agent ---------------------------------------------------------------------------------- */

/* The real UID of pid (from /proc), or (uid_t) -1. */
static uid_t process_uid(uint32_t pid) {
        _cleanup_fclose_ FILE *f = NULL;
        char path[64], line[256];
        unsigned long v;

        if (pid == 0)
                return (uid_t) -1;
        snprintf(path, sizeof(path), "/proc/%u/status", (unsigned) pid);
        f = fopen(path, "re");
        if (!f)
                return (uid_t) -1;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "Uid: %lu", &v) == 1)
                        return (uid_t) v;
        return (uid_t) -1;
}

/*
 * The UID the unit's main process runs as. Right after a start, systemd's
 * forked child is still root until it drops to User= and execs: a UID of 0
 * (or no main PID yet) is asked again until settle_usec has passed.
 */
static uid_t unit_main_uid(sd_bus *bus, const char *unit, unsigned long long settle_usec) {
        unsigned long long deadline = now_usec() + settle_usec;
        uid_t uid;

        for (;;) {
                UnitState s = {};

                if (bus_get_unit_state(bus, unit, &s) < 0)
                        return (uid_t) -1;
                uid = process_uid(s.main_pid);
                unit_state_done(&s);
                if ((uid != 0 && uid != (uid_t) -1) || now_usec() >= deadline)
                        return uid;
                (void) WAITING(poll(NULL, 0, 50));
        }
}

static int converge_service(Context *ctx, bool dropin_changed) {
        sd_bus *bus = NULL;
        const char *unit = ctx->config->agent_unit;
        UnitState s = {};
        bool restart_owed, running, holds_group = false;
        uid_t uid;
        int r;

        if (!ctx->live || !ctx->facts.systemd_running) {
                report_item(ctx, "agent.service", ITEM_SKIP, NULL, "%s: systemd applies the drop-in when %s starts",
                            ctx->live ? "systemd is not running" : "offline tree", unit);
                return 0;
        }
        r = context_system_bus(ctx, &bus);
        if (r < 0)
                return r;
        restart_owed = dropin_changed || (ctx->verb == VERB_APPLY && marker_exists(ctx, MARKER_AGENT_RESTART));

        r = bus_get_unit_state(bus, unit, &s);
        if (r < 0)
                return r;
        /* need_daemon_reload also catches a run killed between writing the drop-in and reloading. */
        if (ctx->verb == VERB_APPLY && (dropin_changed || s.need_daemon_reload || ctx->system_reload_owed)) {
                unit_state_done(&s);
                r = context_reload_system(ctx, true);
                if (r < 0)
                        return log_error_errno(r, "Failed to reload the system manager for the agent's drop-in: %m");
                r = bus_get_unit_state(bus, unit, &s);
                if (r < 0)
                        return r;
        }
        if (streq_ptr(s.load_state, "not-found")) {
                report_item(ctx, "agent.service", ctx->verb == VERB_CHECK ? ITEM_PASS : ITEM_OK, NULL,
                            "%s is not installed: the drop-in takes effect when it is", unit);
                unit_state_done(&s);
                return marker_clear(ctx, MARKER_AGENT_RESTART);
        }
        running = streq_ptr(s.active_state, "active") || streq_ptr(s.active_state, "reloading") ||
                  streq_ptr(s.active_state, "activating");
        uid = running ? unit_main_uid(bus, unit, 2000000ULL) : (uid_t) -1;
        /* A running agent that is not the CI user's is what this step exists to prevent: restart it too. */
        if (running && uid != (uid_t) -1 && uid != ctx->facts.user_uid)
                restart_owed = true;
        /* Started while the CI user was in a privileged group, it (and every job it runs) keeps the group. */
        if (running && uid == ctx->facts.user_uid) {
                r = pid_holds_gid((pid_t) s.main_pid, ctx->facts.privileged_gids, ctx->facts.n_privileged_gids, NULL);
                if (r < 0) {
                        unit_state_done(&s);
                        return log_error_errno(r, "Failed to read the credentials of %s (PID %u): %m", unit,
                                               (unsigned) s.main_pid);
                }
                holds_group = r > 0;
                restart_owed |= holds_group;
        }

        if (ctx->verb == VERB_PLAN) {
                report_item(ctx, "agent.service", running && restart_owed ? ITEM_CHANGE : ITEM_OK, NULL,
                            running ? (holds_group    ? "restart %s: it runs as %s but holds a group that leads "
                                                        "to root, left from before"
                                       : restart_owed ? "restart %s so it runs as %s with the new drop-in"
                                                      : "%s runs as %s")
                                    : "%s is not running (not started by rootless-ci; it runs as %s when started)",
                            unit, ctx->config->user_name);
                unit_state_done(&s);
                return 0;
        }
        if (ctx->verb == VERB_CHECK) {
                if (s.need_daemon_reload)
                        report_item(ctx, "agent.service", ITEM_FAIL, "rootless-ci apply",
                                    "systemd has not loaded the current files of %s (daemon-reload pending)", unit);
                else if (running && uid != (uid_t) -1 && uid != ctx->facts.user_uid)
                        report_item(ctx, "agent.service", ITEM_FAIL, "rootless-ci apply",
                                    "%s runs as UID %d, not as %s (UID %u): restart it", unit,
                                    uid == (uid_t) -1 ? -1 : (int) uid, ctx->config->user_name,
                                    (unsigned) ctx->facts.user_uid);
                else
                        report_item(ctx, "agent.service", ITEM_PASS, NULL,
                                    running ? "%s runs as %s" : "%s is not running; it runs as %s when started", unit,
                                    ctx->config->user_name);
                unit_state_done(&s);
                return 0;
        }

        if (running && restart_owed) {
                _cleanup_free_ char *result = NULL;
                unsigned long long deadline = now_usec() + (ctx->config->ready_timeout_sec + 90ULL) * 1000000ULL;

                log_notice(holds_group ? "Restarting %s: it runs as %s but holds a group that leads to root"
                                       : "Restarting %s so it runs as %s with the new drop-in",
                           unit, ctx->config->user_name);
                killpoint("agent-before-restart");
                r = bus_unit_job(bus, "RestartUnit", unit, deadline, &result);
                if (r < 0) {
                        unit_state_done(&s);
                        return log_error_errno(r == -EIO ? -ERCI_FAILED : r, "Restarting %s ended with \"%s\" (see: journalctl -u %s)",
                                               unit, strempty(result), unit);
                }
                uid = unit_main_uid(bus, unit, 10000000ULL);
                if (uid != ctx->facts.user_uid) {
                        unit_state_done(&s);
                        return log_error_errno(-ERCI_FAILED, "%s still does not run as %s after its restart (UID %d)",
                                               unit, ctx->config->user_name, uid == (uid_t) -1 ? -1 : (int) uid);
                }
                report_changed(ctx, "agent.service", ITEM_CHANGE,
                               holds_group ? "restarted %s: it runs as %s, without the group that led to root"
                                           : "restarted %s: it runs as %s now",
                               unit, ctx->config->user_name);
        } else
                report_item(ctx, "agent.service", ITEM_OK, NULL,
                            running ? "%s runs as %s" : "%s is not running; it runs as %s when started", unit,
                            ctx->config->user_name);
        unit_state_done(&s);
        return marker_clear(ctx, MARKER_AGENT_RESTART);
}

/* ---- the step ------------------------------------------------------------------------------------------- */

static int agent_run(Context *ctx) {
        int r, dropin_changed;

        if (!ctx->facts.user_known) {
                if (ctx->verb == VERB_APPLY)
                        return log_error_errno(-ERCI_FAILED, "User %s does not exist (see the user step)",
                                               ctx->config->user_name);
                if (ctx->verb == VERB_PLAN && ctx->facts.user_planned) {
                        /* Every change, one line each: the drop-in names the UID to come. */
                        _cleanup_free_ char *path = agent_dropin_path(ctx->config->agent_unit);
                        if (!path)
                                return -ENOMEM;
                        report_item(ctx, "agent.dropin", ITEM_CREATE, NULL,
                                    "write %s (runs %s as %s, DOCKER_HOST=unix:///run/user/UID/docker.sock; UID "
                                    "chosen when the user is created)",
                                    path, ctx->config->agent_unit, ctx->config->user_name);
                        report_item(ctx, "agent.config", ITEM_SKIP, NULL,
                                    "/etc/buildkite-agent is judged against %s's groups once the user exists",
                                    ctx->config->user_name);
                } else
                        report_item(ctx, "agent.user", ITEM_SKIP, NULL,
                                    ctx->facts.user_planned ? "user %s does not exist yet (apply creates it first): the "
                                                              "agent's drop-in and ownership depend on its UID"
                                                            : "the CI user %s is not usable (see the user step)",
                                    ctx->config->user_name);
                report_docker_host_safety(ctx);
                return 0;
        }

        /* Its configuration first: whatever the agent loads next is root's. */
        r = converge_config_tree(ctx);
        if (r < 0)
                return r;
        killpoint("agent-config-secured");
        r = check_home_config(ctx);
        if (r < 0)
                return r;
        r = agent_check_hooks(ctx);
        if (r < 0)
                return r;
        r = agent_check_version(ctx);
        if (r < 0)
                return r;

        dropin_changed = converge_dropin(ctx);
        if (dropin_changed < 0)
                return dropin_changed;
        killpoint("agent-dropin-written");

        report_docker_host_safety(ctx);
        if (ctx->verb == VERB_APPLY && ctx->any_failed)
                return 0; /* the engine stops here; do not restart the agent on a half-made set-up */
        return converge_service(ctx, dropin_changed > 0);
}

const Step step_agent = {
        .name = "agent",
        .run = agent_run,
};
