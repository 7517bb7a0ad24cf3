/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "steps/user/shadowlock.h"
#include "steps/user/user.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/exec.h"
#include "util/fs.h"
#include "util/killpoint.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/root-sockets.h"

/*
 * The user step's account part: the CI user's passwd entry, judged (adopted
 * when it is a regular account of its own) or created with shadow's useradd,
 * and the groups whose members are root, or one step from it.
 */

typedef struct PrivilegedGroup {
        const char *name;
        const char *reason;
} PrivilegedGroup;

/* Groups whose members are root, or one step from it. */
static const PrivilegedGroup privileged_groups[] = {
        { "root", "membership there is root: the group owns system files" },
        { "sudo", "membership there is root: sudo rules grant the group root" },
        { "wheel", "membership there is root: sudo and su rules grant the group root" },
        { "admin", "membership there is root: sudo rules grant the group root" },
        { "adm", "the group reads the system logs and is trusted by admin tools" },
        { "staff", "membership there is root: the group writes /usr/local, which is on root's PATH" },
        { "shadow", "the group reads the password hashes in /etc/shadow" },
        { "docker", "membership there is root: the group can use the root Docker daemon" },
        { "lxd", "membership there is root: the group controls the root LXD daemon" },
        { "incus-admin", "membership there is root: the group controls the root Incus daemon" },
        { "libvirt", "membership there is root: the group controls the root libvirt daemon" },
        { "kvm", "the group opens /dev/kvm directly" },
        { "disk", "membership there is root: the group reads and writes raw disks" },
};

/* /etc/login.defs into s->defs; report: say what of it is unusable (the host-wide part does, once). */
int user_load_login_defs(StepRun *run, UserState *s, bool report) {
        _cleanup_free_ char *text = NULL, *p = NULL;
        int r;

        login_defs_init(&s->defs);
        r = read_file_at(run_root_fd(run), "/etc/login.defs", RESOLVE_POLICY_IN_ROOT, 1024 * 1024, &text, NULL);
        if (r == -ENOENT) {
                log_debug("No /etc/login.defs; using shadow's defaults.");
                return 0;
        }
        p = run_shown(run, "/etc/login.defs");
        if (r < 0)
                return log_error_errno(r, "Failed to read %s: %m", strempty(p));
        login_defs_parse(&s->defs, text);
        if (report && s->defs.bad_line > 0)
                item_finding(run, "user.login-defs", ITEM_WARN, NULL,
                             "%s:%u: the value of %s is not a number; shadow's default is used", strempty(p),
                             s->defs.bad_line, s->defs.bad_key);
        return 0;
}

int user_reload_db(StepRun *run, UserState *s) {
        int r;

        userdb_done(&s->db);
        s->pw = NULL;
        r = userdb_load(&s->db, run_root_fd(run));
        if (r < 0)
                return r;
        s->pw = userdb_find_user(&s->db, s->name);
        return 0;
}

static bool is_privileged_gid(const UserState *s, gid_t gid, const Privileged **ret) {
        for (size_t i = 0; i < s->n_priv; i++)
                if (s->priv[i].gid != (gid_t) -1 && s->priv[i].gid == gid) {
                        if (ret)
                                *ret = &s->priv[i];
                        return true;
                }
        return false;
}

/* The privileged group a group line stands for: by its GID, else (no such GID known) by its name. NULL: harmless. */
const Privileged *user_privileged_of_group(const UserState *s, const char *name, gid_t gid) {
        const Privileged *p;

        if (is_privileged_gid(s, gid, &p))
                return p;
        for (size_t i = 0; i < s->n_priv; i++)
                if (s->priv[i].gid == (gid_t) -1 && streq(s->priv[i].name, name))
                        return &s->priv[i];
        return NULL;
}

