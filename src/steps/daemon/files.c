/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "steps/daemon/apparmor.h"
#include "steps/daemon/daemon.h"
#include "steps/tenants/tenants.h"
#include "units.h"
#include "util/cgroup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"

/*
 * The daemon step's files: the user unit and its enable link, the drop-ins
 * of user@.service, the AppArmor profile, and the check of what the
 * delegation drop-in is for.
 */

/* PATH for the unit: rootlesskit's directory, then the usual ones, each once. */
char *unit_search_path(const char *rootlesskit_path) {
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

int daemon_render(const char *template_name, const void *values, size_t n, char **ret) {
        return unit_template_render(units_dir(), template_name, values, n, ret);
}

/*
 * One of the step's files: the template filled with values, wanted as w
 * says (its text is set here). *changed, when given, is set when the file
 * is not in place. 0, or < 0 logged.
 */
static int daemon_file(StepRun *run, const char *template_name, const UnitValue *values, size_t n, FileWant *w,
                       bool *changed) {
        _cleanup_free_ char *text = NULL;
        int r;

        r = daemon_render(template_name, values, n, &text);
        if (r < 0)
                return r;
        w->text = text;
        r = item_file(run, w);
        if (r < 0)
                return r;
        if (changed)
                *changed = *changed || r > 0;
        return 0;
}

/* Facts from preflight that end up in unit files must be plain paths/words. */
static bool fact_usable(StepRun *run, const DaemonState *st, const char *id, const char *value, const char *what) {
        bool live = run_live(run);
        _cleanup_free_ char *msg = NULL;

        if (!value) {
                if (asprintf(&msg, "%s is unknown (preflight did not find it%s)", what,
                             live ? "" : "; offline, the first boot's apply installs this") < 0)
                        abort();
                item_finding_ex(run, &(Finding) {
                        .id = id,
                        .status = live ? ITEM_FAIL : ITEM_SKIP,
                        .message = msg,
                        .fix = live ? "install what the preflight step reports missing, then run rootless-ci apply" : NULL,
                        .hidden_in = st->host_hide,
                });
                return false;
        }
        if (!unit_value_is_plain(value)) {
                if (asprintf(&msg, "%s \"%s\" has characters that cannot stand unquoted in a unit file", what, value) < 0)
                        abort();
                item_finding_ex(run, &(Finding) {
                        .id = id,
                        .status = ITEM_FAIL,
                        .message = msg,
                        .fix = "install it under a path of letters, digits and / . _ + - only (as the distribution's "
                               "package does, e.g. /usr/bin), then run rootless-ci apply",
                        .hidden_in = st->host_hide,
                });
                return false;
        }
        return true;
}

/*
 * With tenants, the one unit serves every tenant's manager: its
 * ConditionUser= line becomes one triggering condition per tenant's user
 * (ConditionUser=|NAME: any of them), so every other user's manager still
 * skips it. Without tenants the template's line is kept as it is.
 */
static int unit_condition_users(StepRun *run, char **text) {
        _cleanup_strv_free_ char **removed = NULL;
        _cleanup_free_ char *out = NULL;
        const Account *accounts;
        const char *line, *end;
        size_t n, size = 0;
        FILE *f;
        int r;

        accounts = run_accounts(run, &n);
        if (!accounts[0].tenant)
                return 0;
        line = strstr(*text, "\nConditionUser=");
        if (!line)
                return log_error_errno(-EINVAL, "The unit template docker.service.in has no ConditionUser= line");
        line++;
        end = strchrnul(line, '\n');
        r = tenants_removed_users(run_root_fd(run), run_config(run), &removed);
        if (r < 0)
                return log_error_errno(r, "Failed to read the record of the tenants set up: %m");
        f = open_memstream(&out, &size);
        if (!f)
                return -ENOMEM;
        fwrite(*text, 1, (size_t) (line - *text), f);
        for (size_t i = 0; i < n; i++)
                fprintf(f, "ConditionUser=|%s\n", accounts[i].name);
        /* A removed tenant's Docker keeps starting until it is retired (steps/tenants/). */
        for (char **u = removed; *u; u++)
                fprintf(f, "ConditionUser=|%s\n", *u);
        fputs(*end ? end + 1 : end, f);
        if (fclose(f) != 0 || !out)
                return -ENOMEM;
        free(*text);
        *text = TAKE_PTR(out);
        return 0;
}

/* text without the lines that say whom the unit is for (ConditionUser=, Description=, comments), malloc'd. */
static char *without_users(const char *text) {
        char *out = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&out, &size);

        if (!f)
                return NULL;
        for (const char *p = text; *p;) {
                const char *end = strchrnul(p, '\n');
                if (!startswith(p, "ConditionUser=") && !startswith(p, "Description=") && *p != '#')
                        fwrite(p, 1, (size_t) (end - p) + (*end ? 1 : 0), f);
                p = *end ? end + 1 : end;
        }
        if (fclose(f) != 0) {
                free(out);
                return NULL;
        }
        return out;
}

