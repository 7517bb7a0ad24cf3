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
int storage_ensure_home_link(StorageStep *s) {
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
