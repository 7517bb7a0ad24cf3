/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * Finding sudoers rules that apply to one user: a user specification whose
 * user list matches the user by name, "#uid", "%group"/"%#gid" of one of the
 * groups given, ALL, or a User_Alias that does, following sudo's rule that
 * the last matching entry of a list decides ("ALL, !buildkite" does not
 * apply). /etc/sudoers is read with its @include/@includedir (and #include)
 * directives, and /etc/sudoers.d is read even when not included, skipping
 * the names sudo skips (containing '.' or ending in '~').
 *
 * Not seen: rules from LDAP/SSSD, netgroups (+name) and non-Unix groups
 * (%:name); these never match here.
 */

typedef struct SudoersIdentity {
        const char *user;
        uid_t uid;                     /* (uid_t) -1: unknown */
        const char *const *groups;     /* names of the groups the user is in */
        const gid_t *gids;
        size_t n_groups;
} SudoersIdentity;

typedef struct SudoersMatch {
        char *file;       /* as the host sees it */
        unsigned line;    /* first line of the (possibly continued) rule */
        char *via;        /* the list entry that matched: "buildkite", "%ci", "ALL", "ADMINS" */
} SudoersMatch;

typedef struct SudoersAlias {
        char *name;
        char *list;
} SudoersAlias;

typedef struct SudoersRule {
        char *file;
        unsigned line;
        char *users;      /* the User_List text */
} SudoersRule;

typedef struct Sudoers {
        SudoersAlias *aliases;
        size_t n_aliases;
        SudoersRule *rules;
        size_t n_rules;
        char **includes;       /* files and directories named by include directives, in order */
        bool *include_is_dir;
        size_t n_includes;
        char **files_read;     /* every file parsed, for messages */
        size_t n_files_read;
} Sudoers;

void sudoers_done(Sudoers *s);

/* Parse one file's text; path is used in matches and to resolve relative includes. */
int sudoers_parse_text(Sudoers *s, const char *path, const char *text);

/* Read /etc/sudoers, what it includes, and /etc/sudoers.d below root_fd. */
int sudoers_load(Sudoers *s, int root_fd);

/* The rules that apply to id. */
int sudoers_match(const Sudoers *s, const SudoersIdentity *id, SudoersMatch **ret, size_t *ret_n);
void sudoers_matches_free(SudoersMatch *m, size_t n);