/* One privileged group, unless its GID (or, for a group that does not exist, its name) is listed already. 1: added. */
static int add_privileged(UserState *s, const char *name, gid_t gid, const char *reason) {
        Privileged *n;

        for (size_t k = 0; k < s->n_priv; k++)
                if (gid != (gid_t) -1 ? s->priv[k].gid == gid : streq(s->priv[k].name, name))
                        return 0;
        n = ARRAY_PUSH(s->priv, s->n_priv);
        if (!n)
                return -ENOMEM;
        *n = (Privileged) { .name = strdup(name), .gid = gid, .reason = strdup(reason) };
        return n->name && n->reason ? 1 : -ENOMEM;
}

/*
 * Privileged groups: the fixed list, and the groups that own a root
 * daemon's socket. What makes a group privileged is its GID (the kernel
 * knows no names): any other line with that GID ("disk2:x:6:") is judged
 * the same (user_privileged_of_group()).
 */
int user_collect_privileged(StepRun *run, UserState *s) {
        for (size_t i = 0; i < ELEMENTSOF(privileged_groups) + n_root_daemon_sockets; i++) {
                const GroupEntry *g = NULL;
                _cleanup_free_ char *name = NULL, *reason = NULL;
                gid_t gid = (gid_t) -1;
                bool found = false;
                int r;

                if (i < ELEMENTSOF(privileged_groups)) {
                        /* Each GID a line of that name carries (two "docker" lines may differ): all privileged. */
                        for (size_t k = 0; k < s->db.n_groups; k++) {
                                if (!streq(s->db.groups[k].name, privileged_groups[i].name))
                                        continue;
                                r = add_privileged(s, privileged_groups[i].name, s->db.groups[k].gid,
                                                   privileged_groups[i].reason);
                                if (r < 0)
                                        return r;
                                found = true;
                        }
                        if (found)
                                continue;
                        name = strdup(privileged_groups[i].name);
                        reason = strdup(privileged_groups[i].reason);
                } else {
                        const char *sock = root_daemon_sockets[i - ELEMENTSOF(privileged_groups)];
                        _cleanup_close_ int fd = safe_openat(run_root_fd(run), sock, O_PATH | O_NOFOLLOW, 0,
                                                             RESOLVE_POLICY_IN_ROOT);
                        struct stat st;

                        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode) || st.st_uid != 0 ||
                            st.st_gid == 0 || !(st.st_mode & 0020))
                                continue;
                        g = userdb_find_gid(&s->db, st.st_gid);
                        gid = st.st_gid;
                        if (asprintf(&name, "%s", g ? g->name : "") < 0 ||
                            asprintf(&reason, "membership there is root: the group can write %s, the socket of a "
                                     "daemon running as root", sock) < 0)
                                return -ENOMEM;
                        if (!g) {
                                free(name);
                                if (asprintf(&name, "%u", (unsigned) gid) < 0)
                                        return -ENOMEM;
                        }
                }
                if (!name || !reason)
                        return -ENOMEM;
                r = add_privileged(s, name, gid, reason);
                if (r < 0)
                        return r;
        }
        return 0;
}

/*
 * With tenants (issue 16): every other tenant's primary group is one this
 * user must not be in. What is open to that group is that tenant's (its
 * Docker data root, 0710 with its group at every daemon start; its agent's
 * configuration and token, 0640). A membership is removed as a privileged
 * one is; a shared primary group is refused. Not root's: not exported as
 * a privileged GID.
 */
const Account *user_next_other_tenant(StepRun *run, const UserState *s, size_t *i) {
        const Account *accounts;
        size_t n;

        if (!s->account->tenant)
                return NULL;
        accounts = run_accounts(run, &n);
        while (*i < n) {
                const Account *o = &accounts[(*i)++];
                if (o != s->account)
                        return o;
        }
        return NULL;
}