bool unit_differs_in_users_only(const char *old, const char *new) {
        _cleanup_free_ char *a = NULL, *b = NULL;

        if (!old || streq(old, new))
                return false;
        a = without_users(old);
        b = without_users(new);
        return a && b && streq(a, b);
}

/*
 * With tenants, a tenant added or removed changes only the unit's
 * ConditionUser= lines, which systemd checks when a unit starts, and the
 * first tenants its Description= and a comment too (they named the CI
 * user before): the
 * other tenants' running daemons (and their jobs) need no restart for it.
 * Any other change of the unit owes every tenant's daemon its restart.
 */
static const char *unit_restart_marker(StepRun *run, const char *text) {
        _cleanup_free_ char *old = NULL;
        size_t n;

        if (!run_accounts(run, &n)[0].tenant)
                return MARKER_DAEMON_RESTART;
        if (read_file_at(run_root_fd(run), USER_UNIT_PATH, RESOLVE_POLICY_IN_ROOT, 1024 * 1024, &old, NULL) < 0)
                return MARKER_DAEMON_RESTART;
        return unit_differs_in_users_only(old, text) ? NULL : MARKER_DAEMON_RESTART;
}

/*
 * Who the unit is for, in its Description=: the CI user; with tenants the
 * same words whoever they are, so that a tenant added changes the
 * ConditionUser= lines alone (unit_restart_marker()).
 */
static const char *unit_users(StepRun *run) {
        size_t n;
        const Account *accounts = run_accounts(run, &n);

        return accounts[0].tenant ? "each tenant's user" : accounts[0].name;
}

/* The user unit and its enable link (the part "unit", host-wide). */
int daemon_unit_look(StepRun *run, Account *a) {
        DaemonState *st = run_state(run);
        _cleanup_free_ char *path_value = NULL, *text = NULL;
        const HostFacts *f = run_facts(run);
        int r;

        if (st->host_skip)
                return 0;
        if (fact_usable(run, st, "daemon.unit", f->dockerd_rootless_path, "dockerd-rootless.sh's path") &&
            fact_usable(run, st, "daemon.unit", f->rootlesskit_path, "rootlesskit's path") &&
            fact_usable(run, st, "daemon.unit", f->network_driver, "the network driver") &&
            fact_usable(run, st, "daemon.unit", f->storage_driver, "the storage driver")) {
                path_value = unit_search_path(f->rootlesskit_path);
                if (!path_value)
                        return -ENOMEM;

                UnitValue values[] = {
                        { "USER", unit_users(run) },
                        { "PATH", path_value },
                        { "NET", f->network_driver },
                        { "DOCKERD_ROOTLESS", f->dockerd_rootless_path },
                        { "STORAGE_DRIVER", f->storage_driver },
                };
                r = daemon_render("docker.service.in", values, ELEMENTSOF(values), &text);
                if (r >= 0)
                        r = unit_condition_users(run, &text);
                if (r < 0)
                        return r;
                r = item_file(run, &(FileWant) {
                        .id = "daemon.unit",
                        .path = USER_UNIT_PATH,
                        .text = text,
                        .what = "the CI user's Docker unit",
                        .marker = unit_restart_marker(run, text),
                        .hidden_in = st->host_hide,
                });
                if (r < 0)
                        return r;
        }
        r = item_symlink(run, &(SymlinkWant) {
                .id = "daemon.enable",
                .path = USER_UNIT_ENABLE_LINK,
                .target = USER_UNIT_PATH,
                .what = "enable the unit in user managers (only the CI user's runs it)",
                .hidden_in = st->host_hide,
        });
        if (r < 0)
                return r;
        st->link_changed = r > 0;
        return 0;
}

