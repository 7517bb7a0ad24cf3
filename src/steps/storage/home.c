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
 * ~/.local/share/docker -> <MountPoint>/<user>/docker, resolved without
 * following anything (homefs.h). The look walks the home as far as it
 * exists; each directory still to be made is a Change whose apply makes it
 * in the one the apply before reached (s->home_fds), and the link's apply
 * comes last. An apply that fails in the home reports why and the later
 * ones there do nothing, as the home may be changing under apply's feet.
 */

static const char *const parents[] = { ".local", "share" };
static const char *const parent_ids[] = { "storage.home-local", "storage.home-local-share" };
static const size_t levels[] = { 0, 1 };

/* The link is to be made by apply (the look's last item); the plan text says what. 0, for the look to return. */
#define link_change(run, state, apply, ...) \
        (storage_describe((run), "storage.home-link", (state), (apply), NULL, __VA_ARGS__), 0)

/*
 * The fix for apply failing at a step in the home it just looked at: the
 * CI user's own processes may be changing it under apply's feet. Replaces *fix.
 */
static int fix_home_changed(const StorageState *s, char **fix) {
        free(*fix);
        *fix = NULL;
        return asprintf(fix, "run rootless-ci apply again; if it fails the same way, stop %s's processes first "
                        "(loginctl terminate-user %s)", s->name, s->name) < 0 ? -ENOMEM : 0;
}

/* What a failed make in the home adds when something else took the name first. */
static const char *raced(int r) {
        return r == -EBUSY || r == -EEXIST ? " (something else appeared there meanwhile)" : "";
}

/* The directory a home apply works in: -1 when an apply before it failed (reported there). */
static int home_level_fd(const StorageState *s, size_t level) {
        return s->home_failed ? -1 : s->home_fds[level];
}

/*
 * Make ~/.local or ~/.local/share (CREATE), or finish what a run killed
 * between its mkdir and its chown left there (CHANGE), in the directory the
 * apply before reached.
 */
static int parent_apply(StepRun *run, Change *c) {
        StorageState *s = run_state(run);
        size_t i = *(const size_t *) c->data;
        const char *shown = s->parent_shown[i];
        _cleanup_free_ char *fix = NULL;
        int dirfd = home_level_fd(s, i), fd;

        if (dirfd < 0)
                return 0;
        fd = c->state == ITEM_CREATE ? home_make_dir(dirfd, parents[i], 0700, s->uid, s->gid)
                                     : home_finish_dir(dirfd, parents[i], 0700, s->uid, s->gid);
        if (fd < 0) {
                s->home_failed = true;
                if (fix_home_changed(s, &fix) < 0)
                        return -ENOMEM;
                if (c->state == ITEM_CREATE)
                        change_failed(run, c->id, fix, "cannot make %s: %s%s", shown, strerror(-fd), raced(fd));
                else
                        change_failed(run, c->id, fix, "cannot give %s to %s: %s", shown, s->name, strerror(-fd));
                return 0;
        }
        s->home_fds[i + 1] = fd;
        if (c->state == ITEM_CREATE)
                change_done(run, c->id, ITEM_CREATE, "created %s (0700, owner %s)", shown, s->name);
        else
                change_done(run, c->id, ITEM_CHANGE, "gave the empty directory %s (left by an interrupted run) to %s",
                            shown, s->name);
        return 0;
}

static void parent_change(StepRun *run, StorageState *s, size_t i, ItemStatus state) {
        if (state == ITEM_CREATE)
                storage_describe(run, parent_ids[i], state, parent_apply, (void *) &levels[i],
                                 "mkdir %s (0700, owner %s)", s->parent_shown[i], s->name);
        else
                storage_describe(run, parent_ids[i], state, parent_apply, (void *) &levels[i],
                                 "give the empty directory %s (left by an interrupted run) to %s", s->parent_shown[i],
                                 s->name);
}