int user_collect_tenant_groups(StepRun *run, UserState *s) {
        const Account *o;
        int r;

        for (size_t i = 0; (o = user_next_other_tenant(run, s, &i));) {
                /* Its primary group, or the group of its name that useradd will give it. */
                const PasswdEntry *pw = userdb_find_user(&s->db, o->name);
                const GroupEntry *g = pw ? userdb_find_gid(&s->db, pw->gid) : userdb_find_group(&s->db, o->name);
                _cleanup_free_ char *reason = NULL;

                if (asprintf(&reason, "the group of %s, tenant %s's user: its Docker data and its agent's "
                             "configuration are open to that group", o->name, o->tenant) < 0)
                        return -ENOMEM;
                r = add_privileged(s, g ? g->name : o->name, g ? g->gid : pw ? pw->gid : (gid_t) -1, reason);
                if (r < 0)
                        return r;
                if (r > 0)
                        s->priv[s->n_priv - 1].other_tenant = true;
        }
        return 0;
}

/* The files useradd locks, as shadow's tools do. */
static const char *const useradd_files[] = { "passwd", "shadow", "group", "gshadow" };

static int run_useradd(StepRun *run, UserState *s) {
        _cleanup_free_ char *useradd = NULL, *err = NULL;
        const char *root = run_root(run);
        bool live = run_live(run);
        unsigned long long t0;
        const char *argv[32];
        size_t n = 0;
        int r, status;

        /* The host's binary, from the system directories; with --root it chroots into the tree itself. */
        r = exec_find_program("useradd", &useradd);
        if (r == -ENOENT)
                return log_error_errno(r, "useradd not found (install the passwd package).");
        if (r < 0)
                return log_error_errno(r, "Failed to look for useradd: %m");

        if (!live) {
                _cleanup_free_ char *msg = NULL;

                /* The engine refused an untrusted tree before any step; the same judgement right before useradd chroots there. */
                r = config_check_root_tree(run_root_fd(run), root, &msg);
                if (r == -ERCI_USAGE) {
                        change_failed(run, "user.account",
                                      "make the tree, its etc, usr and library directories root's and writable by "
                                      "root only, then run rootless-ci apply --root again", "%s", msg);
                        return log_error_errno(r, "%s", msg);
                }
                if (r < 0)
                        return log_error_errno(r, "Failed to look at the tree %s: %m", root);
        }

        argv[n++] = useradd;
        if (!live) {
                argv[n++] = "--root";
                argv[n++] = root;
        }
        argv[n++] = "--create-home";
        argv[n++] = "--home-dir";
        argv[n++] = s->home;
        argv[n++] = "--shell";
        argv[n++] = "/bin/bash";
        argv[n++] = "--comment";
        argv[n++] = "CI builds (rootless-ci)";
        if (s->adopt_group) {
                argv[n++] = "--gid";
                argv[n++] = s->name;
        } else
                argv[n++] = "--user-group";
        /* Subordinate IDs are ours to allocate (see ids.c); the home is private. */
        argv[n++] = "-K";
        argv[n++] = "SUB_UID_COUNT=0";
        argv[n++] = "-K";
        argv[n++] = "SUB_GID_COUNT=0";
        argv[n++] = "-K";
        argv[n++] = "HOME_MODE=0700";
        argv[n++] = "--";
        argv[n++] = s->name;
        argv[n] = NULL;

        /*
         * A useradd killed while it held shadow's locks left them, and the
         * link source FILE.PID of each: the next useradd removes a dead
         * process's lock itself but leaves that file in /etc for good.
         */
        (void) shadow_lock_remove_stale(run_root_fd(run), useradd_files, ELEMENTSOF(useradd_files));
        log_info("Creating user %s: %s%s%s ... %s", s->name, useradd, live ? "" : " --root ", live ? "" : root,
                 s->name);
        killpoint("user-before-useradd");
        t0 = now_usec();
        r = exec_run(argv, &status, &err);
        if (r < 0)
                return log_error_errno(r, "Failed to run %s: %m", useradd);
        log_debug("Timing: useradd %.1f ms", ms_since_usec(t0));
        if (status != 0)
                return log_error_errno(-ERCI_FAILED, "useradd exited with status %d; user %s was not created: %s",
                                       status, s->name, err && *err ? err : "(no message)");
        return 0;
}

/* The account as the files say it now. */
static int account_found(UserState *s) {
        Account *a = s->account;

        if (free_and_strdup(&a->home, s->pw->home) < 0)
                return -ENOMEM;
        a->state = ACCOUNT_KNOWN;
        a->uid = s->pw->uid;
        a->gid = s->pw->gid;
        return 0;
}