/*
 * The drop-ins of user@.service: cgroup delegation for every user manager
 * (units/user-delegate.conf.in; the part "delegate", host-wide), and the CI
 * user's manager ordered after the data mount (the part "mount-order", per
 * account). Either restarts a running user@UID (its marker; the
 * delegation's, every tenant's); for a planned account there is no manager
 * to restart, and no UID to name the second by.
 */
int daemon_delegate_look(StepRun *run, Account *a) {
        DaemonState *st = run_state(run);

        if (st->host_skip)
                return 0;
        return daemon_file(run, "user-delegate.conf.in", NULL, 0, &(FileWant) {
                .id = "daemon.delegate",
                .path = DELEGATE_DROPIN_PATH,
                .what = "cgroup delegation (" DELEGATED_CONTROLLERS ") for user managers:",
                .marker = st->any_known ? MARKER_USER_MANAGER_RESTART : NULL,
                .effects = EFFECT_SYSTEM_RELOAD,
                .hidden_in = st->host_hide,
        }, &st->dropins_changed);
}

int daemon_mount_order_look(StepRun *run, Account *a) {
        DaemonState *st = run_state(run);
        const Config *config = run_config(run);
        bool planned = a->state == ACCOUNT_PLANNED;
        _cleanup_free_ char *mount_path = NULL, *uid_s = NULL;
        int r;

        if (st->skip)
                return 0;
        if (planned) {
                item_finding_ex(run, &(Finding) {
                        .id = "daemon.mount-order",
                        .status = ITEM_CREATE,
                        .message = run_asprintf(run, "write /etc/systemd/system/user@UID.service.d/"
                                                "rootless-ci-mount.conf (RequiresMountsFor=%s), UID being %s's, "
                                                "chosen when the user is created", config->mount_point, a->name),
                        .hidden_in = st->hide,
                });
        } else if (!unit_value_is_plain(config->mount_point)) {
                item_finding(run, "daemon.mount-order", ITEM_FAIL,
                             "set MountPoint= to a path of letters, digits and / . _ + - only, then run rootless-ci apply",
                             "MountPoint=%s has characters that cannot stand unquoted in a unit file",
                             config->mount_point);
        } else {
                if (asprintf(&uid_s, "%u", (unsigned) a->uid) < 0 ||
                    asprintf(&mount_path, MOUNT_DROPIN_FMT,
                             (unsigned) a->uid) < 0)
                        return -ENOMEM;
                UnitValue values[] = {
                        { "UID", uid_s },
                        { "MOUNT_POINT", config->mount_point },
                };
                r = daemon_file(run, "user-mount.conf.in", values, ELEMENTSOF(values), &(FileWant) {
                        .id = "daemon.mount-order",
                        .path = mount_path,
                        .what = "ordering of the CI user's manager after the data mount:",
                        .marker = MARKER_USER_MANAGER_RESTART,
                        .effects = EFFECT_SYSTEM_RELOAD,
                }, &st->dropins_changed);
                if (r < 0)
                        return r;
        }
        return 0;
}

/*
 * What Delegate= is for, judged where it lands: on cgroup v2 the CI user's
 * manager offers its units (the daemon) every delegated controller. Its
 * cgroup.controllers lists what its parent enabled for it; read under the
 * root, no bus. A restart owed to user@UID (plan: apply restarts the
 * manager for a drop-in it writes) delegates what is missing now.
 */
