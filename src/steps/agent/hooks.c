/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <ctype.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "build-config.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"

/*
 * The agent step's look at what rootless-ci gives every job through the
 * agent: its own hooks (HOOKS_DIR, installed by its package, named in the
 * drop-in's BUILDKITE_ADDITIONAL_HOOKS_PATHS) and an agent new enough to
 * read that variable. Both are only looked at: the hooks are the package's
 * files, the agent is the operator's. Every verb reports the same verdict.
 */

const char *const agent_hook_names[] = { "pre-checkout", "pre-command", "pre-exit", NULL };

/* ---- the hooks ------------------------------------------------------------------------------------------ */

/* Why the CI user (uid, primary gid) can change the entry st describes, or NULL when it cannot. */
const char *agent_hooks_writable_by(const struct stat *st, uid_t ci_uid) {
        if (st->st_uid == ci_uid)
                return "it is owned by the CI user";
        if (st->st_mode & S_IWOTH)
                return "every user can write it";
        /* A group other than root's may hold the CI user now or later: as good as writable. */
        if ((st->st_mode & S_IWGRP) && st->st_gid != 0)
                return "its group (not root's) can write it";
        return NULL;
}

typedef struct HooksLook {
        StepRun *run;
        uid_t ci_uid;
        bool live;
        unsigned problems;
} HooksLook;

static void hooks_problem(HooksLook *h, const char *shown, ItemStatus status, const char *fix, const char *why) {
        char id[PATH_MAX + 32];

        snprintf(id, sizeof(id), "agent.hooks:%s", shown);
        item_finding(h->run, id, status, fix, "%s: %s", shown, why);
        h->problems++;
}

/* One entry on the way to a hook, or a hook: root's, and nobody else can change it. */
static void hooks_judge(HooksLook *h, const char *shown, const struct stat *st) {
        const char *why = agent_hooks_writable_by(st, h->ci_uid);
        _cleanup_free_ char *fix = NULL, *msg = NULL;

        if (asprintf(&fix, "chown root:root %s && chmod go-w %s (or reinstall rootless-ci), then run rootless-ci check",
                     shown, shown) < 0)
                fix = NULL;
        if (why) {
                if (asprintf(&msg, "%s; the agent runs rootless-ci's hooks from here in every job, so a build "
                             "could change what later builds run", why) < 0)
                        msg = NULL;
                hooks_problem(h, shown, ITEM_FAIL, fix ? fix : "reinstall rootless-ci", msg ? msg : why);
        } else if (st->st_uid != 0) {
                if (asprintf(&msg, "owned by UID %u, not root: that user can change what every job runs",
                             (unsigned) st->st_uid) < 0)
                        msg = NULL;
                hooks_problem(h, shown, ITEM_WARN, fix ? fix : "reinstall rootless-ci", msg ? msg : "not root's");
        }
}

/* Each component of HOOKS_DIR (path_walk, never following a symlink): a directory, judged; else stop there. */
static int hooks_on_entry(void *userdata, const PathWalkStep *s) {
        HooksLook *h = userdata;
        _cleanup_free_ char *path = NULL, *shown = NULL;

        if (asprintf(&path, "%s/%s", streq(s->dir_path, "/") ? "" : s->dir_path, s->name) < 0 ||
            !(shown = run_shown(h->run, path)))
                return -ENOMEM;
        if (!s->st) {
                item_finding(h->run, "agent.hooks", h->live ? ITEM_FAIL : ITEM_WARN,
                             "reinstall rootless-ci (its package installs them), then run rootless-ci check",
                             "%s does not exist: the agent finds none of rootless-ci's hooks (pre-checkout and "
                             "pre-exit give back what containers leave under subordinate IDs, so the next "
                             "checkout works)%s", shown, h->live ? "" : " (offline tree: install rootless-ci into it)");
                return 1;
        }
        if (!S_ISDIR(s->st->st_mode)) {
                hooks_problem(h, shown, ITEM_FAIL, "reinstall rootless-ci, then run rootless-ci check",
                              S_ISLNK(s->st->st_mode) ? "a symlink on the way to rootless-ci's hooks: not followed"
                                                      : "not a directory");
                return 1;
        }
        hooks_judge(h, shown, s->st);
        return 0;
}

