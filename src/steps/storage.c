/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "steps.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/homefs.h"
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
 * The home is hostile ground (see util/homefs.h): nothing in it is followed,
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

#define MOVE_MARKER ".rootless-ci-move"
#define OLD_SUFFIX ".rootless-ci-old"

typedef struct StorageStep {
        Context *ctx;
        const char *name;
        bool user_planned;       /* plan/check: the user does not exist yet */
        uid_t uid;
        gid_t gid;
        uid_t root_uid;          /* the owner of the tree's root: 0 on a live host */
        gid_t root_gid;
        char *mp, *dir, *docker, *builds;   /* paths in the tree */
        int mp_fd, dir_fd;
        bool dirs_deferred;      /* offline with a data disk: made at first boot */
        bool dirs_blocked;       /* the data disk is not mounted: nothing is made */
} StorageStep;

static void storage_step_done(StorageStep *s) {
        free(s->mp);
        free(s->dir);
        free(s->docker);
        free(s->builds);
        safe_close(s->mp_fd);
        safe_close(s->dir_fd);
}

static char *host_path(const Context *ctx, const char *path) {
        return path_join_root(ctx->root, path);
}

static char *path_join(const char *a, const char *b) {
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
static int open_dir_nofollow(int dirfd, const char *name) {
        int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        return fd < 0 ? negative_errno() : fd;
}

static int fix_owner_mode(int fd, uid_t uid, gid_t gid, mode_t mode) {
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

static bool data_dir_mode_ok(const StorageStep *s, const struct stat *st, bool docker) {
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

/* A process of uid that is (part of) a Docker daemon: dockerd, rootlesskit, containerd. */
static pid_t find_user_daemon(uid_t uid, char comm[static 32]) {
        DIR *d = opendir("/proc");
        struct dirent *de;
        pid_t found = 0;

        if (!d)
                return 0;
        while (!found && (de = readdir(d))) {
                char path[300], buf[4096];
                _cleanup_close_ int fd = -1;
                const char *u;
                ssize_t n;
                unsigned long ruid;

                if (strspn(de->d_name, "0123456789") != strlen(de->d_name))
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/status", de->d_name);
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                n = read(fd, buf, sizeof(buf) - 1);
                if (n <= 0)
                        continue;
                buf[n] = 0;
                u = strstr(buf, "\nUid:");
                if (!u || sscanf(u + 5, "%lu", &ruid) != 1 || (uid_t) ruid != uid)
                        continue;
                if (sscanf(buf, "Name:\t%31s", comm) != 1)
                        continue;
                if (startswith(comm, "dockerd") || startswith(comm, "rootlesskit") || startswith(comm, "containerd"))
                        found = (pid_t) strtol(de->d_name, NULL, 10);
        }
        closedir(d);
        return found;
}

typedef struct MoveMarker {
        bool present;
        bool copied;             /* the copy finished; only the rename and the symlink are left */
        dev_t dev;
        ino_t ino;
} MoveMarker;

static int read_move_marker(StorageStep *s, MoveMarker *ret) {
        _cleanup_free_ char *text = NULL, *path = path_join(s->dir, MOVE_MARKER);
        char state[16];
        unsigned long long dev, ino;
        int r;

        *ret = (MoveMarker) {};
        if (!path)
                return -ENOMEM;
        r = read_file_at(s->ctx->root_fd, path, RESOLVE_POLICY_IN_ROOT, 4096, &text, NULL);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (sscanf(text, "%15s %llu %llu", state, &dev, &ino) != 3)
                return 0;  /* unreadable: as if absent */
        *ret = (MoveMarker) { .present = true, .copied = streq(state, "copied"), .dev = (dev_t) dev, .ino = (ino_t) ino };
        return 0;
}

static int write_move_marker(StorageStep *s, const char *state, const struct stat *src) {
        char buf[128];
        int n = snprintf(buf, sizeof(buf), "%s %llu %llu\n", state, (unsigned long long) src->st_dev,
                         (unsigned long long) src->st_ino);
        /* In <MountPoint>/<user>, which only root can write: the user cannot forge it. */
        return write_file_atomic_at(s->dir_fd, MOVE_MARKER, buf, (size_t) n, 0600, (uid_t) -1, (gid_t) -1);
}

static int remove_move_marker(StorageStep *s) {
        if (unlinkat(s->dir_fd, MOVE_MARKER, 0) < 0 && errno != ENOENT)
                return negative_errno();
        return fsync_dir(s->dir_fd);
}

static UserNsIdentity user_identity(const StorageStep *s) {
        const HostFacts *f = &s->ctx->facts;
        return (UserNsIdentity) {
                .uid = s->uid, .gid = s->gid,
                /* Every range the user has, as its daemon maps them: data of any of them is copied. */
                .subuids = f->subuid_ranges, .n_subuids = f->n_subuid_ranges,
                .subgids = f->subgid_ranges, .n_subgids = f->n_subgid_ranges,
        };
}

/* Empty the docker directory on the disk, as the user (it holds only our partial copy). */
static int clear_docker_dir_as_user(StorageStep *s) {
        _cleanup_free_ char *dst = host_path(s->ctx, s->docker);
        char *argv[] = { (char *) "find", dst, (char *) "-mindepth", (char *) "1", (char *) "-delete", NULL };
        UserNsIdentity id = user_identity(s);
        int r;

        if (!dst)
                return -ENOMEM;
        r = userns_run(&id, "/usr/bin/find", argv);
        if (r != 0)
                return r < 0 ? r : log_error_errno(-ERCI_FAILED, "Emptying %s as %s failed (find exited %d).", dst,
                                                   s->name, r);
        return 0;
}

/*
 * Move the non-empty src_name in share_fd (the home's ~/.local/share) onto the
 * disk. Same filesystem: swap it with the empty docker directory (one rename).
 * Else: copy it as the user, keep the original as docker.rootless-ci-old.
 */
static int move_docker_data(StorageStep *s, int share_fd, const char *src_path, const char *src_shown,
                            const struct stat *src_st, char **ret_kept) {
        Context *ctx = s->ctx;
        _cleanup_free_ char *dst_shown = host_path(ctx, s->docker);
        _cleanup_close_ int dst_fd = -1;
        struct stat dst_st, now;
        MoveMarker marker;
        int r;

        if (!dst_shown)
                return -ENOMEM;
        dst_fd = open_dir_nofollow(s->dir_fd, "docker");
        if (dst_fd < 0)
                return log_error_errno(dst_fd, "Failed to open %s: %m", dst_shown);
        if (fstat(dst_fd, &dst_st) < 0)
                return negative_errno();

        if (dst_st.st_dev == src_st->st_dev) {
                if (home_dir_is_empty(s->dir_fd, "docker") <= 0)
                        return log_error_errno(-ERCI_REFUSED, "%s is not empty; rootless-ci does not merge it with %s.",
                                               dst_shown, src_shown);
                /* One filesystem: exchange the data directory with the empty one, atomically. */
                if (renameat2(share_fd, "docker", s->dir_fd, "docker", RENAME_EXCHANGE) < 0)
                        return log_error_errno(negative_errno(), "Failed to move %s to %s: %m", src_shown, dst_shown);
                killpoint("storage-exchanged");
                if (fstatat(s->dir_fd, "docker", &now, AT_SYMLINK_NOFOLLOW) < 0 || now.st_ino != src_st->st_ino ||
                    now.st_dev != src_st->st_dev) {
                        /* Something else was swapped in at the last moment: put everything back. */
                        if (renameat2(share_fd, "docker", s->dir_fd, "docker", RENAME_EXCHANGE) < 0)
                                return log_error_errno(negative_errno(),
                                                       "%s changed while it was being moved to %s, and swapping the two "
                                                       "back failed: %m. Both are as the race left them; look at them "
                                                       "before running apply again.", src_shown, dst_shown);
                        return log_error_errno(-EBUSY, "%s changed while it was being moved; nothing was moved.",
                                               src_shown);
                }
                killpoint("storage-moved-before-rmdir");
                /* What came back to the home is our empty directory. */
                if (unlinkat(share_fd, "docker", AT_REMOVEDIR) < 0)
                        return log_error_errno(negative_errno(), "Failed to remove the empty directory %s: %m",
                                               src_shown);
                *ret_kept = NULL;
                return 0;
        }

        /* Two filesystems: a copy made with the user's powers only. */
        r = read_move_marker(s, &marker);
        if (r < 0)
                return log_error_errno(r, "Failed to read %s/%s: %m", s->dir, MOVE_MARKER);
        if (marker.present && !(marker.copied && marker.dev == src_st->st_dev && marker.ino == src_st->st_ino)) {
                /* An earlier run died while copying: what is on the disk is a partial copy. */
                log_info("Removing the partial copy an interrupted run left in %s.", dst_shown);
                r = clear_docker_dir_as_user(s);
                if (r < 0)
                        return r;
                marker.present = false;
        }
        if (!marker.present) {
                _cleanup_free_ char *src = host_path(ctx, src_path), *dst = host_path(ctx, s->docker);
                UserNsIdentity id = user_identity(s);
                char *argv[] = { (char *) "cp", (char *) "-a", (char *) "--no-target-directory", (char *) "--",
                                 src, dst, NULL };

                if (!src || !dst)
                        return -ENOMEM;
                if (home_dir_is_empty(s->dir_fd, "docker") <= 0)
                        return log_error_errno(-ERCI_REFUSED, "%s is not empty; rootless-ci does not merge it with %s.",
                                               dst_shown, src_shown);
                r = write_move_marker(s, "copying", src_st);
                if (r < 0)
                        return log_error_errno(r, "Failed to write %s/%s: %m", s->dir, MOVE_MARKER);
                log_info("Copying %s to %s as %s (in a user namespace with its subordinate IDs)...", src_shown,
                         dst_shown, s->name);
                killpoint("storage-copy-before-cp");
                r = userns_run(&id, "/bin/cp", argv);
                if (r != 0) {
                        log_error("Copying %s to %s as %s failed (%s %d); the original is untouched.", src_shown,
                                  dst_shown, s->name, r < 0 ? "error" : "cp exited", r < 0 ? -r : r);
                        if (clear_docker_dir_as_user(s) >= 0)
                                (void) remove_move_marker(s);
                        return -ERCI_FAILED;
                }
                r = write_move_marker(s, "copied", src_st);
                if (r < 0)
                        return log_error_errno(r, "Failed to write %s/%s: %m", s->dir, MOVE_MARKER);
                killpoint("storage-copied-before-rename");
        }

        /* Keep the original beside, under a name of its own; never delete it. */
        for (unsigned i = 0; i < 100; i++) {
                char name[64];

                if (i == 0)
                        snprintf(name, sizeof(name), "docker%s", OLD_SUFFIX);
                else
                        snprintf(name, sizeof(name), "docker%s.%u", OLD_SUFFIX, i);
                if (renameat2(share_fd, "docker", share_fd, name, RENAME_NOREPLACE) < 0) {
                        if (errno == EEXIST)
                                continue;
                        return log_error_errno(negative_errno(), "Failed to rename %s: %m", src_shown);
                }
                if (fstatat(share_fd, name, &now, AT_SYMLINK_NOFOLLOW) < 0 || now.st_ino != src_st->st_ino ||
                    now.st_dev != src_st->st_dev) {
                        if (renameat2(share_fd, name, share_fd, "docker", RENAME_NOREPLACE) < 0)
                                return log_error_errno(negative_errno(),
                                                       "%s changed while it was being moved, and renaming %s back to "
                                                       "it failed: %m. What was renamed is still %s beside it.",
                                                       src_shown, name, name);
                        return log_error_errno(-EBUSY, "%s changed while it was being moved.", src_shown);
                }
                *ret_kept = strdup(name);
                return *ret_kept ? 0 : -ENOMEM;
        }
        return log_error_errno(-EEXIST, "Too many old copies of %s; remove some.", src_shown);
}

/*
 * The fix for apply failing at a step in the home it just looked at: the
 * CI user's own processes may be changing it under apply's feet. Replaces *fix.
 */
static int fix_home_changed(const StorageStep *s, char **fix) {
        free(*fix);
        *fix = NULL;
        return asprintf(fix, "run rootless-ci apply again; if it fails the same way, stop %s's processes first "
                        "(loginctl terminate-user %s)", s->name, s->name) < 0 ? -ENOMEM : 0;
}

/* ~/.local/share/docker -> <MountPoint>/<user>/docker, resolved without following anything. */
static int storage_ensure_home_link(StorageStep *s) {
        Context *ctx = s->ctx;
        const char *home = ctx->facts.user_home;
        static const char *const parents[] = { ".local", "share" };
        _cleanup_free_ char *home_shown = NULL, *link_shown = NULL, *fix = NULL;
        _cleanup_close_ int cur = -1;
        _cleanup_(home_entry_done) HomeEntry e = {};
        bool missing = false;
        int r;

        if (!home)
                return 0;
        home_shown = host_path(ctx, home);
        if (!home_shown || asprintf(&link_shown, "%s/.local/share/docker", home_shown) < 0)
                return -ENOMEM;

        if (s->user_planned) {
                report_state(ctx, "storage.home-local", ITEM_CREATE, "mkdir %s/.local (0700, owner %s)", home_shown,
                             s->name);
                report_state(ctx, "storage.home-local-share", ITEM_CREATE, "mkdir %s/.local/share (0700, owner %s)",
                             home_shown, s->name);
                report_state(ctx, "storage.home-link", ITEM_CREATE, "symlink %s -> %s (in the home useradd creates)",
                             link_shown, s->docker);
                return 0;
        }

        cur = home_open(ctx->root_fd, home, s->uid, NULL);
        if (cur < 0) {
                switch (cur) {
                case -ENOENT:
                        if (asprintf(&fix, "mkdir -m 0700 %s && chown %s: %s", home_shown, s->name, home_shown) < 0)
                                return -ENOMEM;
                        report_item(ctx, "storage.home-link", ITEM_FAIL, fix, "the home %s of %s does not exist",
                                    home_shown, s->name);
                        return 0;
                case -ELOOP:
                        report_item(ctx, "storage.home-link", ITEM_FAIL, "make the home a real directory",
                                    "the home %s of %s is a symlink; rootless-ci never follows one there", home_shown,
                                    s->name);
                        return 0;
                case -ENOTDIR:
                        if (asprintf(&fix, "move %s away and make it a directory of %s's (mkdir -m 0700 %s && chown "
                                     "%s: %s), then run rootless-ci apply", home_shown, s->name, home_shown, s->name,
                                     home_shown) < 0)
                                return -ENOMEM;
                        report_item(ctx, "storage.home-link", ITEM_FAIL, fix, "the home %s of %s is not a directory",
                                    home_shown, s->name);
                        return 0;
                case -EPERM:
                        if (asprintf(&fix, "chown %s: %s, or give %s a home of its own", s->name, home_shown, s->name) < 0)
                                return -ENOMEM;
                        report_item(ctx, "storage.home-link", ITEM_FAIL, fix,
                                    "the home %s is not owned by %s: rootless-ci makes ~/.local/share/docker only in "
                                    "a home the user owns", home_shown, s->name);
                        return 0;
                default:
                        return log_error_errno(cur, "Failed to open the home %s: %m", home_shown);
                }
        }

        /* ~/.local and ~/.local/share: real directories of the user's, or missing (then made). */
        for (size_t i = 0; i < ELEMENTSOF(parents); i++) {
                _cleanup_free_ char *shown = NULL;
                _cleanup_(home_entry_done) HomeEntry pe = {};
                /* Each directory on the way is an object of its own, with its own id. */
                const char *pid = i == 0 ? "storage.home-local" : "storage.home-local-share";
                int next;

                if (asprintf(&shown, "%s/%s%s%s", home_shown, ".local", i > 0 ? "/" : "", i > 0 ? parents[i] : "") < 0)
                        return -ENOMEM;
                if (missing) {
                        report_state(ctx, pid, ITEM_CREATE, "mkdir %s (0700, owner %s)", shown, s->name);
                        continue;
                }
                r = home_entry_inspect(cur, parents[i], &pe);
                if (r < 0)
                        return log_error_errno(r, "Failed to look at %s: %m", shown);

                switch (pe.type) {
                case HOME_ENTRY_MISSING:
                        if (ctx->verb != VERB_APPLY) {
                                report_state(ctx, pid, ITEM_CREATE, "mkdir %s (0700, owner %s)", shown,
                                             s->name);
                                missing = true;
                                continue;
                        }
                        next = home_make_dir(cur, parents[i], 0700, s->uid, s->gid);
                        if (next < 0) {
                                if (fix_home_changed(s, &fix) < 0)
                                        return -ENOMEM;
                                report_item(ctx, pid, ITEM_FAIL, fix,
                                            "cannot make %s: %s%s", shown, strerror(-next),
                                            next == -EBUSY || next == -EEXIST ? " (something else appeared there meanwhile)" : "");
                                return 0;
                        }
                        report_changed(ctx, pid, ITEM_CREATE, "created %s (0700, owner %s)", shown, s->name);
                        break;
                case HOME_ENTRY_DIRECTORY:
                        if (pe.st.st_uid != s->uid && pe.st.st_uid == geteuid() && (pe.st.st_mode & 07777) == 0700 &&
                            home_dir_is_empty(cur, parents[i]) == 1) {
                                /* A run killed between its mkdir and its chown left this: finish it. */
                                if (ctx->verb != VERB_APPLY) {
                                        report_state(ctx, pid, ITEM_CHANGE,
                                                     "give the empty directory %s (left by an interrupted run) to %s",
                                                     shown, s->name);
                                        missing = true;
                                        continue;
                                }
                                next = home_finish_dir(cur, parents[i], 0700, s->uid, s->gid);
                                if (next < 0) {
                                        if (fix_home_changed(s, &fix) < 0)
                                                return -ENOMEM;
                                        report_item(ctx, pid, ITEM_FAIL, fix, "cannot give %s to %s: %s",
                                                    shown, s->name, strerror(-next));
                                        return 0;
                                }
                                report_changed(ctx, pid, ITEM_CHANGE,
                                               "gave the empty directory %s (left by an interrupted run) to %s", shown,
                                               s->name);
                                break;
                        }
                        if (pe.st.st_uid != s->uid) {
                                free(fix);
                                if (asprintf(&fix, "chown %s: %s (or remove it)", s->name, shown) < 0)
                                        return -ENOMEM;
                                report_item(ctx, pid, ITEM_FAIL, fix,
                                            "%s is owned by UID %u, not by %s; rootless-ci works only in the user's "
                                            "own directories there", shown, (unsigned) pe.st.st_uid, s->name);
                                return 0;
                        }
                        next = home_open_dir(cur, parents[i]);
                        if (next < 0) {
                                if (fix_home_changed(s, &fix) < 0)
                                        return -ENOMEM;
                                report_item(ctx, pid, ITEM_FAIL, fix, "cannot open %s: %s", shown,
                                            strerror(-next));
                                return 0;
                        }
                        break;
                case HOME_ENTRY_SYMLINK:
                        free(fix);
                        if (asprintf(&fix, "remove the symlink (rm %s) and run rootless-ci apply again; it makes the "
                                     "directory", shown) < 0)
                                return -ENOMEM;
                        report_item(ctx, pid, ITEM_FAIL, fix,
                                    "%s is a symlink to %s: rootless-ci never follows a symlink in the CI user's home",
                                    shown, pe.target);
                        return 0;
                default:
                        free(fix);
                        if (asprintf(&fix, "move %s away and run rootless-ci apply again", shown) < 0)
                                return -ENOMEM;
                        report_item(ctx, pid, ITEM_FAIL, fix, "%s is %s, not a directory; it is left "
                                    "alone", shown, home_entry_type_to_string(&pe));
                        return 0;
                }
                safe_close(cur);
                cur = next;
        }

        if (missing) {
                report_state(ctx, "storage.home-link", ITEM_CREATE, "symlink %s -> %s", link_shown, s->docker);
                return 0;
        }

        r = home_entry_inspect(cur, "docker", &e);
        if (r < 0)
                return log_error_errno(r, "Failed to look at %s: %m", link_shown);

        switch (e.type) {
        case HOME_ENTRY_SYMLINK:
                if (streq(e.target, s->docker)) {
                        report_state(ctx, "storage.home-link", ITEM_OK, "%s -> %s", link_shown, s->docker);
                        return 0;
                }
                if (ctx->verb != VERB_APPLY) {
                        report_state(ctx, "storage.home-link", ITEM_CHANGE, "replace the symlink %s -> %s with -> %s",
                                     link_shown, e.target, s->docker);
                        return 0;
                }
                break;

        case HOME_ENTRY_MISSING:
                if (ctx->verb != VERB_APPLY) {
                        report_state(ctx, "storage.home-link", ITEM_CREATE, "symlink %s -> %s", link_shown, s->docker);
                        return 0;
                }
                break;

        case HOME_ENTRY_DIRECTORY: {
                int empty = home_dir_is_empty(cur, "docker");
                char comm[32] = "";
                pid_t daemon = 0;

                if (empty < 0)
                        return log_error_errno(empty, "Failed to read %s: %m", link_shown);
                if (empty) {
                        if (ctx->verb != VERB_APPLY) {
                                report_state(ctx, "storage.home-link", ITEM_CHANGE,
                                             "replace the empty directory %s with a symlink -> %s", link_shown, s->docker);
                                return 0;
                        }
                        if (unlinkat(cur, "docker", AT_REMOVEDIR) < 0) {
                                int e_rm = errno;
                                if (fix_home_changed(s, &fix) < 0)
                                        return -ENOMEM;
                                report_item(ctx, "storage.home-link", ITEM_FAIL, fix,
                                            "cannot remove the empty directory %s: %s", link_shown, strerror(e_rm));
                                return 0;
                        }
                        break;
                }

                /* Docker data in the home: moved onto the disk, only while the daemon is stopped. */
                if (e.st.st_uid != s->uid) {
                        if (asprintf(&fix, "move %s away by hand", link_shown) < 0)
                                return -ENOMEM;
                        report_item(ctx, "storage.home-link", ITEM_FAIL, fix,
                                    "%s holds data but is owned by UID %u, not by %s; it is left alone", link_shown,
                                    (unsigned) e.st.st_uid, s->name);
                        return 0;
                }
                if (s->dirs_deferred) {
                        report_item(ctx, "storage.home-link", ITEM_SKIP, NULL,
                                    "%s holds Docker data; it is moved to %s when that exists (at first boot)",
                                    link_shown, s->docker);
                        return 0;
                }
                if (ctx->live)
                        daemon = find_user_daemon(s->uid, comm);
                if (daemon > 0) {
                        if (asprintf(&fix, "stop the daemon (systemctl --user -M %s@ stop docker), then run rootless-ci "
                                     "apply again", s->name) < 0)
                                return -ENOMEM;
                        report_item(ctx, "storage.home-link", ITEM_FAIL, fix,
                                    "%s holds Docker data and %s's daemon is running (PID %ld, %s): rootless-ci moves "
                                    "the data onto the disk only while it is stopped; nothing was changed",
                                    link_shown, s->name, (long) daemon, comm);
                        return ctx->verb == VERB_APPLY ? -ERCI_REFUSED : 0;
                }
                if (ctx->verb != VERB_APPLY) {
                        report_state(ctx, "storage.home-link", ITEM_CHANGE,
                                     "move the Docker data in %s to %s, and put a symlink in its place", link_shown,
                                     s->docker);
                        return 0;
                }
                if (s->dir_fd < 0 || s->dirs_blocked) {
                        report_item(ctx, "storage.home-link", ITEM_FAIL,
                                    "fix what keeps the storage directories from being made (the failures above), "
                                    "then run rootless-ci apply: it moves the data then",
                                    "%s holds Docker data, and %s is not there to take it", link_shown, s->docker);
                        return 0;
                }
                {
                        _cleanup_free_ char *kept = NULL, *src_path = NULL;

                        if (asprintf(&src_path, "%s/.local/share/docker", home) < 0)
                                return -ENOMEM;
                        r = move_docker_data(s, cur, src_path, link_shown, &e.st, &kept);
                        if (r == -ERCI_REFUSED) {
                                report_item(ctx, "storage.home-link", ITEM_FAIL,
                                            "look at both directories and empty one of them",
                                            "both %s and %s hold data; rootless-ci does not merge them", link_shown,
                                            s->docker);
                                return r;
                        }
                        if (r < 0) {
                                _cleanup_free_ char *docker_shown = host_path(ctx, s->docker), *move_fix = NULL;
                                if (!docker_shown ||
                                    asprintf(&move_fix, "fix the cause logged above (often: no space left, see df -h "
                                             "%s), then run rootless-ci apply again",
                                             docker_shown) < 0)
                                        return -ENOMEM;
                                report_item(ctx, "storage.home-link", ITEM_FAIL, move_fix,
                                            "moving %s onto the disk failed; the original is in place", link_shown);
                                return 0;
                        }
                        if (kept) {
                                report_changed(ctx, "storage.home-link", ITEM_CHANGE,
                                               "copied the Docker data of %s to %s", link_shown, s->docker);
                                report_item(ctx, "storage.home-link", ITEM_WARN, NULL,
                                            "the original Docker data stays at %s/.local/share/%s; delete it once the "
                                            "daemon runs from %s", home_shown, kept, s->docker);
                        } else
                                report_changed(ctx, "storage.home-link", ITEM_CHANGE, "moved the Docker data of %s to %s",
                                               link_shown, s->docker);
                }
                /* The data directory keeps its own mode; the one on the disk must be private. */
                {
                        _cleanup_free_ char *docker_shown = host_path(ctx, s->docker);
                        _cleanup_close_ int dfd = open_dir_nofollow(s->dir_fd, "docker");
                        struct stat dst;
                        if (dfd >= 0 && fstat(dfd, &dst) >= 0 && !data_dir_mode_ok(s, &dst, true) &&
                            fix_owner_mode(dfd, s->uid, s->gid, 0700) >= 0)
                                report_changed(ctx, "storage.docker", ITEM_CHANGE, "%s is mode 0700 again",
                                               strempty(docker_shown));
                }
                break;
        }

        default:
                if (asprintf(&fix, "move %s away and run rootless-ci apply again", link_shown) < 0)
                        return -ENOMEM;
                report_item(ctx, "storage.home-link", ITEM_FAIL, fix,
                            "%s is %s, not a directory or symlink; rootless-ci neither follows nor deletes it",
                            link_shown, home_entry_type_to_string(&e));
                return 0;
        }

        /* apply: make or replace the symlink */
        r = home_put_symlink(cur, "docker", s->docker, s->uid, s->gid);
        if (r < 0) {
                if (fix_home_changed(s, &fix) < 0)
                        return -ENOMEM;
                report_item(ctx, "storage.home-link", ITEM_FAIL, fix, "cannot make the symlink %s: %s%s", link_shown,
                            strerror(-r), r == -EBUSY || r == -EEXIST ? " (something else appeared there meanwhile)" : "");
                return 0;
        }
        {
                /* A finished move's marker goes last, so a run killed before this point completes the move. */
                MoveMarker m;
                if (s->dir_fd >= 0 && read_move_marker(s, &m) >= 0 && m.present)
                        (void) remove_move_marker(s);
        }
        if (e.type == HOME_ENTRY_SYMLINK)
                report_changed(ctx, "storage.home-link", ITEM_CHANGE, "replaced the symlink %s -> %s with -> %s",
                               link_shown, e.target, s->docker);
        else
                report_changed(ctx, "storage.home-link", ITEM_CREATE, "symlink %s -> %s", link_shown, s->docker);
        return 0;
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
