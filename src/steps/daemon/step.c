/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "steps/daemon/apparmor.h"
#include "steps/files.h"
#include "steps/steps.h"
#include "units.h"
#include "util/bus.h"
#include "util/cgroup.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/idmap.h"
#include "steps/daemon/journal.h"
#include "util/killpoint.h"
#include "util/log.h"
#include "util/macro.h"
#include "steps/daemon/ping.h"
#include "util/root-sockets.h"
#include "steps/daemon/sockperm.h"

/*
 * Daemon: the CI user's rootless dockerd as a systemd user service, and the
 * root daemon out of reach.
 *
 * Where the unit lives: /etc/systemd/user/docker.service, root-owned, read
 * by every user manager; ConditionUser= lets only the CI user's manager run
 * it. It is enabled the way "systemctl --global enable" does it, by a
 * root-owned link in /etc/systemd/user/default.target.wants/. So root
 * writes nothing into the CI user's home (hostile ground), the CI user
 * cannot edit or disable the unit for good, the same files work in an
 * offline tree (--root), and every other user's manager skips the unit.
 *
 * Order of apply: files first (unit, drop-ins, profile, masks), one
 * daemon-reload of the system manager when one of its files changed, the
 * root daemon stopped and its sockets removed, linger through logind, wait
 * for user@UID.service, then the user's manager: reload only if our unit
 * changed, restart only if it changed while running, start if not running,
 * and wait for GET /_ping. When nothing drifted, no bus connection to the
 * user's manager is made and nothing is restarted.
 */

#define UNIT_NAME "docker.service"
#define USER_UNIT_PATH "/etc/systemd/user/" UNIT_NAME
#define USER_UNIT_ENABLE_LINK "/etc/systemd/user/default.target.wants/" UNIT_NAME
#define DELEGATE_DROPIN_PATH "/etc/systemd/system/user@.service.d/rootless-ci-delegate.conf"
#define APPARMOR_PROFILE_NAME "rootless-ci-rootlesskit"
#define APPARMOR_PROFILE_PATH "/etc/apparmor.d/" APPARMOR_PROFILE_NAME
#define LINGER_DIR "/var/lib/systemd/linger"
#define JOURNAL_LINES 20
#define MARKER_DAEMON_RESTART "daemon-restart-pending"
#define MARKER_USER_MANAGER_RESTART "user-manager-restart-pending"

/* The root daemon's units, socket first so it cannot start the service again. */
static const char *const root_daemon_units[] = { "docker.socket", "docker.service" };

typedef struct DaemonUser {
        char *name;
        uid_t uid;
        gid_t gid;
        bool exists;
} DaemonUser;

static void daemon_user_done(DaemonUser *u) {
        free(u->name);
}

/* The CI user as the user step left it (ctx->facts). */
static int daemon_user_from_facts(Context *ctx, DaemonUser *ret) {
        *ret = (DaemonUser) {
                .name = strdup(ctx->config->user_name),
                .uid = ctx->facts.user_uid,
                .gid = ctx->facts.user_gid,
                .exists = ctx->facts.user_known,
        };
        return ret->name ? 0 : -ENOMEM;
}

static bool is_apply(Context *ctx) {
        return ctx->verb == VERB_APPLY;
}

/* ---- files ---------------------------------------------------------------------------------------------- */

/*
 * Converge a symlink at path pointing to target. Only a missing entry or a
 * symlink is replaced; anything else there is a failure reported as such.
 */
static int converge_symlink(Context *ctx, const char *id, const char *path, const char *target, const char *what) {
        _cleanup_free_ char *name = NULL, *shown = path_join_root(ctx->root, path), *dir = NULL;
        _cleanup_close_ int parent = -1;
        char have[PATH_MAX], tmp[NAME_MAX + 1];
        bool exists = false;
        struct stat st;
        ssize_t n = -1;
        int r;

        if (!shown)
                return -ENOMEM;
        parent = safe_open_parent(ctx->root_fd, path, RESOLVE_POLICY_IN_ROOT, &name);
        if (parent < 0 && parent != -ENOENT)
                return log_error_errno(parent, "Failed to open the directory of %s: %m", shown);
        if (parent >= 0 && fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) >= 0) {
                exists = true;
                if (!S_ISLNK(st.st_mode)) {
                        _cleanup_free_ char *fix = NULL;
                        if (asprintf(&fix, "move it away (mv %s %s.old), then run rootless-ci apply", shown, shown) < 0)
                                return -ENOMEM;
                        report_item(ctx, id, ITEM_FAIL, fix,
                                    "%s is not a symlink; rootless-ci leaves it alone (move it away to let apply %s)",
                                    shown, what);
                        return 0;
                }
                n = readlinkat(parent, name, have, sizeof(have) - 1);
                if (n < 0)
                        return log_error_errno(negative_errno(), "Failed to read the link %s: %m", shown);
                have[n] = 0;
        }
        if (exists && streq(have, target)) {
                report_item(ctx, id, ctx->verb == VERB_CHECK ? ITEM_PASS : ITEM_OK, NULL, "%s (%s → %s)", what, shown,
                            target);
                return 0;
        }
        switch (ctx->verb) {
        case VERB_PLAN:
                report_item(ctx, id, exists ? ITEM_CHANGE : ITEM_CREATE, NULL, "%s: link %s → %s", what, shown, target);
                return 1;
        case VERB_CHECK:
                report_item(ctx, id, ITEM_FAIL, "rootless-ci apply", "not done: %s (%s → %s %s)", what, shown, target,
                            exists ? "points elsewhere" : "is missing");
                return 1;
        case VERB_APPLY:
                break;
        }

        dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        *strrchr(dir, '/') = 0;
        if (!name && !(name = strdup(strrchr(path, '/') + 1)))
                return -ENOMEM;
        safe_close(parent);
        parent = safe_mkdir_p(ctx->root_fd, dir, 0755, RESOLVE_POLICY_IN_ROOT);
        if (parent < 0)
                return log_error_errno(parent, "Failed to create the directory of %s: %m", shown);
        {
                /* O_PATH fds cannot hold new entries; reopen for real. */
                int d = openat(parent, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (d < 0)
                        return log_error_errno(negative_errno(), "Failed to open the directory of %s: %m", shown);
                safe_close(parent);
                parent = d;
        }
        r = temp_name_random(name, tmp);
        if (r < 0)
                return log_error_errno(r, "Failed to name a link beside %s: %m", shown);
        (void) remove_stale_temp_files(parent, name, S_IFLNK, (uid_t) -1);
        if (symlinkat(target, parent, tmp) < 0)
                return log_error_errno(negative_errno(), "Failed to create a link beside %s: %m", shown);
        killpoint_at("link-before-rename", name);
        if (renameat(parent, tmp, parent, name) < 0) {
                r = negative_errno();
                (void) unlinkat(parent, tmp, 0);
                return log_error_errno(r, "Failed to put the link %s in place: %m", shown);
        }
        r = fsync_dir(parent);
        if (r < 0)
                return log_error_errno(r, "Failed to sync the directory of %s: %m", shown);
        report_changed(ctx, id, exists ? ITEM_CHANGE : ITEM_CREATE, "%s: linked %s → %s", what, shown, target);
        return 1;
}

/* PATH for the unit: rootlesskit's directory, then the usual ones, each once. */
static char *unit_search_path(const char *rootlesskit_path) {
        static const char *const std_dirs[] = {
                "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin",
        };
        _cleanup_free_ char *dir = strdup(rootlesskit_path), *out = NULL;
        char *slash;

        if (!dir)
                return NULL;
        slash = strrchr(dir, '/');
        if (!slash)
                return NULL;
        *slash = 0;
        out = strdup(dir[0] ? dir : "/");
        if (!out)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(std_dirs); i++) {
                char *n;
                if (streq(std_dirs[i], dir))
                        continue;
                if (asprintf(&n, "%s:%s", out, std_dirs[i]) < 0)
                        return NULL;
                free(out);
                out = n;
        }
        return TAKE_PTR(out);
}

