/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <grp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fs.h"
#include "macro.h"
#include "userdb.h"

#define ACCOUNT_FILE_MAX (64 * 1024 * 1024)

void userdb_done(UserDb *db) {
        for (size_t i = 0; i < db->n_users; i++)
                FREE_MANY(db->users[i].name, db->users[i].home, db->users[i].shell);
        free(db->users);
        for (size_t i = 0; i < db->n_groups; i++) {
                free(db->groups[i].name);
                strv_free(db->groups[i].members);
        }
        free(db->groups);
        *db = (UserDb) {};
}

size_t colon_split(const char *line, size_t len, const char **fields, size_t *lens, size_t max) {
        size_t n = 0;
        const char *p = line, *end = line + len;

        while (n < max) {
                const char *c = memchr(p, ':', (size_t) (end - p));
                fields[n] = p;
                lens[n] = (size_t) ((c ? c : end) - p);
                n++;
                if (!c)
                        break;
                p = c + 1;
        }
        return n;
}

int parse_account_id(const char *s, size_t len, unsigned long *ret) {
        uint64_t v = 0;

        if (len == 0 || len > 10)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t) (s[i] - '0');
        }
        if (v > UINT32_MAX - 1)
                return -ERANGE;
        *ret = (unsigned long) v;
        return 0;
}

bool comma_list_contains(const char *list, size_t len, const char *name) {
        size_t nl = strlen(name);
        const char *p = list, *end = list + len;

        while (p <= end) {
                const char *c = memchr(p, ',', (size_t) (end - p));
                const char *e = c ? c : end;
                if ((size_t) (e - p) == nl && memcmp(p, name, nl) == 0)
                        return true;
                if (!c)
                        break;
                p = c + 1;
        }
        return false;
}

static char **comma_list_split(const char *list, size_t len) {
        size_t n = 0, i = 0;
        char **l;

        for (size_t k = 0; k < len; k++)
                if (list[k] == ',')
                        n++;
        l = calloc(n + 2, sizeof(char *));
        if (!l)
                return NULL;
        for (const char *p = list, *end = list + len; len > 0 && p <= end;) {
                const char *c = memchr(p, ',', (size_t) (end - p));
                const char *e = c ? c : end;
                if (e > p) {
                        l[i] = strndup(p, (size_t) (e - p));
                        if (!l[i]) {
                                strv_free(l);
                                return NULL;
                        }
                        i++;
                }
                if (!c)
                        break;
                p = c + 1;
        }
        return l;
}

/* Calls f for each line (without newline); stops on a negative return. */
static int for_each_line(const char *text, int (*f)(UserDb *db, const char *line, size_t len, unsigned lineno),
                         UserDb *db) {
        unsigned lineno = 0;

        for (const char *p = text; *p;) {
                const char *eol = strchrnul(p, '\n');
                int r;

                lineno++;
                r = f(db, p, (size_t) (eol - p), lineno);
                if (r < 0)
                        return r;
                p = *eol ? eol + 1 : eol;
        }
        return 0;
}

/*
 * A line with exactly n fields and a name, split into f/l. Not: an empty
 * line, a comment, NIS compat ("+name", "-name", "+"), a line of other length.
 */
static bool account_fields(const char *line, size_t len, const char **f, size_t *l, size_t n) {
        if (len == 0 || line[0] == '#' || line[0] == '+' || line[0] == '-')
                return false;
        return colon_split(line, len, f, l, n) == n && l[0] > 0;
}

static int parse_passwd_line(UserDb *db, const char *line, size_t len, unsigned lineno) {
        const char *f[7];
        size_t l[7];
        unsigned long uid, gid;
        PasswdEntry *n;

        if (!account_fields(line, len, f, l, 7) || parse_account_id(f[2], l[2], &uid) < 0 ||
            parse_account_id(f[3], l[3], &gid) < 0)
                return 0;

        n = ARRAY_PUSH(db->users, db->n_users);
        if (!n)
                return -ENOMEM;
        *n = (PasswdEntry) {
                .name = strndup(f[0], l[0]),
                .uid = (uid_t) uid,
                .gid = (gid_t) gid,
                .home = strndup(f[5], l[5]),
                .shell = strndup(f[6], l[6]),
                .line = lineno,
        };
        if (!n->name || !n->home || !n->shell)
                return -ENOMEM;
        return 0;
}

