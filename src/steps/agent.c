/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
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
#include "util/killpoint.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/ping.h"

/*
 * Step 6, agent: the Buildkite agent runs as the CI user against that
 * user's rootless Docker, and cannot change what it loads for later jobs.
 *
 *   /etc/systemd/system/<Unit>.d/zz-rootless-ci.conf
 *        User=/Group= the CI user, its HOME, DOCKER_HOST and XDG_RUNTIME_DIR,
 *        the builds and plugins paths on the data disk, the configuration
 *        file pinned to /etc, Requires=/After=user@UID.service and an
 *        ExecStartPre= "rootless-ci wait" until the daemon answers. Written
 *        whether or not the agent is installed; systemd applies it when the
 *        unit appears. When it changed: daemon-reload, and a running agent
 *        is restarted (and only then).
 *   /etc/buildkite-agent (the package chowns it to its own user)
 *        every directory and file owned by root with the CI user's group,
 *        writable by nobody else; the configuration file 0640. Walked
 *        without following a symlink, each entry fixed through its own fd
 *        after its directory was fixed, so nothing can be swapped in behind
 *        the walk. Symlinks, hard links and special files are reported and
 *        left alone. The files' contents are never read: the configuration
 *        holds the registration token.
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
        unsigned in_place, changed, left_alone;
} TreeWalk;

static const char *type_name(mode_t m) {
        return S_ISLNK(m) ? "symlink" : S_ISFIFO(m) ? "FIFO" : S_ISSOCK(m) ? "socket" : S_ISCHR(m) || S_ISBLK(m) ? "device node" : "special file";
}

/* Something the walk does not touch: a warning that says why, in every verb. */
static void tree_leave_alone(TreeWalk *w, int dirfd, const char *name, const char *shown, const struct stat *st) {
        char target[PATH_MAX];
        ssize_t n;

        char id[PATH_MAX + 32];

        /* One item per entry left alone, each with its own id. */
        snprintf(id, sizeof(id), "agent.config-link:%s", shown);
        w->left_alone++;
        if (S_ISLNK(st->st_mode)) {
                n = readlinkat(dirfd, name, target, sizeof(target) - 1);
                target[n < 0 ? 0 : n] = 0;
                report_item(w->ctx, id, ITEM_WARN,
                            "replace it with a root-owned file, or make sure its target is root-owned and writable by "
                            "nobody else",
                            "%s is a symlink to %s: not followed and not changed; the agent follows it", shown,
                            n < 0 ? "(unreadable)" : target);
        } else if (S_ISREG(st->st_mode))
                report_item(w->ctx, id, ITEM_WARN, "replace the hard link with a copy",
                            "%s has %ju hard links: not changed (its other names may be anywhere)", shown,
                            (uintmax_t) st->st_nlink);
        else
                report_item(w->ctx, id, ITEM_WARN, "remove it", "%s is a %s: left alone", shown,
                            type_name(st->st_mode));
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
                tree_leave_alone(w, dirfd, name, shown, &st);
                return 0;
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

static int tree_walk_dir(TreeWalk *w, int dfd, const char *shown, unsigned depth) {
        _cleanup_close_ int lfd = -1;
        DIR *d;
        struct dirent *de;
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
                _cleanup_free_ char *child = NULL;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (asprintf(&child, "%s/%s", shown, de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                r = tree_visit(w, dfd, de->d_name, child, depth, depth == 1);
                if (r < 0)
                        break;
        }
        if (r >= 0 && errno != 0)
                r = log_error_errno(negative_errno(), "Failed to list %s: %m", shown);
        closedir(d);
        return r;
}

static int converge_config_tree(Context *ctx) {
        _cleanup_free_ char *name = NULL, *shown = host_path(ctx, AGENT_CONFIG_DIR);
        _cleanup_close_ int parent = -1;
        TreeWalk w = { .ctx = ctx, .gid = ctx->facts.user_gid };
        struct stat st;
        int r;

        if (!shown)
                return -ENOMEM;
        parent = safe_open_parent(ctx->root_fd, AGENT_CONFIG_DIR, RESOLVE_POLICY_IN_ROOT, &name);
        if (parent < 0 && parent != -ENOENT)
                return log_error_errno(parent, "Failed to open the directory of %s: %m", shown);
        if (parent == -ENOENT || (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)) {
                report_item(ctx, "agent.config", ctx->verb == VERB_CHECK ? ITEM_PASS : ITEM_OK, NULL,
                            "%s does not exist (the agent is not installed): apply secures it once it is", shown);
                return 0;
        }
        if (S_ISLNK(st.st_mode)) {
                tree_leave_alone(&w, parent, name, shown, &st);
                return 0;
        }
        if (!S_ISDIR(st.st_mode)) {
                report_item(ctx, "agent.config", ITEM_WARN, "remove it", "%s is not a directory: left alone", shown);
                return 0;
        }

        r = tree_visit(&w, parent, name, shown, 0, false);
        if (r < 0)
                return r;
        if (w.changed == 0)
                report_item(ctx, "agent.config", ctx->verb == VERB_CHECK ? ITEM_PASS : ITEM_OK, NULL,
                            "%s: %u entries owned by root, writable by nobody else%s", shown, w.in_place,
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
        bool restart_owed, running;
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

        if (ctx->verb == VERB_PLAN) {
                report_item(ctx, "agent.service", running && restart_owed ? ITEM_CHANGE : ITEM_OK, NULL,
                            running ? (restart_owed ? "restart %s so it runs as %s with the new drop-in"
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

                log_notice("Restarting %s so it runs as %s with the new drop-in", unit, ctx->config->user_name);
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
                report_changed(ctx, "agent.service", ITEM_CHANGE, "restarted %s: it runs as %s now", unit,
                               ctx->config->user_name);
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
