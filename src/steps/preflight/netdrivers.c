/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "preflight.h"
#include "util/exec.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"

static const Package pkg_network = { "slirp4netns or pasta", "slirp4netns (or passt)", "slirp4netns (or passt)" };
static const Package pkg_slirp4netns = {
        "slirp4netns (this rootlesskit cannot drive pasta)",
        "slirp4netns (this rootlesskit cannot drive pasta)",
        "slirp4netns (this rootlesskit cannot drive pasta)",
};

/*
 * The network driver, and whether the installed rootlesskit can drive it.
 * slirp4netns, when installed, is the choice and settles it: every
 * rootlesskit release has driven it (Debian 12's 1.1.0 lists host,
 * slirp4netns, vpnkit, lxc-user-nic). pasta is the choice only without
 * slirp4netns, and only if rootlesskit lists it under --net in its --help
 * (2.0 and later): rootlesskit is asked, as nobody, on the live host, never
 * in a --root tree, whose programs rootless-ci does not run. The answer is
 * recorded (apply, once the preflight passes) in /run/rootless-ci, keyed on
 * the binary's path, device, inode, size, mtime and ctime, so a converged
 * host asks once per boot and per rootlesskit installed, and a converged
 * apply starts no process.
 */
#define NET_ANSWER_PATH "/run/rootless-ci/rootlesskit-net-drivers"
#define NET_ANSWER_HEADER "# rootless-ci: the --net drivers \"rootlesskit --help\" listed, for the binary on the next line\n"
#define ASK_TIMEOUT_MS 10000
#define NOBODY 65534


void net_answer_done(NetAnswer *a) {
        free(a->key);
        free(a->drivers);
}

int rootlesskit_net_drivers_parse(const char *help, char **ret) {
        for (const char *line = help; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
                size_t line_len = strcspn(line, "\n");
                const char *opt = memmem(line, line_len, "--net ", 6), *open, *close;
                _cleanup_free_ char *out = NULL;
                size_t n = 0;

                if (!opt || !(open = memchr(opt, '[', line_len - (size_t) (opt - line))) ||
                    !(close = memchr(open, ']', line_len - (size_t) (open - line))))
                        continue;
                out = malloc((size_t) (close - open) + 1);
                if (!out)
                        return -ENOMEM;
                /* "host, pasta(experimental), slirp4netns" → "host pasta slirp4netns" */
                for (const char *p = open + 1; p < close;) {
                        size_t word;

                        p += strspn(p, " ,");
                        word = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789-_");
                        if (word == 0) {
                                p += strcspn(p, ",]");
                                continue;
                        }
                        if (n)
                                out[n++] = ' ';
                        memcpy(out + n, p, word);
                        n += word;
                        p += word;
                        p += strcspn(p, ",]");
                }
                out[n] = 0;
                if (n == 0)
                        return -ENOENT;
                *ret = TAKE_PTR(out);
                return 0;
        }
        return -ENOENT;
}

/* The identity of the rootlesskit at path (symlinks resolved in the root): a new install changes it. */
static int rootlesskit_key(StepRun *run, const char *path, char **ret) {
        _cleanup_close_ int fd = safe_openat(run_root_fd(run), path, O_PATH, 0, RESOLVE_POLICY_IN_ROOT);
        struct stat st;

        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0)
                return negative_errno();
        return asprintf(ret, "%s %lu:%lu %lld %lld.%09ld %lld.%09ld", path, (unsigned long) st.st_dev,
                        (unsigned long) st.st_ino, (long long) st.st_size, (long long) st.st_mtim.tv_sec,
                        st.st_mtim.tv_nsec, (long long) st.st_ctim.tv_sec, st.st_ctim.tv_nsec) < 0
                       ? -ENOMEM
                       : 0;
}

/* The recorded answer for key, if there is one. */
static char *net_answer_recorded(StepRun *run, const char *key) {
        _cleanup_free_ char *text = NULL;
        const char *rest, *end;

        if (read_file_at(run_root_fd(run), NET_ANSWER_PATH, RESOLVE_POLICY_IN_ROOT, 4096, &text, NULL) < 0)
                return NULL;
        rest = startswith(text, NET_ANSWER_HEADER);
        if (!rest || !(rest = startswith(rest, key)) || *rest != '\n')
                return NULL;
        rest++;
        end = strchr(rest, '\n');
        return end && end > rest ? strndup(rest, (size_t) (end - rest)) : NULL;
}

