/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "steps/storage/storage.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/killpoint.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/userns.h"

/*
 * Step 4, storage: the CI user's directories on the data disk and the
 * symlink that points its rootless Docker there.
 *
 *   <MountPoint>/<user>          root, 0755: the user cannot rename or replace
 *                                what is inside, so these paths stay trustworthy
 *   <MountPoint>/<user>/docker   the user, 0700 (dockerd makes it 0710 with the
 *                                user's own group at each start: accepted)
 *   <MountPoint>/<user>/builds   the user, 0700
 *   ~/.local/share/docker        symlink to <MountPoint>/<user>/docker
 *
 * The home is hostile ground (see homefs.h): nothing in it is followed,
 * a symlink at ~/.local or ~/.local/share is a failure naming the path, and
 * only the symlink ~/.local/share/docker itself is replaced when wrong. An
 * existing non-empty ~/.local/share/docker directory is moved onto the disk
 * while the user's daemon is stopped: renamed when on the same filesystem,
 * else copied by a child that has only the user's powers (util/userns.h),
 * the original kept beside it; never deleted.
 *
 * Without a data disk (no Device=), <MountPoint> is a plain directory on the
 * root filesystem and the same layout is used there, so the daemon and agent
 * steps find one layout either way. With Device= but offline (--root), the
 * directories are made at first boot, on the disk; the symlink is made now.
 */

static void storage_step_done(StorageStep *s) {
        free(s->mp);
        free(s->dir);
        free(s->docker);
        free(s->builds);
        safe_close(s->mp_fd);
        safe_close(s->dir_fd);
}

char *host_path(const Context *ctx, const char *path) {
        return path_join_root(ctx->root, path);
}

char *path_join(const char *a, const char *b) {
        char *s;
        return asprintf(&s, "%s/%s", a, b) < 0 ? NULL : s;
}

static bool is_mount_point(int fd) {
        struct statx sx, parent;
        _cleanup_close_ int pfd = -1;

        if (statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &sx) >= 0 && (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT))
                return sx.stx_attributes & STATX_ATTR_MOUNT_ROOT;
        /* Older kernels: a different device than the parent's. */
        pfd = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (pfd < 0 || statx(pfd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &parent) < 0 ||
            statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &sx) < 0)
                return false;
        return sx.stx_dev_major != parent.stx_dev_major || sx.stx_dev_minor != parent.stx_dev_minor;
}

