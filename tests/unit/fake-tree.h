/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "config.h"
#include "engine/engine.h"

/*
 * Fake --root trees for the user and storage steps, usable without root: the
 * CI user's UID is the test's own (1001 when the tests run as root, with its
 * home chowned to it), so the steps can hand directories to it.
 */

/* A [Tenant] for fake_run() (issue 16): until the parser fills Config.tenants, the tests do. */
typedef struct FakeTenant {
        const char *name, *user;
} FakeTenant;

uid_t fake_ci_uid(void);
gid_t fake_ci_gid(void);

/*
 * Why the test's own UID cannot be the fake CI user (run as nobody: 65534 is
 * the overflow UID, which the user step refuses for the CI user), or NULL.
 * Root is never refused (the CI user is then 1001).
 */
const char *fake_ci_uid_unusable(void);

/* First in a test that needs the CI user in the tree to be usable: skip it, saying why, when it cannot be. */
#define FAKE_SKIP_UNLESS_CI_USER_USABLE()                                \
        do {                                                             \
                const char *_why = fake_ci_uid_unusable();               \
                if (_why) {                                              \
                        test_skip(_why);                                 \
                        return;                                          \
                }                                                        \
        } while (0)

/* A Debian-like tree: passwd (root, alice, buildkite unless !with_user), group, gshadow, login.defs, empty subuid/subgid, home. */
void fake_tree_populate(const char *dir, bool with_user);

/*
 * Two tenants (issue 16): main (buildkite) and pr (buildkite-pr, UID and GID
 * fake_pr_uid(), home /home/buildkite-pr 0700, its own when run as root).
 */
extern const FakeTenant fake_two_tenants[2];
uid_t fake_pr_uid(void);
/* fake_tree_populate() with both users (with_pr) or buildkite alone. */
void fake_tree_populate_tenants(const char *dir, bool with_pr);

/* Write passwd/group with the fake UIDs (@UID@, @GID@: the CI user's; @ALICE@: another user's). */
void fake_tree_write_ids(const char *dir, const char *relpath, const char *fmt);

typedef struct FakeRun {
        const char *disk_device;   /* set before fake_run() for Device= */
        FakeTenant tenants[4];     /* set before fake_run(): [Tenant] sections, in order (none: [User] as before) */
        size_t n_tenants;
        /*
         * live: the storage step runs as on a live host (the user step still
         * offline), with the facts the disk step would have left.
         */
        bool live, data_mounted, data_mount_planned;
        Config config;
        Context ctx;
        int r;
} FakeRun;

/*
 * Every FAIL item of ctx has a fix (else the test fails, naming it); returns
 * the number of FAIL items. fake_run() checks this after every run.
 */
size_t fake_assert_every_failure_has_a_fix(const Context *ctx);

/* Fill c's tenants as the [Tenant] parser would, with its defaults (n = 0: none). */
void fake_config_tenants(Config *c, const FakeTenant *tenants, size_t n);

/* Run the user step, then (with_storage) the storage step, on dir with verb. */
void fake_run(FakeRun *run, const char *dir, Verb verb, bool with_storage);
void fake_run_done(FakeRun *run);

/* Items of the run: count by id prefix and status (_ITEM_STATUS_MAX: any), and with a message containing needle. */
size_t fake_count(const FakeRun *run, const char *id, ItemStatus status, const char *needle);
/* The report as rootless-ci prints it on stdout (json: as with --json); malloc'd. */
char *fake_report(const FakeRun *run, bool json);
/* Print the items (for a failing test's log). */
void fake_dump(const FakeRun *run);
