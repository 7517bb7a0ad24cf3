/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "engine/step.h"
#include "steps/storage/homefs.h"

/*
 * The storage step's state, shared by its parts: step.c (the mount point,
 * <MountPoint>/<user> and its data directories), home.c
 * (~/.local/share/docker) and migrate.c (moving Docker data out of the home).
 */

#define MOVE_MARKER ".rootless-ci-move"
#define OLD_SUFFIX ".rootless-ci-old"

/* <MountPoint>/<user>/{docker,builds} as the look found it, for its apply. */
typedef struct DataDir {
        const char *sub;         /* "docker" or "builds" */
        char *shown;
        struct stat st;          /* CHANGE: what it was */
} DataDir;

typedef struct StorageState {
        bool ready;              /* the first look set it up: the fds below are valid (or -1) */
        const char *name;
        bool user_planned;       /* plan/check: the user does not exist yet */
        uid_t uid;
        gid_t gid;
        uid_t root_uid;          /* the owner of the tree's root: 0 on a live host */
        gid_t root_gid;
        char *mp, *dir, *docker, *builds;   /* paths in the tree */
        char *mp_shown, *dir_shown;
        int mp_fd, dir_fd;       /* opened by a look, or by the apply that makes them */
        bool mp_judged;          /* the mount point was judged in this run (the host-wide part, in the first) */
        bool dirs_deferred;      /* offline with a data disk: made at first boot */
        bool dirs_blocked;       /* the data disk is not mounted: nothing is made */
        bool skip;               /* the account is not usable: nothing at all */
        struct stat dir_st;      /* <MountPoint>/<user> as the look found it */
        DataDir data[2];

        /* The home part (home.c) */
        const Account *account;  /* the look's, for the applies (the engine keeps it for the whole step) */
        char *home_shown, *link_shown;
        char *parent_shown[2];   /* ~/.local, ~/.local/share */
        int home_fds[3];         /* the home, ~/.local, ~/.local/share: as far as they exist */
        bool home_failed;        /* an apply in the home failed: the later ones there do nothing */
        HomeEntry link;          /* ~/.local/share/docker as the look found it */
} StorageState;

typedef struct MoveMarker {
        bool present;
        bool copied;             /* the copy finished; only the rename and the symlink are left */
        dev_t dev;
        ino_t ino;
} MoveMarker;

char *storage_path_join(const char *a, const char *b);
int open_dir_nofollow(int dirfd, const char *name);
int fix_owner_mode(int fd, uid_t uid, gid_t gid, mode_t mode);
bool data_dir_mode_ok(const StorageState *s, const struct stat *st, bool docker);

/*
 * Describe what apply would change: a Change made by apply(data), or, with
 * apply NULL, one only planned (its parent or its user is still to be made):
 * plan and apply show the state as it is, check fails.
 */
void storage_describe(StepRun *run, const char *id, ItemStatus state, int (*apply)(StepRun *run, Change *c),
                      void *data, const char *fmt, ...) _printf_(6, 7);

int storage_not_a_directory(StepRun *run, const char *id, const char *shown, const HomeEntry *e);

pid_t find_user_daemon(uid_t uid, char comm[static 32]);
int read_move_marker(StepRun *run, StorageState *s, MoveMarker *ret);
int remove_move_marker(StorageState *s);
int move_docker_data(StepRun *run, StorageState *s, const Account *a, int share_fd, const char *src_path,
                     const char *src_shown, const struct stat *src_st, char **ret_kept);

int storage_home_look(StepRun *run, Account *a);
void storage_home_done(StorageState *s);