/* Make or replace the symlink in ~/.local/share, then say what was done. */
static int link_put(StepRun *run, StorageState *s, int share_fd) {
        _cleanup_free_ char *fix = NULL;
        int r;

        r = home_put_symlink(share_fd, "docker", s->docker, s->uid, s->gid);
        if (r < 0) {
                if (fix_home_changed(s, &fix) < 0)
                        return -ENOMEM;
                change_failed(run, "storage.home-link", fix, "cannot make the symlink %s: %s%s", s->link_shown,
                              strerror(-r), raced(r));
                return 0;
        }
        {
                /* A finished move's marker goes last, so a run killed before this point completes the move. */
                MoveMarker m;
                if (s->dir_fd >= 0 && read_move_marker(run, s, &m) >= 0 && m.present)
                        (void) remove_move_marker(s);
        }
        if (s->link.type == HOME_ENTRY_SYMLINK)
                change_done(run, "storage.home-link", ITEM_CHANGE, "replaced the symlink %s -> %s with -> %s",
                            s->link_shown, s->link.target, s->docker);
        else
                change_done(run, "storage.home-link", ITEM_CREATE, "symlink %s -> %s", s->link_shown, s->docker);
        return 0;
}

static int link_make(StepRun *run, Change *c) {
        StorageState *s = run_state(run);
        int share_fd = home_level_fd(s, 2);

        (void) c;
        return share_fd < 0 ? 0 : link_put(run, s, share_fd);
}

static int link_replace_empty(StepRun *run, Change *c) {
        StorageState *s = run_state(run);
        _cleanup_free_ char *fix = NULL;
        int share_fd = home_level_fd(s, 2);

        if (share_fd < 0)
                return 0;
        if (unlinkat(share_fd, "docker", AT_REMOVEDIR) < 0) {
                int e_rm = errno;
                if (fix_home_changed(s, &fix) < 0)
                        return -ENOMEM;
                change_failed(run, c->id, fix, "cannot remove the empty directory %s: %s", s->link_shown,
                              strerror(e_rm));
                return 0;
        }
        return link_put(run, s, share_fd);
}

/* Docker data in the home: moved onto the disk (the look found the daemon stopped), then the link. */
static int link_move(StepRun *run, Change *c) {
        StorageState *s = run_state(run);
        _cleanup_free_ char *kept = NULL, *src_path = NULL, *docker_shown = NULL;
        int share_fd = home_level_fd(s, 2), r;

        if (share_fd < 0)
                return 0;
        if (s->dir_fd < 0 || s->dirs_blocked) {
                change_failed(run, c->id,
                              "fix what keeps the storage directories from being made (the failures above), then run "
                              "rootless-ci apply: it moves the data then",
                              "%s holds Docker data, and %s is not there to take it", s->link_shown, s->docker);
                return 0;
        }
        docker_shown = run_shown(run, s->docker);
        if (!docker_shown || asprintf(&src_path, "%s/.local/share/docker", s->account->home) < 0)
                return -ENOMEM;
        r = move_docker_data(run, s, s->account, share_fd, src_path, s->link_shown, &s->link.st, &kept);
        if (r == -ERCI_REFUSED) {
                change_failed(run, c->id, "look at both directories and empty one of them",
                              "both %s and %s hold data; rootless-ci does not merge them", s->link_shown, s->docker);
                return r;
        }
        if (r < 0) {
                _cleanup_free_ char *move_fix = NULL;
                if (asprintf(&move_fix, "fix the cause logged above (often: no space left, see df -h %s), then run "
                             "rootless-ci apply again", docker_shown) < 0)
                        return -ENOMEM;
                change_failed(run, c->id, move_fix, "moving %s onto the disk failed; the original is in place",
                              s->link_shown);
                return 0;
        }
        if (kept) {
                change_done(run, c->id, ITEM_CHANGE, "copied the Docker data of %s to %s", s->link_shown, s->docker);
                change_note(run, c->id, ITEM_WARN, NULL,
                            "the original Docker data stays at %s/.local/share/%s; delete it once the daemon runs "
                            "from %s", s->home_shown, kept, s->docker);
        } else
                change_done(run, c->id, ITEM_CHANGE, "moved the Docker data of %s to %s", s->link_shown, s->docker);

        /* The data directory keeps its own mode; the one on the disk must be private. */
        {
                _cleanup_close_ int dfd = open_dir_nofollow(s->dir_fd, "docker");
                struct stat dst;
                if (dfd >= 0 && fstat(dfd, &dst) >= 0 && !data_dir_mode_ok(s, &dst, true) &&
                    fix_owner_mode(dfd, s->uid, s->gid, 0700) >= 0)
                        change_done(run, "storage.docker", ITEM_CHANGE, "%s is mode 0700 again", docker_shown);
        }
        return link_put(run, s, share_fd);
}