/* <MountPoint>: mounted (Device=) or a plain root-owned directory; never writable by others. */
static int storage_ensure_mount_point(StorageStep *s) {
        Context *ctx = s->ctx;
        bool disk = ctx->config->disk_device != NULL;
        _cleanup_free_ char *shown = host_path(ctx, s->mp), *fix = NULL;
        struct stat st;
        int fd;

        if (!shown)
                return -ENOMEM;
        if (disk && !ctx->live) {
                report_item(ctx, "storage.dirs", ITEM_SKIP, NULL,
                            "%s/{docker,builds} are made on the data disk at first boot (Device= is set; disks are "
                            "mounted on the live host only)", s->dir);
                s->dirs_deferred = true;
                return 0;
        }

        /*
         * A symlink on the way (say /srv/ci -> /etc) would put the user's
         * directories wherever it points. The engine refused such a
         * MountPoint= before any step; the same judgement again here, right
         * before directories are made there.
         */
        {
                _cleanup_free_ char *msg = NULL;
                int r = config_check_mount_point_path(ctx->config, ctx->root_fd, ctx->root, &msg);
                if (r == -ERCI_USAGE) {
                        report_item(ctx, "storage.mount-point", ITEM_FAIL, FIX_MOUNT_POINT_PATH,
                                    "%s", msg);
                        s->dirs_blocked = true;
                        return log_error_errno(r, "%s", msg);
                }
                if (r < 0)
                        return log_error_errno(r, "Failed to look at %s: %m", shown);
        }

        /*
         * With Device= the disk step is the one judge of the mount: it knows
         * the mount at MountPoint is our filesystem, not just some mount.
         * Apply gets here only when that step mounted it or found it mounted.
         */
        if (disk && !ctx->facts.data_mounted) {
                if (ctx->facts.data_mount_planned) {
                        report_item(ctx, "storage.mount-point", ITEM_CREATE, NULL,
                                    "%s is not mounted yet: its directories are made on the data disk once the "
                                    "disk step has mounted it", shown);
                        return 0;
                }
                if (ctx->verb == VERB_PLAN)
                        /* The disk step already said why it cannot mount it. */
                        report_item(ctx, "storage.mount-point", ITEM_SKIP, NULL,
                                    "%s: its directories wait for the data disk (see the disk step)", shown);
                else
                        report_item(ctx, "storage.mount-point", ITEM_FAIL,
                                    "run rootless-ci apply, whose disk step mounts the data disk; check the disk is "
                                    "attached",
                                    "the data disk is not mounted at %s although Device= is set: rootless-ci does not "
                                    "put Docker's data on the root disk", shown);
                s->dirs_blocked = true;
                return 0;
        }

        fd = safe_openat(ctx->root_fd, s->mp, O_PATH | O_DIRECTORY, 0, RESOLVE_POLICY_IN_ROOT);
        if (fd < 0 && fd != -ENOENT)
                return log_error_errno(fd, "Failed to open %s: %m", shown);
        if (fd < 0 && disk)
                return log_error_errno(fd, "Failed to open %s, where the data disk is mounted: %m", shown);

        if (fd == -ENOENT) {
                if (ctx->verb != VERB_APPLY) {
                        report_state(ctx, "storage.mount-point", ITEM_CREATE,
                                     "mkdir %s (0755, root; no data disk is configured, so Docker's data stays on "
                                     "the root filesystem)", shown);
                        return 0;
                }
                fd = safe_mkdir_p(ctx->root_fd, s->mp, 0755, RESOLVE_POLICY_IN_ROOT);
                if (fd < 0)
                        return log_error_errno(fd, "Failed to create %s: %m", shown);
                report_changed(ctx, "storage.mount-point", ITEM_CREATE,
                               "created %s (0755, root; no data disk is configured)", shown);
        }
        s->mp_fd = fd;

        if (fstat(fd, &st) < 0)
                return log_error_errno(negative_errno(), "Failed to stat %s: %m", shown);
        if (st.st_uid != s->root_uid || (st.st_mode & 0022)) {
                if (asprintf(&fix, "chown root:root %s && chmod go-w %s", shown, shown) < 0)
                        return -ENOMEM;
                report_item(ctx, "storage.mount-point", ITEM_FAIL, fix,
                            "%s (owner UID %u, mode %04o) is writable by someone other than root: they could swap "
                            "the CI user's directories", shown, (unsigned) st.st_uid, (unsigned) (st.st_mode & 07777));
                s->dirs_blocked = true;
                return 0;
        }
        /* Without Device= nothing else knows: an operator may have mounted something there. */
        report_state(ctx, "storage.mount-point", ITEM_OK, "%s: %s", shown,
                     disk ? "the data disk is mounted"
                          : is_mount_point(fd) ? "mounted, though no Device= is configured: used as it is"
                                               : "a directory on the root filesystem (no data disk configured)");
        return 0;
}

/* Open dirfd/name as a real directory fd (for fchown/fchmod), never through a symlink. */
int open_dir_nofollow(int dirfd, const char *name) {
        int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        return fd < 0 ? negative_errno() : fd;
}

int fix_owner_mode(int fd, uid_t uid, gid_t gid, mode_t mode) {
        struct stat st;

        if (fstat(fd, &st) < 0)
                return negative_errno();
        if ((st.st_uid != uid || st.st_gid != gid) && fchown(fd, uid, gid) < 0)
                return negative_errno();
        if ((st.st_mode & 07777) != mode && fchmod(fd, mode) < 0)
                return negative_errno();
        return 0;
}

