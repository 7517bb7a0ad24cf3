/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reclaim/reclaim.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/subid.h"
#include "util/userns.h"

/* ------------------------------------------------------------ the PATHs */

static bool has_dot_component(const char *p) {
        for (const char *s = p; *s;) {
                size_t l = strcspn(s, "/");
                if ((l == 1 && s[0] == '.') || (l == 2 && s[0] == '.' && s[1] == '.'))
                        return true;
                s += l;
                s += strspn(s, "/");
        }
        return false;
}

/* "/a//b/" -> "/a/b": repeated and trailing slashes dropped ("/" stays "/"). */
static char *path_simplify(const char *p) {
        char *s = malloc(strlen(p) + 1), *o = s;

        if (!s)
                return NULL;
        for (; *p; p++)
                if (*p != '/' || o == s || o[-1] != '/')
                        *o++ = *p;
        if (o > s + 1 && o[-1] == '/')
                o--;
        *o = 0;
        return s;
}

int reclaim_path_below(const char *builds_dir, const char *path, char **ret_rel) {
        _cleanup_free_ char *dir = NULL, *p = NULL;
        const char *rest;

        if (builds_dir[0] != '/' || has_dot_component(builds_dir))
                return log_error_errno(-ERCI_USAGE,
                                       "The builds directory '%s' must be an absolute path without . or .. components.",
                                       builds_dir);
        if (path[0] != '/' || has_dot_component(path))
                return log_error_errno(-ERCI_USAGE,
                                       "Refusing '%s': a checkout must be named by an absolute path without . or .. "
                                       "components (below the builds directory %s). Nothing was changed.",
                                       path, builds_dir);
        dir = path_simplify(builds_dir);
        p = path_simplify(path);
        if (!dir || !p)
                return -ENOMEM;
        rest = streq(dir, "/") ? p : startswith(p, dir);
        if (!rest || rest[0] != '/' || rest[1] == 0)
                return log_error_errno(-ERCI_USAGE,
                                       "Refusing %s: it is not below the builds directory %s; reclaim works only on "
                                       "what jobs write there. Nothing was changed.",
                                       path, builds_dir);
        *ret_rel = strdup(rest + 1);
        return *ret_rel ? 0 : -ENOMEM;
}

