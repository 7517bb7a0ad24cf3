/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "engine/step.h"
#include "steps/user/logindefs.h"
#include "steps/user/shadowlock.h"
#include "steps/user/subid-plan.h"
#include "util/userdb.h"

/*
 * The user step's own declarations, between its files: step.c (the Step,
 * its parts, NSS and sudoers), accounts.c (the account and the privileged
 * groups), ids.c (/etc/subuid and /etc/subgid), groups.c (the privileged
 * memberships). Not for other steps: they read the Account.
 */

typedef struct Privileged {
        char *name;
        gid_t gid;          /* (gid_t) -1 if the group does not exist */
        char *reason;
        bool other_tenant;  /* another tenant's own group: not root's, so not in HostFacts.privileged_gids */
} Privileged;

typedef enum SubIdKind {
        SUBID_KIND_UID,
        SUBID_KIND_GID,
        _SUBID_KIND_MAX,
} SubIdKind;

/* The user's range in one of the files, as the look decided it. */
typedef struct SubIdResult {
        uint64_t start, count;
        bool settled;
        SubIdRange *ranges;      /* every range of the user's after the change, start:count among them */
        size_t n_ranges;
} SubIdResult;

/* What apply writes to /etc/subuid or /etc/subgid: the look's file and plan. */
typedef struct SubIdEdit {
        SubIdKind kind;
        SubIdFile file;
        SubIdPlan plan;
        struct stat st;
        bool exists;
        ItemStatus status;
        char *display;           /* the file as the host sees it */
        char *what;              /* "drop line 3 ...; add buildkite:100000:65536" */
} SubIdEdit;

typedef struct PrivilegedMembership {
        const char *group;        /* the name on the lines to edit */
        const Privileged *priv;   /* why it leads to root */
} PrivilegedMembership;

typedef struct UserState {
        const char *name;
        Account *account;            /* the one the parts got: apply's useradd writes it */
        LoginDefs defs;
        UserDb db;
        const PasswdEntry *pw;       /* NULL: does not exist (yet) */
        Privileged *priv;
        size_t n_priv;
        bool stopped;                /* refused or in doubt (reported): the later parts describe nothing */

        /* account part: what useradd is given */
        char *home;
        bool adopt_group;

        /* ids part */
        SubIdResult ranges[_SUBID_KIND_MAX];
        SubIdEdit edits[_SUBID_KIND_MAX];
        char *gshadow;               /* /etc/gshadow as the look read it, when it exists */
        size_t gshadow_size;
        struct stat gshadow_st;
        bool gshadow_exists;
        PrivilegedMembership *memberships;
        size_t n_memberships;
        bool groups_written;
        ShadowLock lock;
        bool locked, began;
} UserState;

#define ACCOUNT_FILE_MAX (64 * 1024 * 1024)

/* accounts.c */
int user_load_login_defs(StepRun *run, UserState *s, bool report);
int user_reload_db(StepRun *run, UserState *s);
int user_collect_privileged(StepRun *run, UserState *s);
int user_collect_tenant_groups(StepRun *run, UserState *s);
/* With tenants: the other tenants' accounts, one by one (*i from 0), then NULL; without: NULL. */
const Account *user_next_other_tenant(StepRun *run, const UserState *s, size_t *i);
const Privileged *user_privileged_of_group(const UserState *s, const char *name, gid_t gid);
int user_look_account(StepRun *run, UserState *s);

/* ids.c */
int etc_file_read(StepRun *run, const char *name, char **ret_text, size_t *ret_size, struct stat *ret_st,
                  bool *ret_exists);
int etc_file_write(StepRun *run, const char *name, const char *text, size_t size, const struct stat *st,
                   bool exists, mode_t new_mode);
int user_look_subids(StepRun *run, UserState *s, SubIdKind kind, uint64_t preferred);
void subid_result_done(SubIdResult *r);
void subid_edit_done(SubIdEdit *e);

/* groups.c */
int user_look_groups(StepRun *run, UserState *s);
