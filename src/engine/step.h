/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The step contract (issue 15): what a step includes, and nothing
 * else of the engine. A Step is an ordered list of Parts. Each part's look()
 * reads the host, changes nothing, and describes what it found as items:
 * in place (item_ok), findings (item_finding, item_finding_ex), refusals
 * (item_stop) and changes (item_change: a Change with its apply and verify).
 * The engine (engine/run.c) owns the verbs: plan and check report the
 * description, apply applies each Change that is not in place, in look
 * order. Where a verb shows an item differently, that is a field of the
 * item, never a branch in the step: no VERB_ token in a step.
 */

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "engine/account.h"
#include "engine/engine.h"   /* Config, HostFacts, Step */
#include "engine/report.h"   /* ItemStatus */

struct sd_bus;
struct UnitState;

typedef struct StepRun StepRun; /* the engine's run of one step (per account): opaque to steps */
typedef struct Change Change;

/* ---- what a step reads: the run's context ---- */
const Config *run_config(const StepRun *run);
int run_root_fd(const StepRun *run);
const char *run_root(const StepRun *run);   /* "/" or --root's DIR */
bool run_live(const StepRun *run);
HostFacts *run_facts(StepRun *run);         /* host-wide facts, written by the step that learns them */
void *run_state(StepRun *run);              /* the step's own state: Step.state_size bytes, zeroed */
char *run_shown(const StepRun *run, const char *path);  /* path as the host sees it (--root's DIR first), malloc'd */
/*
 * A formatted text the run owns (freed when the step's run ends), for the
 * texts of a description: a Finding's message and fix, a Change's plan and
 * problem, or what a Change's data needs at apply. Never NULL: a
 * description we cannot record aborts, as the report does.
 */
char *run_asprintf(StepRun *run, const char *fmt, ...) _printf_(2, 3);
char *run_vasprintf(StepRun *run, const char *fmt, va_list ap) _printf_(2, 0);
int run_system_bus(StepRun *run, struct sd_bus **ret);  /* shared, opened on first use; never unref it */
/* The state of uid's manager, user@UID.service, through that bus; its name (malloc'd) in *ret_name unless NULL. */
int run_user_manager_state(StepRun *run, uid_t uid, char **ret_name, struct UnitState *ret);
/*
 * Every account of the run, in the configuration's order (one per tenant):
 * what a per-account part needs of the others (subordinate ranges that
 * must not overlap, groups that must not be shared). An account earlier
 * than the one the part runs for has been through this step already.
 */
const Account *run_accounts(const StepRun *run, size_t *ret_n);

/* ---- the descriptors ---- */

/* The verbs as bits, for "not reported in" and item_stop(): data, not a branch. */
enum {
        IN_PLAN = 1 << 0,
        IN_CHECK = 1 << 1,
        IN_APPLY = 1 << 2,
};

typedef enum StopWhen {
        STOP_APPLY = IN_APPLY,
        STOP_PLAN = IN_PLAN,
        STOP_CHECK = IN_CHECK,
        STOP_NOT_CHECK = IN_APPLY | IN_PLAN,           /* disk's refusals (exit 3 in apply and plan) */
        STOP_ALWAYS = IN_APPLY | IN_PLAN | IN_CHECK,   /* a usage error (exit 2 in every verb) */
} StopWhen;

/* How one verb shows an item, whole: status, text and fix (NULL: none). */
typedef struct Verdict {
        ItemStatus status;
        const char *message;
        const char *fix;
} Verdict;

/*
 * A verdict whose status, text or fix differs by verb. status/message/fix
 * are what apply shows (ITEM_OK: in place, PASS in check); in_plan and
 * in_check, when set, are what that verb shows instead, whole (no field
 * falls back: a zeroed status is ITEM_OK, not "as in apply").
 */
typedef struct Finding {
        const char *id;
        ItemStatus status;
        const char *message;
        const char *fix;
        const Verdict *in_plan;     /* credentials.groups: WARN in plan, without a fix */
        const Verdict *in_check;    /* credentials.groups: a sentence more in check's fix */
        unsigned hidden_in;         /* IN_*: verbs that do not report it */
} Finding;

