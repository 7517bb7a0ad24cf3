/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "config.h"
#include "engine/account.h"
#include "engine/report.h"
#include "util/macro.h"
#include "util/subid.h"

typedef enum Verb {
        VERB_APPLY,
        VERB_PLAN,
        VERB_CHECK,
} Verb;


/* The cgroup hierarchy preflight found: only v2 delegates controllers to a user's manager. */
typedef enum CgroupHierarchy {
        CGROUP_UNKNOWN,  /* offline tree without sys/fs/cgroup: the first boot tells */
        CGROUP_V1,       /* v1, or hybrid (v1 controllers, an empty v2 tree beside them) */
        CGROUP_V2,       /* unified: /sys/fs/cgroup is cgroup2 */
} CgroupHierarchy;

/* Facts one step learns and later steps use; only the engine's context carries them. */
typedef struct HostFacts {
        char *os_id;                   /* os-release ID ("debian", "ubuntu", ...) */
        char *os_id_like;
        char *dockerd_rootless_path;   /* as seen on the host (without --root) */
        char *rootlesskit_path;
        char *network_driver;          /* "slirp4netns" or "pasta" */
        char *storage_driver;          /* "overlay2" or "fuse-overlayfs" */
        bool apparmor_restricts_userns;
        bool systemd_running;
        CgroupHierarchy cgroup;        /* what /sys/fs/cgroup under the root is (preflight.cgroup) */

        /* The data disk (disk step). */
        bool data_mounted;             /* its filesystem is mounted at MountPoint now */
        bool data_mount_planned;       /* plan: apply would mount it */

        /* user step (the CI user's own data is in Context.account) */
        gid_t *privileged_gids;        /* every GID that leads to root (the user step's list, by GID): */
        size_t n_privileged_gids;      /* a process holding one is root's equal, whatever /etc/group says now */
} HostFacts;

typedef struct Context {
        Verb verb;
        const Config *config;
        const char *root;      /* "/" live, or the --root directory */
        int root_fd;
        bool live;             /* root is "/": live-only steps run */
        bool json;
        /* Only these steps ran (comma-separated; a test hook, see EngineOptions), or NULL: the report says so. */
        const char *only_steps;

        const char *current_step;
        Item *items;
        size_t n_items;
        bool any_failed;       /* a check failed, or a step failed */
        bool any_changed;

        HostFacts facts;
        /*
         * The accounts, one per tenant in the configuration's order
         * (engine/account.h): each written by the user step, read by the
         * later steps. The per-account steps run once for each.
         */
        Account *accounts;
        size_t n_accounts;
        const Account *current_account;  /* the account whose run of a per-account step is running, or NULL */
        const char *step_label;          /* the log's name of that run ("daemon:pr"), or NULL */

        /* One connection to the system manager for every step (context_system_bus()), opened on first use. */
        struct sd_bus *system_bus;
        /* apply changed a file the system manager reads (fstab, a unit, a drop-in) and it has not reloaded yet. */
        bool system_reload_owed;
} Context;

typedef struct Part Part;   /* engine/step.h: the step contract */

typedef struct Step {
        const char *name;
        /*
         * The step contract (engine/step.h): its parts, in order. Each part
         * looks and describes; the engine plans, checks or applies what
         * it described.
         */
        const Part *parts;
        size_t n_parts;
        bool per_account;        /* its parts get the Account they work for */
        size_t state_size;       /* run_state(): zeroed for each run of the step */
        void (*state_done)(void *state);
        const char *refusal;     /* logged by item_stop() in the verbs it stops: "... (see %s) ..." (the id) */
} Step;

/* Run one step in ctx: its parts, in order. Exported for tests. */
int step_run(Context *ctx, const Step *s);

/*
 * The system manager's bus (as root its own socket, else the system bus;
 * util/bus.h), connected on first use and shared by the steps: one
 * connection set-up per run, not one per step. Owned by ctx: never unref it.
 */
int context_system_bus(Context *ctx, struct sd_bus **ret);

/*
 * daemon-reload of the system manager, once for all the files the steps
 * changed before it: a step that changes fstab, a unit or a drop-in sets
 * ctx->system_reload_owed, and the first step that starts or restarts a
 * unit calls this first (the engine pays what is still owed at the end of
 * apply). caller_changed: the caller changed such a file itself (reload even if
 * nothing else is owed).
 */
int context_reload_system(Context *ctx, bool caller_changed);

const char *verb_to_string(Verb v);

typedef struct EngineOptions {
        Verb verb;
        const char *root;
        bool json;
        unsigned lock_timeout_ms;
        /*
         * Run only these steps (comma-separated names), in their usual order;
         * NULL runs them all. Set only from the test hook RCI_ONLY_STEPS
         * (main.c, util/testhooks.h); the report marks such a run as partial.
         */
        const char *only_steps;
} EngineOptions;

/* Run a verb over all steps; returns the process exit status. */
int engine_run(const EngineOptions *o, const Config *config);

/* Exported for tests: run the steps in ctx without locking or output. */
int engine_run_steps(Context *ctx, const Step *const *steps, size_t n_steps);
void context_done(Context *ctx);
int context_init(Context *ctx, Verb verb, const char *root, const Config *config);

/* Write the report to f (stdout), human or JSON. */
void report_print(const Context *ctx, int exit_status, FILE *f);