static int parse_group_line(UserDb *db, const char *line, size_t len, unsigned lineno) {
        const char *f[4];
        size_t l[4];
        unsigned long gid;
        GroupEntry *n;

        if (!account_fields(line, len, f, l, 4) || parse_account_id(f[2], l[2], &gid) < 0)
                return 0;

        n = ARRAY_PUSH(db->groups, db->n_groups);
        if (!n)
                return -ENOMEM;
        *n = (GroupEntry) {
                .name = strndup(f[0], l[0]),
                .gid = (gid_t) gid,
                .members = comma_list_split(f[3], l[3]),
                .line = lineno,
        };
        if (!n->name || !n->members)
                return -ENOMEM;
        return 0;
}

int userdb_parse_passwd(UserDb *db, const char *text) {
        return for_each_line(text, parse_passwd_line, db);
}

int userdb_parse_group(UserDb *db, const char *text) {
        return for_each_line(text, parse_group_line, db);
}

int userdb_load(UserDb *db, int root_fd) {
        _cleanup_free_ char *passwd = NULL, *group = NULL;
        int r;

        r = read_file_at(root_fd, "/etc/passwd", RESOLVE_POLICY_IN_ROOT, ACCOUNT_FILE_MAX, &passwd, NULL);
        if (r < 0)
                return r;
        r = read_file_at(root_fd, "/etc/group", RESOLVE_POLICY_IN_ROOT, ACCOUNT_FILE_MAX, &group, NULL);
        if (r < 0)
                return r;
        r = userdb_parse_passwd(db, passwd);
        if (r < 0)
                return r;
        return userdb_parse_group(db, group);
}

const PasswdEntry *userdb_find_user(const UserDb *db, const char *name) {
        for (size_t i = 0; i < db->n_users; i++)
                if (streq(db->users[i].name, name))
                        return &db->users[i];
        return NULL;
}

const PasswdEntry *userdb_find_uid(const UserDb *db, uid_t uid, const PasswdEntry *except) {
        for (size_t i = 0; i < db->n_users; i++)
                if (db->users[i].uid == uid && &db->users[i] != except)
                        return &db->users[i];
        return NULL;
}

const GroupEntry *userdb_find_group(const UserDb *db, const char *name) {
        for (size_t i = 0; i < db->n_groups; i++)
                if (streq(db->groups[i].name, name))
                        return &db->groups[i];
        return NULL;
}

const GroupEntry *userdb_find_gid(const UserDb *db, gid_t gid) {
        for (size_t i = 0; i < db->n_groups; i++)
                if (db->groups[i].gid == gid)
                        return &db->groups[i];
        return NULL;
}

bool group_has_member(const GroupEntry *g, const char *user) {
        for (char **m = g->members; m && *m; m++)
                if (streq(*m, user))
                        return true;
        return false;
}

bool gid_list_contains(const gid_t *gids, size_t n, gid_t gid) {
        for (size_t i = 0; i < n; i++)
                if (gids[i] == gid)
                        return true;
        return false;
}

int userdb_user_gids(const UserDb *db, const char *name, gid_t primary, gid_t **ret, size_t *ret_n) {
        _cleanup_free_ gid_t *gids = calloc(db->n_groups + 1, sizeof(gid_t));
        size_t n = 0;

        if (!gids)
                return -ENOMEM;
        gids[n++] = primary;
        for (size_t i = 0; i < db->n_groups; i++)
                if (group_has_member(&db->groups[i], name) && !gid_list_contains(gids, n, db->groups[i].gid))
                        gids[n++] = db->groups[i].gid;
        *ret = TAKE_PTR(gids);
        *ret_n = n;
        return 0;
}

int nss_user_gids(const char *name, gid_t primary, gid_t **ret, size_t *ret_n) {
        _cleanup_free_ gid_t *gids = NULL;
        int n = 64;

        /* getgrouplist() says how many there are when the buffer was too small; they may grow meanwhile. */
        for (unsigned attempt = 0; attempt < 4; attempt++) {
                gid_t *g = reallocarray(gids, (size_t) n, sizeof(gid_t));
                int want = n;

                if (!g)
                        return -ENOMEM;
                gids = g;
                if (getgrouplist(name, primary, gids, &want) >= 0) {
                        *ret = TAKE_PTR(gids);
                        *ret_n = (size_t) want;
                        return 0;
                }
                if (want <= n)
                        n *= 2;
                else
                        n = want;
        }
        return -E2BIG;
}
