/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "steps/user/groupfile.h"
#include "steps/user/user.h"
#include "util/killpoint.h"
#include "util/log.h"
#include "util/macro.h"

/*
 * The user step's privileged memberships: the CI user is taken out of every
 * group that leads to root (/etc/group and /etc/gshadow, edited as text
 * under shadow's locks, every other line kept byte for byte).
 */

/* Is the user listed in group (on any /etc/group line of that name, or in /etc/gshadow as member or administrator)? */
static bool user_in_group(const UserState *s, const char *gshadow, const char *group) {
        for (size_t i = 0; i < s->db.n_groups; i++)
                if (streq(s->db.groups[i].name, group) && group_has_member(&s->db.groups[i], s->name))
                        return true;
        return gshadow && group_file_lists_user(gshadow, GROUP_FILE_GSHADOW, group, s->name);
}

/*
 * The user's memberships of privileged groups, each group name once: every
 * line whose GID is privileged, whatever its name, and gshadow lines of the
 * privileged names that have no group line. *ret has room for one more.
 */
static int privileged_memberships(const UserState *s, const char *gshadow, PrivilegedMembership **ret,
                                  size_t *ret_n) {
        _cleanup_free_ PrivilegedMembership *m = calloc(s->db.n_groups + s->n_priv + 1, sizeof(PrivilegedMembership));
        size_t n = 0;

        if (!m)
                return -ENOMEM;
        for (size_t i = 0; i < s->db.n_groups + s->n_priv; i++) {
                const GroupEntry *g = i < s->db.n_groups ? &s->db.groups[i] : NULL;
                const char *name = g ? g->name : s->priv[i - s->db.n_groups].name;
                const Privileged *p = g ? user_privileged_of_group(s, g->name, g->gid) : &s->priv[i - s->db.n_groups];
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

/* Every membership the look found, out of /etc/gshadow, then /etc/group: one write of each. */
static int groups_write(StepRun *run, UserState *s) {
        _cleanup_free_ char *group = NULL, *new_group = NULL, *new_gshadow = NULL;
        _cleanup_free_ const char **names = NULL;
        size_t group_size = 0, new_group_size = 0, new_gshadow_size = 0, n = s->n_memberships;
        struct stat group_st = {};
        bool group_exists;
        unsigned changed;
        int r;

        names = calloc(n + 1, sizeof(char *));
        if (!names)
                return -ENOMEM;
        for (size_t k = 0; k < n; k++)
                names[k] = s->memberships[k].group;

        r = etc_file_read(run, "group", &group, &group_size, &group_st, &group_exists);
        if (r < 0)
                return log_error_errno(r, "Failed to read /etc/group: %m");
        r = group_file_remove_user(group, group_size, GROUP_FILE_GROUP, names, n, s->name, &new_group,
                                   &new_group_size, &changed);
        if (r < 0)
                return r;
        if (s->gshadow_exists) {
                r = group_file_remove_user(s->gshadow, s->gshadow_size, GROUP_FILE_GSHADOW, names, n, s->name,
                                           &new_gshadow, &new_gshadow_size, &changed);
                if (r < 0)
                        return r;
                r = etc_file_write(run, "gshadow", new_gshadow, new_gshadow_size, &s->gshadow_st, true, 0640);
                if (r < 0)
                        return log_error_errno(r, "Failed to write /etc/gshadow: %m");
                killpoint("user-gshadow-written");
        }
        if (group_exists) {
                r = etc_file_write(run, "group", new_group, new_group_size, &group_st, true, 0644);
                if (r < 0)
                        return log_error_errno(r, "Failed to write /etc/group: %m");
                killpoint("user-group-written");
        }
        return 0;
}

/* apply, one Change per membership: the first writes them all; each reports its own. */
static int membership_remove(StepRun *run, Change *c) {
        UserState *s = run_state(run);
        const PrivilegedMembership *m = c->data;
        _cleanup_free_ char *what = NULL;
        int r;

        if (!s->groups_written) {
                r = groups_write(run, s);
                if (r < 0)
                        return r;
                s->groups_written = true;
        }

        /* Its running processes keep the group until they end: the daemon and agent steps restart theirs. */
        if (membership_describe(m, &what) < 0)
                return -ENOMEM;
        if (streq(m->group, m->priv->name))
                log_warning("REMOVED %s from group %s: %s", s->name, m->group, m->priv->reason);
        else
                log_warning("REMOVED %s from group %s (GID %u, the GID of %s): %s", s->name, m->group,
                            (unsigned) m->priv->gid, m->priv->name, m->priv->reason);
        change_done(run, c->id, ITEM_REMOVE, "removed %s from group %s", s->name, what);
        return 0;
}

/* Membership in privileged groups: none, or a Change for each (apply removes the user from it). */
int user_look_groups(StepRun *run, UserState *s) {
        int r;

        free(s->gshadow);
        s->gshadow = NULL;
        free(s->memberships);
        s->memberships = NULL;
        s->n_memberships = 0;
        s->groups_written = false;

        r = etc_file_read(run, "gshadow", &s->gshadow, &s->gshadow_size, &s->gshadow_st, &s->gshadow_exists);
        if (r < 0)
                return log_error_errno(r, "Failed to read /etc/gshadow: %m");
        r = privileged_memberships(s, s->gshadow_exists ? s->gshadow : NULL, &s->memberships, &s->n_memberships);
        if (r < 0)
                return r;

        if (s->n_memberships == 0) {
                item_ok(run, "user.groups", "%s is in no group that leads to root", s->name);
                return 0;
        }
        for (size_t k = 0; k < s->n_memberships; k++) {
                _cleanup_free_ char *what = NULL;
                if (membership_describe(&s->memberships[k], &what) < 0)
                        return -ENOMEM;
                item_change(run, &(Change) {
                        .id = "user.groups",
                        .state = ITEM_REMOVE,
                        .plan = run_asprintf(run, "remove %s from group %s", s->name, what),
                        .apply = membership_remove,
                        .data = &s->memberships[k],
                });
        }
        return 0;
}