enum {
        EFFECT_SYSTEM_RELOAD = 1 << 0,  /* the system manager reads what this writes (fstab, a unit, a drop-in) */
};

typedef enum Gate {
        GATE_ALWAYS,  /* applied even after an earlier item of the run failed (files: as today) */
        GATE_CLEAN,   /* not applied once anything failed in this run (start a daemon, restart the agent) */
} Gate;

/*
 * Something apply would change, or that is in place. Reported, per verb:
 *   plan:  its state with the plan text, no fix;
 *   check: PASS with the plan text when OK, else FAIL with problem (NULL:
 *          plan) and check_fix (NULL: "rootless-ci apply"); in_check, when
 *          set, is check's verdict instead, whole (agent.service passes
 *          while only a restart is owed);
 *   apply: OK items as OK with the plan text (shown in JSON only); the
 *          others reserve their place in the report, and apply() fills it
 *          with change_done() or change_failed().
 * hidden_in: verbs that neither report it nor (apply) apply it.
 */
struct Change {
        const char *id;
        ItemStatus state;           /* OK, CREATE, CHANGE or REMOVE, from the look */
        const char *plan;           /* what apply would do; OK: what is in place */
        const char *problem;        /* check: what is wrong (NULL: plan) */
        const char *check_fix;
        const Verdict *in_check;
        unsigned hidden_in;
        const char *marker;         /* a restart this change owes, set by the engine before apply() */
        unsigned effects;           /* EFFECT_*, recorded by the engine once it is applied */
        Gate gate;
        int (*apply)(StepRun *run, Change *c);        /* make it; report with change_done()/change_failed() */
        int (*verify)(StepRun *run, const Change *c); /* read it back; NULL: apply verified it itself */
        void *data;                 /* what apply needs: owned by the step's state, unless data_free */
        void (*data_free)(void *data);  /* set: the engine frees data with the run (generic items) */
};

/* ---- describing: the only way a step reports ---- */

/* In place: "=" in plan and apply, PASS in check. */
void item_ok(StepRun *run, const char *id, const char *fmt, ...) _printf_(3, 4);

/* A verdict shown the same in every verb (PASS, FAIL with its fix, WARN, SKIP). */
void item_finding(StepRun *run, const char *id, ItemStatus status, const char *fix, const char *fmt, ...)
        _printf_(5, 6);

/* A finding whose verdict, text or fix differs by verb. */
void item_finding_ex(StepRun *run, const Finding *f);

/*
 * A FAIL that stops the part in the verbs of `when`: reported, then
 * Step.refusal is logged (its %s is the id) and error is returned, for the
 * look to return. In the other verbs it is a failed check: 0, go on.
 */
int item_stop(StepRun *run, const char *id, StopWhen when, int error, const char *fix, const char *fmt, ...)
        _printf_(6, 7);

/*
 * item_stop() as data, for a stop whose stderr line is its own: log, when
 * set, is what is logged in the verbs of `when` instead of Step.refusal
 * (disk: "/etc/fstab is not a regular file.", exit 1).
 */
typedef struct Stop {
        const char *id;
        StopWhen when;
        int error;
        const char *fix;
        const char *message;
        const char *log;            /* NULL: Step.refusal with the id */
} Stop;
int item_stop_ex(StepRun *run, const Stop *s);

/* Describe a Change (copied, with its texts); returns the stored copy. */
Change *item_change(StepRun *run, const Change *c);

/*
 * Plan only: apply would make this Change (it is not in place). For a fact a
 * later step reads as done: the disk step's data_mount_planned. False in
 * check (which judges the host as it is) and in apply (which makes it).
 */
bool change_planned(const StepRun *run, const Change *c);

/* ---- inside Change.apply ---- */

/* What apply did (changed=true), in the place the change reserved. */
void change_done(StepRun *run, const char *id, ItemStatus status, const char *fmt, ...) _printf_(4, 5);
/* A problem apply met that is not an error: a FAIL item in the change's place; the run fails, apply goes on. */
void change_failed(StepRun *run, const char *id, const char *fix, const char *fmt, ...) _printf_(4, 5);
/*
 * An item apply reports beside what it did, that changes nothing itself (a
 * WARN: "the original stays at ..."), in the change's place; shown as
 * item_finding() shows it (outside an apply: at the end, as item_finding()).
 */
