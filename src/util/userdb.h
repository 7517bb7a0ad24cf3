/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * The local account files (/etc/passwd, /etc/group), read below a root
 * directory. Only "files" accounts: a user from LDAP/NIS is not seen, the
 * same way useradd --root sees a tree. These files are rootless-ci's one
 * source of account data (README, "User"); NSS is asked only to compare
 * (nss_user_gids()), never to decide. Lines that do not parse (and NIS
 * "+"/"-" lines) are skipped; the files are never written from this struct.
 */

typedef struct PasswdEntry {
        char *name;
        uid_t uid;
        gid_t gid;
        char *home;
        char *shell;
        unsigned line;
} PasswdEntry;

typedef struct GroupEntry {
        char *name;
        gid_t gid;
        char **members;     /* NULL-terminated */
        unsigned line;
} GroupEntry;

typedef struct UserDb {
        PasswdEntry *users;
        size_t n_users;
        GroupEntry *groups;
        size_t n_groups;
} UserDb;

void userdb_done(UserDb *db);

int userdb_parse_passwd(UserDb *db, const char *text);
int userdb_parse_group(UserDb *db, const char *text);

/* Read /etc/passwd and /etc/group below root_fd. A missing file is an error. */
int userdb_load(UserDb *db, int root_fd);

/* The first entry by that name (as getpwnam() would return it). */
const PasswdEntry *userdb_find_user(const UserDb *db, const char *name);
const PasswdEntry *userdb_find_uid(const UserDb *db, uid_t uid, const PasswdEntry *except);
const GroupEntry *userdb_find_group(const UserDb *db, const char *name);
const GroupEntry *userdb_find_gid(const UserDb *db, gid_t gid);
bool group_has_member(const GroupEntry *g, const char *user);

/*
 * Split one line of a colon-separated account file (without its newline)
 * into at most max fields; returns the number of fields, fields[i]/lens[i]
 * point into line.
 */
size_t colon_split(const char *line, size_t len, const char **fields, size_t *lens, size_t max);

/* Parse a decimal ID in [0, 2^32-2]. */
int parse_account_id(const char *s, size_t len, unsigned long *ret);

/* Is name (of length len) in the comma-separated list? */
bool comma_list_contains(const char *list, size_t len, const char *name);

bool gid_list_contains(const gid_t *gids, size_t n, gid_t gid);

/*
 * The groups of user name as the files say: primary first, then every group
 * line listing it, each GID once (*ret malloc'd). What its processes get
 * when the files are the whole account database.
 */
int userdb_user_gids(const UserDb *db, const char *name, gid_t primary, gid_t **ret, size_t *ret_n);

/*
 * The same through NSS (getgrouplist(), what initgroups() and so systemd's
 * User= hand a process): files, and LDAP, SSSD, nss-systemd, ... as
 * /etc/nsswitch.conf of the host says. Live host only; -E2BIG if the list
 * keeps growing.
 */
int nss_user_gids(const char *name, gid_t primary, gid_t **ret, size_t *ret_n);