/* <MountPoint>/<user>: root, 0755. */
static int storage_ensure_user_dir(StorageStep *s) {
        Context *ctx = s->ctx;
        _cleanup_free_ char *shown = host_path(ctx, s->dir), *fix = NULL;
        _cleanup_(home_entry_done) HomeEntry e = {};
        int r, fd;

        if (!shown)
                return -ENOMEM;
        r = home_entry_inspect(s->mp_fd, s->name, &e);
        if (r < 0)
                return log_error_errno(r, "Failed to look at %s: %m", shown);

        switch (e.type) {
        case HOME_ENTRY_MISSING:
                if (ctx->verb != VERB_APPLY) {
                        report_state(ctx, "storage.dir", ITEM_CREATE, "mkdir %s (0755, root)", shown);
                        return 0;
                }
                if (mkdirat(s->mp_fd, s->name, 0755) < 0)
                        return log_error_errno(negative_errno(), "Failed to create %s: %m", shown);
                fd = open_dir_nofollow(s->mp_fd, s->name);
                if (fd < 0)
                        return log_error_errno(fd, "Failed to open %s: %m", shown);
                s->dir_fd = fd;
                r = fix_owner_mode(fd, s->root_uid, s->root_gid, 0755);
                if (r < 0)
                        return log_error_errno(r, "Failed to set the owner and mode of %s: %m", shown);
                report_changed(ctx, "storage.dir", ITEM_CREATE, "created %s (0755, root)", shown);
                return 0;

        case HOME_ENTRY_DIRECTORY:
                fd = open_dir_nofollow(s->mp_fd, s->name);
                if (fd < 0)
                        return log_error_errno(fd, "Failed to open %s: %m", shown);
                s->dir_fd = fd;
                if (e.st.st_uid == s->root_uid && e.st.st_gid == s->root_gid && (e.st.st_mode & 07777) == 0755) {
                        report_state(ctx, "storage.dir", ITEM_OK, "%s (0755, root)", shown);
                        return 0;
                }
                if (ctx->verb != VERB_APPLY) {
                        report_state(ctx, "storage.dir", ITEM_CHANGE,
                                     "chown root:root, chmod 0755 %s (now UID %u, GID %u, mode %04o)", shown,
                                     (unsigned) e.st.st_uid, (unsigned) e.st.st_gid, (unsigned) (e.st.st_mode & 07777));
                        return 0;
                }
                r = fix_owner_mode(fd, s->root_uid, s->root_gid, 0755);
                if (r < 0)
                        return log_error_errno(r, "Failed to set the owner and mode of %s: %m", shown);
                report_changed(ctx, "storage.dir", ITEM_CHANGE, "%s is now root's, mode 0755 (was UID %u, mode %04o)",
                               shown, (unsigned) e.st.st_uid, (unsigned) (e.st.st_mode & 07777));
                return 0;

        default:
                if (asprintf(&fix, "move %s away and run rootless-ci apply again", shown) < 0)
                        return -ENOMEM;
                report_item(ctx, "storage.dir", ITEM_FAIL, fix, "%s is %s%s%s, not a directory; it is left alone", shown,
                            home_entry_type_to_string(&e), e.target ? " to " : "", strempty(e.target));
                s->dirs_blocked = true;
                return 0;
        }
}

bool data_dir_mode_ok(const StorageStep *s, const struct stat *st, bool docker) {
        mode_t m = st->st_mode & 07777;
        /* dockerd sets its root to 0710 with the user's own group at every start. */
        return st->st_uid == s->uid && (m == 0700 || (docker && m == 0710 && st->st_gid == s->gid));
}

/* <MountPoint>/<user>/{docker,builds}: the user, 0700. */
static int storage_ensure_data_dir(StorageStep *s, const char *sub, const char *path) {
        Context *ctx = s->ctx;
        bool docker = streq(sub, "docker");
        _cleanup_free_ char *shown = host_path(ctx, path), *id = NULL, *fix = NULL;
        _cleanup_(home_entry_done) HomeEntry e = {};
        _cleanup_close_ int fd = -1;
        int r;

        if (!shown || asprintf(&id, "storage.%s", sub) < 0)
                return -ENOMEM;
        if (s->dir_fd < 0) {
                /* Its parent is planned: so is it. */
                report_state(ctx, id, ITEM_CREATE, "mkdir %s (0700, owner %s)", shown, s->name);
                return 0;
        }
        r = home_entry_inspect(s->dir_fd, sub, &e);
        if (r < 0)
                return log_error_errno(r, "Failed to look at %s: %m", shown);

        switch (e.type) {
        case HOME_ENTRY_MISSING:
                if (ctx->verb != VERB_APPLY || s->user_planned) {
                        report_state(ctx, id, ITEM_CREATE, "mkdir %s (0700, owner %s)", shown, s->name);
                        return 0;
                }
                if (mkdirat(s->dir_fd, sub, 0700) < 0)
                        return log_error_errno(negative_errno(), "Failed to create %s: %m", shown);
                fd = open_dir_nofollow(s->dir_fd, sub);
                if (fd < 0)
                        return log_error_errno(fd, "Failed to open %s: %m", shown);
                r = fix_owner_mode(fd, s->uid, s->gid, 0700);
                if (r < 0)
                        return log_error_errno(r, "Failed to give %s to %s: %m", shown, s->name);
                report_changed(ctx, id, ITEM_CREATE, "created %s (0700, owner %s)", shown, s->name);
                return 0;

        case HOME_ENTRY_DIRECTORY:
                if (!s->user_planned && data_dir_mode_ok(s, &e.st, docker)) {
                        report_state(ctx, id, ITEM_OK, "%s (%04o, owner %s)", shown,
                                     (unsigned) (e.st.st_mode & 07777), s->name);
                        return 0;
                }
                if (ctx->verb != VERB_APPLY || s->user_planned) {
                        report_state(ctx, id, ITEM_CHANGE, "chown %s, chmod 0700 %s (now UID %u, mode %04o)", s->name,
                                     shown, (unsigned) e.st.st_uid, (unsigned) (e.st.st_mode & 07777));
                        return 0;
                }
                fd = open_dir_nofollow(s->dir_fd, sub);
                if (fd < 0)
                        return log_error_errno(fd, "Failed to open %s: %m", shown);
                /* Only the directory itself: its contents are the user's business. */
                r = fix_owner_mode(fd, s->uid, s->gid, 0700);
                if (r < 0)
                        return log_error_errno(r, "Failed to give %s to %s: %m", shown, s->name);
                report_changed(ctx, id, ITEM_CHANGE, "%s is now %s's, mode 0700 (was UID %u, mode %04o)", shown, s->name,
                               (unsigned) e.st.st_uid, (unsigned) (e.st.st_mode & 07777));
                return 0;

        default:
                if (asprintf(&fix, "move %s away and run rootless-ci apply again", shown) < 0)
                        return -ENOMEM;
                report_item(ctx, id, ITEM_FAIL, fix, "%s is %s%s%s, not a directory; it is left alone", shown,
                            home_entry_type_to_string(&e), e.target ? " to " : "", strempty(e.target));
                return 0;
        }
}

