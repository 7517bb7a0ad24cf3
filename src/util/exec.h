/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

/*
 * Running the few external programs rootless-ci needs (mkfs.ext4, mkfs.xfs),
 * never through a shell: argv is passed as is, the environment is a fixed
 * clean one (PATH of the system directories, LC_ALL=C), stdin and stdout are
 * /dev/null, and stderr is captured so a failure can be reported in the
 * program's own words.
 */

/*
 * Find a program in the system directories (/usr/sbin, /usr/bin, /sbin,
 * /bin), never on the caller's PATH. Returns -ENOENT when it is missing.
 */
int exec_find_program(const char *name, char **ret_path);

/*
 * Run argv[0] (an absolute path) with argv and wait for it. Returns < 0 only
 * when it could not be started; otherwise 0, with *ret_status set to its
 * exit status (128 + N when killed by signal N) and, if ret_stderr is given,
 * the last 8 KiB of what it wrote to stderr (trailing newlines stripped).
 */
int exec_run(const char *const *argv, int *ret_status, char **ret_stderr);

/*
 * Ask a program about itself ("rootlesskit --help") without trusting it with
 * root: argv[0] (an absolute path) runs as uid/gid with no supplementary
 * groups (when the caller is root; anyone else has nothing to give up) and
 * no_new_privs (a setuid bit gains it nothing), in the clean
 * environment, stdin /dev/null; what it writes to stdout and stderr is
 * collected, the first 64 KiB. After timeout_ms it is killed (*ret_status
 * 128 + SIGKILL). Returns < 0 only when it could not be started or waited for.
 */
int exec_capture_as(const char *const *argv, uid_t uid, gid_t gid, unsigned timeout_ms, int *ret_status,
                    char **ret_output);
