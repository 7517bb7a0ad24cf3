/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "steps/steps.h"
#include "steps/user/sudoers.h"
#include "steps/user/user.h"
#include "util/log.h"
#include "util/macro.h"

/*
 * Step 3, the CI user: a regular account (created with shadow's useradd when
 * missing, adopted when it exists), a subordinate UID and GID range of its
 * own, no membership in a group that leads to root, no sudoers rule.
 *
 * Everything is read from the files below the root, so plan and check work
 * on an offline tree and in tests. Edits of /etc/subuid, /etc/subgid,
 * /etc/group and /etc/gshadow are made here, as text (every other line kept
 * byte for byte), under the same locks shadow's tools take, and written
 * atomically with the file's own mode and owner.
 *
 * Four parts: login-defs (host-wide: what of /etc/login.defs is unusable,
 * said once), account (accounts.c: judge it, or create it), ids (ids.c and
 * groups.c: the ranges and the memberships, applied under shadow's locks
 * after a look again under them), sudoers (and what later steps read of the
 * groups). The step writes the Account the later steps get.
 */

static const char *const lock_files[] = { "subuid", "subgid", "group", "gshadow" };

static void user_state_done(void *p) {
        UserState *s = p;

        userdb_done(&s->db);
        for (size_t i = 0; i < s->n_priv; i++) {
                free(s->priv[i].name);
                free(s->priv[i].reason);
        }
        free(s->priv);
        free(s->home);
        for (size_t k = 0; k < _SUBID_KIND_MAX; k++) {
                subid_result_done(&s->ranges[k]);
                subid_edit_done(&s->edits[k]);
        }
        free(s->gshadow);
        free(s->memberships);
        if (s->locked)
                shadow_lock_release(&s->lock);
}