/* apply: useradd, then the account as the files say it. */
static int account_create(StepRun *run, Change *c) {
        UserState *s = run_state(run);
        _cleanup_free_ char *fix = NULL;
        int r;

        /* Not planned any more: created now, or failed (the step stops). */
        s->account->state = ACCOUNT_UNUSABLE;
        r = run_useradd(run, s);
        if (r < 0) {
                if (asprintf(&fix, "fix what useradd reported (see the log), or create %s yourself (useradd "
                             "--create-home --user-group --shell /bin/bash %s); then run rootless-ci apply", s->name,
                             s->name) < 0)
                        return -ENOMEM;
                change_failed(run, c->id, fix, "creating user %s failed (see the log)", s->name);
                s->stopped = true;
                return 0;
        }
        killpoint("user-after-useradd");
        r = user_reload_db(run, s);
        if (r < 0)
                return log_error_errno(r, "Failed to read the account files after useradd: %m");
        if (!s->pw || s->pw->uid < s->defs.uid_min) {
                if (asprintf(&fix, "compare getent passwd %s with UID_MIN in /etc/login.defs; remove the account "
                             "(userdel %s) and run rootless-ci apply, or create a regular one yourself", s->name,
                             s->name) < 0)
                        return -ENOMEM;
                change_failed(run, c->id, fix, "useradd succeeded but %s is not a regular account in /etc/passwd",
                              s->name);
                s->stopped = true;
                return 0;
        }
        change_done(run, c->id, ITEM_CREATE, "created user %s (UID %u, GID %u, home %s, shell /bin/bash)", s->name,
                    (unsigned) s->pw->uid, (unsigned) s->pw->gid, s->pw->home);
        return account_found(s);
}

/* A refusal of the account: reported, and nothing more is decided on it. */
#define REFUSE(run, s, id, fix, ...)                                  \
        do {                                                          \
                item_finding(run, id, ITEM_FAIL, fix, __VA_ARGS__);   \
                (s)->stopped = true;                                  \
                return 0;                                             \
        } while (0)

/* An existing account: adopted unless it is a system, shared or privileged one, or has no home of its own. */
static int judge_existing(StepRun *run, UserState *s) {
        const PasswdEntry *pw = s->pw, *other;
        const Privileged *p;
        _cleanup_free_ char *fix = NULL;

        if (pw->uid == 0 || pw->uid < s->defs.uid_min) {
                if (asprintf(&fix, "choose a regular account (UID >= %u) with [User] Name= or --user=, or "
                             "remove the account %s so rootless-ci creates a regular one",
                             s->defs.uid_min, s->name) < 0)
                        return -ENOMEM;
                REFUSE(run, s, "user.account", fix,
                       "%s is a system account (UID %u, below UID_MIN %u of /etc/login.defs); the rootless daemon "
                       "needs a regular account: a user manager with linger, subordinate IDs of its own",
                       s->name, (unsigned) pw->uid, s->defs.uid_min);
        }
        if (pw->uid == 65534)
                REFUSE(run, s, "user.account", "choose another account with [User] Name= or --user=",
                       "%s has UID 65534, the kernel's overflow UID (\"nobody\"); files of every unmapped owner "
                       "show as it", s->name);
        other = userdb_find_uid(&s->db, pw->uid, pw);
        if (other) {
                if (asprintf(&fix, "give %s a UID of its own (usermod -u) or choose another account", s->name) < 0)
                        return -ENOMEM;
                REFUSE(run, s, "user.account", fix, "%s shares UID %u with %s: builds would run as %s too", s->name,
                       (unsigned) pw->uid, other->name, other->name);
        }
        if (is_privileged_gid(s, pw->gid, &p) && p->other_tenant)
                REFUSE(run, s, "user.primary-group",
                       run_asprintf(run, "give each tenant's user a primary group no other tenant's user has "
                                    "(groupadd GROUP && usermod -g GROUP %s), then run rootless-ci apply", s->name),
                       "the primary group of %s is %s (GID %u), %s: each tenant's data would be open to the other",
                       s->name, p->name, (unsigned) pw->gid, p->reason);
        if (is_privileged_gid(s, pw->gid, &p)) {
                if (asprintf(&fix, "give %s a primary group of its own: groupadd %s && usermod -g %s %s", s->name,
                             s->name, s->name, s->name) < 0)
                        return -ENOMEM;
                REFUSE(run, s, "user.primary-group", fix,
                       "the primary group of %s is %s (GID %u): %s; rootless-ci does not change a primary group by "
                       "itself", s->name, p->name, (unsigned) pw->gid, p->reason);
        }
        if (!valid_absolute_path(pw->home) || streq(pw->home, "/")) {
                if (asprintf(&fix, "usermod --home /home/%s --move-home %s", s->name, s->name) < 0)
                        return -ENOMEM;
                REFUSE(run, s, "user.account", fix,
                       "%s has the home \"%s\"; rootless-ci needs a home directory of its own", s->name, pw->home);
        }
        item_ok(run, "user.account", "%s exists (UID %u, GID %u, home %s): adopted", s->name, (unsigned) pw->uid,
                (unsigned) pw->gid, pw->home);
        return account_found(s);
}