static int render(const char *template_name, const UnitValue *values, size_t n, char **ret) {
        return unit_template_render(units_dir(), template_name, values, n, ret);
}

/* Facts from preflight that end up in unit files must be plain paths/words. */
static bool fact_usable(Context *ctx, const char *id, const char *value, const char *what) {
        if (!value) {
                report_item(ctx, id, ctx->live ? ITEM_FAIL : ITEM_SKIP,
                            ctx->live ? "install what the preflight step reports missing, then run rootless-ci apply" : NULL,
                            "%s is unknown (preflight did not find it%s)", what,
                            ctx->live ? "" : "; offline, the first boot's apply installs this");
                return false;
        }
        if (!unit_value_is_plain(value)) {
                report_item(ctx, id, ITEM_FAIL,
                            "install it under a path of letters, digits and / . _ + - only (as the distribution's "
                            "package does, e.g. /usr/bin), then run rootless-ci apply",
                            "%s \"%s\" has characters that cannot stand unquoted in a unit file", what, value);
                return false;
        }
        return true;
}

/* Returns 1 when the user unit changed, 0 if not; < 0 on error. */
static int converge_user_unit(Context *ctx, const DaemonUser *u) {
        _cleanup_free_ char *path_value = NULL, *text = NULL;
        const HostFacts *f = &ctx->facts;
        int r;

        if (!fact_usable(ctx, "daemon.unit", f->dockerd_rootless_path, "dockerd-rootless.sh's path") ||
            !fact_usable(ctx, "daemon.unit", f->rootlesskit_path, "rootlesskit's path") ||
            !fact_usable(ctx, "daemon.unit", f->network_driver, "the network driver") ||
            !fact_usable(ctx, "daemon.unit", f->storage_driver, "the storage driver"))
                return 0;

        path_value = unit_search_path(f->rootlesskit_path);
        if (!path_value)
                return -ENOMEM;

        UnitValue values[] = {
                { "USER", u->name },
                { "PATH", path_value },
                { "NET", f->network_driver },
                { "DOCKERD_ROOTLESS", f->dockerd_rootless_path },
                { "STORAGE_DRIVER", f->storage_driver },
        };
        r = render("docker.service.in", values, ELEMENTSOF(values), &text);
        if (r < 0)
                return r;
        return converge_file(ctx, "daemon.unit", USER_UNIT_PATH, text, "the CI user's Docker unit", MARKER_DAEMON_RESTART);
}

/* The cgroup delegation drop-in for every user manager (units/user-delegate.conf.in). */
static int converge_delegate(Context *ctx, const char *pending_marker) {
        _cleanup_free_ char *text = NULL;
        int r;

        r = render("user-delegate.conf.in", NULL, 0, &text);
        if (r < 0)
                return r;
        return converge_file(ctx, "daemon.delegate", DELEGATE_DROPIN_PATH, text,
                             "cgroup delegation (" DELEGATED_CONTROLLERS ") for user managers:", pending_marker);
}

/*
 * What Delegate= is for, judged where it lands: on cgroup v2 the CI user's
 * manager offers its units (the daemon) every delegated controller. Its
 * cgroup.controllers lists what its parent enabled for it; read under the
 * root, no bus. restart_pending (plan): apply restarts the manager for a
 * drop-in it writes, which delegates what is missing now.
 */
static int check_delegation(Context *ctx, const DaemonUser *u, bool restart_pending) {
        _cleanup_free_ char *path = NULL, *have = NULL, *top = NULL, *fix = NULL;
        char missing[CONTROLLERS_MISSING_MAX], top_missing[CONTROLLERS_MISSING_MAX];
        unsigned uid = (unsigned) u->uid;
        int r;

        if (ctx->facts.cgroup != CGROUP_V2) {
                report_item(ctx, "daemon.delegation", ITEM_SKIP, NULL,
                            ctx->facts.cgroup == CGROUP_V1
                                    ? "cgroup v1: there is no controller to delegate (preflight.cgroup says which limits do not hold)"
                                    : "the delegation of cgroup controllers is checked on the live host");
                return 0;
        }
        if (asprintf(&path, "/sys/fs/cgroup/user.slice/user-%u.slice/user@%u.service/cgroup.controllers", uid, uid) < 0)
                return -ENOMEM;
        r = read_one_line_at(ctx->root_fd, path, &have);
        if (r == -ENOENT) {
                report_item(ctx, "daemon.delegation", ITEM_SKIP, NULL,
                            "user@%u.service has no cgroup: it is not running (see daemon.user-manager)", uid);
                return 0;
        }
        if (r < 0)
                return log_error_errno(r, "Failed to read %s: %m", path);
        delegated_controllers_missing(have, missing);
        if (!missing[0]) {
                report_item(ctx, "daemon.delegation", ctx->verb == VERB_CHECK ? ITEM_PASS : ITEM_OK, NULL,
                            "user@%u.service has the cgroup controllers " DELEGATED_CONTROLLERS
                            " delegated: docker run --memory, --cpus and --pids-limit hold", uid);
                return 0;
        }
        if (ctx->verb == VERB_PLAN && restart_pending) {
                report_item(ctx, "daemon.delegation", ITEM_CHANGE, NULL,
                            "delegate %s to user@%u.service (its restart for the new drop-ins does)", missing, uid);
                return 0;
        }
        if (read_one_line_at(ctx->root_fd, "/sys/fs/cgroup/cgroup.controllers", &top) < 0)
                top = NULL;
        delegated_controllers_missing(top, top_missing);
        if (top_missing[0])
                r = asprintf(&fix, "boot a kernel that offers the %s controller (preflight.cgroup warns of it)", top_missing);
        else
                r = asprintf(&fix,
                             "systemctl daemon-reload, then systemctl restart user@%u.service: a manager takes Delegate= "
                             "from " DELEGATE_DROPIN_PATH " only when it starts (the restart stops the CI user's Docker "
                             "and its running jobs)",
                             uid);
        if (r < 0)
                return -ENOMEM;
        report_item(ctx, "daemon.delegation", ITEM_FAIL, fix,
                    "user@%u.service lacks the cgroup controllers %s (its cgroup.controllers: \"%s\"): docker run limits "
                    "on them do not hold",
                    uid, missing, have);
        return 0;
}

/* Returns 1 when a file the system manager reads changed. */
static int converge_system_dropins(Context *ctx, const DaemonUser *u, bool *ret_user_dropin_changed) {
        _cleanup_free_ char *mount = NULL, *mount_path = NULL, *uid_s = NULL;
        int r, changed = 0;

        r = converge_delegate(ctx, MARKER_USER_MANAGER_RESTART);
        if (r < 0)
                return r;
        changed |= r;

        *ret_user_dropin_changed = changed;
        if (!unit_value_is_plain(ctx->config->mount_point)) {
                report_item(ctx, "daemon.mount-order", ITEM_FAIL,
                            "set MountPoint= to a path of letters, digits and / . _ + - only, then run rootless-ci apply",
                            "MountPoint=%s has characters that cannot stand unquoted in a unit file",
                            ctx->config->mount_point);
                return changed;
        }
        if (asprintf(&uid_s, "%u", (unsigned) u->uid) < 0 ||
            asprintf(&mount_path, "/etc/systemd/system/user@%u.service.d/rootless-ci-mount.conf", (unsigned) u->uid) < 0)
                return -ENOMEM;
        UnitValue values[] = {
                { "UID", uid_s },
                { "MOUNT_POINT", ctx->config->mount_point },
        };
        r = render("user-mount.conf.in", values, ELEMENTSOF(values), &mount);
        if (r < 0)
                return r;
        r = converge_file(ctx, "daemon.mount-order", mount_path, mount,
                          "ordering of the CI user's manager after the data mount:", MARKER_USER_MANAGER_RESTART);
        if (r < 0)
                return r;
        changed |= r;
        *ret_user_dropin_changed = changed;
        return changed;
}

