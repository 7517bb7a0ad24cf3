/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "engine/markers.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"

#define MARKER_DIR "/run/rootless-ci"

/* One marker per tenant: "daemon-restart:pr" is pr's own restart owed. */
static int marker_path(Context *ctx, const char *name, char **ret) {
        const char *tenant = ctx->current_account ? ctx->current_account->tenant : NULL;

        return asprintf(ret, MARKER_DIR "/%s%s%s", name, tenant ? ":" : "", strempty(tenant)) < 0 ? -ENOMEM : 0;
}


int marker_set(Context *ctx, const char *name) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int dfd = -1;
        int r;

        if (!ctx->live || !name)
                return 0;
        /* Set already (by an earlier item of this run, or a run killed before it cleared it). */
        if (marker_exists(ctx, name))
                return 0;
        dfd = safe_mkdir_p(ctx->root_fd, MARKER_DIR, 0755, RESOLVE_POLICY_IN_ROOT);
        if (dfd < 0)
                return log_error_errno(dfd, "Failed to create %s: %m", MARKER_DIR);
        r = marker_path(ctx, name, &path);
        if (r < 0)
                return r;
        r = write_file_atomic(ctx->root_fd, path, "", 0, 0644, (uid_t) -1, (gid_t) -1, RESOLVE_POLICY_IN_ROOT);
        if (r < 0)
                return log_error_errno(r, "Failed to write %s: %m", path);
        return 0;
}

bool marker_exists(Context *ctx, const char *name) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -1;

        if (!ctx->live || marker_path(ctx, name, &path) < 0)
                return false;
        fd = safe_openat(ctx->root_fd, path, O_PATH, 0, RESOLVE_POLICY_IN_ROOT);
        return fd >= 0;
}

int marker_clear(Context *ctx, const char *name) {
        _cleanup_free_ char *fname = NULL;
        _cleanup_close_ int parent = -1;
        _cleanup_free_ char *path = NULL;
        int r;

        if (!ctx->live)
                return 0;
        r = marker_path(ctx, name, &path);
        if (r < 0)
                return r;
        parent = safe_open_parent(ctx->root_fd, path, RESOLVE_POLICY_IN_ROOT, &fname);
        if (parent == -ENOENT)
                return 0;
        if (parent < 0)
                return parent;
        /* No marker, nothing to clear: a converged run writes nothing, not even a directory sync. */
        if (faccessat(parent, fname, F_OK, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
                return 0;
        {
                int d = openat(parent, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (d < 0)
                        return negative_errno();
                safe_close(parent);
                parent = d;
        }
        if (unlinkat(parent, fname, 0) < 0 && errno != ENOENT)
                return log_error_errno(negative_errno(), "Failed to remove %s: %m", path);
        return fsync_dir(parent);
}