/* The home itself: the user's own directory, no symlink. The home-link FAILs when it is not. */
static int home_open_judged(StepRun *run, StorageState *s, const char *home) {
        _cleanup_free_ char *fix = NULL;
        const char *shown = s->home_shown;
        int fd = home_open(run_root_fd(run), home, s->uid, NULL);

        switch (fd) {
        case -ENOENT:
                if (asprintf(&fix, "mkdir -m 0700 %s && chown %s: %s", shown, s->name, shown) < 0)
                        return -ENOMEM;
                item_finding(run, "storage.home-link", ITEM_FAIL, fix, "the home %s of %s does not exist", shown,
                             s->name);
                return 0;
        case -ELOOP:
                item_finding(run, "storage.home-link", ITEM_FAIL, "make the home a real directory",
                             "the home %s of %s is a symlink; rootless-ci never follows one there", shown, s->name);
                return 0;
        case -ENOTDIR:
                if (asprintf(&fix, "move %s away and make it a directory of %s's (mkdir -m 0700 %s && chown %s: %s), "
                             "then run rootless-ci apply", shown, s->name, shown, s->name, shown) < 0)
                        return -ENOMEM;
                item_finding(run, "storage.home-link", ITEM_FAIL, fix, "the home %s of %s is not a directory", shown,
                             s->name);
                return 0;
        case -EPERM:
                if (asprintf(&fix, "chown %s: %s, or give %s a home of its own", s->name, shown, s->name) < 0)
                        return -ENOMEM;
                item_finding(run, "storage.home-link", ITEM_FAIL, fix,
                             "the home %s is not owned by %s: rootless-ci makes ~/.local/share/docker only in a home "
                             "the user owns", shown, s->name);
                return 0;
        default:
                if (fd < 0)
                        return log_error_errno(fd, "Failed to open the home %s: %m", shown);
                s->home_fds[0] = fd;
                return 1;
        }
}

