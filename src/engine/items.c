/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/step.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"

/* The generic items of the step contract (engine/step.h): one look, one apply, for many steps. */

/*
 * item_file's look and apply. file_look: does path hold want, root-owned,
 * mode 0644? (logged < 0 when it cannot tell). file_make_dir: its
 * directory, made. file_write_verified: write it atomically and read it
 * back. shown is the path as the host sees it, for messages.
 */
#define UNIT_FILE_MAX (256 * 1024)

static int file_look(int root_fd, const char *path, const char *shown, const char *want, bool *ret_exists,
                     bool *ret_same) {
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

static int file_make_dir(int root_fd, const char *path, const char *shown) {
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

static int file_write_verified(int root_fd, const char *path, const char *shown, const char *want) {
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
 * What item_file's and item_symlink's apply need: the path in the root, the
 * file's text or the link's target, the words that name it, and the path as
 * the host sees it. The texts are the run's (run_asprintf).
 */
typedef struct PathChange {
        const char *path, *content, *what, *shown;
        bool exists;
} PathChange;

/*
 * item_file's and item_symlink's description, once: in place (ok: its text),
 * an OK finding; else c (its texts, apply, marker) as a create or a change,
 * with what its apply needs. 0 in place, 1 a change, < 0 out of memory.
 */
static int path_describe(StepRun *run, const char *ok, Change c, const char *path, const char *content,
                         const char *what, const char *shown, bool exists) {
        PathChange *p;

        if (ok) {
                item_finding_ex(run, &(Finding) { .id = c.id, .status = ITEM_OK, .message = ok,
                                                  .hidden_in = c.hidden_in });
                return 0;
        }
        p = calloc(1, sizeof(PathChange));
        if (!p)
                return -ENOMEM;
        *p = (PathChange) {
                .path = run_asprintf(run, "%s", path),
                .content = run_asprintf(run, "%s", content),
                .what = run_asprintf(run, "%s", what),
                .shown = run_asprintf(run, "%s", shown),
                .exists = exists,
        };
        c.state = exists ? ITEM_CHANGE : ITEM_CREATE;
        c.data = p;
        c.data_free = free;
        item_change(run, &c);
        return 1;
}

static int file_apply(StepRun *run, Change *c) {
        const PathChange *f = c->data;
        int r;

        r = file_make_dir(run_root_fd(run), f->path, f->shown);
        if (r < 0)
                return r;
        /* verified as it is written: a read-back in the same call */
        r = file_write_verified(run_root_fd(run), f->path, f->shown, f->content);
        if (r < 0)
                return r;
        change_done(run, c->id, c->state, "%s %s %s", f->exists ? "rewrote" : "wrote", f->what, f->shown);
        return 0;
}

int item_file(StepRun *run, const FileWant *w) {
        _cleanup_free_ char *shown = run_shown(run, w->path);
        bool exists, same;
        int r;

        if (!shown)
                return -ENOMEM;
        r = file_look(run_root_fd(run), w->path, shown, w->text, &exists, &same);
        if (r < 0)
                return r;
        return path_describe(run, same ? run_asprintf(run, "%s %s is up to date", w->what, shown) : NULL,
                             (Change) {
                                     .id = w->id,
                                     .plan = run_asprintf(run, "%s %s %s%s", exists ? "rewrite" : "write", w->what,
                                                          shown, exists ? " (content differs)" : ""),
                                     .problem = run_asprintf(run, "%s %s %s", w->what, shown,
                                                             exists ? "differs from what rootless-ci installs "
                                                                      "(content or mode)"
                                                                    : "is missing"),
                                     .marker = w->marker,
                                     .effects = w->effects,
                                     .hidden_in = w->hidden_in,
                                     .apply = file_apply,
                             },
                             w->path, w->text, w->what, shown, exists);
}

/* Write the link beside its place, then rename it there: a reader sees the old link or the new one. */
static int symlink_apply(StepRun *run, Change *c) {
        const PathChange *l = c->data;
        _cleanup_free_ char *dir = strdup(l->path);
        _cleanup_close_ int parent = -1, d = -1;
        int r;

        if (!dir)
                return -ENOMEM;
        *strrchr(dir, '/') = 0;
        parent = safe_mkdir_p(run_root_fd(run), dir, 0755, RESOLVE_POLICY_IN_ROOT);
        if (parent < 0)
                return log_error_errno(parent, "Failed to create the directory of %s: %m", l->shown);
        /* O_PATH fds cannot hold new entries; reopen for real. */
        d = openat(parent, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d < 0)
                return log_error_errno(negative_errno(), "Failed to open the directory of %s: %m", l->shown);
        r = symlink_atomic_at(d, strrchr(l->path, '/') + 1, l->content, (uid_t) -1, (gid_t) -1, "link-before-rename");
        if (r < 0)
                return log_error_errno(r, "Failed to put the link %s in place: %m", l->shown);
        change_done(run, c->id, c->state, "%s: linked %s → %s", l->what, l->shown, l->content);
        return 0;
}

int item_symlink(StepRun *run, const SymlinkWant *w) {
        _cleanup_free_ char *name = NULL, *shown = run_shown(run, w->path);
        _cleanup_close_ int parent = -1;
        char have[PATH_MAX];
        bool exists = false;
        struct stat st;

        if (!shown)
                return -ENOMEM;
        parent = safe_open_parent(run_root_fd(run), w->path, RESOLVE_POLICY_IN_ROOT, &name);
        if (parent < 0 && parent != -ENOENT)
                return log_error_errno(parent, "Failed to open the directory of %s: %m", shown);
        if (parent >= 0 && fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) >= 0) {
                ssize_t n;

                exists = true;
                if (!S_ISLNK(st.st_mode)) {
                        item_finding_ex(run, &(Finding) {
                                .id = w->id,
                                .status = ITEM_FAIL,
                                .message = run_asprintf(run, "%s is not a symlink; rootless-ci leaves it alone (move "
                                                        "it away to let apply %s)", shown, w->what),
                                .fix = run_asprintf(run, "move it away (mv %s %s.old), then run rootless-ci apply",
                                                    shown, shown),
                                .hidden_in = w->hidden_in,
                        });
                        return 0;
                }
                n = readlinkat(parent, name, have, sizeof(have) - 1);
                if (n < 0)
                        return log_error_errno(negative_errno(), "Failed to read the link %s: %m", shown);
                have[n] = 0;
        }
        return path_describe(run,
                             exists && streq(have, w->target)
                                     ? run_asprintf(run, "%s (%s → %s)", w->what, shown, w->target)
                                     : NULL,
                             (Change) {
                                     .id = w->id,
                                     .plan = run_asprintf(run, "%s: link %s → %s", w->what, shown, w->target),
                                     .problem = run_asprintf(run, "not done: %s (%s → %s %s)", w->what, shown,
                                                             w->target, exists ? "points elsewhere" : "is missing"),
                                     .hidden_in = w->hidden_in,
                                     .apply = symlink_apply,
                             },
                             w->path, w->target, w->what, shown, exists);
}