int net_answer_record(StepRun *run, const NetAnswer *a) {
        _cleanup_free_ char *text = NULL;
        _cleanup_close_ int dfd = -1;
        int r;

        if (asprintf(&text, NET_ANSWER_HEADER "%s\n%s\n", a->key, a->drivers) < 0)
                return -ENOMEM;
        dfd = safe_mkdir_p(run_root_fd(run), "/run/rootless-ci", 0755, RESOLVE_POLICY_IN_ROOT);
        if (dfd < 0)
                return log_error_errno(dfd, "Failed to create /run/rootless-ci: %m");
        r = write_file_atomic(run_root_fd(run), NET_ANSWER_PATH, text, strlen(text), 0644, (uid_t) -1, (gid_t) -1,
                              RESOLVE_POLICY_IN_ROOT);
        if (r < 0)
                return log_error_errno(r, "Failed to write %s: %m", NET_ANSWER_PATH);
        return 0;
}

/*
 * The --net drivers of the rootlesskit at path: recorded, or asked (live
 * only). 0 with a->drivers set; -EOPNOTSUPP offline without a record; other
 * < 0 with *ret_why saying what went wrong.
 */
static int rootlesskit_net_drivers(StepRun *run, const char *path, NetAnswer *a, char **ret_why) {
        const char *argv[] = { path, "--help", NULL };
        _cleanup_free_ char *output = NULL;
        int r, status;

        r = rootlesskit_key(run, path, &a->key);
        if (r < 0)
                return asprintf(ret_why, "cannot look at %s: %s", path, strerror(-r)) < 0 ? -ENOMEM : r;
        a->drivers = net_answer_recorded(run, a->key);
        if (a->drivers)
                return 0;
        if (!run_live(run))
                return -EOPNOTSUPP;
        r = exec_capture_as(argv, NOBODY, NOBODY, ASK_TIMEOUT_MS, &status, &output);
        if (r < 0)
                return asprintf(ret_why, "cannot run %s --help: %s", path, strerror(-r)) < 0 ? -ENOMEM : r;
        if (status != 0) {
                output[strcspn(output, "\n")] = 0;
                return asprintf(ret_why, "%s --help as nobody exited with status %d%s%s", path, status,
                                output[0] ? ": " : "", output) < 0
                               ? -ENOMEM
                               : -EIO;
        }
        r = rootlesskit_net_drivers_parse(output, &a->drivers);
        if (r == -ENOENT)
                return asprintf(ret_why, "%s --help lists no --net drivers", path) < 0 ? -ENOMEM : -EBADMSG;
        if (r < 0)
                return r;
        a->fresh = true;
        return 0;
}

void check_network(StepRun *run, Distro distro, NetAnswer *answer) {
        _cleanup_free_ char *slirp = find_executable(run, "slirp4netns", NULL, NULL), *fix = NULL, *why = NULL;
        _cleanup_free_ char *pasta = NULL;
        const char *rootlesskit = run_facts(run)->rootlesskit_path;
        int r;

        if (slirp) {
                run_facts(run)->network_driver = strdup("slirp4netns");
                item_finding(run, "preflight.network", ITEM_PASS, NULL,
                             "network driver slirp4netns (%s), which every rootlesskit drives", slirp);
                return;
        }
        fix = package_fix(distro, &pkg_network);
        pasta = find_executable(run, "pasta", NULL, NULL);
        if (!pasta) {
                item_finding(run, "preflight.network", ITEM_FAIL, fix, "neither slirp4netns nor pasta is installed");
                return;
        }
        if (!rootlesskit) {
                item_finding(run, "preflight.network", ITEM_SKIP, NULL,
                             "pasta is installed (%s); whether rootlesskit drives it is asked once rootlesskit is "
                             "(see preflight.rootlesskit)", pasta);
                return;
        }
        free(fix);
        fix = package_fix(distro, &pkg_slirp4netns);
        r = rootlesskit_net_drivers(run, rootlesskit, answer, &why);
        if (r == -EOPNOTSUPP) {
                item_finding(run, "preflight.network", ITEM_SKIP, NULL,
                             "pasta is installed (%s), slirp4netns is not: whether this tree's %s drives pasta is asked on "
                             "the live host (rootless-ci runs no program of a --root tree)", pasta, rootlesskit);
                return;
        }
        if (r == -ENOMEM)
                return (void) log_error_errno(r, "Out of memory");
        if (r < 0) {
                item_finding(run, "preflight.network", ITEM_FAIL, fix,
                             "slirp4netns is not installed and it cannot be told whether %s drives pasta: %s",
                             rootlesskit, strempty(why));
                return;
        }
        if (!word_in_list(answer->drivers, "pasta")) {
                item_finding(run, "preflight.network", ITEM_FAIL, fix,
                             "slirp4netns is not installed, and pasta (%s) cannot be used: %s drives only %s (rootlesskit "
                             "--help, --net); pasta needs rootlesskit 2.0 or later",
                             pasta, rootlesskit, answer->drivers);
                return;
        }
        run_facts(run)->network_driver = strdup("pasta");
        item_finding(run, "preflight.network", ITEM_PASS, NULL, "network driver pasta (%s): %s drives %s", pasta,
                     rootlesskit, answer->drivers);
}