void change_note(StepRun *run, const char *id, ItemStatus status, const char *fix, const char *fmt, ...)
        _printf_(5, 6);

/*
 * In the verbs of `when`: log fmt as an error and return error, reporting
 * nothing (the step that failed first said why: the daemon step for an
 * account the user step could not make). In the other verbs: 0, nothing.
 */
int run_stop_quietly(StepRun *run, StopWhen when, int error, const char *fmt, ...) _printf_(4, 5);

/* ---- generic items (engine/items.c): what tmpfiles calls item types ---- */

/* A root-owned file (mode 0644) that holds text: written atomically, read back. */
typedef struct FileWant {
        const char *id;
        const char *path;           /* in the root */
        const char *text;
        const char *what;           /* names it in messages: "the user unit" */
        const char *marker;         /* a restart a change of it owes, or NULL */
        unsigned effects;           /* EFFECT_SYSTEM_RELOAD for what the system manager reads */
        unsigned hidden_in;         /* IN_*: verbs that do not report it (in place or not) */
} FileWant;

/* Describe it: 0 in place, 1 a change (plan, check: described; apply: applied by the engine), < 0 logged. */
int item_file(StepRun *run, const FileWant *w);

/*
 * A symlink at path that points to target. Only a missing entry or a
 * symlink is replaced: anything else there is a FAIL (move it away), left
 * alone. Apply writes it beside and renames it into place.
 */
typedef struct SymlinkWant {
        const char *id;
        const char *path;           /* in the root */
        const char *target;
        const char *what;           /* names it in messages: "enable the unit in user managers" */
        unsigned hidden_in;         /* IN_*: verbs that do not report it */
} SymlinkWant;

/* Describe it: 0 in place (or not a symlink: FAIL), 1 a change, < 0 logged. */
int item_symlink(StepRun *run, const SymlinkWant *w);

/* ---- restarts and reloads owed ---- */

/* A restart owed: by a Change of this part not in place with this marker, or (apply) by a killed run's marker. */
bool owed(StepRun *run, const char *marker);
/* Paid: clear the marker (apply; nothing in plan and check). */
int owed_paid(StepRun *run, const char *marker);
/* daemon-reload of the system manager if anything owes one, or force (apply only): 1 reloaded, 0 not. */
int system_reload_if_owed(StepRun *run, bool force);

/*
 * Apply only: an item of the run has failed, so GATE_CLEAN changes are not
 * applied and the engine stops after this step. A look that must not even
 * look then (the agent's service on a half-made set-up) returns early.
 * Always false in plan and check.
 */
bool run_gate_closed(const StepRun *run);

/* ---- a step ---- */
struct Part {
        const char *name;
        /* Read the host, describe items. Never changes anything. < 0: could not go on (logged). */
        int (*look)(StepRun *run, Account *a);
        /* Apply only, when a Change of the part is pending: before its changes (locks) and after. */
        int (*begin)(StepRun *run, Account *a);
        void (*end)(StepRun *run, Account *a);
        /*
         * Apply only, after begin: look again under begin's locks (another
         * tool may have changed the host meanwhile) and apply what that look
         * describes instead. The first look's Changes are dropped; the
         * relook's are reported after the part's items (where apply's results
         * went before the contract), its item_ok and OK Changes not at all,
         * and a finding only if the first look did not report it already.
         */
        bool relook;
        /* Apply only, after the part's changes, even when there were none: pay what is owed. */
        int (*settle)(StepRun *run, Account *a);
        /* Apply only, when no item of the step has failed: record a cache (preflight's rootlesskit answer). */
        int (*commit)(StepRun *run, Account *a);
        /* GATE_CLEAN: apply skips the whole part, its look too, once anything failed in this run (the
         * daemon's service and its checks: no daemon started, nothing judged on a half-made set-up). */
        Gate gate;
        /*
         * In a per-account step: the part is about the host, not the account
         * (the root daemon, a sysctl, a system-wide drop-in). It runs once,
         * in the first account's run, and its ids carry no ":tenant".
         */
        bool host_wide;
};
#define STEP_PARTS(parts_) .parts = (parts_), .n_parts = ELEMENTSOF(parts_) /* in a Step: its Part array */