int daemon_delegation_look(StepRun *run, Account *a) {
        _cleanup_free_ char *path = NULL, *have = NULL, *top = NULL;
        char missing[CONTROLLERS_MISSING_MAX], top_missing[CONTROLLERS_MISSING_MAX];
        CgroupHierarchy cgroup = run_facts(run)->cgroup;
        unsigned uid = (unsigned) a->uid;
        int r;

        if (cgroup != CGROUP_V2) {
                item_finding(run, "daemon.delegation", ITEM_SKIP, NULL, "%s",
                             cgroup == CGROUP_V1
                                     ? "cgroup v1: there is no controller to delegate (preflight.cgroup says which limits do not hold)"
                                     : "the delegation of cgroup controllers is checked on the live host");
                return 0;
        }
        if (asprintf(&path, "/sys/fs/cgroup/user.slice/user-%u.slice/user@%u.service/cgroup.controllers", uid, uid) < 0)
                return -ENOMEM;
        r = read_one_line_at(run_root_fd(run), path, &have);
        if (r == -ENOENT) {
                item_finding(run, "daemon.delegation", ITEM_SKIP, NULL,
                             "user@%u.service has no cgroup: it is not running (see daemon.user-manager)", uid);
                return 0;
        }
        if (r < 0)
                return log_error_errno(r, "Failed to read %s: %m", path);
        delegated_controllers_missing(have, missing);
        if (!missing[0]) {
                item_ok(run, "daemon.delegation",
                        "user@%u.service has the cgroup controllers " DELEGATED_CONTROLLERS
                        " delegated: docker run --memory, --cpus and --pids-limit hold", uid);
                return 0;
        }
        if (read_one_line_at(run_root_fd(run), "/sys/fs/cgroup/cgroup.controllers", &top) < 0)
                top = NULL;
        delegated_controllers_missing(top, top_missing);
        item_finding_ex(run, &(Finding) {
                .id = "daemon.delegation",
                .status = ITEM_FAIL,
                .message = run_asprintf(run, "user@%u.service lacks the cgroup controllers %s (its "
                                        "cgroup.controllers: \"%s\"): docker run limits on them do not hold", uid,
                                        missing, have),
                .fix = top_missing[0]
                               ? run_asprintf(run, "boot a kernel that offers the %s controller (preflight.cgroup "
                                              "warns of it)", top_missing)
                               : run_asprintf(run, "systemctl daemon-reload, then systemctl restart user@%u.service: "
                                              "a manager takes Delegate= from " DELEGATE_DROPIN_PATH " only when it "
                                              "starts (the restart stops the CI user's Docker and its running jobs)",
                                              uid),
                .in_plan = owed(run, MARKER_USER_MANAGER_RESTART)
                                   ? &(Verdict) { ITEM_CHANGE,
                                                  run_asprintf(run, "delegate %s to user@%u.service (its restart for "
                                                               "the new drop-ins does)", missing, uid), NULL }
                                   : NULL,
        });
        return 0;
}

/* ---- the AppArmor profile ---------------------------------------------------------------------------- */

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
        return daemon_render("apparmor-rootlesskit.in", values, ELEMENTSOF(values), ret);
}

/* Take our profile out of the kernel (live) and off the disk. c->data: what it reports when done (a run text). */
static int remove_our_apparmor_profile(StepRun *run, Change *c) {
        _cleanup_free_ char *name = NULL, *shown = run_shown(run, APPARMOR_PROFILE_PATH);
        _cleanup_close_ int parent = -1, dfd = -1;
        int r;

        if (!shown)
                return -ENOMEM;
        if (run_live(run)) {
                _cleanup_close_ int fd = open("/sys/kernel/security/apparmor/.remove", O_WRONLY | O_CLOEXEC);
                if (fd >= 0 && write(fd, APPARMOR_PROFILE_NAME, strlen(APPARMOR_PROFILE_NAME)) < 0 && errno != ENOENT)
                        return log_error_errno(negative_errno(), "Failed to unload the AppArmor profile %s: %m",
                                               APPARMOR_PROFILE_NAME);
        }
        parent = safe_open_parent(run_root_fd(run), APPARMOR_PROFILE_PATH, RESOLVE_POLICY_IN_ROOT, &name);
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
        change_done(run, c->id, ITEM_REMOVE, "%s", (const char *) c->data);
        return 0;
}

/*
 * Another profile attaches to rootlesskit already (Ubuntu's apparmor ships
 * one, Docker's rootless extras another): a second for the same path makes
 * exec ambiguous, so it is used and ours is not written. Ours, written by
 * an earlier run, is removed, but only while it is byte for byte what
 * rootless-ci writes; edited, it is the operator's, and left.
 */