/*
 * The profile as this version writes it for the rootlesskit at real: with
 * AppArmor 4 (abi/4.0 in the tree) the 4.0 ABI and its userns rule; with
 * AppArmor 3 neither, as its parser knows neither (policy of the 3.0 ABI is
 * not subject to the user namespace restriction).
 */
static int render_apparmor_profile(const char *real, bool abi_4_0, char **ret) {
        UnitValue values[] = {
                { "ROOTLESSKIT", real },
                { "ABI", abi_4_0 ? "abi <abi/4.0>,"
                                 : "# AppArmor 3 here (no /etc/apparmor.d/abi/4.0): no abi line, no userns rule" },
                { "USERNS_RULE", abi_4_0 ? "userns," : "# (the userns rule needs AppArmor 4)" },
        };
        return render("apparmor-rootlesskit.in", values, ELEMENTSOF(values), ret);
}

/* Take our profile out of the kernel (live) and off the disk. */
static int remove_our_apparmor_profile(Context *ctx, const char *shown) {
        _cleanup_free_ char *name = NULL;
        _cleanup_close_ int parent = -1, dfd = -1;
        int r;

        if (ctx->live) {
                _cleanup_close_ int fd = open("/sys/kernel/security/apparmor/.remove", O_WRONLY | O_CLOEXEC);
                if (fd >= 0 && write(fd, APPARMOR_PROFILE_NAME, strlen(APPARMOR_PROFILE_NAME)) < 0 && errno != ENOENT)
                        return log_error_errno(negative_errno(), "Failed to unload the AppArmor profile %s: %m",
                                               APPARMOR_PROFILE_NAME);
        }
        parent = safe_open_parent(ctx->root_fd, APPARMOR_PROFILE_PATH, RESOLVE_POLICY_IN_ROOT, &name);
        if (parent < 0)
                return log_error_errno(parent, "Failed to open the directory of %s: %m", shown);
        dfd = openat(parent, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return log_error_errno(negative_errno(), "Failed to open the directory of %s: %m", shown);
        if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
                return log_error_errno(negative_errno(), "Failed to remove %s: %m", shown);
        r = fsync_dir(dfd);
        if (r < 0)
                return log_error_errno(r, "Failed to sync the directory of %s: %m", shown);
        return 0;
}

/*
 * Another profile attaches to rootlesskit already (Ubuntu's apparmor ships
 * one, Docker's rootless extras another): a second for the same path makes
 * exec ambiguous, so it is used and ours is not written. Ours, written by
 * an earlier run, is removed, but only while it is byte for byte what
 * rootless-ci writes; edited, it is the operator's, and left.
 */
static int use_existing_apparmor_profile(Context *ctx, const char *real, const AppArmorProfile *other) {
        _cleanup_free_ char *ours = NULL, *with_abi = NULL, *without_abi = NULL, *fix = NULL,
                            *shown = path_join_root(ctx->root, APPARMOR_PROFILE_PATH);
        size_t size = 0;
        int r;

        if (!shown)
                return -ENOMEM;
        r = read_file_at(ctx->root_fd, APPARMOR_PROFILE_PATH, RESOLVE_POLICY_IN_ROOT, 256 * 1024, &ours, &size);
        if (r == -ENOENT) {
                if (other->userns)
                        report_item(ctx, "daemon.apparmor", ctx->verb == VERB_CHECK ? ITEM_PASS : ITEM_OK, NULL,
                                    "rootlesskit (%s) has the AppArmor profile %s (%s), which allows user namespaces: "
                                    "rootless-ci uses it and writes none of its own",
                                    real, other->name, other->file);
                else {
                        if (asprintf(&fix, "if the daemon cannot create its user namespace, add \"userns,\" to profile %s "
                                     "(in %s, or its local/ include), then reload it: apparmor_parser -r %s",
                                     other->name, other->file, other->file) < 0)
                                return -ENOMEM;
                        report_item(ctx, "daemon.apparmor", ITEM_WARN, fix,
                                    "rootlesskit (%s) has the AppArmor profile %s (%s): rootless-ci uses it and writes "
                                    "none of its own, but its block in that file has no userns rule (an include may "
                                    "give it)",
                                    real, other->name, other->file);
                }
                return 0;
        }
        if (r < 0 && r != -EFBIG && r != -EBADFD)
                return log_error_errno(r, "Failed to read %s: %m", shown);
        r = render_apparmor_profile(real, true, &with_abi);
        if (r >= 0)
                r = render_apparmor_profile(real, false, &without_abi);
        if (r < 0)
                return r;
        if (!ours || !(streq(ours, with_abi) || streq(ours, without_abi)) || strlen(ours) != size) {
                if (asprintf(&fix, "keep one profile for %s: remove %s (apparmor_parser -R %s, then rm it) or profile %s "
                             "in %s, then run rootless-ci apply",
                             real, shown, shown, other->name, other->file) < 0)
                        return -ENOMEM;
                report_item(ctx, "daemon.apparmor", ITEM_FAIL, fix,
                            "two AppArmor profiles attach to rootlesskit (%s): %s in %s, and %s, which differs from "
                            "what rootless-ci writes (edited?) and is left alone",
                            real, other->name, other->file, shown);
                return 0;
        }
        switch (ctx->verb) {
        case VERB_PLAN:
                report_item(ctx, "daemon.apparmor", ITEM_REMOVE, NULL,
                            "remove rootless-ci's AppArmor profile %s: profile %s (%s) attaches to %s", shown,
                            other->name, other->file, real);
                return 0;
        case VERB_CHECK:
                report_item(ctx, "daemon.apparmor", ITEM_FAIL, "rootless-ci apply (it removes its own profile)",
                            "two AppArmor profiles attach to rootlesskit (%s): %s in %s, and rootless-ci's %s", real,
                            other->name, other->file, shown);
                return 0;
        case VERB_APPLY:
                break;
        }
        r = remove_our_apparmor_profile(ctx, shown);
        if (r < 0)
                return r;
        report_changed(ctx, "daemon.apparmor", ITEM_REMOVE,
                       "removed rootless-ci's AppArmor profile %s: profile %s (%s) attaches to %s and is used", shown,
                       other->name, other->file, real);
        return 0;
}

/* Returns 1 when our profile changed (apparmor.service is to load it). */
static int converge_apparmor(Context *ctx) {
        _cleanup_(apparmor_profile_done) AppArmorProfile other = {};
        _cleanup_free_ char *text = NULL, *real = NULL;
        int r;

        if (!ctx->facts.apparmor_restricts_userns) {
                report_item(ctx, "daemon.apparmor", ctx->verb == VERB_CHECK ? ITEM_PASS : ITEM_OK, NULL,
                            "no AppArmor profile needed (unprivileged user namespaces are not restricted)");
                return 0;
        }
        if (!fact_usable(ctx, "daemon.apparmor", ctx->facts.rootlesskit_path, "rootlesskit's path"))
                return 0;
        /* AppArmor attaches a profile by the binary's real path: /usr/bin/rootlesskit may be a symlink. */
        r = resolve_in_root(ctx->root_fd, ctx->facts.rootlesskit_path, &real);
        if (r < 0)
                return log_error_errno(r, "Failed to resolve %s for its AppArmor profile: %m", ctx->facts.rootlesskit_path);
        r = apparmor_find_attaching(ctx->root_fd, real, APPARMOR_PROFILE_PATH, &other);
        if (r < 0)
                return log_error_errno(r, "Failed to read the AppArmor profiles in /etc/apparmor.d: %m");
        if (r > 0)
                return use_existing_apparmor_profile(ctx, real, &other);
        r = render_apparmor_profile(real, apparmor_has_abi_4_0(ctx->root_fd), &text);
        if (r < 0)
                return r;
        return converge_file(ctx, "daemon.apparmor", APPARMOR_PROFILE_PATH, text,
                             "AppArmor profile allowing user namespaces for rootlesskit only:", NULL);
}

/* ---- the root daemon ------------------------------------------------------------------------------------ */

static bool unit_state_enabled(const char *s) {
        return s && (startswith(s, "enabled") || streq(s, "static") || streq(s, "alias") || streq(s, "indirect") ||
                     streq(s, "generated") || streq(s, "linked"));
}

/* Live: mask, disable and stop docker.socket and docker.service. Returns 1 if the system manager needs a reload. */
static int converge_root_daemon_live(Context *ctx, sd_bus *bus, bool *ret_need_reload) {
        for (size_t i = 0; i < ELEMENTSOF(root_daemon_units); i++) {
                const char *unit = root_daemon_units[i];
                _cleanup_free_ char *id = NULL;
                UnitState s = {};
                bool masked, enabled, running, changed = false;
                int r;

                if (asprintf(&id, "daemon.root-%s", unit) < 0)
                        return -ENOMEM;
                r = bus_get_unit_state(bus, unit, &s);
                if (r < 0)
                        return r;
                masked = streq_ptr(s.load_state, "masked") || streq_ptr(s.unit_file_state, "masked");
                if (s.need_daemon_reload)
                        *ret_need_reload = true;
                enabled = unit_state_enabled(s.unit_file_state);
                running = !streq_ptr(s.active_state, "inactive") && !streq_ptr(s.active_state, "failed");
                bool absent = streq_ptr(s.load_state, "not-found") && !running;

                if (absent || (masked && !enabled && !running)) {
                        report_item(ctx, id, ctx->verb == VERB_CHECK ? ITEM_PASS : ITEM_OK, NULL,
                                    "the root daemon's %s is %s", unit, absent ? "not installed" : "masked and stopped");
                        unit_state_done(&s);
                        continue;
                }
                if (ctx->verb == VERB_PLAN) {
                        report_item(ctx, id, ITEM_REMOVE, NULL, "%s%s%sthe root daemon's %s (now %s, %s)",
                                    enabled ? "disable, " : "", masked ? "" : "mask, ", running ? "stop " : "", unit,
                                    strempty(s.unit_file_state), strempty(s.active_state));
                        unit_state_done(&s);
                        continue;
                }
                if (ctx->verb == VERB_CHECK) {
                        report_item(ctx, id, ITEM_FAIL, "rootless-ci apply",
                                    "the root daemon's %s is %s and %s: it hands root to anyone who can reach it", unit,
                                    strempty(s.unit_file_state), strempty(s.active_state));
                        unit_state_done(&s);
                        continue;
                }

                if (enabled) {
                        r = bus_disable_unit_file(bus, unit, &changed);
                        if (r < 0)
                                goto fail;
                        *ret_need_reload = true;
                }
                if (!masked) {
                        r = bus_mask_unit_file(bus, unit, &changed);
                        if (r < 0)
                                goto fail;
                        *ret_need_reload = true;
                }
                killpoint_at("daemon-root-masked", unit);
                if (running) {
                        _cleanup_free_ char *result = NULL;
                        r = bus_unit_job(bus, "StopUnit", unit, now_usec() + 90ULL * 1000000ULL, &result);
                        if (r < 0) {
                                log_error("Stopping %s ended with \"%s\"", unit, strempty(result));
                                goto fail;
                        }
                }
                report_changed(ctx, id, ITEM_REMOVE, "%s%s%sthe root daemon's %s", enabled ? "disabled, " : "",
                               masked ? "" : "masked, ", running ? "stopped " : "", unit);
                unit_state_done(&s);
                continue;
        fail:
                unit_state_done(&s);
                return r;
        }
        return 0;
}

/* Offline: mask by link, which needs no running manager. */
static int converge_root_daemon_offline(Context *ctx) {
        for (size_t i = 0; i < ELEMENTSOF(root_daemon_units); i++) {
                _cleanup_free_ char *id = NULL, *path = NULL;
                int r;

                if (asprintf(&id, "daemon.root-%s", root_daemon_units[i]) < 0 ||
                    asprintf(&path, "/etc/systemd/system/%s", root_daemon_units[i]) < 0)
                        return -ENOMEM;
                r = converge_symlink(ctx, id, path, "/dev/null", "mask the root daemon's unit");
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Remove root-owned Docker sockets the stopped daemon left behind. */
static int remove_stale_root_sockets(Context *ctx) {
        static const char *const paths[] = { "/run/docker.sock", "/var/run/docker.sock" };

        for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
                _cleanup_free_ char *name = NULL;
                _cleanup_close_ int parent = -1;
                char id[64];
                struct stat st;

                parent = safe_open_parent(ctx->root_fd, paths[i], RESOLVE_POLICY_IN_ROOT, &name);
                if (parent < 0 || fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISSOCK(st.st_mode))
                        continue;
                snprintf(id, sizeof(id), "daemon.root-socket:%s", paths[i]);
                if (ctx->verb == VERB_PLAN) {
                        report_item(ctx, id, ITEM_REMOVE, NULL, "remove the root daemon's socket %s",
                                    paths[i]);
                        continue;
                }
                if (ctx->verb == VERB_CHECK)
                        continue; /* the reachability check judges it */
                if (unlinkat(parent, name, 0) < 0 && errno != ENOENT)
                        return log_error_errno(negative_errno(), "Failed to remove %s: %m", paths[i]);
                report_changed(ctx, id, ITEM_REMOVE, "removed the root daemon's socket %s", paths[i]);
        }
        return 0;
}

/*
 * Can the CI user connect to path? Decided from the owners, modes and ACLs
 * on the way and of the socket, with the user's groups as the files say
 * (ctx->facts.user_gids; the user step fails when NSS knows more, see
 * user.nss), see sockperm.h for why this is the kernel's own answer:
 * no child that becomes the user, so a converged run starts no process.
 * 1 yes, 0 no, < 0 error.
 */
static int user_can_connect(Context *ctx, const DaemonUser *u, const char *path) {
        return unix_socket_reachable(ctx->root_fd, path, u->uid, ctx->facts.user_gids, ctx->facts.n_user_gids);
}

/* Invariant I1: no root daemon's API socket (files.h: root_daemon_sockets) the CI user can connect to. */
static int check_root_sockets_unreachable(Context *ctx, const DaemonUser *u) {
        size_t reachable = 0, present = 0;

        if (!ctx->live || !u->exists) {
                report_item(ctx, "daemon.root-sockets-unreachable", ITEM_SKIP, NULL,
                            ctx->live ? "the CI user does not exist yet" : "sockets are checked on the live host");
                return 0;
        }
        for (size_t i = 0; i < n_root_daemon_sockets; i++) {
                struct stat st;
                int r;

                if (lstat(root_daemon_sockets[i], &st) < 0 || !S_ISSOCK(st.st_mode) || st.st_uid == u->uid)
                        continue;
                present++;
                r = user_can_connect(ctx, u, root_daemon_sockets[i]);
                if (r < 0)
                        return log_error_errno(r, "Failed to test whether %s can connect to %s: %m", u->name,
                                               root_daemon_sockets[i]);
                if (r > 0) {
                        _cleanup_free_ char *fix = NULL;
                        char id[128];
                        /* One failure per socket, each its own item. */
                        snprintf(id, sizeof(id), "daemon.root-socket-reachable:%s", root_daemon_sockets[i]);
                        reachable++;
                        if (asprintf(&fix, "stop and disable the root daemon listening on %s (ss -xlp | grep %s names it; "
                                     "rootless-ci apply does this for Docker's docker.service and docker.socket), or "
                                     "take %s out of the socket's group (gpasswd -d %s GROUP)", root_daemon_sockets[i],
                                     root_daemon_sockets[i], u->name, u->name) < 0)
                                return -ENOMEM;
                        report_item(ctx, id, ITEM_FAIL, fix,
                                    "%s can connect to %s (owned by UID %u): that is root on this host", u->name,
                                    root_daemon_sockets[i], (unsigned) st.st_uid);
                }
        }
        ctx->facts.root_sockets_checked = true;
        ctx->facts.root_sockets_reachable = (unsigned) reachable;
        if (!reachable)
                report_item(ctx, "daemon.root-sockets-unreachable", ITEM_PASS, NULL,
                            "%s can reach no root daemon's API socket (Docker, containerd, BuildKit, Podman, CRI-O, libvirt, LXD, Incus: %zu present, all refused)", u->name,
                            present);
        return 0;
}

/* ---- the user's manager and its daemon ------------------------------------------------------------------ */

static int linger_exists(Context *ctx, const DaemonUser *u) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -1;

        if (asprintf(&path, LINGER_DIR "/%s", u->name) < 0)
                return -ENOMEM;
        fd = safe_openat(ctx->root_fd, path, O_PATH, 0, RESOLVE_POLICY_IN_ROOT);
        return fd >= 0;
}

static int converge_linger(Context *ctx, sd_bus *system_bus, const DaemonUser *u) {
        _cleanup_close_ int dfd = -1;
        int r;

        if (linger_exists(ctx, u)) {
                report_item(ctx, "daemon.linger", ctx->verb == VERB_CHECK ? ITEM_PASS : ITEM_OK, NULL,
                            "%s's manager runs without a login (linger)", u->name);
                return 0;
        }
        if (ctx->verb == VERB_PLAN) {
                report_item(ctx, "daemon.linger", ITEM_CREATE, NULL, "enable linger for %s (through logind)", u->name);
                return 0;
        }
        if (ctx->verb == VERB_CHECK) {
                report_item(ctx, "daemon.linger", ITEM_FAIL, "rootless-ci apply",
                            "linger is off for %s: its Docker would not start at boot", u->name);
                return 0;
        }
        if (system_bus) {
                r = bus_set_linger(u->uid);
                if (r < 0)
                        return r;
        } else {
                /* Offline tree: logind reads this directory at boot. */
                _cleanup_free_ char *path = NULL;
                dfd = safe_mkdir_p(ctx->root_fd, LINGER_DIR, 0755, RESOLVE_POLICY_IN_ROOT);
                if (dfd < 0)
                        return log_error_errno(dfd, "Failed to create %s: %m", LINGER_DIR);
                if (asprintf(&path, LINGER_DIR "/%s", u->name) < 0)
                        return -ENOMEM;
                r = write_file_atomic(ctx->root_fd, path, "", 0, 0644, (uid_t) -1, (gid_t) -1, RESOLVE_POLICY_IN_ROOT);
                if (r < 0)
                        return log_error_errno(r, "Failed to write %s: %m", path);
        }
        if (!linger_exists(ctx, u))
                return log_error_errno(-EIO, "Linger for %s is still off after enabling it", u->name);
        killpoint("daemon-linger");
        report_changed(ctx, "daemon.linger", ITEM_CREATE, "enabled linger for %s", u->name);
        return 0;
}

static char *socket_path_of(const DaemonUser *u) {
        char *s;
        return asprintf(&s, "/run/user/%u/docker.sock", (unsigned) u->uid) < 0 ? NULL : s;
}

/* Print what went wrong with the user's docker.service: its state, its log, a likely cause. */
static void explain_failure(const DaemonUser *u, sd_bus *user_bus) {
        _cleanup_free_ char *log = NULL;
        UnitState s = {};
        const char *hint;

        if (user_bus && bus_get_unit_state(user_bus, UNIT_NAME, &s) >= 0)
                log_error("%s's %s is %s (%s), result: %s", u->name, UNIT_NAME, strempty(s.active_state),
                          strempty(s.sub_state), strempty(s.result));
        if (journal_user_unit_tail(u->uid, UNIT_NAME, JOURNAL_LINES, &log) >= 0 && log && *log)
                log_error("Last lines of its journal:\n%s", log);
        else
                log_error("Its journal has no lines (look with: journalctl _UID=%u --user-unit=%s)", (unsigned) u->uid,
                          UNIT_NAME);
        hint = rootless_docker_failure_hint(s.result && streq(s.result, "start-limit-hit") ? "start-limit-hit" : log);
        if (hint)
                log_error("Likely cause: %s", hint);
        unit_state_done(&s);
}

/* Between ping attempts: give up early once the unit has failed for good. */
static int unit_still_starting(void *userdata) {
        sd_bus *user_bus = userdata;
        UnitState s = {};
        int r;

        r = bus_get_unit_state(user_bus, UNIT_NAME, &s);
        if (r < 0)
                return r;
        r = streq_ptr(s.active_state, "failed") || streq_ptr(s.active_state, "inactive") ? -ESRCH : 0;
        unit_state_done(&s);
        return r;
}

/*
 * Invariant I2: the daemon runs as the CI user in a user namespace, container
 * root mapped to the user alone and every other container ID into its
 * subordinate ranges (all its lines, as the user step left them in ctx->facts). Judged from
 * the process that listens on the socket the ping just talked to (its
 * SO_PEERCRED PID, /proc/PID opened on that connection): no child, no bus.
 * Returns 1 when it holds, 0 when not, with *ret_message saying which; < 0
 * only for -ENOMEM.
 */
static int inspect_userns(Context *ctx, const DaemonUser *u, const DockerPeer *peer, char **ret_message) {
        const HostFacts *f = &ctx->facts;
        const RootlessIds id = {
                .uid = u->uid,
                .gid = u->gid,
                .subuids = f->subuid_ranges,
                .n_subuids = f->n_subuid_ranges,
                .subgids = f->subgid_ranges,
                .n_subgids = f->n_subgid_ranges,
        };
        _cleanup_free_ ProcessIds *ids = NULL;
        _cleanup_free_ char *why = NULL;
        const char *file = NULL;
        int r;

        if (peer->pid <= 0)
                return asprintf(ret_message,
                                "%s's Docker socket is served by a process in a PID namespace this run cannot see: "
                                "its user namespace cannot be checked",
                                u->name) < 0
                               ? -ENOMEM
                               : 0;
        ids = malloc(sizeof(*ids));
        if (!ids)
                return -ENOMEM;
        r = peer->proc_fd < 0 ? peer->proc_error : process_ids_read(peer->proc_fd, ids, &file);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return asprintf(ret_message, "%s's Docker socket is served by PID %ld, whose /proc/%ld%s%s cannot be read: %s",
                                u->name, (long) peer->pid, (long) peer->pid, file ? "/" : "", strempty(file),
                                r == -ESRCH ? "it has exited" : strerror(-r)) < 0
                               ? -ENOMEM
                               : 0;
        r = rootless_ids_judge(ids, u->name, &id, &why);
        if (r < 0)
                return r;
        if (r > 0)
                r = asprintf(ret_message, "%s's %s (PID %ld) %s", u->name, ids->comm[0] ? ids->comm : "daemon",
                             (long) peer->pid, why) < 0 ? -ENOMEM : 1;
        else
                r = asprintf(ret_message, "%s's Docker socket is served by PID %ld%s%s%s, which %s", u->name,
                             (long) peer->pid, ids->comm[0] ? " (" : "", ids->comm, ids->comm[0] ? ")" : "", why) < 0
                            ? -ENOMEM
                            : 0;
        return r;
}

/* No running daemon to look at: offline tree, or no systemd. */
static void report_userns_offline(Context *ctx) {
        const char *why = ctx->live ? "systemd is not running" : "offline tree";

        report_item(ctx, "daemon.service", ITEM_SKIP, NULL,
                    "%s: the daemon is started by the first apply on the live host", why);
        report_item(ctx, "daemon.userns", ITEM_SKIP, NULL,
                    "%s: the daemon's user namespace is checked on the live host, once it runs", why);
}

static char *userns_check_fix(const DaemonUser *u) {
        char *s;
        return asprintf(&s,
                        "rootless-ci apply (it restarts %s's docker.service, which maps the IDs of /etc/subuid and "
                        "/etc/subgid anew)",
                        u->name) < 0
                       ? NULL
                       : s;
}

/*
 * unit_changed: our unit's content changed (reload the user's manager and
 * restart a daemon that was running before); link_changed: only its
 * enablement did (reload). mgr_was_active: the user's manager ran before
 * this apply changed anything; if it did not, whatever it runs now was
 * started from the new files and needs no restart.
 */
static int converge_user_daemon(Context *ctx, sd_bus *system_bus, const DaemonUser *u, bool unit_changed,
                                bool link_changed, bool mgr_was_active) {
        _cleanup_bus_ sd_bus *user_bus = NULL;
        _cleanup_free_ char *user_manager = NULL, *sock = socket_path_of(u), *result = NULL, *userns_msg = NULL,
                            *fix = NULL;
        _cleanup_(docker_peer_done) DockerPeer peer = DOCKER_PEER_NULL;
        unsigned timeout = ctx->config->ready_timeout_sec;
        unsigned long long deadline = now_usec() + (unsigned long long) timeout * 1000000ULL, t0;
        UnitState mgr = {}, svc = {};
        const char *method = NULL;
        bool answering, userns_restart = false;
        int r, userns = 0;

        if (!sock || asprintf(&user_manager, "user@%u.service", (unsigned) u->uid) < 0)
                return -ENOMEM;

        r = bus_get_unit_state(system_bus, user_manager, &mgr);
        if (r < 0)
                return r;
        /* The listener of this very connection is what invariant I2 is checked on. */
        answering = docker_ping_peer(sock, u->uid, 2000, &peer) >= 0;
        if (answering) {
                userns = inspect_userns(ctx, u, &peer, &userns_msg);
                docker_peer_done(&peer);
                if (userns < 0) {
                        unit_state_done(&mgr);
                        return userns;
                }
        }
        fix = userns_check_fix(u);
        if (!fix) {
                unit_state_done(&mgr);
                return -ENOMEM;
        }

        if (ctx->verb != VERB_APPLY) {
                bool mgr_up = streq_ptr(mgr.active_state, "active");
                unit_state_done(&mgr);
                if (ctx->verb == VERB_PLAN) {
                        if (!answering)
                                report_item(ctx, "daemon.service", ITEM_CHANGE, NULL,
                                            "start %s's Docker and wait for %s to answer", u->name, sock);
                        else if (unit_changed || userns == 0)
                                report_item(ctx, "daemon.service", ITEM_CHANGE, NULL, "restart %s's Docker (%s)",
                                            u->name, unit_changed ? "its unit changes" : "see daemon.userns");
                        else
                                report_item(ctx, "daemon.service", ITEM_OK, NULL, "%s's Docker answers on %s", u->name,
                                            sock);
                        if (!answering)
                                report_item(ctx, "daemon.userns", ITEM_SKIP, NULL,
                                            "%s's Docker does not answer: apply starts it, then checks its user namespace",
                                            u->name);
                        else
                                report_item(ctx, "daemon.userns", userns > 0 ? ITEM_OK : ITEM_CHANGE, NULL,
                                            userns > 0 ? "%s" : "restart the daemon: %s", userns_msg);
                        return 0;
                }
                if (!mgr_up)
                        report_item(ctx, "daemon.user-manager", ITEM_FAIL, "rootless-ci apply", "%s is not running",
                                    user_manager);
                else
                        report_item(ctx, "daemon.user-manager", ITEM_PASS, NULL, "%s is running", user_manager);
                if (answering) {
                        report_item(ctx, "daemon.service", ITEM_PASS, NULL, "%s's Docker answers GET /_ping on %s",
                                    u->name, sock);
                        report_item(ctx, "daemon.userns", userns > 0 ? ITEM_PASS : ITEM_FAIL, userns > 0 ? NULL : fix,
                                    "%s", userns_msg);
                        return 0;
                }
                report_item(ctx, "daemon.userns", ITEM_SKIP, NULL,
                            "%s's Docker does not answer GET /_ping (see daemon.service): no daemon to inspect", u->name);
                /* Down: say how its manager sees it (stopped, failed, start-limit-hit), a read only. */
                if (mgr_up && bus_open_user_manager(u->name, &user_bus) >= 0 &&
                    bus_get_unit_state(user_bus, UNIT_NAME, &svc) >= 0) {
                        report_item(ctx, "daemon.service", ITEM_FAIL,
                                    streq_ptr(svc.result, "start-limit-hit")
                                            ? "rootless-ci apply (it resets the start limit and starts it; look at why it "
                                              "kept failing: journalctl --user-unit=docker.service)"
                                            : "rootless-ci apply",
                                    "%s's Docker does not answer GET /_ping on %s (%s is %s, result %s)", u->name,
                                    sock, UNIT_NAME, strempty(svc.active_state), strempty(svc.result));
                        unit_state_done(&svc);
                } else
                        report_item(ctx, "daemon.service", ITEM_FAIL, "rootless-ci apply",
                                    "%s's Docker does not answer GET /_ping on %s", u->name, sock);
                return 0;
        }

        /* Apply. The fast path: nothing changed and the daemon answers, so nothing to ask its manager. */
        if (answering && userns > 0 && !unit_changed && !link_changed && streq_ptr(mgr.active_state, "active")) {
                unit_state_done(&mgr);
                report_item(ctx, "daemon.service", ITEM_OK, NULL, "%s's Docker answers on %s", u->name, sock);
                report_item(ctx, "daemon.userns", ITEM_OK, NULL, "%s", userns_msg);
                return 0;
        }
        if (answering && userns == 0) {
                /* A restart maps the IDs of /etc/subuid and /etc/subgid as they are now (and takes the socket back). */
                log_warning("%s; restarting %s", userns_msg, UNIT_NAME);
                userns_restart = true;
        }

        if (!streq_ptr(mgr.active_state, "active")) {
                /*
                 * logind starts it when linger is switched on; when linger was
                 * on already it was stopped since (its data mount went away,
                 * RequiresMountsFor=): start it as logind does.
                 */
                t0 = now_usec();
                if (!streq_ptr(mgr.active_state, "activating")) {
                        _cleanup_free_ char *job_result = NULL;
                        log_info("Starting %s", user_manager);
                        (void) bus_unit_job(system_bus, "StartUnit", user_manager, deadline, &job_result);
                }
                unit_state_done(&mgr);
                log_info("Waiting for %s (up to %u s)", user_manager, timeout);
                killpoint("daemon-waiting-for-manager");
                r = bus_wait_unit_active(system_bus, user_manager, deadline, &mgr);
                if (r >= 0)
                        log_info("%s is active after %.2f s", user_manager, (double) (now_usec() - t0) / 1e6);
                if (r < 0) {
                        log_error("%s did not become active: %s (%s, result %s)", user_manager,
                                  r == -ETIMEDOUT ? "timed out" : "it failed", strempty(mgr.active_state),
                                  strempty(mgr.result));
                        log_error("Likely cause: the data mount %s is missing (the manager requires it), or logind "
                                  "could not start the user's session",
                                  ctx->config->mount_point);
                        unit_state_done(&mgr);
                        return -ERCI_FAILED;
                }
        }
        unit_state_done(&mgr);

        r = bus_open_user_manager(u->name, &user_bus);
        if (r < 0)
                return r;
        if ((unit_changed || link_changed) && mgr_was_active) {
                r = bus_manager_reload(user_bus);
                if (r < 0)
                        return r;
        }
        r = bus_get_unit_state(user_bus, UNIT_NAME, &svc);
        if (r < 0)
                return r;
        if (streq_ptr(svc.load_state, "not-found") || streq_ptr(svc.load_state, "masked")) {
                log_error("%s's manager sees %s as %s (a unit in its home overrides ours?)", u->name, UNIT_NAME,
                          svc.load_state);
                unit_state_done(&svc);
                return -ERCI_FAILED;
        }
        /*
         * Running: restart only if its manager ran before our unit changed.
         * Anything else, including a start in progress (the manager started it
         * at boot of the user's manager): StartUnit, which joins a running
         * start job, so its result is what we wait for.
         */
        if (streq_ptr(svc.active_state, "active") || streq_ptr(svc.active_state, "reloading"))
                method = (unit_changed && mgr_was_active) || userns_restart ? "RestartUnit" : NULL;
        else
                method = "StartUnit";
        if (streq_ptr(svc.active_state, "failed")) {
                /* Clears a start-limit-hit so the start below is really tried. */
                _cleanup_bus_error_ sd_bus_error error = SD_BUS_ERROR_NULL;
                (void) WAITING(sd_bus_call_method(user_bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                                  "org.freedesktop.systemd1.Manager", "ResetFailedUnit", &error, NULL,
                                                  "s", UNIT_NAME));
        }
        unit_state_done(&svc);

        t0 = now_usec();
        if (method) {
                log_info("%s %s in %s's manager", streq(method, "StartUnit") ? "Starting" : "Restarting", UNIT_NAME,
                         u->name);
                killpoint("daemon-before-start");
                r = bus_unit_job(user_bus, method, UNIT_NAME, deadline, &result);
                if (r < 0) {
                        log_error("The %s job of %s ended with \"%s\"", method, UNIT_NAME, strempty(result));
                        explain_failure(u, user_bus);
                        return -ERCI_FAILED;
                }
                log_debug("Timing: %s job of %s %.1f ms", method, UNIT_NAME, (double) (now_usec() - t0) / 1e3);
        }
        killpoint("daemon-waiting-for-ping");
        r = docker_ping_wait(sock, u->uid, timeout, "the CI user's Docker", unit_still_starting, user_bus, &peer);
        if (r < 0) {
                log_error("%s's Docker did not answer GET /_ping on %s within %u s: %s", u->name, sock, timeout,
                          strerror(-r));
                explain_failure(u, user_bus);
                return -ERCI_FAILED;
        }
        log_info("%s's Docker answered %.2f s after the %s", u->name, (double) (now_usec() - t0) / 1e6,
                 method ? (streq(method, "StartUnit") ? "start request" : "restart request") : "check");
        if (!method && !mgr_was_active)
                /* The user's manager, started by this apply, started the daemon. */
                method = "StartUnit";
        if (method)
                report_changed(ctx, "daemon.service", streq(method, "StartUnit") ? ITEM_CREATE : ITEM_CHANGE,
                               "%s %s's Docker%s; it answers on %s", streq(method, "StartUnit") ? "started" : "restarted",
                               u->name, userns_restart ? " (its user namespace was wrong)" : "", sock);
        else
                report_item(ctx, "daemon.service", ITEM_OK, NULL, "%s's Docker answers on %s", u->name, sock);

        /* The daemon that answers now: invariant I2 must hold for it. */
        free(userns_msg);
        userns_msg = NULL;
        userns = inspect_userns(ctx, u, &peer, &userns_msg);
        if (userns < 0)
                return userns;
        if (userns > 0) {
                report_item(ctx, "daemon.userns", ITEM_OK, NULL, "%s", userns_msg);
                return 0;
        }
        free(fix);
        fix = NULL;
        if (asprintf(&fix,
                     "compare %s's lines in /etc/subuid and /etc/subgid with the map above, and see "
                     "journalctl _UID=%u --user-unit=%s",
                     u->name, (unsigned) u->uid, UNIT_NAME) < 0)
                return -ENOMEM;
        report_item(ctx, "daemon.userns", ITEM_FAIL, fix, "%s", userns_msg);
        return 0;
}

/*
 * plan on a host where the user step will create the CI user: every change
 * apply makes here, one line each. Files whose content does not depend on
 * the UID are compared for real; the mount-order drop-in's path does, so it
 * is named with the UID to come.
 */
static int plan_for_new_user(Context *ctx, const DaemonUser *u) {
        sd_bus *system_bus = NULL;
        bool ignored = false;
        int r;

        r = converge_user_unit(ctx, u);
        if (r < 0)
                return r;
        r = converge_symlink(ctx, "daemon.enable", USER_UNIT_ENABLE_LINK, USER_UNIT_PATH,
                             "enable the unit in user managers (only the CI user's runs it)");
        if (r < 0)
                return r;
        r = converge_delegate(ctx, NULL);
        if (r < 0)
                return r;
        report_item(ctx, "daemon.mount-order", ITEM_CREATE, NULL,
                    "write /etc/systemd/system/user@UID.service.d/rootless-ci-mount.conf (RequiresMountsFor=%s), "
                    "UID being %s's, chosen when the user is created",
                    ctx->config->mount_point, u->name);
        r = converge_apparmor(ctx);
        if (r < 0)
                return r;
        if (ctx->live && ctx->facts.systemd_running) {
                r = context_system_bus(ctx, &system_bus);
                if (r < 0)
                        return r;
                r = converge_root_daemon_live(ctx, system_bus, &ignored);
        } else
                r = converge_root_daemon_offline(ctx);
        if (r < 0)
                return r;
        r = remove_stale_root_sockets(ctx);
        if (r < 0)
                return r;
        report_item(ctx, "daemon.linger", ITEM_CREATE, NULL, "enable linger for %s (through logind)", u->name);
        if (ctx->live && ctx->facts.systemd_running) {
                report_item(ctx, "daemon.service", ITEM_CREATE, NULL,
                            "start %s's Docker in its own manager and wait for /run/user/UID/docker.sock to answer",
                            u->name);
                report_item(ctx, "daemon.userns", ITEM_SKIP, NULL,
                            "no daemon yet: apply starts it, then checks its user namespace");
        } else
                report_userns_offline(ctx);
        return 0;
}

/*
 * Invariant I1 in live credentials: a user manager started while the CI
 * user was in a privileged group keeps that group, and so does everything
 * it starts (the daemon, its containers), whatever /etc/group says now.
 * Returns 1 when its main process holds one (*ret_gid), 0 when not (or it
 * is gone), < 0 when its status cannot be read.
 */
static int user_manager_holds_privileged_group(Context *ctx, uint32_t main_pid, gid_t *ret_gid) {
        int r = pid_holds_gid((pid_t) main_pid, ctx->facts.privileged_gids, ctx->facts.n_privileged_gids, ret_gid);

        if (r < 0)
                return log_error_errno(r, "Failed to read the credentials of PID %u, the CI user's manager: %m",
                                       (unsigned) main_pid);
        return r;
}

/* ---- the step ------------------------------------------------------------------------------------------- */

static int daemon_run(Context *ctx) {
        _cleanup_(daemon_user_done) DaemonUser u = {};
        sd_bus *system_bus = NULL;
        bool user_dropin_changed = false, system_reload = false, mgr_was_active = false, daemon_restart_owed = false,
             live;
        _cleanup_free_ char *mgr_held_why = NULL;
        int r, unit_changed, link_changed, dropins_changed, apparmor_changed;

        r = daemon_user_from_facts(ctx, &u);
        if (r < 0)
                return r;
        if (!u.exists) {
                /*
                 * The user step creates it before apply gets here, and says
                 * why when it cannot; plan and check only skip what depends
                 * on the UID rather than fail a second time for one cause.
                 */
                if (ctx->verb == VERB_APPLY)
                        return log_error_errno(-ERCI_FAILED, "User %s does not exist (see the user step)", u.name);
                if (ctx->verb == VERB_PLAN && ctx->facts.user_planned)
                        return plan_for_new_user(ctx, &u);
                report_item(ctx, "daemon.user", ITEM_SKIP, NULL,
                            ctx->facts.user_planned ? "user %s does not exist yet (apply creates it first): the "
                                                      "daemon's files depend on its UID"
                                                    : "the CI user %s is not usable (see the user step)",
                            u.name);
                return 0;
        }

        unit_changed = converge_user_unit(ctx, &u);
        if (unit_changed < 0)
                return unit_changed;
        link_changed = converge_symlink(ctx, "daemon.enable", USER_UNIT_ENABLE_LINK, USER_UNIT_PATH,
                                        "enable the unit in user managers (only the CI user's runs it)");
        if (link_changed < 0)
                return link_changed;
        killpoint("daemon-unit-written");

        dropins_changed = converge_system_dropins(ctx, &u, &user_dropin_changed);
        if (dropins_changed < 0)
                return dropins_changed;
        apparmor_changed = converge_apparmor(ctx);
        if (apparmor_changed < 0)
                return apparmor_changed;

        live = ctx->live && ctx->facts.systemd_running;
        if (!live) {
                r = converge_root_daemon_offline(ctx);
                if (r < 0)
                        return r;
                r = converge_linger(ctx, NULL, &u);
                if (r < 0)
                        return r;
                report_userns_offline(ctx);
                return check_delegation(ctx, &u, user_dropin_changed);
        }

        r = context_system_bus(ctx, &system_bus);
        if (r < 0)
                return r;
        {
                _cleanup_free_ char *mgr = NULL;
                UnitState s = {};

                if (asprintf(&mgr, "user@%u.service", (unsigned) u.uid) < 0)
                        return -ENOMEM;
                r = bus_get_unit_state(system_bus, mgr, &s);
                if (r < 0)
                        return r;
                mgr_was_active = streq_ptr(s.active_state, "active");
                /* Its files changed on disk but the manager has not reloaded (a run killed in between). */
                if (s.need_daemon_reload)
                        system_reload = true;
                if (mgr_was_active) {
                        gid_t gid = (gid_t) -1;
                        r = user_manager_holds_privileged_group(ctx, s.main_pid, &gid);
                        if (r > 0 && asprintf(&mgr_held_why, "so it and what it runs drop GID %u, a group that leads "
                                              "to root, which %s kept from before it left the group", (unsigned) gid,
                                              u.name) < 0)
                                r = -ENOMEM;
                        if (r > 0 && ctx->verb == VERB_PLAN)
                                report_item(ctx, "daemon.user-manager", ITEM_CHANGE, NULL, "restart %s %s", mgr,
                                            mgr_held_why);
                }
                unit_state_done(&s);
                if (r < 0)
                        return r;
        }
        if (is_apply(ctx)) {
                daemon_restart_owed = marker_exists(ctx, MARKER_DAEMON_RESTART);
                if (marker_exists(ctx, MARKER_USER_MANAGER_RESTART))
                        user_dropin_changed = true;
        }

        r = converge_root_daemon_live(ctx, system_bus, &system_reload);
        if (r < 0)
                return r;
        if (is_apply(ctx)) {
                r = context_reload_system(ctx, system_reload || dropins_changed);
                if (r < 0)
                        return r;
        }
        r = remove_stale_root_sockets(ctx);
        if (r < 0)
                return r;

        if (is_apply(ctx) && apparmor_changed) {
                _cleanup_free_ char *result = NULL;
                r = bus_unit_job(system_bus, "ReloadOrRestartUnit", "apparmor.service", now_usec() + 60ULL * 1000000ULL,
                                 &result);
                if (r < 0)
                        return log_error_errno(r, "Failed to load the AppArmor profile (apparmor.service: %s)",
                                               strempty(result));
        }

        /*
         * Drop-ins of user@UID.service only take effect when it starts, and
         * a group it left is only dropped when it starts: restart a running one.
         */
        if (is_apply(ctx) && (user_dropin_changed || mgr_held_why)) {
                _cleanup_free_ char *mgr = NULL, *result = NULL;
                UnitState s = {};

                if (asprintf(&mgr, "user@%u.service", (unsigned) u.uid) < 0)
                        return -ENOMEM;
                r = bus_get_unit_state(system_bus, mgr, &s);
                if (r < 0)
                        return r;
                if (streq_ptr(s.active_state, "active")) {
                        const char *why = mgr_held_why ?: "for its new drop-ins";
                        log_notice("Restarting %s %s", mgr, why);
                        r = bus_unit_job(system_bus, "RestartUnit", mgr, now_usec() + 90ULL * 1000000ULL, &result);
                        if (r < 0) {
                                unit_state_done(&s);
                                return log_error_errno(r, "Restarting %s ended with \"%s\"", mgr, strempty(result));
                        }
                        report_changed(ctx, "daemon.user-manager", ITEM_CHANGE, "restarted %s %s", mgr, why);
                        mgr_was_active = false; /* it now runs from the new files */
                }
                unit_state_done(&s);
                r = marker_clear(ctx, MARKER_USER_MANAGER_RESTART);
                if (r < 0)
                        return r;
        }

        r = converge_linger(ctx, system_bus, &u);
        if (r < 0)
                return r;
        if (ctx->verb == VERB_APPLY && ctx->any_failed)
                return 0; /* the engine stops here; do not start a daemon on a half-made set-up */

        r = converge_user_daemon(ctx, system_bus, &u, unit_changed > 0 || daemon_restart_owed, link_changed > 0,
                                 mgr_was_active);
        if (r < 0)
                return r;
        if (is_apply(ctx)) {
                r = marker_clear(ctx, MARKER_DAEMON_RESTART);
                if (r < 0)
                        return r;
        }
        killpoint("daemon-started");

        r = check_delegation(ctx, &u, user_dropin_changed);
        if (r < 0)
                return r;
        return check_root_sockets_unreachable(ctx, &u);
}

const Step step_daemon = {
        .name = "daemon",
        .run = daemon_run,
};
