/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "steps/files.h"
#include "steps/steps.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/fs.h"
#include "steps/user/groupfile.h"
#include "util/killpoint.h"
#include "util/log.h"
#include "steps/user/logindefs.h"
#include "util/macro.h"
#include "util/root-sockets.h"
#include "steps/user/shadowlock.h"
#include "util/exec.h"
#include "steps/user/subid-plan.h"
#include "steps/user/sudoers.h"
#include "util/userdb.h"

/*
 * Step 3, the CI user: a regular account (created with shadow's useradd when
 * missing, adopted when it exists), a subordinate UID and GID range of its
 * own, no membership in a group that leads to root, no sudoers rule.
 *
 * Everything is read from the files below ctx->root, so plan and check work
 * on an offline tree and in tests. Edits of /etc/subuid, /etc/subgid,
 * /etc/group and /etc/gshadow are made here, as text (every other line kept
 * byte for byte), under the same locks shadow's tools take, and written
 * atomically with the file's own mode and owner.
 */

#define ACCOUNT_FILE_MAX (64 * 1024 * 1024)

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

typedef struct Privileged {
        char *name;
        gid_t gid;          /* (gid_t) -1 if the group does not exist */
        char *reason;
} Privileged;

typedef struct UserStep {
        Context *ctx;
        const char *name;
        LoginDefs defs;
        UserDb db;
        const PasswdEntry *pw;       /* NULL: does not exist (yet) */
        Privileged *priv;
        size_t n_priv;
} UserStep;

static void user_step_done(UserStep *s) {
        userdb_done(&s->db);
        for (size_t i = 0; i < s->n_priv; i++) {
                free(s->priv[i].name);
                free(s->priv[i].reason);
        }
        free(s->priv);
}

/* The path as the host sees it, for messages. */
static char *host_path(const Context *ctx, const char *path) {
        return path_join_root(ctx->root, path);
}

static int load_login_defs(UserStep *s) {
        _cleanup_free_ char *text = NULL, *p = NULL;
        int r;

        login_defs_init(&s->defs);
        r = read_file_at(s->ctx->root_fd, "/etc/login.defs", RESOLVE_POLICY_IN_ROOT, 1024 * 1024, &text, NULL);
        if (r == -ENOENT) {
                log_debug("No /etc/login.defs; using shadow's defaults.");
                return 0;
        }
        p = host_path(s->ctx, "/etc/login.defs");
        if (r < 0)
                return log_error_errno(r, "Failed to read %s: %m", strempty(p));
        login_defs_parse(&s->defs, text);
        if (s->defs.bad_line > 0)
                report_item(s->ctx, "user.login-defs", ITEM_WARN, NULL,
                            "%s:%u: the value of %s is not a number; shadow's default is used", strempty(p),
                            s->defs.bad_line, s->defs.bad_key);
        return 0;
}

static int reload_userdb(UserStep *s) {
        int r;

        userdb_done(&s->db);
        s->pw = NULL;
        r = userdb_load(&s->db, s->ctx->root_fd);
        if (r < 0)
                return r;
        s->pw = userdb_find_user(&s->db, s->name);
        return 0;
}