static int use_existing_apparmor_profile(StepRun *run, const DaemonState *st, const char *real,
                                         const AppArmorProfile *other) {
        _cleanup_free_ char *ours = NULL, *with_abi = NULL, *without_abi = NULL,
                            *shown = run_shown(run, APPARMOR_PROFILE_PATH);
        size_t size = 0;
        int r;

        if (!shown)
                return -ENOMEM;
        r = read_file_at(run_root_fd(run), APPARMOR_PROFILE_PATH, RESOLVE_POLICY_IN_ROOT, 256 * 1024, &ours, &size);
        if (r == -ENOENT) {
                if (other->userns) {
                        item_finding_ex(run, &(Finding) {
                                .id = "daemon.apparmor",
                                .status = ITEM_OK,
                                .message = run_asprintf(run, "rootlesskit (%s) has the AppArmor profile %s (%s), "
                                                        "which allows user namespaces: rootless-ci uses it and "
                                                        "writes none of its own", real, other->name, other->file),
                                .hidden_in = st->host_hide,
                        });
                        return 0;
                }
                item_finding_ex(run, &(Finding) {
                        .id = "daemon.apparmor",
                        .status = ITEM_WARN,
                        .message = run_asprintf(run, "rootlesskit (%s) has the AppArmor profile %s (%s): rootless-ci "
                                                "uses it and writes none of its own, but its block in that file has "
                                                "no userns rule (an include may give it)", real, other->name,
                                                other->file),
                        .fix = run_asprintf(run, "if the daemon cannot create its user namespace, add \"userns,\" to "
                                            "profile %s (in %s, or its local/ include), then reload it: "
                                            "apparmor_parser -r %s", other->name, other->file, other->file),
                        .hidden_in = st->host_hide,
                });
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
                item_finding_ex(run, &(Finding) {
                        .id = "daemon.apparmor",
                        .status = ITEM_FAIL,
                        .message = run_asprintf(run, "two AppArmor profiles attach to rootlesskit (%s): %s in %s, and "
                                                "%s, which differs from what rootless-ci writes (edited?) and is left "
                                                "alone", real, other->name, other->file, shown),
                        .fix = run_asprintf(run, "keep one profile for %s: remove %s (apparmor_parser -R %s, then rm "
                                            "it) or profile %s in %s, then run rootless-ci apply", real, shown, shown,
                                            other->name, other->file),
                        .hidden_in = st->host_hide,
                });
                return 0;
        }
        item_change(run, &(Change) {
                .id = "daemon.apparmor",
                .state = ITEM_REMOVE,
                .plan = run_asprintf(run, "remove rootless-ci's AppArmor profile %s: profile %s (%s) attaches to %s",
                                     shown, other->name, other->file, real),
                .problem = run_asprintf(run, "two AppArmor profiles attach to rootlesskit (%s): %s in %s, and "
                                        "rootless-ci's %s", real, other->name, other->file, shown),
                .check_fix = "rootless-ci apply (it removes its own profile)",
                .hidden_in = st->host_hide,
                .apply = remove_our_apparmor_profile,
                .data = run_asprintf(run, "removed rootless-ci's AppArmor profile %s: profile %s (%s) attaches to %s "
                                     "and is used", shown, other->name, other->file, real),
        });
        return 0;
}

/* Our profile, where one is needed and no other attaches to rootlesskit (the part "apparmor", host-wide). */
int daemon_apparmor_look(StepRun *run, Account *a) {
        _cleanup_(apparmor_profile_done) AppArmorProfile other = {};
        _cleanup_free_ char *text = NULL, *real = NULL;
        const HostFacts *f = run_facts(run);
        DaemonState *st = run_state(run);
        int r;

        if (st->host_skip)
                return 0;
        if (!f->apparmor_restricts_userns) {
                item_finding_ex(run, &(Finding) {
                        .id = "daemon.apparmor",
                        .status = ITEM_OK,
                        .message = "no AppArmor profile needed (unprivileged user namespaces are not restricted)",
                        .hidden_in = st->host_hide,
                });
                return 0;
        }
        if (!fact_usable(run, st, "daemon.apparmor", f->rootlesskit_path, "rootlesskit's path"))
                return 0;
        /* AppArmor attaches a profile by the binary's real path: /usr/bin/rootlesskit may be a symlink. */
        r = resolve_in_root(run_root_fd(run), f->rootlesskit_path, &real);
        if (r < 0)
                return log_error_errno(r, "Failed to resolve %s for its AppArmor profile: %m", f->rootlesskit_path);
        r = apparmor_find_attaching(run_root_fd(run), real, APPARMOR_PROFILE_PATH, &other);
        if (r < 0)
                return log_error_errno(r, "Failed to read the AppArmor profiles in /etc/apparmor.d: %m");
        if (r > 0)
                return use_existing_apparmor_profile(run, st, real, &other);
        r = render_apparmor_profile(real, apparmor_has_abi_4_0(run_root_fd(run)), &text);
        if (r < 0)
                return r;
        r = item_file(run, &(FileWant) {
                .id = "daemon.apparmor",
                .path = APPARMOR_PROFILE_PATH,
                .text = text,
                .what = "AppArmor profile allowing user namespaces for rootlesskit only:",
                .hidden_in = st->host_hide,
        });
        if (r < 0)
                return r;
        st->apparmor_written = r > 0;
        return 0;
}
