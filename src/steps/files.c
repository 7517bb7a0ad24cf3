/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "files.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"

#define UNIT_FILE_MAX (256 * 1024)

int file_look(int root_fd, const char *path, const char *shown, const char *want, bool *ret_exists, bool *ret_same) {
        _cleanup_free_ char *have = NULL;
        _cleanup_close_ int fd = -1;
        size_t have_size = 0;
        struct stat st;
        int r;

        *ret_exists = *ret_same = false;
        r = read_file_at(root_fd, path, RESOLVE_POLICY_IN_ROOT, UNIT_FILE_MAX, &have, &have_size);
        if (r < 0 && r != -ENOENT && r != -EFBIG && r != -EBADFD)
                return log_error_errno(r, "Failed to read %s: %m", shown);
        *ret_exists = r != -ENOENT;
        if (r < 0)
                return 0;
        fd = safe_openat(root_fd, path, O_PATH, 0, RESOLVE_POLICY_IN_ROOT);
        if (fd < 0 || fstat(fd, &st) < 0)
                return log_error_errno(fd < 0 ? fd : negative_errno(), "Failed to stat %s: %m", shown);
        /* Same bytes, and nobody but root may change them. */
        *ret_same = have_size == strlen(want) && memcmp(have, want, have_size) == 0 && (st.st_mode & 07777) == 0644 &&
                    (geteuid() != 0 || st.st_uid == 0);
        return 0;
}

int file_make_dir(int root_fd, const char *path, const char *shown) {
        _cleanup_free_ char *dir = strdup(path);
        int dfd;

        if (!dir)
                return -ENOMEM;
        *strrchr(dir, '/') = 0;
        dfd = safe_mkdir_p(root_fd, dir, 0755, RESOLVE_POLICY_IN_ROOT);
        if (dfd < 0)
                return log_error_errno(dfd, "Failed to create the directory of %s: %m", shown);
        safe_close(dfd);
        return 0;
}

int file_write_verified(int root_fd, const char *path, const char *shown, const char *want) {
        _cleanup_free_ char *have = NULL;
        size_t have_size = 0;
        int r;

        r = write_file_atomic(root_fd, path, want, strlen(want), 0644, (uid_t) -1, (gid_t) -1, RESOLVE_POLICY_IN_ROOT);
        if (r < 0)
                return log_error_errno(r, "Failed to write %s: %m", shown);

        /* Verify: read back what is there now. */
        r = read_file_at(root_fd, path, RESOLVE_POLICY_IN_ROOT, UNIT_FILE_MAX, &have, &have_size);
        if (r < 0 || have_size != strlen(want) || memcmp(have, want, have_size) != 0)
                return log_error_errno(r < 0 ? r : -EIO, "%s does not hold what was just written to it", shown);
        return 0;
}

/*
 * Converge one root-owned file to want. Reports it; returns 1 if it differs
 * (apply: changed it), 0 if not, < 0 when it could not go on.
 */
int converge_file(Context *ctx, const char *id, const char *path, const char *want, const char *what,
                         const char *pending_marker) {
        _cleanup_free_ char *shown = path_join_root(ctx->root, path);
        bool exists, same;
        int r;

        if (!shown)
                return -ENOMEM;
        r = file_look(ctx->root_fd, path, shown, want, &exists, &same);
        if (r < 0)
                return r;

        if (same) {
                report_item(ctx, id, ctx->verb == VERB_CHECK ? ITEM_PASS : ITEM_OK, NULL, "%s %s is up to date", what, shown);
                return 0;
        }
        switch (ctx->verb) {
        case VERB_PLAN:
                report_item(ctx, id, exists ? ITEM_CHANGE : ITEM_CREATE, NULL, "%s %s %s%s", exists ? "rewrite" : "write",
                            what, shown, exists ? " (content differs)" : "");
                return 1;
        case VERB_CHECK:
                report_item(ctx, id, ITEM_FAIL, "rootless-ci apply", "%s %s %s", what, shown,
                            exists ? "differs from what rootless-ci installs (content or mode)" : "is missing");
                return 1;
        case VERB_APPLY:
                break;
        }

        r = file_make_dir(ctx->root_fd, path, shown);
        if (r < 0)
                return r;
        /* Owe the restart before changing what it restarts for. */
        r = marker_set(ctx, pending_marker);
        if (r < 0)
                return r;
        r = file_write_verified(ctx->root_fd, path, shown, want);
        if (r < 0)
                return r;
        report_changed(ctx, id, exists ? ITEM_CHANGE : ITEM_CREATE, "%s %s %s", exists ? "rewrote" : "wrote", what,
                       shown);
        return 1;
}
