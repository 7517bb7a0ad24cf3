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

typedef struct FileChange {
        char *path, *text, *what, *shown;
        bool exists;
} FileChange;

static void file_change_free(void *p) {
        FileChange *f = p;

        if (!f)
                return;
        free(f->path);
        free(f->text);
        free(f->what);
        free(f->shown);
        free(f);
}

static int file_apply(StepRun *run, Change *c) {
        const FileChange *f = c->data;
        int r;

        r = file_make_dir(run_root_fd(run), f->path, f->shown);
        if (r < 0)
                return r;
        /* verified as it is written: a read-back in the same call */
        r = file_write_verified(run_root_fd(run), f->path, f->shown, f->text);
        if (r < 0)
                return r;
        change_done(run, c->id, c->state, "%s %s %s", f->exists ? "rewrote" : "wrote", f->what, f->shown);
        return 0;
}

int item_file(StepRun *run, const FileWant *w) {
        _cleanup_free_ char *shown = run_shown(run, w->path), *plan = NULL, *problem = NULL;
        FileChange *f;
        bool exists, same;
        int r;

        if (!shown)
                return -ENOMEM;
        r = file_look(run_root_fd(run), w->path, shown, w->text, &exists, &same);
        if (r < 0)
                return r;
        if (same) {
                _cleanup_free_ char *msg = NULL;
                if (asprintf(&msg, "%s %s is up to date", w->what, shown) < 0)
                        return -ENOMEM;
                item_finding_ex(run, &(Finding) { .id = w->id, .status = ITEM_OK, .message = msg,
                                                  .hidden_in = w->hidden_in });
                return 0;
        }

        if (asprintf(&plan, "%s %s %s%s", exists ? "rewrite" : "write", w->what, shown,
                     exists ? " (content differs)" : "") < 0 ||
            asprintf(&problem, "%s %s %s", w->what, shown,
                     exists ? "differs from what rootless-ci installs (content or mode)" : "is missing") < 0)
                return -ENOMEM;
        f = calloc(1, sizeof(FileChange));
        if (!f || !(f->path = strdup(w->path)) || !(f->text = strdup(w->text)) || !(f->what = strdup(w->what))) {
                file_change_free(f);
                return -ENOMEM;
        }
        f->shown = TAKE_PTR(shown);
        f->exists = exists;
        item_change(run, &(Change) {
                .id = w->id,
                .state = exists ? ITEM_CHANGE : ITEM_CREATE,
                .plan = plan,
                .problem = problem,
                .marker = w->marker,
                .effects = w->effects,
                .hidden_in = w->hidden_in,
                .apply = file_apply,
                .data = f,
                .data_free = file_change_free,
        });
        return 1;
}

typedef struct SymlinkChange {
        char *path, *target, *what, *shown;
} SymlinkChange;

static void symlink_change_free(void *p) {
        SymlinkChange *l = p;

        if (!l)
                return;
        free(l->path);
        free(l->target);
        free(l->what);
        free(l->shown);
        free(l);
}

/* Write the link beside its place, then rename it there: a reader sees the old link or the new one. */
static int symlink_apply(StepRun *run, Change *c) {
        const SymlinkChange *l = c->data;
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
        r = symlink_atomic_at(d, strrchr(l->path, '/') + 1, l->target, (uid_t) -1, (gid_t) -1, "link-before-rename");
        if (r < 0)
                return log_error_errno(r, "Failed to put the link %s in place: %m", l->shown);
        change_done(run, c->id, c->state, "%s: linked %s → %s", l->what, l->shown, l->target);
        return 0;
}

int item_symlink(StepRun *run, const SymlinkWant *w) {
        _cleanup_free_ char *name = NULL, *shown = run_shown(run, w->path), *msg = NULL, *fix = NULL,
                            *plan = NULL, *problem = NULL;
        _cleanup_close_ int parent = -1;
        char have[PATH_MAX];
        bool exists = false;
        SymlinkChange *l;
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
                        if (asprintf(&fix, "move it away (mv %s %s.old), then run rootless-ci apply", shown, shown) < 0 ||
                            asprintf(&msg, "%s is not a symlink; rootless-ci leaves it alone (move it away to let "
                                     "apply %s)", shown, w->what) < 0)
                                return -ENOMEM;
                        item_finding_ex(run, &(Finding) { .id = w->id, .status = ITEM_FAIL, .message = msg,
                                                          .fix = fix, .hidden_in = w->hidden_in });
                        return 0;
                }
                n = readlinkat(parent, name, have, sizeof(have) - 1);
                if (n < 0)
                        return log_error_errno(negative_errno(), "Failed to read the link %s: %m", shown);
                have[n] = 0;
        }
        if (exists && streq(have, w->target)) {
                if (asprintf(&msg, "%s (%s → %s)", w->what, shown, w->target) < 0)
                        return -ENOMEM;
                item_finding_ex(run, &(Finding) { .id = w->id, .status = ITEM_OK, .message = msg,
                                                  .hidden_in = w->hidden_in });
                return 0;
        }

        if (asprintf(&plan, "%s: link %s → %s", w->what, shown, w->target) < 0 ||
            asprintf(&problem, "not done: %s (%s → %s %s)", w->what, shown, w->target,
                     exists ? "points elsewhere" : "is missing") < 0)
                return -ENOMEM;
        l = calloc(1, sizeof(SymlinkChange));
        if (!l || !(l->path = strdup(w->path)) || !(l->target = strdup(w->target)) || !(l->what = strdup(w->what))) {
                symlink_change_free(l);
                return -ENOMEM;
        }
        l->shown = TAKE_PTR(shown);
        item_change(run, &(Change) {
                .id = w->id,
                .state = exists ? ITEM_CHANGE : ITEM_CREATE,
                .plan = plan,
                .problem = problem,
                .hidden_in = w->hidden_in,
                .apply = symlink_apply,
                .data = l,
                .data_free = symlink_change_free,
        });
        return 1;
}
