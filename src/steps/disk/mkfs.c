/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "steps/disk/mkfs.h"
#include "util/error.h"
#include "util/exec.h"
#include "util/log.h"
#include "util/macro.h"

int uuid_new_random(char ret[UUID_STRING_MAX]) {
        uint8_t b[16];
        size_t got = 0;

        while (got < sizeof(b)) {
                ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                got += (size_t) n;
        }
        b[6] = (uint8_t) ((b[6] & 0x0f) | 0x40);  /* version 4 */
        b[8] = (uint8_t) ((b[8] & 0x3f) | 0x80);  /* RFC 4122 variant */
        snprintf(ret, UUID_STRING_MAX,
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
        return 0;
}

bool uuid_string_valid(const char *s) {
        if (strlen(s) != 36)
                return false;
        for (size_t i = 0; i < 36; i++) {
                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (s[i] != '-')
                                return false;
                } else if (!isxdigit((unsigned char) s[i]))
                        return false;
        }
        return true;
}

/* What tells each mkfs our UUID, and what it is told after it. */
static const struct {
        const char *program;
        const char *uuid_option, *uuid_prefix;
        const char *rest[4];
} mkfs_table[_FILESYSTEM_MAX] = {
        [FILESYSTEM_EXT4] = { "mkfs.ext4", "-U", "", { "-E", "nodiscard" } },
        /* overlay2 needs d_type: ftype=1 (the default of current xfsprogs, stated all the same). */
        [FILESYSTEM_XFS] = { "mkfs.xfs", "-m", "uuid=", { "-n", "ftype=1", "-K" } },
};

const char *mkfs_program_name(FileSystem fs) {
        return fs >= 0 && fs < _FILESYSTEM_MAX ? mkfs_table[fs].program : NULL;
}

int mkfs_argv(FileSystem fs, const char *program, const char *node, const char *uuid, const char *argv[static 16],
              char *uuid_arg, size_t uuid_arg_size) {
        size_t n = 0;

        if (!uuid_string_valid(uuid) || !mkfs_program_name(fs))
                return -EINVAL;

        snprintf(uuid_arg, uuid_arg_size, "%s%s", mkfs_table[fs].uuid_prefix, uuid);
        argv[n++] = program;
        argv[n++] = "-q";
        argv[n++] = "-L";
        argv[n++] = RCI_FS_LABEL;
        argv[n++] = mkfs_table[fs].uuid_option;
        argv[n++] = uuid_arg;
        for (size_t i = 0; i < ELEMENTSOF(mkfs_table[fs].rest) && mkfs_table[fs].rest[i]; i++)
                argv[n++] = mkfs_table[fs].rest[i];
        argv[n++] = node;
        argv[n] = NULL;
        return (int) n;
}

int mkfs_make(FileSystem fs, const char *node, const char *uuid) {
        _cleanup_free_ char *program = NULL, *err = NULL;
        const char *argv[16];
        char uuid_arg[64];
        int r, status;

        r = exec_find_program(mkfs_program_name(fs), &program);
        if (r < 0)
                return log_error_errno(r, "%s not found in /usr/sbin, /usr/bin, /sbin or /bin: %m", mkfs_program_name(fs));
        r = mkfs_argv(fs, program, node, uuid, argv, uuid_arg, sizeof(uuid_arg));
        if (r < 0)
                return r;

        log_debug("Running %s -q -L %s %s %s ... %s", program, RCI_FS_LABEL, fs == FILESYSTEM_EXT4 ? "-U" : "-m",
                  uuid_arg, node);
        r = exec_run(argv, &status, &err);
        if (r < 0)
                return log_error_errno(r, "Failed to run %s: %m", program);
        if (status != 0)
                return log_error_errno(-ERCI_FAILED, "%s %s failed (exit status %d): %s", mkfs_program_name(fs), node,
                                       status, err && *err ? err : "no message");
        return 0;
}