static int agent_check_hooks(StepRun *run, const Account *a) {
        _cleanup_close_ int fd = -1;
        bool live = run_live(run);
        HooksLook h = { .run = run, .ci_uid = a->uid, .live = live };
        struct stat st;
        int r;

        /* Live, "/" itself is on the way; a --root tree's own directory is its builder's business. */
        if (live) {
                if (fstat(run_root_fd(run), &st) < 0)
                        return log_error_errno(negative_errno(), "Failed to stat /: %m");
                hooks_judge(&h, "/", &st);
        }

        /* Every component, never following a symlink: whoever controls one controls what the agent runs. */
        r = path_walk(run_root_fd(run), HOOKS_DIR, 0, &(PathWalkVisitor) { .on_entry = hooks_on_entry }, &h, &fd);
        if (r < 0)
                return log_error_errno(r, "Failed to look at %s: %m", HOOKS_DIR);
        if (r > 0)
                return 0;

        for (const char *const *name = agent_hook_names; *name; name++) {
                _cleanup_free_ char *rel = NULL, *shown = NULL;

                if (asprintf(&rel, "%s/%s", HOOKS_DIR, *name) < 0 || !(shown = run_shown(run, rel)))
                        return -ENOMEM;
                if (fstatat(fd, *name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno != ENOENT)
                                return log_error_errno(negative_errno(), "Failed to stat %s: %m", shown);
                        hooks_problem(&h, shown, live ? ITEM_FAIL : ITEM_WARN,
                                      "reinstall rootless-ci, then run rootless-ci check",
                                      "missing: the agent does not run it");
                        continue;
                }
                if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
                        hooks_problem(&h, shown, ITEM_FAIL, "reinstall rootless-ci, then run rootless-ci check",
                                      S_ISLNK(st.st_mode) ? "a symlink, not rootless-ci's file"
                                      : S_ISREG(st.st_mode) ? "has other hard links (its other names may be anywhere)"
                                                            : "not a regular file");
                        continue;
                }
                hooks_judge(&h, shown, &st);
        }

        if (h.problems == 0)
                item_ok(run, "agent.hooks",
                        "%s: pre-checkout, pre-command and pre-exit, and every directory on the way, root's and "
                        "writable by nobody else", HOOKS_DIR);
        return 0;
}

/* ---- the agent's version -------------------------------------------------------------------------------- */

/* The first release whose "agent start" reads BUILDKITE_ADDITIONAL_HOOKS_PATHS (agent commit 752e2c3). */
#define AGENT_HOOKS_PATHS_VERSION "3.89.0"
#define AGENT_PACKAGE "buildkite-agent"
#define AGENT_BINARY "/usr/bin/buildkite-agent"
#define DPKG_STATUS "/var/lib/dpkg/status"

static const char *version_number(const char *s, unsigned long *ret) {
        char *end;

        if (!isdigit((unsigned char) *s)) {
                *ret = 0;
                return s;
        }
        errno = 0;
        *ret = strtoul(s, &end, 10);
        if (errno)
                *ret = ULONG_MAX;
        return end;
}

int agent_version_compare(const char *a, const char *b) {
        unsigned long ea = 0, eb = 0, x, y;
        const char *colon;

        /* An epoch ("1:3.89.0") weighs before everything else. */
        if ((colon = strchr(a, ':')) && strspn(a, "0123456789") == (size_t) (colon - a))
                (void) version_number(a, &ea), a = colon + 1;
        if ((colon = strchr(b, ':')) && strspn(b, "0123456789") == (size_t) (colon - b))
                (void) version_number(b, &eb), b = colon + 1;
        if (ea != eb)
                return ea < eb ? -1 : 1;

        for (unsigned i = 0; i < 3; i++) {
                a = version_number(a, &x);
                b = version_number(b, &y);
                if (x != y)
                        return x < y ? -1 : 1;
                a += *a == '.';
                b += *b == '.';
        }
        /* dpkg's "~": a pre-release sorts before the release (3.89.0~beta.1 < 3.89.0). */
        if ((*a == '~') != (*b == '~'))
                return *a == '~' ? -1 : 1;
        return 0;
}

/* Field "name: value" at the start of line (case-insensitive name, as dpkg reads it): the value, else NULL. */
static const char *field_value(const char *line, const char *name) {
        size_t n = strlen(name);

        if (strncasecmp(line, name, n) != 0 || line[n] != ':')
                return NULL;
        line += n + 1;
        return line + strspn(line, " \t");
}