/* Apply: the home closed to group and others, through the fd the look opened (never by its name). */
static int home_mode_apply(StepRun *run, Change *c) {
        StorageState *s = run_state(run);
        _cleanup_close_ int fd = openat(s->home_fds[0], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct stat st;

        if (fd < 0 || fstat(fd, &st) < 0)
                return log_error_errno(negative_errno(), "Failed to open the home %s: %m", s->home_shown);
        if (st.st_uid != s->uid) {
                change_failed(run, c->id, run_asprintf(run, "chown %s: %s, then run rootless-ci apply", s->name,
                                                       s->home_shown),
                              "the home %s is no longer owned by %s: its mode is left alone", s->home_shown, s->name);
                return 0;
        }
        if (fchmod(fd, st.st_mode & 07700) < 0)
                return log_error_errno(negative_errno(), "Failed to close the home %s to others: %m", s->home_shown);
        change_done(run, c->id, ITEM_CHANGE, "%s is mode %04o now (was %04o): other tenants' jobs cannot read it",
                    s->home_shown, (unsigned) (st.st_mode & 07700), (unsigned) (st.st_mode & 07777));
        return 0;
}

/*
 * With tenants (issue 16): the home is closed to every other account, so
 * another tenant's jobs read no dotfile (~/.docker/config.json) of this
 * one's. useradd here makes it 0700 (HOME_MODE=0700); an adopted one may be
 * 0755 (Debian's useradd without HOME_MODE). Without tenants: not judged,
 * as before.
 */
static int home_mode_look(StepRun *run, StorageState *s, const Account *a) {
        struct stat st;

        if (!a->tenant)
                return 0;
        if (fstat(s->home_fds[0], &st) < 0)
                return log_error_errno(negative_errno(), "Failed to stat the home %s: %m", s->home_shown);
        if (!(st.st_mode & 0077)) {
                item_ok(run, "storage.home-mode", "%s (%04o): closed to other tenants", s->home_shown,
                        (unsigned) (st.st_mode & 07777));
                return 0;
        }
        item_change(run, &(Change) {
                .id = "storage.home-mode",
                .state = ITEM_CHANGE,
                .plan = run_asprintf(run, "chmod go-rwx %s (now %04o)", s->home_shown, (unsigned) (st.st_mode & 07777)),
                .problem = run_asprintf(run, "the home %s is mode %04o: other tenants' jobs can read %s's dotfiles",
                                        s->home_shown, (unsigned) (st.st_mode & 07777), s->name),
                .apply = home_mode_apply,
        });
        return 0;
}

/* ~/.local and ~/.local/share: real directories of the user's, or missing (then made). 1: all there. */
static int parents_look(StepRun *run, StorageState *s) {
        _cleanup_free_ char *fix = NULL;
        bool missing = false;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(parents); i++) {
                _cleanup_(home_entry_done) HomeEntry pe = {};
                /* Each directory on the way is an object of its own, with its own id. */
                const char *pid = parent_ids[i], *shown = s->parent_shown[i];
                int cur = s->home_fds[i], next;

                if (missing) {
                        parent_change(run, s, i, ITEM_CREATE);
                        continue;
                }
                r = home_entry_inspect(cur, parents[i], &pe);
                if (r < 0)
                        return log_error_errno(r, "Failed to look at %s: %m", shown);

                switch (pe.type) {
                case HOME_ENTRY_MISSING:
                        parent_change(run, s, i, ITEM_CREATE);
                        missing = true;
                        continue;
                case HOME_ENTRY_DIRECTORY:
                        if (pe.st.st_uid != s->uid && pe.st.st_uid == geteuid() && (pe.st.st_mode & 07777) == 0700 &&
                            home_dir_is_empty(cur, parents[i]) == 1) {
                                /* A run killed between its mkdir and its chown left this: apply finishes it. */
                                parent_change(run, s, i, ITEM_CHANGE);
                                missing = true;
                                continue;
                        }
                        if (pe.st.st_uid != s->uid) {
                                free(fix);
                                if (asprintf(&fix, "chown %s: %s (or remove it)", s->name, shown) < 0)
                                        return -ENOMEM;
                                item_finding(run, pid, ITEM_FAIL, fix,
                                             "%s is owned by UID %u, not by %s; rootless-ci works only in the user's "
                                             "own directories there", shown, (unsigned) pe.st.st_uid, s->name);
                                return 0;
                        }
                        next = home_open_dir(cur, parents[i]);
                        if (next < 0) {
                                if (fix_home_changed(s, &fix) < 0)
                                        return -ENOMEM;
                                item_finding(run, pid, ITEM_FAIL, fix, "cannot open %s: %s", shown, strerror(-next));
                                return 0;
                        }
                        s->home_fds[i + 1] = next;
                        break;
                case HOME_ENTRY_SYMLINK:
                        free(fix);
                        if (asprintf(&fix, "remove the symlink (rm %s) and run rootless-ci apply again; it makes the "
                                     "directory", shown) < 0)
                                return -ENOMEM;
                        item_finding(run, pid, ITEM_FAIL, fix,
                                     "%s is a symlink to %s: rootless-ci never follows a symlink in the CI user's home",
                                     shown, pe.target);
                        return 0;
                default:
                        /* Not a symlink: no target, the same words as the directories above it. */
                        return storage_not_a_directory(run, pid, shown, &pe);
                }
        }
        return missing ? 2 : 1;
}

/* ~/.local/share/docker holds a directory with data: moved, but never while the daemon runs. */
static int link_data_look(StepRun *run, StorageState *s) {
        const char *shown = s->link_shown;
        _cleanup_free_ char *fix = NULL;
        char comm[32] = "";
        pid_t daemon = 0;

        if (s->link.st.st_uid != s->uid) {
                if (asprintf(&fix, "move %s away by hand", shown) < 0)
                        return -ENOMEM;
                item_finding(run, "storage.home-link", ITEM_FAIL, fix,
                             "%s holds data but is owned by UID %u, not by %s; it is left alone", shown,
                             (unsigned) s->link.st.st_uid, s->name);
                return 0;
        }
        if (s->dirs_deferred) {
                item_finding(run, "storage.home-link", ITEM_SKIP, NULL,
                             "%s holds Docker data; it is moved to %s when that exists (at first boot)", shown,
                             s->docker);
                return 0;
        }
        if (run_live(run))
                daemon = find_user_daemon(s->uid, comm);
        if (daemon > 0) {
                if (asprintf(&fix, "stop the daemon (systemctl --user -M %s@ stop docker), then run rootless-ci apply "
                             "again", s->name) < 0)
                        return -ENOMEM;
                /* apply refuses (exit 3); plan and check report it as a failed check. */
                return item_stop(run, "storage.home-link", STOP_APPLY, -ERCI_REFUSED, fix,
                                 "%s holds Docker data and %s's daemon is running (PID %ld, %s): rootless-ci moves "
                                 "the data onto the disk only while it is stopped; nothing was changed",
                                 shown, s->name, (long) daemon, comm);
        }
        return link_change(run, ITEM_CHANGE, link_move,
                           "move the Docker data in %s to %s, and put a symlink in its place", shown, s->docker);
}