/*
 * The account. Refused, before anything changes: UID 0 or below UID_MIN (a
 * system account), the overflow UID, a UID shared with another account, a
 * privileged primary group, a home that is not an absolute path. A missing
 * one is a Change: apply creates it (account_create).
 */
int user_look_account(StepRun *run, UserState *s) {
        _cleanup_free_ char *fix = NULL;
        const GroupEntry *g;

        if (s->pw)
                return judge_existing(run, s);

        /* Missing: useradd --user-group would fail on an existing group of the same name. */
        g = userdb_find_group(&s->db, s->name);
        if (g) {
                bool others = false;
                for (char **m = g->members; *m; m++)
                        if (!streq(*m, s->name))
                                others = true;
                if (g->gid < s->defs.gid_min || others || is_privileged_gid(s, g->gid, NULL)) {
                        if (asprintf(&fix, "remove the group %s (groupdel %s), or create the user %s yourself with "
                                     "a primary group of its own", s->name, s->name, s->name) < 0)
                                return -ENOMEM;
                        REFUSE(run, s, "user.account", fix,
                               "user %s is missing and a group %s (GID %u) exists that is %s; it cannot become the "
                               "new user's own group", s->name, s->name, (unsigned) g->gid,
                               others ? "shared with other users" : "a system or privileged group");
                }
                s->adopt_group = true;
        }

        free(s->home);
        if (asprintf(&s->home, "/home/%s", s->name) < 0)
                return -ENOMEM;
        {
                _cleanup_close_ int fd = safe_openat(run_root_fd(run), s->home, O_PATH | O_NOFOLLOW, 0,
                                                     RESOLVE_POLICY_IN_ROOT);
                if (fd >= 0) {
                        _cleanup_free_ char *hp = run_shown(run, s->home);
                        if (asprintf(&fix, "move %s away, or create the user %s yourself", strempty(hp), s->name) < 0)
                                return -ENOMEM;
                        REFUSE(run, s, "user.account", fix,
                               "user %s is missing but %s exists: rootless-ci will not hand an existing directory "
                               "to a new account", s->name, strempty(hp));
                }
        }

        item_change(run, &(Change) {
                .id = "user.account",
                .state = ITEM_CREATE,
                .plan = run_asprintf(run, "create user %s (%s, home %s, shell /bin/bash)", s->name,
                                     s->adopt_group ? "primary group: the existing group of that name"
                                                    : "its own group",
                                     s->home),
                .apply = account_create,
        });
        /* Until apply has created it: planned (plan and check go on with it as the user to be). */
        if (free_and_strdup(&s->account->home, s->home) < 0)
                return -ENOMEM;
        s->account->state = ACCOUNT_PLANNED;
        return 0;
}