static int run_useradd(UserStep *s, const char *home, bool adopt_group) {
        _cleanup_free_ char *useradd = NULL, *err = NULL;
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

        if (!s->ctx->live) {
                _cleanup_free_ char *msg = NULL;

                /* The engine refused an untrusted tree before any step; the same judgement right before useradd chroots there. */
                r = config_check_root_tree(s->ctx->root_fd, s->ctx->root, &msg);
                if (r == -ERCI_USAGE) {
                        report_item(s->ctx, "user.account", ITEM_FAIL,
                                    "make the tree, its etc, usr and library directories root's and writable by root "
                                    "only, then run rootless-ci apply --root again", "%s", msg);
                        return log_error_errno(r, "%s", msg);
                }
                if (r < 0)
                        return log_error_errno(r, "Failed to look at the tree %s: %m", s->ctx->root);
        }

        argv[n++] = useradd;
        if (!s->ctx->live) {
                argv[n++] = "--root";
                argv[n++] = s->ctx->root;
        }
        argv[n++] = "--create-home";
        argv[n++] = "--home-dir";
        argv[n++] = home;
        argv[n++] = "--shell";
        argv[n++] = "/bin/bash";
        argv[n++] = "--comment";
        argv[n++] = "CI builds (rootless-ci)";
        if (adopt_group) {
                argv[n++] = "--gid";
                argv[n++] = s->name;
        } else
                argv[n++] = "--user-group";
        /* Subordinate IDs are ours to allocate (see user_ensure_subids); the home is private. */
        argv[n++] = "-K";
        argv[n++] = "SUB_UID_COUNT=0";
        argv[n++] = "-K";
        argv[n++] = "SUB_GID_COUNT=0";
        argv[n++] = "-K";
        argv[n++] = "HOME_MODE=0700";
        argv[n++] = "--";
        argv[n++] = s->name;
        argv[n] = NULL;

        log_info("Creating user %s: %s%s%s ... %s", s->name, useradd, s->ctx->live ? "" : " --root ",
                 s->ctx->live ? "" : s->ctx->root, s->name);
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

static bool is_privileged_gid(const UserStep *s, gid_t gid, const Privileged **ret) {
        for (size_t i = 0; i < s->n_priv; i++)
                if (s->priv[i].gid != (gid_t) -1 && s->priv[i].gid == gid) {
                        if (ret)
                                *ret = &s->priv[i];
                        return true;
                }
        return false;
}

/*
 * The account. Refused, before anything changes: UID 0 or below UID_MIN (a
 * system account), the overflow UID, a UID shared with another account, a
 * privileged primary group, a home that is not an absolute path. Returns 1
 * when the account is usable (or will be created), 0 when it is not
 * (reported), < 0 on error.
 */
static int user_ensure_account(UserStep *s) {
        Context *ctx = s->ctx;
        const PasswdEntry *other;
        _cleanup_free_ char *home = NULL, *fix = NULL;
        bool adopt_group = false;
        int r;

        if (s->pw) {
                const PasswdEntry *pw = s->pw;

                if (pw->uid == 0 || pw->uid < s->defs.uid_min) {
                        if (asprintf(&fix, "choose a regular account (UID >= %u) with [User] Name= or --user=, or "
                                     "remove the account %s so rootless-ci creates a regular one",
                                     s->defs.uid_min, s->name) < 0)
                                return -ENOMEM;
                        report_item(ctx, "user.account", ITEM_FAIL, fix,
                                    "%s is a system account (UID %u, below UID_MIN %u of /etc/login.defs); the "
                                    "rootless daemon needs a regular account: a user manager with linger, "
                                    "subordinate IDs of its own",
                                    s->name, (unsigned) pw->uid, s->defs.uid_min);
                        return 0;
                }
                if (pw->uid == 65534) {
                        report_item(ctx, "user.account", ITEM_FAIL,
                                    "choose another account with [User] Name= or --user=",
                                    "%s has UID 65534, the kernel's overflow UID (\"nobody\"); files of every "
                                    "unmapped owner show as it", s->name);
                        return 0;
                }
                other = userdb_find_uid(&s->db, pw->uid, pw);
                if (other) {
                        if (asprintf(&fix, "give %s a UID of its own (usermod -u) or choose another account",
                                     s->name) < 0)
                                return -ENOMEM;
                        report_item(ctx, "user.account", ITEM_FAIL, fix,
                                    "%s shares UID %u with %s: builds would run as %s too", s->name,
                                    (unsigned) pw->uid, other->name, other->name);
                        return 0;
                }
                {
                        const Privileged *p;
                        if (is_privileged_gid(s, pw->gid, &p)) {
                                if (asprintf(&fix, "give %s a primary group of its own: groupadd %s && usermod -g %s %s",
                                             s->name, s->name, s->name, s->name) < 0)
                                        return -ENOMEM;
                                report_item(ctx, "user.primary-group", ITEM_FAIL, fix,
                                            "the primary group of %s is %s (GID %u): %s; rootless-ci does not change "
                                            "a primary group by itself", s->name, p->name, (unsigned) pw->gid,
                                            p->reason);
                                return 0;
                        }
                }
                if (!valid_absolute_path(pw->home) || streq(pw->home, "/")) {
                        if (asprintf(&fix, "usermod --home /home/%s --move-home %s", s->name, s->name) < 0)
                                return -ENOMEM;
                        report_item(ctx, "user.account", ITEM_FAIL, fix,
                                    "%s has the home \"%s\"; rootless-ci needs a home directory of its own",
                                    s->name, pw->home);
                        return 0;
                }
                report_state(ctx, "user.account", ITEM_OK,
                             "%s exists (UID %u, GID %u, home %s): adopted", s->name, (unsigned) pw->uid,
                             (unsigned) pw->gid, pw->home);
                return 1;
        }

        /* Missing: useradd --user-group would fail on an existing group of the same name. */
        {
                const GroupEntry *g = userdb_find_group(&s->db, s->name);
                if (g) {
                        bool others = false;
                        for (char **m = g->members; *m; m++)
                                if (!streq(*m, s->name))
                                        others = true;
                        if (g->gid < s->defs.gid_min || others || is_privileged_gid(s, g->gid, NULL)) {
                                if (asprintf(&fix, "remove the group %s (groupdel %s), or create the user %s "
                                             "yourself with a primary group of its own", s->name, s->name,
                                             s->name) < 0)
                                        return -ENOMEM;
                                report_item(ctx, "user.account", ITEM_FAIL, fix,
                                            "user %s is missing and a group %s (GID %u) exists that is %s; it "
                                            "cannot become the new user's own group", s->name, s->name,
                                            (unsigned) g->gid,
                                            others ? "shared with other users" : "a system or privileged group");
                                return 0;
                        }
                        adopt_group = true;
                }
        }

        if (asprintf(&home, "/home/%s", s->name) < 0)
                return -ENOMEM;
        {
                _cleanup_close_ int fd = safe_openat(ctx->root_fd, home, O_PATH | O_NOFOLLOW, 0, RESOLVE_POLICY_IN_ROOT);
                if (fd >= 0) {
                        _cleanup_free_ char *hp = host_path(ctx, home);
                        if (asprintf(&fix, "move %s away, or create the user %s yourself", strempty(hp), s->name) < 0)
                                return -ENOMEM;
                        report_item(ctx, "user.account", ITEM_FAIL, fix,
                                    "user %s is missing but %s exists: rootless-ci will not hand an existing "
                                    "directory to a new account", s->name, strempty(hp));
                        return 0;
                }
        }

        if (ctx->verb != VERB_APPLY) {
                report_state(ctx, "user.account", ITEM_CREATE,
                             "create user %s (%s, home %s, shell /bin/bash)", s->name,
                             adopt_group ? "primary group: the existing group of that name" : "its own group",
                             home);
                ctx->facts.user_planned = true;
                return free_and_strdup(&ctx->facts.user_home, home) < 0 ? -ENOMEM : 1;
        }

        r = run_useradd(s, home, adopt_group);
        if (r < 0) {
                if (asprintf(&fix, "fix what useradd reported (see the log), or create %s yourself (useradd "
                             "--create-home --user-group --shell /bin/bash %s); then run rootless-ci apply", s->name,
                             s->name) < 0)
                        return -ENOMEM;
                report_item(ctx, "user.account", ITEM_FAIL, fix, "creating user %s failed (see the log)", s->name);
                return 0;
        }
        killpoint("user-after-useradd");
        r = reload_userdb(s);
        if (r < 0)
                return log_error_errno(r, "Failed to read the account files after useradd: %m");
        if (!s->pw || s->pw->uid < s->defs.uid_min) {
                if (asprintf(&fix, "compare getent passwd %s with UID_MIN in /etc/login.defs; remove the account "
                             "(userdel %s) and run rootless-ci apply, or create a regular one yourself", s->name,
                             s->name) < 0)
                        return -ENOMEM;
                report_item(ctx, "user.account", ITEM_FAIL, fix,
                            "useradd succeeded but %s is not a regular account in /etc/passwd", s->name);
                return 0;
        }
        report_changed(ctx, "user.account", ITEM_CREATE, "created user %s (UID %u, GID %u, home %s, shell /bin/bash)",
                       s->name, (unsigned) s->pw->uid, (unsigned) s->pw->gid, s->pw->home);
        return 1;
}

/* One privileged group, unless its GID (or, for a group that does not exist, its name) is listed already. */
static int add_privileged(UserStep *s, const char *name, gid_t gid, const char *reason) {
        Privileged *n;

        for (size_t k = 0; k < s->n_priv; k++)
                if (gid != (gid_t) -1 ? s->priv[k].gid == gid : streq(s->priv[k].name, name))
                        return 0;
        n = reallocarray(s->priv, s->n_priv + 1, sizeof(Privileged));
        if (!n)
                return -ENOMEM;
        s->priv = n;
        n = &s->priv[s->n_priv];
        *n = (Privileged) { .name = strdup(name), .gid = gid, .reason = strdup(reason) };
        s->n_priv++;
        return n->name && n->reason ? 0 : -ENOMEM;
}

/*
 * Privileged groups: the fixed list, and the groups that own a root
 * daemon's socket. What makes a group privileged is its GID (the kernel
 * knows no names): any other line with that GID ("disk2:x:6:") is judged
 * the same (privileged_of_group()).
 */
static int collect_privileged(UserStep *s) {
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
                        _cleanup_close_ int fd = safe_openat(s->ctx->root_fd, sock, O_PATH | O_NOFOLLOW, 0,
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

typedef enum SubIdKind {
        SUBID_KIND_UID,
        SUBID_KIND_GID,
} SubIdKind;

static const char *subid_file_name(SubIdKind k) {
        return k == SUBID_KIND_UID ? "subuid" : "subgid";
}

/* Read /etc/<name> for editing: its text ("" if missing), mode and owner to keep. */
static int read_etc_file(Context *ctx, const char *name, char **ret_text, size_t *ret_size, struct stat *ret_st,
                         bool *ret_exists) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -1;
        int r;

        if (asprintf(&path, "/etc/%s", name) < 0)
                return -ENOMEM;
        fd = safe_openat(ctx->root_fd, path, O_PATH, 0, RESOLVE_POLICY_IN_ROOT);
        if (fd == -ENOENT) {
                *ret_text = strdup("");
                *ret_size = 0;
                *ret_exists = false;
                return *ret_text ? 0 : -ENOMEM;
        }
        if (fd < 0)
                return fd;
        if (fstat(fd, ret_st) < 0)
                return negative_errno();
        r = read_file_at(ctx->root_fd, path, RESOLVE_POLICY_IN_ROOT, ACCOUNT_FILE_MAX, ret_text, ret_size);
        if (r < 0)
                return r;
        *ret_exists = true;
        return 0;
}

static int write_etc_file(Context *ctx, const char *name, const char *text, size_t size, const struct stat *st,
                          bool exists, mode_t new_mode) {
        _cleanup_free_ char *path = NULL;

        if (asprintf(&path, "/etc/%s", name) < 0)
                return -ENOMEM;
        /* Keep the file's own mode and owner (gshadow is root:shadow 0640); a new file is root's. */
        return write_file_atomic(ctx->root_fd, path, text, size, exists ? (st->st_mode & 07777) : new_mode,
                                 exists ? st->st_uid : (uid_t) -1, exists ? st->st_gid : (gid_t) -1,
                                 RESOLVE_POLICY_IN_ROOT);
}

/* A line of a file for a message: printable, at most 60 characters. */
static void format_line(char *buf, size_t size, const char *text, size_t len) {
        size_t j = 0;

        if (len > 0 && text[len - 1] == '\n')
                len--;
        for (size_t i = 0; i < len && j + 4 < size; i++) {
                if (j >= 60) {
                        buf[j++] = '.';
                        buf[j++] = '.';
                        buf[j++] = '.';
                        break;
                }
                buf[j++] = (text[i] >= 0x20 && text[i] < 0x7f) ? text[i] : '?';
        }
        buf[j] = 0;
}

typedef struct SubIdResult {
        uint64_t start, count;
        bool settled;
        SubIdRange *ranges;      /* every range of the user's after the change, start:count among them */
        size_t n_ranges;
} SubIdResult;

static void subid_result_done(SubIdResult *r) {
        free(r->ranges);
        *r = (SubIdResult) {};
}

/*
 * /etc/subuid or /etc/subgid. Returns 1 when apply must take the account
 * locks and call again (locked=true), 0 when done, < 0 on error.
 */
static int user_ensure_subids(UserStep *s, SubIdKind kind, bool locked, uint64_t preferred, SubIdResult *res) {
        Context *ctx = s->ctx;
        const char *fname = subid_file_name(kind);
        _cleanup_free_ char *text = NULL, *display = NULL, *etc = NULL, *id = NULL, *out = NULL;
        _cleanup_free_ uint32_t *used = NULL;
        size_t size = 0, n_used = 0, out_size = 0;
        uid_t uid = s->pw ? s->pw->uid : (uid_t) -1;
        SubIdFile f = {};
        SubIdPlan plan = {};
        SubIdPolicy policy;
        struct stat st = {};
        bool exists;
        int r;

        if (asprintf(&etc, "/etc/%s", fname) < 0 || asprintf(&id, "user.%s", fname) < 0)
                return -ENOMEM;
        display = host_path(ctx, etc);
        if (!display)
                return -ENOMEM;

        r = read_etc_file(ctx, fname, &text, &size, &st, &exists);
        if (r < 0)
                return log_error_errno(r, "Failed to read %s: %m", display);
        r = subid_file_parse(&f, text, size);
        if (r < 0)
                return log_error_errno(r, "Failed to parse %s: %m", display);

        /* Existing UIDs (subuid) or GIDs (subgid) may not be inside a subordinate range. */
        n_used = kind == SUBID_KIND_UID ? s->db.n_users : s->db.n_groups;
        used = calloc(n_used + 1, sizeof(uint32_t));
        if (!used) {
                r = -ENOMEM;
                goto finish;
        }
        for (size_t i = 0; i < n_used; i++)
                used[i] = kind == SUBID_KIND_UID ? s->db.users[i].uid : s->db.groups[i].gid;

        policy = (SubIdPolicy) {
                .min = kind == SUBID_KIND_UID ? s->defs.sub_uid_min : s->defs.sub_gid_min,
                .max = kind == SUBID_KIND_UID ? s->defs.sub_uid_max : s->defs.sub_gid_max,
                .count = kind == SUBID_KIND_UID ? s->defs.sub_uid_count : s->defs.sub_gid_count,
                .used_ids = used,
                .n_used_ids = n_used,
                .preferred_start = preferred,
        };

        if (!locked)
                for (size_t i = 0; i < f.n_lines; i++) {
                        char line[80];
                        if (f.lines[i].kind != SUBID_LINE_MALFORMED)
                                continue;
                        format_line(line, sizeof(line), f.lines[i].text, f.lines[i].len);
                        report_item(ctx, id, ITEM_WARN, NULL,
                                    "%s:%u: \"%s\" is not owner:start:count; kept as it is", display,
                                    f.lines[i].lineno, line);
                }

        r = subid_plan(&f, s->name, uid, &policy, &plan);
        if (r == -ENOSPC) {
                _cleanup_free_ char *fix = NULL;
                const char *K = kind == SUBID_KIND_UID ? "UID" : "GID";
                if (asprintf(&fix, "raise SUB_%s_MAX in /etc/login.defs, or free a range in %s", K, display) < 0)
                        fix = NULL;
                report_item(ctx, id, ITEM_FAIL, fix,
                            "%s: no free range of %llu IDs for %s between SUB_%s_MIN %llu and SUB_%s_MAX %llu",
                            display, (unsigned long long) (policy.count < SUBID_COUNT_MIN ? SUBID_COUNT_MIN : policy.count),
                            s->name, K, (unsigned long long) policy.min, K, (unsigned long long) policy.max);
                r = 0;
                goto finish;
        }
        if (r < 0) {
                log_error_errno(r, "Failed to plan %s: %m", display);
                goto finish;
        }
        subid_result_done(res);
        r = subid_plan_ranges(&f, &plan, s->name, uid, &res->ranges, &res->n_ranges);
        if (r < 0)
                goto finish;
        res->start = plan.start;
        res->count = plan.count;
        res->settled = true;

        if (!plan.allocate && plan.n_dropped == 0) {
                if (!locked) {
                        report_state(ctx, id, ITEM_OK, "%s: %s has %llu:%llu", display, s->name,
                                     (unsigned long long) plan.start, (unsigned long long) plan.count);
                        if (plan.outside_bounds) {
                                const char *K = kind == SUBID_KIND_UID ? "UID" : "GID";
                                report_item(ctx, id, ITEM_WARN, NULL,
                                            "%s: the range %llu:%llu of %s lies outside SUB_%s_MIN..SUB_%s_MAX "
                                            "(%llu..%llu) of /etc/login.defs; it is valid and kept, since moving "
                                            "it would strand the files of existing containers",
                                            display, (unsigned long long) plan.start,
                                            (unsigned long long) plan.count, s->name, K, K,
                                            (unsigned long long) policy.min, (unsigned long long) policy.max);
                        }
                }
                r = 0;
                goto finish;
        }

        {
                /* Say what changes: the lines dropped and why, and the new line. */
                _cleanup_free_ char *what = NULL;
                char *buf = NULL;
                size_t bsize = 0;
                FILE *m = open_memstream(&buf, &bsize);
                ItemStatus status;

                if (!m) {
                        r = -ENOMEM;
                        goto finish;
                }
                for (size_t i = 0; i < f.n_lines; i++) {
                        char line[80];
                        if (!plan.drop[i])
                                continue;
                        format_line(line, sizeof(line), f.lines[i].text, f.lines[i].len);
                        fprintf(m, "%sdrop line %u \"%s\" (%s)", ftell(m) > 0 ? "; " : "", f.lines[i].lineno, line,
                                subid_verdict_to_string(plan.verdict[i]));
                }
                if (plan.allocate)
                        fprintf(m, "%sadd %s:%llu:%llu", ftell(m) > 0 ? "; " : "", s->name,
                                (unsigned long long) plan.start, (unsigned long long) plan.count);
                fclose(m);
                what = buf;
                status = plan.allocate ? (plan.n_dropped > 0 ? ITEM_CHANGE : ITEM_CREATE) : ITEM_REMOVE;

                if (ctx->verb != VERB_APPLY) {
                        report_state(ctx, id, status, "%s: %s", display, what);
                        r = 0;
                        goto finish;
                }
                if (!locked) {
                        r = 1;
                        goto finish;
                }

                r = subid_render(&f, &plan, s->name, &out, &out_size);
                if (r < 0)
                        goto finish;
                r = write_etc_file(ctx, fname, out, out_size, &st, exists, 0644);
                if (r < 0) {
                        log_error_errno(r, "Failed to write %s: %m", display);
                        goto finish;
                }
                killpoint(kind == SUBID_KIND_UID ? "user-subuid-written" : "user-subgid-written");
                report_changed(ctx, id, status, "%s: %s", display, what);
        }
        r = 0;

finish:
        subid_plan_done(&plan);
        subid_file_done(&f);
        return r;
}

/* Is the user listed in group (on any /etc/group line of that name, or in /etc/gshadow as member or administrator)? */
static bool user_in_group(const UserStep *s, const char *gshadow, const char *group) {
        for (size_t i = 0; i < s->db.n_groups; i++)
                if (streq(s->db.groups[i].name, group) && group_has_member(&s->db.groups[i], s->name))
                        return true;
        return gshadow && group_file_lists_user(gshadow, GROUP_FILE_GSHADOW, group, s->name);
}

/* The privileged group a group line stands for: by its GID, else (no such GID known) by its name. NULL: harmless. */
static const Privileged *privileged_of_group(const UserStep *s, const char *name, gid_t gid) {
        const Privileged *p;

        if (is_privileged_gid(s, gid, &p))
                return p;
        for (size_t i = 0; i < s->n_priv; i++)
                if (s->priv[i].gid == (gid_t) -1 && streq(s->priv[i].name, name))
                        return &s->priv[i];
        return NULL;
}

typedef struct PrivilegedMembership {
        const char *group;        /* the name on the lines to edit */
        const Privileged *priv;   /* why it leads to root */
} PrivilegedMembership;

/*
 * The user's memberships of privileged groups, each group name once: every
 * line whose GID is privileged, whatever its name, and gshadow lines of the
 * privileged names that have no group line. *ret has room for one more.
 */
static int privileged_memberships(const UserStep *s, const char *gshadow, PrivilegedMembership **ret,
                                  size_t *ret_n) {
        _cleanup_free_ PrivilegedMembership *m = calloc(s->db.n_groups + s->n_priv + 1, sizeof(PrivilegedMembership));
        size_t n = 0;

        if (!m)
                return -ENOMEM;
        for (size_t i = 0; i < s->db.n_groups + s->n_priv; i++) {
                const GroupEntry *g = i < s->db.n_groups ? &s->db.groups[i] : NULL;
                const char *name = g ? g->name : s->priv[i - s->db.n_groups].name;
                const Privileged *p = g ? privileged_of_group(s, g->name, g->gid) : &s->priv[i - s->db.n_groups];
                bool dup = false;

                if (!p || (!g && userdb_find_group(&s->db, name)))
                        continue;  /* harmless, or a name the group lines above covered */
                for (size_t k = 0; k < n; k++)
                        dup |= streq(m[k].group, name);
                if (dup || !user_in_group(s, gshadow, name))
                        continue;
                m[n++] = (PrivilegedMembership) { .group = name, .priv = p };
        }
        *ret = TAKE_PTR(m);
        *ret_n = n;
        return 0;
}

/*
 * "disk (membership there is root: ...)", or for another name of a
 * privileged GID "disk2 (GID 6, the GID of disk: ...)".
 */
static int membership_describe(const PrivilegedMembership *m, char **ret) {
        if (streq(m->group, m->priv->name))
                return asprintf(ret, "%s (%s)", m->group, m->priv->reason) < 0 ? -ENOMEM : 0;
        return asprintf(ret, "%s (GID %u, the GID of %s: %s)", m->group, (unsigned) m->priv->gid, m->priv->name,
                        m->priv->reason) < 0
                       ? -ENOMEM
                       : 0;
}

/*
 * Membership in privileged groups. Returns 1 when apply must take the locks
 * and call again, 0 when done, < 0 on error.
 */
static int user_ensure_groups(UserStep *s, bool locked) {
        Context *ctx = s->ctx;
        _cleanup_free_ char *group = NULL, *gshadow = NULL, *new_group = NULL, *new_gshadow = NULL;
        _cleanup_free_ const char **names = NULL;
        _cleanup_free_ PrivilegedMembership *m = NULL;
        size_t group_size = 0, gshadow_size = 0, new_group_size = 0, new_gshadow_size = 0, n = 0;
        struct stat group_st = {}, gshadow_st = {};
        bool group_exists, gshadow_exists;
        unsigned changed;
        int r;

        r = read_etc_file(ctx, "gshadow", &gshadow, &gshadow_size, &gshadow_st, &gshadow_exists);
        if (r < 0)
                return log_error_errno(r, "Failed to read /etc/gshadow: %m");
        r = privileged_memberships(s, gshadow_exists ? gshadow : NULL, &m, &n);
        if (r < 0)
                return r;

        if (n == 0) {
                if (!locked)
                        report_state(ctx, "user.groups", ITEM_OK, "%s is in no group that leads to root", s->name);
                return 0;
        }
        if (ctx->verb != VERB_APPLY) {
                for (size_t k = 0; k < n; k++) {
                        _cleanup_free_ char *what = NULL;
                        if (membership_describe(&m[k], &what) < 0)
                                return -ENOMEM;
                        report_state(ctx, "user.groups", ITEM_REMOVE, "remove %s from group %s", s->name, what);
                }
                return 0;
        }
        if (!locked)
                return 1;

        names = calloc(n + 1, sizeof(char *));
        if (!names)
                return -ENOMEM;
        for (size_t k = 0; k < n; k++)
                names[k] = m[k].group;

        r = read_etc_file(ctx, "group", &group, &group_size, &group_st, &group_exists);
        if (r < 0)
                return log_error_errno(r, "Failed to read /etc/group: %m");
        r = group_file_remove_user(group, group_size, GROUP_FILE_GROUP, names, n, s->name, &new_group,
                                   &new_group_size, &changed);
        if (r < 0)
                return r;
        if (gshadow_exists) {
                r = group_file_remove_user(gshadow, gshadow_size, GROUP_FILE_GSHADOW, names, n, s->name,
                                           &new_gshadow, &new_gshadow_size, &changed);
                if (r < 0)
                        return r;
                r = write_etc_file(ctx, "gshadow", new_gshadow, new_gshadow_size, &gshadow_st, true, 0640);
                if (r < 0)
                        return log_error_errno(r, "Failed to write /etc/gshadow: %m");
                killpoint("user-gshadow-written");
        }
        if (group_exists) {
                r = write_etc_file(ctx, "group", new_group, new_group_size, &group_st, true, 0644);
                if (r < 0)
                        return log_error_errno(r, "Failed to write /etc/group: %m");
                killpoint("user-group-written");
        }

        /* Its running processes keep the group until they end: the daemon and agent steps restart theirs. */
        for (size_t k = 0; k < n; k++) {
                _cleanup_free_ char *what = NULL;
                if (membership_describe(&m[k], &what) < 0)
                        return -ENOMEM;
                if (streq(m[k].group, m[k].priv->name))
                        log_warning("REMOVED %s from group %s: %s", s->name, m[k].group, m[k].priv->reason);
                else
                        log_warning("REMOVED %s from group %s (GID %u, the GID of %s): %s", s->name, m[k].group,
                                    (unsigned) m[k].priv->gid, m[k].priv->name, m[k].priv->reason);
                report_changed(ctx, "user.groups", ITEM_REMOVE, "removed %s from group %s", s->name, what);
        }
        return 0;
}

/* Sudoers rules that would apply to the user once apply has removed the privileged memberships. */
static int user_check_sudoers(UserStep *s) {
        Context *ctx = s->ctx;
        _cleanup_free_ const char **groups = NULL;
        _cleanup_free_ gid_t *gids = NULL;
        _cleanup_(sudoers_done) Sudoers su = {};
        SudoersMatch *m = NULL;
        size_t n_groups = 0, n_m = 0;
        int r;

        groups = calloc(s->db.n_groups + 2, sizeof(char *));
        gids = calloc(s->db.n_groups + 2, sizeof(gid_t));
        if (!groups || !gids)
                return -ENOMEM;
        if (s->pw) {
                const GroupEntry *pg = userdb_find_gid(&s->db, s->pw->gid);
                groups[n_groups] = pg ? pg->name : NULL;
                gids[n_groups++] = s->pw->gid;
        } else {
                /* The group useradd will create. */
                groups[n_groups] = s->name;
                gids[n_groups++] = (gid_t) -1;
        }
        for (size_t i = 0; i < s->db.n_groups; i++) {
                const GroupEntry *g = &s->db.groups[i];

                if (!group_has_member(g, s->name))
                        continue;
                if (privileged_of_group(s, g->name, g->gid))
                        continue;  /* apply removes it; user.groups reports it */
                groups[n_groups] = g->name;
                gids[n_groups++] = g->gid;
        }

        r = sudoers_load(&su, ctx->root_fd);
        if (r < 0) {
                report_item(ctx, "user.sudoers", ITEM_FAIL,
                            "make /etc/sudoers and the files it includes readable by root and valid (visudo -c), "
                            "then run rootless-ci apply",
                            "cannot read the sudoers files: %s", strerror(-r));
                return 0;
        }
        r = sudoers_match(&su, &(SudoersIdentity) {
                                 .user = s->name,
                                 .uid = s->pw ? s->pw->uid : (uid_t) -1,
                                 .groups = groups,
                                 .gids = gids,
                                 .n_groups = n_groups,
                         }, &m, &n_m);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n_m; i++) {
                _cleanup_free_ char *file = host_path(ctx, m[i].file), *fix = NULL;
                if (asprintf(&fix, "remove or narrow the rule at %s:%u (visudo -f %s); rootless-ci does not edit "
                             "sudoers", strempty(file), m[i].line, strempty(file)) < 0)
                        fix = NULL;
                report_item(ctx, "user.sudoers", ITEM_FAIL, fix,
                            "%s:%u: a sudoers rule applies to %s (through \"%s\"): every build could become root",
                            strempty(file), m[i].line, s->name, m[i].via);
        }
        if (n_m == 0)
                report_item(ctx, "user.sudoers", ctx->verb == VERB_CHECK ? ITEM_PASS : ITEM_OK, NULL,
                            "no sudoers rule applies to %s (%zu file%s read)", s->name, su.n_files_read,
                            su.n_files_read == 1 ? "" : "s");
        sudoers_matches_free(m, n_m);
        return 0;
}

/*
 * One source of account data: the files (README, "User"). On a live host NSS
 * (/etc/nsswitch.conf: LDAP, SSSD, nss-systemd, ...) is what hands the
 * user's processes their groups at login and at every start of a unit with
 * User=; what it knows and the files do not, rootless-ci can neither judge
 * nor remove. Returns 1 to go on, 0 when the account itself is in doubt
 * (reported: nothing more is decided on it), < 0 on error.
 */
static int user_compare_nss(UserStep *s) {
        Context *ctx = s->ctx;
        _cleanup_free_ gid_t *files = NULL, *nss = NULL;
        _cleanup_free_ char *fix = NULL;
        size_t n_files = 0, n_nss = 0, extra = 0;
        struct passwd *pw;
        int r;

        if (!ctx->live)
                return 1;  /* the host's NSS says nothing about a tree */
        errno = 0;
        pw = getpwnam(s->name);
        if (!s->pw) {
                if (!pw)
                        return 1;
                if (asprintf(&fix, "choose a name no other account source knows ([User] Name= or --user=), or "
                             "give %s a line of its own in /etc/passwd and /etc/group", s->name) < 0)
                        return -ENOMEM;
                report_item(ctx, "user.nss", ITEM_FAIL, fix,
                            "%s is not in /etc/passwd, but NSS knows it (UID %u, from another source in "
                            "/etc/nsswitch.conf such as LDAP or SSSD): rootless-ci manages accounts of the local "
                            "files only", s->name, (unsigned) pw->pw_uid);
                return 0;
        }
        if (!pw || pw->pw_uid != s->pw->uid || pw->pw_gid != s->pw->gid) {
                if (asprintf(&fix, "make getent passwd %s agree with /etc/passwd (files first for passwd and "
                             "group in /etc/nsswitch.conf, or remove the other source's entry)", s->name) < 0)
                        return -ENOMEM;
                if (!pw)
                        report_item(ctx, "user.nss", ITEM_FAIL, fix,
                                    "/etc/passwd has %s (UID %u) but NSS does not find it%s%s", s->name,
                                    (unsigned) s->pw->uid, errno ? ": " : "", errno ? strerror(errno) : "");
                else
                        report_item(ctx, "user.nss", ITEM_FAIL, fix,
                                    "NSS resolves %s to UID %u, GID %u; /etc/passwd says UID %u, GID %u: its "
                                    "processes would run as an account rootless-ci does not see", s->name,
                                    (unsigned) pw->pw_uid, (unsigned) pw->pw_gid, (unsigned) s->pw->uid,
                                    (unsigned) s->pw->gid);
                return 0;
        }

        r = userdb_user_gids(&s->db, s->name, s->pw->gid, &files, &n_files);
        if (r < 0)
                return r;
        r = nss_user_gids(s->name, s->pw->gid, &nss, &n_nss);
        if (r < 0)
                return log_error_errno(r, "Failed to look up the groups of %s through NSS: %m", s->name);
        for (size_t i = 0; i < n_nss; i++) {
                const GroupEntry *local = userdb_find_gid(&s->db, nss[i]);
                const struct group *gr;
                char name[64];

                if (gid_list_contains(files, n_files, nss[i]))
                        continue;
                extra++;
                gr = local ? NULL : getgrgid(nss[i]);
                snprintf(name, sizeof(name), "%s", local ? local->name : gr ? gr->gr_name : "(no name)");
                free(fix);
                if (asprintf(&fix, "take %s out of group %s where NSS finds it (getent group %u; LDAP, SSSD, "
                             "...), or list it in /etc/group if it belongs there; then run rootless-ci apply",
                             s->name, name, (unsigned) nss[i]) < 0)
                        return -ENOMEM;
                report_item(ctx, "user.nss", ITEM_FAIL, fix,
                            "NSS puts %s in group %s (GID %u), /etc/group does not: its processes get that group, "
                            "which rootless-ci can neither judge nor remove", s->name, name, (unsigned) nss[i]);
        }
        if (extra == 0)
                report_item(ctx, "user.nss", ctx->verb == VERB_CHECK ? ITEM_PASS : ITEM_OK, NULL,
                            "NSS and the files agree on %s (UID %u, GID %u, %zu group%s)", s->name,
                            (unsigned) s->pw->uid, (unsigned) s->pw->gid, n_nss, n_nss == 1 ? "" : "s");
        return 1;
}

/* What later steps need of the groups: every privileged GID, and the user's groups as the files now say. */
static int user_export_groups(UserStep *s) {
        HostFacts *f = &s->ctx->facts;
        size_t n = 0;

        free(f->privileged_gids);
        f->privileged_gids = calloc(s->n_priv + 1, sizeof(gid_t));
        if (!f->privileged_gids)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_priv; i++)
                if (s->priv[i].gid != (gid_t) -1 && !gid_list_contains(f->privileged_gids, n, s->priv[i].gid))
                        f->privileged_gids[n++] = s->priv[i].gid;
        f->n_privileged_gids = n;

        free(f->user_gids);
        f->user_gids = NULL;
        f->n_user_gids = 0;
        if (!s->pw)
                return 0;
        return userdb_user_gids(&s->db, s->name, s->pw->gid, &f->user_gids, &f->n_user_gids);
}