int storage_home_look(StepRun *run, Account *a) {
        StorageState *s = run_state(run);
        const char *home = a->home;
        _cleanup_free_ char *fix = NULL;
        int r;

        if (!s->ready || s->skip || !home)
                return 0;
        s->account = a;
        s->home_shown = run_shown(run, home);
        if (!s->home_shown || asprintf(&s->link_shown, "%s/.local/share/docker", s->home_shown) < 0 ||
            asprintf(&s->parent_shown[0], "%s/.local", s->home_shown) < 0 ||
            asprintf(&s->parent_shown[1], "%s/.local/share", s->home_shown) < 0)
                return -ENOMEM;

        if (s->user_planned) {
                for (size_t i = 0; i < ELEMENTSOF(parents); i++)
                        storage_describe(run, parent_ids[i], ITEM_CREATE, NULL, NULL, "mkdir %s (0700, owner %s)",
                                         s->parent_shown[i], s->name);
                storage_describe(run, "storage.home-link", ITEM_CREATE, NULL, NULL,
                                 "symlink %s -> %s (in the home useradd creates)", s->link_shown, s->docker);
                return 0;
        }

        r = home_open_judged(run, s, home);
        if (r <= 0)
                return r;
        r = home_mode_look(run, s, a);
        if (r < 0)
                return r;
        r = parents_look(run, s);
        if (r <= 0)
                return r;
        if (r == 2)
                /* A directory on the way is still to be made: so is the link, in it. */
                return link_change(run, ITEM_CREATE, link_make, "symlink %s -> %s", s->link_shown, s->docker);

        r = home_entry_inspect(s->home_fds[2], "docker", &s->link);
        if (r < 0)
                return log_error_errno(r, "Failed to look at %s: %m", s->link_shown);

        switch (s->link.type) {
        case HOME_ENTRY_SYMLINK:
                if (streq(s->link.target, s->docker)) {
                        item_ok(run, "storage.home-link", "%s -> %s", s->link_shown, s->docker);
                        return 0;
                }
                return link_change(run, ITEM_CHANGE, link_make, "replace the symlink %s -> %s with -> %s",
                                   s->link_shown, s->link.target, s->docker);

        case HOME_ENTRY_MISSING:
                return link_change(run, ITEM_CREATE, link_make, "symlink %s -> %s", s->link_shown, s->docker);

        case HOME_ENTRY_DIRECTORY:
                r = home_dir_is_empty(s->home_fds[2], "docker");
                if (r < 0)
                        return log_error_errno(r, "Failed to read %s: %m", s->link_shown);
                if (r > 0)
                        return link_change(run, ITEM_CHANGE, link_replace_empty,
                                           "replace the empty directory %s with a symlink -> %s", s->link_shown,
                                           s->docker);
                return link_data_look(run, s);

        default:
                if (asprintf(&fix, "move %s away and run rootless-ci apply again", s->link_shown) < 0)
                        return -ENOMEM;
                item_finding(run, "storage.home-link", ITEM_FAIL, fix,
                             "%s is %s, not a directory or symlink; rootless-ci neither follows nor deletes it",
                             s->link_shown, home_entry_type_to_string(&s->link));
                return 0;
        }
}

void storage_home_done(StorageState *s) {
        free(s->home_shown);
        free(s->link_shown);
        for (size_t i = 0; i < ELEMENTSOF(s->parent_shown); i++)
                free(s->parent_shown[i]);
        for (size_t i = 0; i < ELEMENTSOF(s->home_fds); i++)
                safe_close(s->home_fds[i]);
        home_entry_done(&s->link);
}