static int storage_run(Context *ctx) {
        _cleanup_(storage_step_done) StorageStep s = {
                .ctx = ctx,
                .name = ctx->config->user_name,
                .mp_fd = -1,
                .dir_fd = -1,
        };
        struct stat root_st;
        int r;

        if (!ctx->facts.user_known && !ctx->facts.user_planned) {
                report_item(ctx, "storage.dirs", ITEM_SKIP, NULL, "the CI user is not usable (see the user step)");
                return 0;
        }
        s.user_planned = !ctx->facts.user_known;
        s.uid = ctx->facts.user_known ? ctx->facts.user_uid : (uid_t) -1;
        s.gid = ctx->facts.user_known ? ctx->facts.user_gid : (gid_t) -1;
        /* "root" is whoever owns the tree's root: 0 on a host, the test's user in a test tree. */
        if (fstat(ctx->root_fd, &root_st) < 0)
                return log_error_errno(negative_errno(), "Failed to stat the root directory: %m");
        s.root_uid = root_st.st_uid;
        s.root_gid = root_st.st_gid;

        s.mp = strdup(ctx->config->mount_point);
        if (!s.mp)
                return -ENOMEM;
        s.dir = path_join(s.mp, s.name);
        s.docker = s.dir ? path_join(s.dir, "docker") : NULL;
        s.builds = s.dir ? path_join(s.dir, "builds") : NULL;
        if (!s.docker || !s.builds)
                return -ENOMEM;
        if (free_and_strdup(&ctx->facts.storage_dir, s.dir) < 0 ||
            free_and_strdup(&ctx->facts.docker_dir, s.docker) < 0 ||
            free_and_strdup(&ctx->facts.builds_dir, s.builds) < 0)
                return -ENOMEM;

        r = storage_ensure_mount_point(&s);
        if (r < 0)
                return r;
        if (!s.dirs_blocked && !s.dirs_deferred) {
                if (s.mp_fd >= 0)
                        r = storage_ensure_user_dir(&s);
                else {
                        /* <MountPoint> itself is still to be made (or mounted): so is everything below. */
                        _cleanup_free_ char *shown = host_path(ctx, s.dir);
                        report_state(ctx, "storage.dir", ITEM_CREATE, "mkdir %s (0755, root)", strempty(shown));
                }
                if (r >= 0 && !s.dirs_blocked)
                        r = storage_ensure_data_dir(&s, "docker", s.docker);
                if (r >= 0 && !s.dirs_blocked)
                        r = storage_ensure_data_dir(&s, "builds", s.builds);
                if (r < 0)
                        return r;
        }
        return storage_ensure_home_link(&s);
}

const Step step_storage = {
        .name = "storage",
        .run = storage_run,
};
