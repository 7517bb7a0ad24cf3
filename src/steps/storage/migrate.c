/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
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
#include "util/proc.h"
#include "util/userns.h"

static int daemon_match(void *userdata, pid_t pid, int proc_fd, const ProcessCreds *c) {
        char *comm = userdata;

        if (!startswith(c->comm, "dockerd") && !startswith(c->comm, "rootlesskit") && !startswith(c->comm, "containerd"))
                return 0;
        snprintf(comm, 32, "%s", c->comm);
        return (int) pid;  /* > 0: the scan stops with it */
}

/* A process of uid that is (part of) a Docker daemon: dockerd, rootlesskit, containerd. 0: none seen. */
pid_t find_user_daemon(uid_t uid, char comm[static 32]) {
        _cleanup_close_ int proc_fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int r;

        if (proc_fd < 0)
                return 0;
        r = proc_scan_uid(proc_fd, uid, daemon_match, comm);
        /* An unreadable /proc is no daemon seen, as before; so is a status that does not parse (the kernel writes them). */
        return r > 0 ? (pid_t) r : 0;
}

int read_move_marker(StepRun *run, StorageState *s, MoveMarker *ret) {
        _cleanup_free_ char *text = NULL, *path = storage_path_join(s->dir, MOVE_MARKER);
        char state[16];
        unsigned long long dev, ino;
        int r;

        *ret = (MoveMarker) {};
        if (!path)
                return -ENOMEM;
        r = read_file_at(run_root_fd(run), path, RESOLVE_POLICY_IN_ROOT, 4096, &text, NULL);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (sscanf(text, "%15s %llu %llu", state, &dev, &ino) != 3)
                return 0;  /* unreadable: as if absent */
        *ret = (MoveMarker) { .present = true, .copied = streq(state, "copied"), .dev = (dev_t) dev, .ino = (ino_t) ino };
        return 0;
}

static int write_move_marker(StorageState *s, const char *state, const struct stat *src) {
        char buf[128];
        int n = snprintf(buf, sizeof(buf), "%s %llu %llu\n", state, (unsigned long long) src->st_dev,
                         (unsigned long long) src->st_ino);
        /* In <MountPoint>/<user>, which only root can write: the user cannot forge it. */
        return write_file_atomic_at(s->dir_fd, MOVE_MARKER, buf, (size_t) n, 0600, (uid_t) -1, (gid_t) -1);
}

int remove_move_marker(StorageState *s) {
        if (unlinkat(s->dir_fd, MOVE_MARKER, 0) < 0 && errno != ENOENT)
                return negative_errno();
        return fsync_dir(s->dir_fd);
}

static UserNsIdentity user_identity(const StorageState *s, const Account *a) {
        return (UserNsIdentity) {
                .uid = s->uid, .gid = s->gid,
                /* Every range the user has, as its daemon maps them: data of any of them is copied. */
                .subuids = a->subuids, .n_subuids = a->n_subuids,
                .subgids = a->subgids, .n_subgids = a->n_subgids,
        };
}

/* Empty the docker directory on the disk, as the user (it holds only our partial copy). */
static int clear_docker_dir_as_user(StepRun *run, StorageState *s, const Account *a) {
        _cleanup_free_ char *dst = run_shown(run, s->docker);
        char *argv[] = { (char *) "find", dst, (char *) "-mindepth", (char *) "1", (char *) "-delete", NULL };
        UserNsIdentity id = user_identity(s, a);
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
int move_docker_data(StepRun *run, StorageState *s, const Account *a, int share_fd, const char *src_path,
                     const char *src_shown, const struct stat *src_st, char **ret_kept) {
        _cleanup_free_ char *dst_shown = run_shown(run, s->docker);
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
        r = read_move_marker(run, s, &marker);
        if (r < 0)
                return log_error_errno(r, "Failed to read %s/%s: %m", s->dir, MOVE_MARKER);
        if (marker.present && !(marker.copied && marker.dev == src_st->st_dev && marker.ino == src_st->st_ino)) {
                /* An earlier run died while copying: what is on the disk is a partial copy. */
                log_info("Removing the partial copy an interrupted run left in %s.", dst_shown);
                r = clear_docker_dir_as_user(run, s, a);
                if (r < 0)
                        return r;
                marker.present = false;
        }
        if (!marker.present) {
                _cleanup_free_ char *src = run_shown(run, src_path), *dst = run_shown(run, s->docker);
                UserNsIdentity id = user_identity(s, a);
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
                        if (clear_docker_dir_as_user(run, s, a) >= 0)
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
