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
static int marker_path_for(const Account *a, const char *name, char **ret) {
        const char *tenant = a ? a->tenant : NULL;

        return asprintf(ret, MARKER_DIR "/%s%s%s", name, tenant ? ":" : "", strempty(tenant)) < 0 ? -ENOMEM : 0;
}

static int marker_path(Context *ctx, const char *name, char **ret) {
        return marker_path_for(ctx->current_account, name, ret);
}

static bool marker_exists_at(Context *ctx, const char *path) {
        _cleanup_close_ int fd = safe_openat(ctx->root_fd, path, O_PATH, 0, RESOLVE_POLICY_IN_ROOT);
        return fd >= 0;
}

static int marker_write(Context *ctx, const char *path) {
        _cleanup_close_ int dfd = -1;
        int r;

        /* Set already (by an earlier item of this run, or a run killed before it cleared it). */
        if (marker_exists_at(ctx, path))
                return 0;
        dfd = safe_mkdir_p(ctx->root_fd, MARKER_DIR, 0755, RESOLVE_POLICY_IN_ROOT);
        if (dfd < 0)
                return log_error_errno(dfd, "Failed to create %s: %m", MARKER_DIR);
        r = write_file_atomic(ctx->root_fd, path, "", 0, 0644, (uid_t) -1, (gid_t) -1, RESOLVE_POLICY_IN_ROOT);
        if (r < 0)
                return log_error_errno(r, "Failed to write %s: %m", path);
        return 0;
}

/*
 * A host-wide change (no current account) with tenants owes its restart
 * to every tenant: the one unit file all their daemons run from, the
 * drop-in all their managers read. Each tenant's run pays its own.
 */
int marker_set(Context *ctx, const char *name) {
        bool every_tenant = !ctx->current_account && ctx->n_accounts > 0 && ctx->accounts[0].tenant;
        int r;

        if (!ctx->live || !name)
                return 0;
        for (size_t i = 0; i < (every_tenant ? ctx->n_accounts : 1); i++) {
                _cleanup_free_ char *path = NULL;

                r = every_tenant ? marker_path_for(&ctx->accounts[i], name, &path) : marker_path(ctx, name, &path);
                if (r < 0)
                        return r;
                r = marker_write(ctx, path);
                if (r < 0)
                        return r;
        }
        return 0;
}

bool marker_exists(Context *ctx, const char *name) {
        _cleanup_free_ char *path = NULL;

        if (!ctx->live || marker_path(ctx, name, &path) < 0)
                return false;
        return marker_exists_at(ctx, path);
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