int reclaim_open_checkout(int builds_fd, const char *path, const char *rel, int *ret_fd) {
        _cleanup_close_ int fd = -1;
        struct statx b, c;
        int r;

        *ret_fd = -1;
        fd = safe_openat(builds_fd, rel, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0, RESOLVE_POLICY_NO_SYMLINKS);
        if (fd == -ENOENT) {
                log_debug("%s does not exist: nothing to do there.", path);
                return 0;
        }
        if (fd == -ELOOP) {
                _cleanup_(path_finding_done) PathFinding f = {};
                _cleanup_free_ char *simple = path_simplify(path);
                size_t below;

                if (!simple)
                        return -ENOMEM;
                /* The symlink by the path given, simplified: that is the builds directory (simplified), '/',
                 * then rel (as reclaim_path_below() made it); f.path is "/rel-prefix". */
                below = strlen(simple) - strlen(rel);
                if (path_check(builds_fd, rel, 0, 0, &f, NULL) > 0 && f.problem == PATH_PROBLEM_SYMLINK)
                        return log_error_errno(-ERCI_USAGE,
                                               "Refusing %s: %.*s%s is a symlink, and reclaim never follows one. "
                                               "Nothing was changed.",
                                               path, (int) below - 1, simple, f.path);
                return log_error_errno(-ERCI_USAGE,
                                       "Refusing %s: a symlink is on its way below the builds directory, and reclaim "
                                       "never follows one. Nothing was changed.",
                                       path);
        }
        if (fd == -ENOTDIR)
                return log_error_errno(-ERCI_USAGE, "Refusing %s: it is not a directory. Nothing was changed.", path);
        if (fd < 0)
                return log_error_errno(fd, "Failed to open %s: %m", path);
        r = reclaim_statx_fd(builds_fd, &b);
        if (r >= 0)
                r = reclaim_statx_fd(fd, &c);
        if (r < 0)
                return log_error_errno(r, "Failed to look at %s: %m", path);
        if (!reclaim_same_mount(&b, &c))
                return log_error_errno(-ERCI_USAGE,
                                       "Refusing %s: it is on another mount than the builds directory, and reclaim "
                                       "never crosses into one. Nothing was changed.",
                                       path);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* ------------------------------------------------------------ the verb */

typedef struct Reclaim {
        const char *builds_dir;
        const char *const *paths;
        char **rels;
        size_t n_paths;
        const char *user;
        ReclaimIds ids;
        unsigned long long t0;
} Reclaim;

static void log_nothing_there(const Reclaim *rc) {
        if (rc->n_paths == 1)
                log_info("%s: does not exist, nothing to do (%.1f ms)", rc->paths[0], ms_since_usec(rc->t0));
        else
                log_info("None of the %zu PATHs exists, nothing to do (%.1f ms)", rc->n_paths, ms_since_usec(rc->t0));
}

/*
 * Before any namespace (the first job of a pipeline has no checkout yet):
 * is every PATH missing, as the user sees it? Only a plain "no such file"
 * all along counts; anything else (a symlink, a directory closed to the
 * user) is for the checks in the namespace to judge.
 */
static bool nothing_there(const Reclaim *rc) {
        _cleanup_close_ int builds_fd = open(rc->builds_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);

        if (builds_fd < 0)
                return errno == ENOENT;
        for (size_t i = 0; i < rc->n_paths; i++) {
                int fd = safe_openat(builds_fd, rc->rels[i], O_PATH, 0, RESOLVE_POLICY_NO_SYMLINKS);
                if (fd != -ENOENT) {
                        safe_close(fd);
                        return false;
                }
        }
        return true;
}

/* In the user namespace: check every PATH first (a refusal changes nothing), then walk them. */
static int reclaim_in_userns(void *userdata) {
        Reclaim *rc = userdata;
        _cleanup_(reclaim_stats_done) ReclaimStats stats = {};
        _cleanup_close_ int builds_fd = -1;
        _cleanup_free_ int *fds = NULL;
        struct stat st;
        size_t done = 0;
        int r = 0;

        builds_fd = open(rc->builds_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (builds_fd < 0 && errno == ENOENT) {
                log_info("The builds directory %s does not exist: nothing to do.", rc->builds_dir);
                return EXIT_OK;
        }
        if (builds_fd < 0) {
                r = log_error_errno(negative_errno(), "Refusing the builds directory %s: %m. Nothing was changed.",
                                    rc->builds_dir);
                return r == -ENOTDIR ? EXIT_USAGE : EXIT_FAILED;
        }
        if (fstat(builds_fd, &st) < 0)
                return log_error_errno(negative_errno(), "Failed to look at %s: %m", rc->builds_dir), EXIT_FAILED;
        if (st.st_uid != rc->ids.self_uid) {
                log_error("Refusing the builds directory %s: it is not %s's. Nothing was changed.", rc->builds_dir,
                          rc->user);
                return EXIT_USAGE;
        }

        fds = malloc(rc->n_paths * sizeof(int));
        if (!fds)
                return log_error_errno(-ENOMEM, "Out of memory."), EXIT_FAILED;
        for (size_t i = 0; i < rc->n_paths; i++)
                fds[i] = -1;
        for (size_t i = 0; i < rc->n_paths && r >= 0; i++)
                r = reclaim_open_checkout(builds_fd, rc->paths[i], rc->rels[i], &fds[i]);

        for (size_t i = 0; i < rc->n_paths && r >= 0; i++) {
                if (fds[i] < 0)
                        continue;
                r = reclaim_tree(fds[i], rc->paths[i], &rc->ids, &stats);
                done++;
        }
        for (size_t i = 0; i < rc->n_paths; i++)
                safe_close(fds[i]);
        if (r < 0)
                return r == -ERCI_USAGE ? EXIT_USAGE : EXIT_FAILED;

        if (done == 0)
                log_nothing_there(rc);
        else if (rc->n_paths == 1)
                log_info("%s: re-owned %" PRIu64 " of %" PRIu64 " entries to %s, opened %" PRIu64
                         " directories (%.1f ms)",
                         rc->paths[0], stats.reowned, stats.entries, rc->user, stats.opened, ms_since_usec(rc->t0));
        else
                log_info("%zu of %zu paths: re-owned %" PRIu64 " of %" PRIu64 " entries to %s, opened %" PRIu64
                         " directories (%.1f ms)",
                         done, rc->n_paths, stats.reowned, stats.entries, rc->user, stats.opened,
                         ms_since_usec(rc->t0));
        if (stats.foreign > 0)
                log_warning("Left %" PRIu64 " %s owned by IDs that are neither %s's nor its subordinate IDs "
                            "(first: %s).",
                            stats.foreign, stats.foreign == 1 ? "entry" : "entries", rc->user, stats.first_foreign);
        if (stats.hardlinked > 0)
                log_warning("Left %" PRIu64 " %s of subordinate IDs with names outside what was walked (first: "
                            "%s); removing one needs only its directory.",
                            stats.hardlinked, stats.hardlinked == 1 ? "file" : "files", stats.first_hardlinked);
        if (stats.mounts > 0)
                log_warning("Did not enter %" PRIu64 " %s below (first: %s): reclaim never crosses into another "
                            "mount.",
                            stats.mounts, stats.mounts == 1 ? "mount" : "mounts", stats.first_mount);
        if (stats.errors > 0) {
                log_error("%" PRIu64 " %s could not be given back%s.", stats.errors,
                          stats.errors == 1 ? "entry" : "entries",
                          stats.errors > RECLAIM_ERRORS_LOGGED ? " (the first ones are above)" : " (above)");
                return EXIT_FAILED;
        }
        return EXIT_OK;
}

/* Every subordinate range of the user's in /etc/subuid or /etc/subgid, as newuidmap reads them. */
static int read_user_ranges(int root_fd, const char *file, const char *user, uid_t uid, SubIdRange **ret,
                            size_t *ret_n) {
        _cleanup_free_ char *text = NULL;
        SubIdFile f = {};
        size_t size;
        int r;

        *ret = NULL;
        *ret_n = 0;
        r = read_file_at(root_fd, file, RESOLVE_POLICY_IN_ROOT, 64 * 1024 * 1024, &text, &size);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return log_error_errno(r, "Failed to read /%s: %m", file);
        r = subid_file_parse(&f, text, size);
        if (r >= 0)
                r = subid_file_user_ranges(&f, user, uid, ret, ret_n);
        subid_file_done(&f);
        return r;
}

static uint32_t overflow_id(int root_fd, const char *file) {
        _cleanup_free_ char *line = NULL;
        unsigned long v;
        char *end;

        if (read_one_line_at(root_fd, file, &line) < 0)
                return 65534;
        errno = 0;
        v = strtoul(line, &end, 10);
        return errno || *end || v > UINT32_MAX ? 65534 : (uint32_t) v;
}

int reclaim_main(const ReclaimOptions *o) {
        _cleanup_free_ SubIdRange *subuids = NULL, *subgids = NULL;
        _cleanup_free_ char *user = NULL;
        _cleanup_close_ int root_fd = -1;
        _cleanup_free_ char **rels = NULL;
        size_t n_subuids = 0, n_subgids = 0;
        Reclaim rc = { .paths = o->paths, .n_paths = o->n_paths, .t0 = now_usec() };
        UserNsIdentity id;
        struct passwd *pw;
        IdMap map;
        int r;

        log_set_step("reclaim");
        if (geteuid() == 0)
                return log_error_errno(-ERCI_USAGE,
                                       "reclaim is the CI user's own command (the agent's hooks run it as that user): "
                                       "it works inside that user's user namespace, and as root it would have "
                                       "powers it must not have over the builds. Run it as the CI user.");
        rc.builds_dir = o->builds_dir ?: getenv("BUILDKITE_BUILD_PATH");
        if (!rc.builds_dir || !*rc.builds_dir)
                return log_error_errno(-ERCI_USAGE,
                                       "No builds directory: give --builds-dir=DIR or set BUILDKITE_BUILD_PATH (the "
                                       "agent's drop-in sets it).");
        if (o->n_paths == 0)
                return log_error_errno(-ERCI_USAGE, "reclaim needs at least one PATH (a job's checkout).");

        rels = calloc(o->n_paths + 1, sizeof(char *));
        if (!rels)
                return -ENOMEM;
        r = 0;
        for (size_t i = 0; i < o->n_paths && r >= 0; i++)
                r = reclaim_path_below(rc.builds_dir, o->paths[i], &rels[i]);
        rc.rels = rels;
        if (r >= 0 && nothing_there(&rc)) {
                log_nothing_there(&rc);
                goto out;
        }
        if (r >= 0) {
                /* As newuidmap finds the user: by its real UID. */
                errno = 0;
                pw = getpwuid(getuid());
                if (!pw)
                        r = log_error_errno(errno ? -errno : -ENOENT, "Failed to find the account of UID %u: %m",
                                            (unsigned) getuid());
        }
        if (r >= 0) {
                user = strdup(pw->pw_name);
                root_fd = open_root(NULL);
                if (!user)
                        r = -ENOMEM;
                else if (root_fd < 0)
                        r = log_error_errno(root_fd, "Failed to open /: %m");
        }
        if (r >= 0)
                r = read_user_ranges(root_fd, "etc/subuid", user, getuid(), &subuids, &n_subuids);
        if (r >= 0)
                r = read_user_ranges(root_fd, "etc/subgid", user, getuid(), &subgids, &n_subgids);
        if (r < 0)
                goto out;

        id = (UserNsIdentity) {
                .uid = getuid(), .gid = getgid(),
                .subuids = subuids, .n_subuids = n_subuids, .subgids = subgids, .n_subgids = n_subgids,
        };
        rc.user = user;
        rc.ids = (ReclaimIds) {
                .self_uid = 0, .self_gid = 0,
                .overflow_uid = overflow_id(root_fd, "proc/sys/kernel/overflowuid"),
                .overflow_gid = overflow_id(root_fd, "proc/sys/kernel/overflowgid"),
        };
        r = userns_map_build(id.uid, subuids, n_subuids, &map, &rc.ids.uid_max);
        if (r >= 0)
                r = userns_map_build(id.gid, subgids, n_subgids, &map, &rc.ids.gid_max);
        if (r < 0) {
                log_error_errno(r, "Failed to map %s's subordinate IDs: %m", user);
                goto out;
        }
        if (n_subuids == 0 || n_subgids == 0)
                log_warning("%s has no subordinate %s in /etc/%s: only its own directories are opened up.", user,
                            n_subuids == 0 ? "UIDs" : "GIDs", n_subuids == 0 ? "subuid" : "subgid");

        r = userns_call(&id, reclaim_in_userns, &rc);
        if (r >= 0)
                r = r == EXIT_OK ? 0 : r == EXIT_USAGE ? -ERCI_USAGE : -ERCI_FAILED;
        else
                r = -ERCI_FAILED;  /* logged */
out:
        for (size_t i = 0; i < o->n_paths; i++)
                free(rels[i]);
        return r == -ENOMEM ? log_error_errno(r, "Out of memory.") : r;
}
