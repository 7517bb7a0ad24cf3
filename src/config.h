/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/*
 * The one configuration struct. It is filled, in this order, from built-in
 * defaults, /etc/rootless-ci.conf, /etc/rootless-ci.conf.d/ *.conf (lexical
 * order; a later file overrides an earlier one) and the command line, which
 * wins. A key set twice within one file is an error. [Tenant] sections are
 * not overridden but added, in the order they are read (config-tenant.c).
 */

typedef enum FileSystem {
        FILESYSTEM_EXT4,
        FILESYSTEM_XFS,
        _FILESYSTEM_MAX,
} FileSystem;

/* Trust= of a [Tenant]: what its jobs may be (issue 16). */
typedef enum Trust {
        TRUST_UNTRUSTED,   /* the default: strangers' pull requests */
        TRUST_TRUSTED,     /* reviewed commits, with secrets */
        _TRUST_MAX,
} Trust;

/*
 * One [Tenant] section: a user with its own daemon, storage and agent
 * instance. Without any [Tenant], the run has one tenant made from [User]
 * Name= and [Agent] Unit= (engine/run.c), with no name: its ids carry no
 * ":tenant" suffix and nothing about it differs from before tenants.
 */
typedef struct Tenant {
        char *name;                 /* Name=        required, [a-z0-9-], unique */
        char *user;                 /* User=        required, unique across tenants */
        char *agent_unit;           /* AgentUnit=   buildkite-agent@<Name>.service */
        char *agent_config;         /* AgentConfig= /etc/buildkite-agent/<Name>.cfg */
        Trust trust;                /* Trust=       untrusted */
        char *origin;               /* "file:line" of its [Tenant] header, for messages; NULL if not read from a file */
} Tenant;

/*
 * A Name= is 1 to 32 of [a-z0-9-], starting with a letter or digit: it is
 * the instance of buildkite-agent@<Name>.service, the file <Name>.cfg and
 * the ":<Name>" of ids and marker files, each far below its limit of 255.
 */
#define TENANT_NAME_MAX 32
/* Each tenant runs its own dockerd and agent: far more than one VM runs. */
#define TENANTS_MAX 64

typedef struct Config {
        /* [Disk] */
        char *disk_device;          /* Device=     NULL: no disk configured */
        FileSystem filesystem;      /* FileSystem= ext4 */
        char *mount_point;          /* MountPoint= /srv/rootless-ci */
        bool wipe;                  /* Wipe=       no; never remembered */

        /* [User] */
        char *user_name;            /* Name=       buildkite */

        /* [Agent] */
        char *agent_unit;           /* Unit=       buildkite-agent.service */

        /* [Daemon] */
        unsigned ready_timeout_sec; /* ReadyTimeoutSec= 120 */

        /* [Tenant], repeated: in the order the files give them (none: the one tenant of [User]/[Agent]) */
        Tenant *tenants;
        size_t n_tenants;

        /* Where [User] or [Agent] was first set ("[User] Name= at file:line"), to refuse it with [Tenant]. */
        char *single_origin;
} Config;

#define CONFIG_PATH "/etc/rootless-ci.conf"
#define CONFIG_DROPIN_DIR "/etc/rootless-ci.conf.d"
/* The agent package's configuration directory: AgentConfig= names a file in it. */
#define AGENT_CONFIG_DIR "/etc/buildkite-agent"

int config_init(Config *c);
void config_done(Config *c);
void tenant_done(Tenant *t);

/*
 * Parse one file's text into c. path is only used in messages. Errors are
 * logged as "path:line: message" and returned as -ERCI_USAGE.
 */
int config_parse_text(Config *c, const char *path, const char *text, size_t size);

/*
 * Load the main file and the drop-ins below root (NULL or "/" for the live
 * host). If explicit_path is given (--config=FILE), only that file is read,
 * outside root, and it must exist.
 */
int config_load(Config *c, const char *root, const char *explicit_path);

/* Setters shared by the parser and the command line; each validates. */
int config_set_key(Config *c, const char *section, const char *key, const char *value, const char **ret_error);

/*
 * [User] and [Agent] (or --user, --agent-unit) describe the one tenant of a
 * configuration without [Tenant]; with [Tenant] they are refused: what
 * ("b.conf:9: [User] Name=", "--user=bob") is logged with other (where the
 * [Tenant] or the [User] it clashes with is). Returns -ERCI_USAGE.
 */
int config_refuse_mixed(const char *what, const char *other);

/* The tenant whose User= is user, or NULL. */
const Tenant *config_tenant_by_user(const Config *c, const char *user);

/* Checks that need the whole config (e.g. nothing configured that conflicts). */
int config_verify(const Config *c, const char **ret_error);

/*
 * MountPoint= must neither be nor go through a symlink in the tree below
 * root_fd (root: "/" or the --root directory, for messages): the kernel would
 * mount on the link's target while fstab and RequiresMountsFor= name the
 * literal path, and the storage directories would land wherever it points.
 * Nor may any directory on the way (root_fd's own, and MountPoint itself if
 * it exists) be someone else's than the owner of root_fd (root on a host) or
 * writable by group or others, sticky /tmp included: they could swap a
 * component between the check and the mount, or before systemd mounts the
 * fstab line at boot. 0 when it is fine; -ERCI_USAGE with *ret_message
 * (malloc'd: the key, the component and what is wrong) when not; another
 * negative errno on failure.
 */
int config_check_mount_point_path(const Config *c, int root_fd, const char *root, char **ret_message);

/* The fix a step reports with that refusal. */
#define FIX_MOUNT_POINT_PATH                                                                                   \
        "set MountPoint= to a path without symlinks whose every directory is root's and writable by root only"

/*
 * The tree of --root=DIR (root_fd) for apply, whose useradd --root chroots
 * into it and, as root, loads its NSS modules and runs its programs: DIR,
 * its etc, usr and library directories, the files that name what is loaded
 * and what is run (see root_tree_paths in config.c), and every directory on
 * the way to DIR must be root's (or the caller's, when not run as root) and
 * not writable by group or others. 0, -ERCI_USAGE with *ret_message, or
 * another negative errno.
 */
int config_check_root_tree(int root_fd, const char *root, char **ret_message);

/*
 * The checks of the configuration that need the tree it is applied to (the
 * above; the --root tree only when runs_programs_in_root: apply offline),
 * run before the lock and any step: logged, -ERCI_USAGE (exit 2), nothing
 * changed.
 */
int config_verify_in_root(const Config *c, int root_fd, const char *root, bool runs_programs_in_root);

const char *filesystem_to_string(FileSystem f);
const char *trust_to_string(Trust t);
Trust trust_from_string(const char *s);
FileSystem filesystem_from_string(const char *s);

/* Validation helpers, exported for tests. Return true when valid. */
bool valid_user_name(const char *s);
bool valid_tenant_name(const char *s);
bool valid_unit_name(const char *s);
/* Absolute, normalised (no "." / ".." / "//" components), printable, bounded. */
bool valid_absolute_path(const char *s);
/* A mount point we agree to mount a disk on (not /, /proc, /etc, ...). */
bool valid_mount_point(const char *s, const char **ret_reason);
int parse_boolean(const char *s);