/* Sudoers rules that would apply to the user once apply has removed the privileged memberships. */
static int user_check_sudoers(StepRun *run, UserState *s) {
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
                if (user_privileged_of_group(s, g->name, g->gid))
                        continue;  /* apply removes it; user.groups reports it */
                groups[n_groups] = g->name;
                gids[n_groups++] = g->gid;
        }

        r = sudoers_load(&su, run_root_fd(run));
        if (r < 0) {
                item_finding(run, "user.sudoers", ITEM_FAIL,
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
                _cleanup_free_ char *file = run_shown(run, m[i].file), *fix = NULL;
                if (asprintf(&fix, "remove or narrow the rule at %s:%u (visudo -f %s); rootless-ci does not edit "
                             "sudoers", strempty(file), m[i].line, strempty(file)) < 0)
                        fix = NULL;
                item_finding(run, "user.sudoers", ITEM_FAIL, fix,
                             "%s:%u: a sudoers rule applies to %s (through \"%s\"): every build could become root",
                             strempty(file), m[i].line, s->name, m[i].via);
        }
        if (n_m == 0)
                item_ok(run, "user.sudoers", "no sudoers rule applies to %s (%zu file%s read)", s->name,
                        su.n_files_read, su.n_files_read == 1 ? "" : "s");
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
static int user_compare_nss(StepRun *run, UserState *s) {
        _cleanup_free_ gid_t *files = NULL, *nss = NULL;
        _cleanup_free_ char *fix = NULL;
        size_t n_files = 0, n_nss = 0, extra = 0;
        struct passwd *pw;
        int r;

        if (!run_live(run))
                return 1;  /* the host's NSS says nothing about a tree */
        errno = 0;
        pw = getpwnam(s->name);
        if (!s->pw) {
                if (!pw)
                        return 1;
                if (asprintf(&fix, "choose a name no other account source knows ([User] Name= or --user=), or "
                             "give %s a line of its own in /etc/passwd and /etc/group", s->name) < 0)
                        return -ENOMEM;
                item_finding(run, "user.nss", ITEM_FAIL, fix,
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
                        item_finding(run, "user.nss", ITEM_FAIL, fix,
                                     "/etc/passwd has %s (UID %u) but NSS does not find it%s%s", s->name,
                                     (unsigned) s->pw->uid, errno ? ": " : "", errno ? strerror(errno) : "");
                else
                        item_finding(run, "user.nss", ITEM_FAIL, fix,
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
                item_finding(run, "user.nss", ITEM_FAIL, fix,
                             "NSS puts %s in group %s (GID %u), /etc/group does not: its processes get that group, "
                             "which rootless-ci can neither judge nor remove", s->name, name, (unsigned) nss[i]);
        }
        if (extra == 0)
                item_ok(run, "user.nss", "NSS and the files agree on %s (UID %u, GID %u, %zu group%s)", s->name,
                        (unsigned) s->pw->uid, (unsigned) s->pw->gid, n_nss, n_nss == 1 ? "" : "s");
        return 1;
}

/* What later steps need of the groups: every privileged GID, and the user's groups as the files now say. */
static int user_export_groups(StepRun *run, UserState *s) {
        HostFacts *f = run_facts(run);
        size_t n = 0;
        int r;

        free(f->privileged_gids);
        f->privileged_gids = calloc(s->n_priv + 1, sizeof(gid_t));
        if (!f->privileged_gids)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_priv; i++)
                if (s->priv[i].gid != (gid_t) -1 && !s->priv[i].other_tenant &&
                    !gid_list_contains(f->privileged_gids, n, s->priv[i].gid))
                        f->privileged_gids[n++] = s->priv[i].gid;
        f->n_privileged_gids = n;

        free(s->account->gids);
        s->account->gids = NULL;
        s->account->n_gids = 0;
        if (!s->pw)
                return 0;
        r = userdb_user_gids(&s->db, s->name, s->pw->gid, &s->account->gids, &s->account->n_gids);
        if (r < 0)
                return r;
        return 0;
}

/* The user's ranges once apply is done, into the account. */
static void user_export_ranges(UserState *s) {
        SubIdResult *u = &s->ranges[SUBID_KIND_UID], *g = &s->ranges[SUBID_KIND_GID];
        Account *a = s->account;

        if (u->settled) {
                free(a->subuids);
                a->subuids = TAKE_PTR(u->ranges);
                a->n_subuids = u->n_ranges;
        }
        if (g->settled) {
                free(a->subgids);
                a->subgids = TAKE_PTR(g->ranges);
                a->n_subgids = g->n_ranges;
        }
}

/* /etc/login.defs is the host's: what of it is unusable is said once, not once per tenant. */
static int login_defs_look(StepRun *run, Account *a) {
        return user_load_login_defs(run, run_state(run), true);
}

static int account_look(StepRun *run, Account *a) {
        UserState *s = run_state(run);
        int r;

        s->name = a->name;
        s->account = a;
        a->state = ACCOUNT_UNUSABLE;
        a->uid = (uid_t) -1;
        a->gid = (gid_t) -1;
        free(a->home);
        a->home = NULL;

        r = user_load_login_defs(run, s, false);
        if (r < 0)
                return r;
        r = user_reload_db(run, s);
        if (r < 0) {
                _cleanup_free_ char *p = run_shown(run, "/etc/passwd");
                item_finding(run, "user.account", ITEM_FAIL,
                             "repair /etc/passwd and /etc/group (pwck -r and grpck -r name what is wrong), then run "
                             "rootless-ci apply",
                             "cannot read the account files (%s, /etc/group): %s", strempty(p), strerror(-r));
                s->stopped = true;
                return 0;
        }
        r = user_collect_privileged(run, s);
        if (r >= 0)
                r = user_collect_tenant_groups(run, s);
        if (r < 0)
                return log_error_errno(r, "Failed to collect the privileged groups: %m");

        r = user_compare_nss(run, s);
        if (r <= 0) {
                s->stopped = true;
                return r;
        }
        return user_look_account(run, s);
}

/* The ranges and the memberships (a look again under the locks, in apply: Part.relook). */
static int ids_look(StepRun *run, Account *a) {
        UserState *s = run_state(run);
        SubIdResult *u = &s->ranges[SUBID_KIND_UID];
        int r;

        if (s->stopped)
                return 0;
        /* Both ranges start at the same ID when that is free: container UID n and GID n map alike. */
        r = user_look_subids(run, s, SUBID_KIND_UID, 0);
        if (r < 0)
                return r;
        r = user_look_subids(run, s, SUBID_KIND_GID, u->settled ? u->start : 0);
        if (r < 0)
                return r;
        return user_look_groups(run, s);
}

/* Under the locks shadow's tools take, and with the files read again under them. */
static int ids_begin(StepRun *run, Account *a) {
        UserState *s = run_state(run);
        int r;

        s->began = true;
        r = shadow_lock_acquire(run_root_fd(run), lock_files, ELEMENTSOF(lock_files), &s->lock);
        if (r < 0)
                return r;
        s->locked = true;
        return user_reload_db(run, s);
}

static void ids_end(StepRun *run, Account *a) {
        UserState *s = run_state(run);

        if (s->locked)
                shadow_lock_release(&s->lock);
        s->locked = false;
}

static int ids_settle(StepRun *run, Account *a) {
        UserState *s = run_state(run);
        int r;

        if (s->stopped)
                return 0;
        if (!s->began) {
                /* A run killed while it held them left them: nothing else would remove them now. */
                if (run_live(run))
                        (void) shadow_lock_remove_stale(run_root_fd(run), lock_files, ELEMENTSOF(lock_files));
                return 0;
        }
        r = user_reload_db(run, s);
        if (r < 0)
                return log_error_errno(r, "Failed to read the account files again: %m");
        return 0;
}

static int sudoers_look(StepRun *run, Account *a) {
        UserState *s = run_state(run);
        int r;

        if (s->stopped)
                return 0;
        user_export_ranges(s);
        r = user_export_groups(run, s);
        if (r < 0)
                return r;
        return user_check_sudoers(run, s);
}

static const Part user_parts[] = {
        { .name = "login-defs", .look = login_defs_look, .host_wide = true },
        { .name = "account", .look = account_look },
        { .name = "ids", .look = ids_look, .begin = ids_begin, .end = ids_end, .settle = ids_settle, .relook = true },
        { .name = "sudoers", .look = sudoers_look },
};

const Step step_user = {
        .name = "user",
        STEP_PARTS(user_parts),
        .per_account = true,
        .state_size = sizeof(UserState),
        .state_done = user_state_done,
};
