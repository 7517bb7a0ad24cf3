/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "steps/storage/storage.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"

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

char *storage_path_join(const char *a, const char *b) {
        char *s;
        return asprintf(&s, "%s/%s", a, b) < 0 ? NULL : s;
}

void storage_describe(StepRun *run, const char *id, ItemStatus state, int (*apply)(StepRun *run, Change *c),
                      void *data, const char *fmt, ...) {
        va_list ap;
        const char *m;

        va_start(ap, fmt);
        m = run_vasprintf(run, fmt, ap);
        va_end(ap);
        if (apply)
                item_change(run, &(Change) { .id = id, .state = state, .plan = m, .apply = apply, .data = data });
        else
                /* Planned only (its parent or its user is): plan and apply show it as it is, check fails. */
                item_finding_ex(run, &(Finding) {
                        .id = id,
                        .status = state,
                        .message = m,
                        .in_check = &(Verdict) { ITEM_FAIL, m, "rootless-ci apply" },
                });
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

/* The paths and owners every part works with; 0: the account is not usable, nothing to do. */
static int storage_setup(StepRun *run, StorageState *s, Account *a) {
        struct stat root_st;

        s->mp_fd = s->dir_fd = -1;
        for (size_t i = 0; i < ELEMENTSOF(s->home_fds); i++)
                s->home_fds[i] = -1;
        s->ready = true;
        s->name = a->name;
        if (a->state == ACCOUNT_UNUSABLE) {
                item_finding(run, "storage.dirs", ITEM_SKIP, NULL, "the CI user is not usable (see the user step)");
                s->skip = true;
                return 0;
        }
        s->user_planned = a->state != ACCOUNT_KNOWN;
        s->uid = a->uid;
        s->gid = a->gid;
        /* "root" is whoever owns the tree's root: 0 on a host, the test's user in a test tree. */
        if (fstat(run_root_fd(run), &root_st) < 0)
                return log_error_errno(negative_errno(), "Failed to stat the root directory: %m");
        s->root_uid = root_st.st_uid;
        s->root_gid = root_st.st_gid;

        s->mp = strdup(run_config(run)->mount_point);
        if (!s->mp)
                return -ENOMEM;
        s->dir = storage_path_join(s->mp, s->name);
        s->docker = s->dir ? storage_path_join(s->dir, "docker") : NULL;
        s->builds = s->dir ? storage_path_join(s->dir, "builds") : NULL;
        s->mp_shown = run_shown(run, s->mp);
        s->dir_shown = s->dir ? run_shown(run, s->dir) : NULL;
        s->data[0].sub = "docker";
        s->data[0].shown = s->docker ? run_shown(run, s->docker) : NULL;
        s->data[1].sub = "builds";
        s->data[1].shown = s->builds ? run_shown(run, s->builds) : NULL;
        if (!s->docker || !s->builds || !s->mp_shown || !s->dir_shown || !s->data[0].shown || !s->data[1].shown)
                return -ENOMEM;
        /* The agent's builds path. */
        if (free_and_strdup(&a->builds_dir, s->builds) < 0)
                return -ENOMEM;
        return 1;
}

/* <MountPoint> open at s->mp_fd: root's and not writable by others, then in place. */
static int mount_point_judge(StepRun *run, StorageState *s, bool disk) {
        _cleanup_free_ char *fix = NULL;
        const char *shown = s->mp_shown;
        struct stat st;

        if (fstat(s->mp_fd, &st) < 0)
                return log_error_errno(negative_errno(), "Failed to stat %s: %m", shown);
        if (st.st_uid != s->root_uid || (st.st_mode & 0022)) {
                if (asprintf(&fix, "chown root:root %s && chmod go-w %s", shown, shown) < 0)
                        return -ENOMEM;
                item_finding(run, "storage.mount-point", ITEM_FAIL, fix,
                             "%s (owner UID %u, mode %04o) is writable by someone other than root: they could swap "
                             "the CI user's directories", shown, (unsigned) st.st_uid, (unsigned) (st.st_mode & 07777));
                s->dirs_blocked = true;
                return 0;
        }
        /* Without Device= nothing else knows: an operator may have mounted something there. */
        item_ok(run, "storage.mount-point", "%s: %s", shown,
                disk ? "the data disk is mounted"
                     : is_mount_point(s->mp_fd) ? "mounted, though no Device= is configured: used as it is"
                                                : "a directory on the root filesystem (no data disk configured)");
        return 0;
}

static int mount_point_make(StepRun *run, Change *c) {
        StorageState *s = run_state(run);
        int fd;

        fd = safe_mkdir_p(run_root_fd(run), s->mp, 0755, RESOLVE_POLICY_IN_ROOT);
        if (fd < 0)
                return log_error_errno(fd, "Failed to create %s: %m", s->mp_shown);
        s->mp_fd = fd;
        change_done(run, c->id, ITEM_CREATE, "created %s (0755, root; no data disk is configured)", s->mp_shown);
        /* The change is the part's last item: the judgement goes right after it, as in a look. */
        return mount_point_judge(run, s, false);
}

/* <MountPoint>: mounted (Device=) or a plain root-owned directory; never writable by others. */
static int mount_point_look(StepRun *run, Account *a) {
        StorageState *s = run_state(run);
        const Config *config = run_config(run);
        const HostFacts *f = run_facts(run);
        bool disk = config->disk_device != NULL;
        const char *shown;
        int r, fd;

        r = storage_setup(run, s, a);
        if (r <= 0)
                return r;
        shown = s->mp_shown;
        if (disk && !run_live(run)) {
                item_finding(run, "storage.dirs", ITEM_SKIP, NULL,
                             "%s/{docker,builds} are made on the data disk at first boot (Device= is set; disks are "
                             "mounted on the live host only)", s->dir);
                s->dirs_deferred = true;
                return 0;
        }

        /*
         * A symlink on the way (say /srv/ci -> /etc) would put the user's
         * directories wherever it points. The engine refused such a
         * MountPoint= before any step; the same judgement again here, right
         * before directories are made there: a usage error in every verb.
         */
        {
                _cleanup_free_ char *msg = NULL;
                r = config_check_mount_point_path(config, run_root_fd(run), run_root(run), &msg);
                if (r == -ERCI_USAGE) {
                        item_finding(run, "storage.mount-point", ITEM_FAIL, FIX_MOUNT_POINT_PATH, "%s", msg);
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
        if (disk && !f->data_mounted) {
                _cleanup_free_ char *plan_message = NULL, *message = NULL;

                if (f->data_mount_planned) {
                        item_finding(run, "storage.mount-point", ITEM_CREATE, NULL,
                                     "%s is not mounted yet: its directories are made on the data disk once the "
                                     "disk step has mounted it", shown);
                        return 0;
                }
                /* plan: the disk step already said why it cannot mount it. */
                if (asprintf(&plan_message, "%s: its directories wait for the data disk (see the disk step)", shown) < 0 ||
                    asprintf(&message, "the data disk is not mounted at %s although Device= is set: rootless-ci does not "
                             "put Docker's data on the root disk", shown) < 0)
                        return -ENOMEM;
                item_finding_ex(run, &(Finding) {
                        .id = "storage.mount-point",
                        .status = ITEM_FAIL,
                        .message = message,
                        .fix = "run rootless-ci apply, whose disk step mounts the data disk; check the disk is attached",
                        .in_plan = &(Verdict) { ITEM_SKIP, plan_message, NULL },
                });
                s->dirs_blocked = true;
                return 0;
        }

        fd = safe_openat(run_root_fd(run), s->mp, O_PATH | O_DIRECTORY, 0, RESOLVE_POLICY_IN_ROOT);
        if (fd < 0 && fd != -ENOENT)
                return log_error_errno(fd, "Failed to open %s: %m", shown);
        if (fd < 0 && disk)
                return log_error_errno(fd, "Failed to open %s, where the data disk is mounted: %m", shown);
        if (fd == -ENOENT) {
                storage_describe(run, "storage.mount-point", ITEM_CREATE, mount_point_make, NULL,
                                 "mkdir %s (0755, root; no data disk is configured, so Docker's data stays on the "
                                 "root filesystem)", shown);
                return 0;
        }
        s->mp_fd = fd;
        return mount_point_judge(run, s, disk);
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

/* Make <MountPoint>/<user> (CREATE) or set its owner and mode (CHANGE). */
static int dir_apply(StepRun *run, Change *c) {
        StorageState *s = run_state(run);
        int r;

        if (c->state == ITEM_CREATE) {
                if (mkdirat(s->mp_fd, s->name, 0755) < 0)
                        return log_error_errno(negative_errno(), "Failed to create %s: %m", s->dir_shown);
                s->dir_fd = open_dir_nofollow(s->mp_fd, s->name);
                if (s->dir_fd < 0)
                        return log_error_errno(s->dir_fd, "Failed to open %s: %m", s->dir_shown);
        }
        r = fix_owner_mode(s->dir_fd, s->root_uid, s->root_gid, 0755);
        if (r < 0)
                return log_error_errno(r, "Failed to set the owner and mode of %s: %m", s->dir_shown);
        if (c->state == ITEM_CREATE)
                change_done(run, c->id, ITEM_CREATE, "created %s (0755, root)", s->dir_shown);
        else
                change_done(run, c->id, ITEM_CHANGE, "%s is now root's, mode 0755 (was UID %u, mode %04o)",
                            s->dir_shown, (unsigned) s->dir_st.st_uid, (unsigned) (s->dir_st.st_mode & 07777));
        return 0;
}

/* A path that is to be a directory and is something else (a symlink: with its target): left alone. */
int storage_not_a_directory(StepRun *run, const char *id, const char *shown, const HomeEntry *e) {
        _cleanup_free_ char *fix = NULL;

        if (asprintf(&fix, "move %s away and run rootless-ci apply again", shown) < 0)
                return -ENOMEM;
        item_finding(run, id, ITEM_FAIL, fix, "%s is %s%s%s, not a directory; it is left alone", shown,
                     home_entry_type_to_string(e), e->target ? " to " : "", strempty(e->target));
        return 0;
}

/*
 * parent_fd/name, not followed. parent_fd < 0: the parent is still to be made
 * (or mounted), so this is missing too, and only planned (*apply = NULL).
 */
static int entry_look(int parent_fd, const char *name, const char *shown, HomeEntry *e,
                      int (**apply)(StepRun *run, Change *c)) {
        int r;

        if (parent_fd < 0) {
                *e = (HomeEntry) { .type = HOME_ENTRY_MISSING };
                *apply = NULL;
                return 0;
        }
        r = home_entry_inspect(parent_fd, name, e);
        if (r < 0)
                return log_error_errno(r, "Failed to look at %s: %m", shown);
        return 0;
}

/* <MountPoint>/<user>: root, 0755. Its own part: the data directories' look needs the fd its apply opens. */
static int dir_look(StepRun *run, Account *a) {
        StorageState *s = run_state(run);
        const char *shown = s->dir_shown;
        int (*apply)(StepRun *run, Change *c) = dir_apply;
        _cleanup_(home_entry_done) HomeEntry e = {};
        int r, fd;

        if (!s->ready || s->skip || s->dirs_blocked || s->dirs_deferred)
                return 0;
        r = entry_look(s->mp_fd, s->name, shown, &e, &apply);
        if (r < 0)
                return r;

        switch (e.type) {
        case HOME_ENTRY_MISSING:
                storage_describe(run, "storage.dir", ITEM_CREATE, apply, NULL, "mkdir %s (0755, root)", shown);
                return 0;

        case HOME_ENTRY_DIRECTORY:
                fd = open_dir_nofollow(s->mp_fd, s->name);
                if (fd < 0)
                        return log_error_errno(fd, "Failed to open %s: %m", shown);
                s->dir_fd = fd;
                if (e.st.st_uid == s->root_uid && e.st.st_gid == s->root_gid && (e.st.st_mode & 07777) == 0755) {
                        item_ok(run, "storage.dir", "%s (0755, root)", shown);
                        return 0;
                }
                s->dir_st = e.st; /* what it was, for the apply's message */
                storage_describe(run, "storage.dir", ITEM_CHANGE, dir_apply, NULL,
                                 "chown root:root, chmod 0755 %s (now UID %u, GID %u, mode %04o)", shown,
                                 (unsigned) e.st.st_uid, (unsigned) e.st.st_gid, (unsigned) (e.st.st_mode & 07777));
                return 0;

        default:
                r = storage_not_a_directory(run, "storage.dir", shown, &e);
                if (r < 0)
                        return r;
                s->dirs_blocked = true;
                return 0;
        }
}

bool data_dir_mode_ok(const StorageState *s, const struct stat *st, bool docker) {
        mode_t m = st->st_mode & 07777;
        /* dockerd sets its root to 0710 with the user's own group at every start. */
        return st->st_uid == s->uid && (m == 0700 || (docker && m == 0710 && st->st_gid == s->gid));
}

/* Make <MountPoint>/<user>/{docker,builds} (CREATE) or give it back to the user (CHANGE). */
static int data_dir_apply(StepRun *run, Change *c) {
        StorageState *s = run_state(run);
        const DataDir *d = c->data;
        _cleanup_close_ int fd = -1;
        int r;

        if (c->state == ITEM_CREATE && mkdirat(s->dir_fd, d->sub, 0700) < 0)
                return log_error_errno(negative_errno(), "Failed to create %s: %m", d->shown);
        fd = open_dir_nofollow(s->dir_fd, d->sub);
        if (fd < 0)
                return log_error_errno(fd, "Failed to open %s: %m", d->shown);
        /* Only the directory itself: its contents are the user's business. */
        r = fix_owner_mode(fd, s->uid, s->gid, 0700);
        if (r < 0)
                return log_error_errno(r, "Failed to give %s to %s: %m", d->shown, s->name);
        if (c->state == ITEM_CREATE)
                change_done(run, c->id, ITEM_CREATE, "created %s (0700, owner %s)", d->shown, s->name);
        else
                change_done(run, c->id, ITEM_CHANGE, "%s is now %s's, mode 0700 (was UID %u, mode %04o)", d->shown,
                            s->name, (unsigned) d->st.st_uid, (unsigned) (d->st.st_mode & 07777));
        return 0;
}

/* <MountPoint>/<user>/{docker,builds}: the user, 0700. */
static int data_dir_look(StepRun *run, StorageState *s, DataDir *d) {
        bool docker = streq(d->sub, "docker");
        const char *shown = d->shown;
        /* No UID to give it to while the user is planned: shown as planned, apply makes the user first. */
        int (*apply)(StepRun *run, Change *c) = s->user_planned ? NULL : data_dir_apply;
        _cleanup_free_ char *id = NULL;
        _cleanup_(home_entry_done) HomeEntry e = {};
        int r;

        if (asprintf(&id, "storage.%s", d->sub) < 0)
                return -ENOMEM;
        r = entry_look(s->dir_fd, d->sub, shown, &e, &apply);
        if (r < 0)
                return r;

        switch (e.type) {
        case HOME_ENTRY_MISSING:
                storage_describe(run, id, ITEM_CREATE, apply, d, "mkdir %s (0700, owner %s)", shown, s->name);
                return 0;

        case HOME_ENTRY_DIRECTORY:
                if (!s->user_planned && data_dir_mode_ok(s, &e.st, docker)) {
                        item_ok(run, id, "%s (%04o, owner %s)", shown, (unsigned) (e.st.st_mode & 07777), s->name);
                        return 0;
                }
                d->st = e.st;
                storage_describe(run, id, ITEM_CHANGE, apply, d, "chown %s, chmod 0700 %s (now UID %u, mode %04o)",
                                 s->name, shown, (unsigned) e.st.st_uid, (unsigned) (e.st.st_mode & 07777));
                return 0;

        default:
                return storage_not_a_directory(run, id, shown, &e);
        }
}

/* Its own part: the look needs <MountPoint>/<user>, which the dir part's apply makes. */
static int data_dirs_look(StepRun *run, Account *a) {
        StorageState *s = run_state(run);
        int r = 0;

        if (!s->ready || s->skip || s->dirs_blocked || s->dirs_deferred)
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(s->data) && r >= 0; i++)
                r = data_dir_look(run, s, &s->data[i]);
        return r;
}

static void storage_state_done(void *p) {
        StorageState *s = p;

        if (!s->ready)
                return;
        FREE_MANY(s->mp, s->dir, s->docker, s->builds, s->mp_shown, s->dir_shown);
        for (size_t i = 0; i < ELEMENTSOF(s->data); i++)
                free(s->data[i].shown);
        safe_close(s->mp_fd);
        safe_close(s->dir_fd);
        storage_home_done(s);
}

/*
 * Parts, in the old step's order. mount-point, dir and data-dirs are apart because
 * each look needs the directory the previous apply makes (its fd); the home
 * part makes ~/.local, ~/.local/share and the link one after the other in
 * its applies, each in the directory the one before reached.
 */
static const Part storage_parts[] = {
        { .name = "mount-point", .look = mount_point_look },
        { .name = "dir", .look = dir_look },
        { .name = "data-dirs", .look = data_dirs_look },
        { .name = "home", .look = storage_home_look },
};

const Step step_storage = {
        .name = "storage",
        STEP_PARTS(storage_parts),
        .per_account = true,
        .state_size = sizeof(StorageState),
        .state_done = storage_state_done,
        .refusal = "Refusing to move the Docker data out of the home while the daemon runs (see %s).",
};