/* The stanza's Version when its Status says installed: 1 and *ret, else 0. stanza starts at its Package: line. */
static int stanza_installed_version(const char *stanza, char **ret) {
        bool installed = false;
        const char *version = NULL;
        size_t version_len = 0;

        for (const char *line = stanza; *line && *line != '\n';) {
                const char *eol = strchrnul(line, '\n'), *v;

                if ((v = field_value(line, "Status")))
                        /* "want flag status": only "installed" means the files are there as that version. */
                        installed = (size_t) (eol - v) >= 10 && strncmp(eol - 10, " installed", 10) == 0;
                else if ((v = field_value(line, "Version"))) {
                        version = v;
                        version_len = (size_t) (eol - v);
                        while (version_len > 0 && isspace((unsigned char) version[version_len - 1]))
                                version_len--;
                }
                line = *eol ? eol + 1 : eol;
        }
        if (!installed || !version)
                return 0;
        *ret = strndup(version, version_len);
        return *ret ? 1 : -ENOMEM;
}

int dpkg_status_installed_version(const char *text, const char *package, char **ret) {
        _cleanup_free_ char *needle = NULL;
        size_t n;

        *ret = NULL;
        /* dpkg writes "Package: NAME" as each stanza's first line: look for that line alone (the file can be
         * megabytes; the other stanzas are never parsed). */
        if (asprintf(&needle, "\nPackage: %s\n", package) < 0)
                return -ENOMEM;
        n = strlen(needle);
        if (strncmp(text, needle + 1, n - 1) == 0)
                return stanza_installed_version(text, ret);
        for (const char *p = text; (p = strstr(p, needle)); p += n - 1) {
                int r;

                /* Only at the start of a stanza: a blank line before it. */
                if (p > text && p[-1] != '\n')
                        continue;
                r = stanza_installed_version(p + 1, ret);
                if (r != 0)
                        return r;
        }
        return 0;
}

static int agent_check_version(StepRun *run) {
        _cleanup_free_ char *status = NULL, *version = NULL, *binary = NULL;
        _cleanup_close_ int fd = -1;
        int r;

        /* Debian's and Buildkite's packages register it with dpkg: its version without running it. */
        r = read_file_at(run_root_fd(run), DPKG_STATUS, RESOLVE_POLICY_IN_ROOT, 64U << 20, &status, NULL);
        if (r < 0 && r != -ENOENT)
                return log_error_errno(r, "Failed to read %s: %m", DPKG_STATUS);
        if (r >= 0) {
                r = dpkg_status_installed_version(status, AGENT_PACKAGE, &version);
                if (r < 0)
                        return r;
        }
        if (version) {
                if (agent_version_compare(version, AGENT_HOOKS_PATHS_VERSION) < 0)
                        item_finding(run, "agent.version", ITEM_FAIL,
                                    "upgrade buildkite-agent to " AGENT_HOOKS_PATHS_VERSION " or later",
                                    "buildkite-agent %s (dpkg) is older than " AGENT_HOOKS_PATHS_VERSION ", the first "
                                    "that reads BUILDKITE_ADDITIONAL_HOOKS_PATHS: rootless-ci's hooks do not run, and "
                                    "a job whose containers leave files under subordinate IDs breaks the next checkout",
                                    version);
                else
                        item_ok(run, "agent.version",
                                    "buildkite-agent %s reads BUILDKITE_ADDITIONAL_HOOKS_PATHS (" AGENT_HOOKS_PATHS_VERSION
                                    " and later): it runs rootless-ci's hooks", version);
                return 0;
        }

        binary = run_shown(run, AGENT_BINARY);
        if (!binary)
                return -ENOMEM;
        fd = safe_openat(run_root_fd(run), AGENT_BINARY, O_PATH, 0, RESOLVE_POLICY_IN_ROOT);
        if (fd >= 0)
                item_finding(run, "agent.version", ITEM_WARN,
                            "make sure \"buildkite-agent --version\" says " AGENT_HOOKS_PATHS_VERSION " or later",
                            "%s is not installed by dpkg, so its version is unknown here: it must be "
                            AGENT_HOOKS_PATHS_VERSION " or later to run rootless-ci's hooks "
                            "(BUILDKITE_ADDITIONAL_HOOKS_PATHS)", binary);
        else
                item_ok(run, "agent.version",
                            "buildkite-agent is not installed; it needs " AGENT_HOOKS_PATHS_VERSION
                            " or later to run rootless-ci's hooks");
        return 0;
}

int agent_hooks_look(StepRun *run, Account *a) {
        if (a->state != ACCOUNT_KNOWN)
                return 0;
        return agent_check_hooks(run, a);
}

/* One agent package serves every tenant's instance: a part about the host (Part.host_wide). */
int agent_version_look(StepRun *run, Account *a) {
        /* Without tenants, as before: once the CI user is there. With tenants it depends on no user. */
        if (!a->tenant && a->state != ACCOUNT_KNOWN)
                return 0;
        return agent_check_version(run);
}