static int user_run(Context *ctx) {
        _cleanup_(user_step_done) UserStep s = { .ctx = ctx, .name = ctx->config->user_name };
        _cleanup_(subid_result_done) SubIdResult uid_range = {}, gid_range = {};
        bool need_lock = false;
        int r;

        ctx->facts.user_known = ctx->facts.user_planned = false;

        r = load_login_defs(&s);
        if (r < 0)
                return r;
        r = reload_userdb(&s);
        if (r < 0) {
                _cleanup_free_ char *p = host_path(ctx, "/etc/passwd");
                report_item(ctx, "user.account", ITEM_FAIL,
                            "repair /etc/passwd and /etc/group (pwck -r and grpck -r name what is wrong), then run "
                            "rootless-ci apply",
                            "cannot read the account files (%s, /etc/group): %s", strempty(p), strerror(-r));
                return 0;
        }
        r = collect_privileged(&s);
        if (r < 0)
                return log_error_errno(r, "Failed to collect the privileged groups: %m");

        r = user_compare_nss(&s);
        if (r <= 0)
                return r;
        r = user_ensure_account(&s);
        if (r <= 0)
                return r;
        if (s.pw) {
                ctx->facts.user_known = true;
                ctx->facts.user_uid = s.pw->uid;
                ctx->facts.user_gid = s.pw->gid;
                if (free_and_strdup(&ctx->facts.user_home, s.pw->home) < 0)
                        return -ENOMEM;
        }

        /* Both ranges start at the same ID when that is free: container UID n and GID n map alike. */
        r = user_ensure_subids(&s, SUBID_KIND_UID, false, 0, &uid_range);
        if (r < 0)
                return r;
        need_lock |= r > 0;
        r = user_ensure_subids(&s, SUBID_KIND_GID, false, uid_range.settled ? uid_range.start : 0, &gid_range);
        if (r < 0)
                return r;
        need_lock |= r > 0;
        r = user_ensure_groups(&s, false);
        if (r < 0)
                return r;
        need_lock |= r > 0;

        static const char *const lock_files[] = { "subuid", "subgid", "group", "gshadow" };
        if (!need_lock && ctx->verb == VERB_APPLY && ctx->live)
                /* A run killed while it held them left them: nothing else would remove them now. */
                (void) shadow_lock_remove_stale(ctx->root_fd, lock_files, ELEMENTSOF(lock_files));
        if (need_lock) {
                const char *const *files = lock_files;
                ShadowLock lock;

                r = shadow_lock_acquire(ctx->root_fd, files, ELEMENTSOF(lock_files), &lock);
                if (r < 0)
                        return r;
                /* Under the lock, read again and decide again: another tool may have edited meanwhile. */
                r = reload_userdb(&s);
                if (r >= 0)
                        r = user_ensure_subids(&s, SUBID_KIND_UID, true, 0, &uid_range);
                if (r >= 0)
                        r = user_ensure_subids(&s, SUBID_KIND_GID, true, uid_range.settled ? uid_range.start : 0,
                                               &gid_range);
                if (r >= 0)
                        r = user_ensure_groups(&s, true);
                shadow_lock_release(&lock);
                if (r < 0)
                        return r;
                r = reload_userdb(&s);
                if (r < 0)
                        return log_error_errno(r, "Failed to read the account files again: %m");
        }

        if (uid_range.settled) {
                ctx->facts.subuid_start = (uint32_t) uid_range.start;
                ctx->facts.subuid_count = (uint32_t) uid_range.count;
                free(ctx->facts.subuid_ranges);
                ctx->facts.subuid_ranges = TAKE_PTR(uid_range.ranges);
                ctx->facts.n_subuid_ranges = uid_range.n_ranges;
        }
        if (gid_range.settled) {
                ctx->facts.subgid_start = (uint32_t) gid_range.start;
                ctx->facts.subgid_count = (uint32_t) gid_range.count;
                free(ctx->facts.subgid_ranges);
                ctx->facts.subgid_ranges = TAKE_PTR(gid_range.ranges);
                ctx->facts.n_subgid_ranges = gid_range.n_ranges;
        }

        r = user_export_groups(&s);
        if (r < 0)
                return r;
        return user_check_sudoers(&s);
}

const Step step_user = {
        .name = "user",
        .run = user_run,
};
