/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "steps/steps.h"
#include "steps/storage/homefs.h"

/* The storage step (step.c), the home's link (home.c), moving Docker data out of the home (migrate.c). */

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

typedef struct MoveMarker {
        bool present;
        bool copied;             /* the copy finished; only the rename and the symlink are left */
        dev_t dev;
        ino_t ino;
} MoveMarker;

char *host_path(const Context *ctx, const char *path);
char *path_join(const char *a, const char *b);
int open_dir_nofollow(int dirfd, const char *name);
int fix_owner_mode(int fd, uid_t uid, gid_t gid, mode_t mode);
bool data_dir_mode_ok(const StorageStep *s, const struct stat *st, bool docker);

pid_t find_user_daemon(uid_t uid, char comm[static 32]);
int read_move_marker(StorageStep *s, MoveMarker *ret);
int remove_move_marker(StorageStep *s);
int move_docker_data(StorageStep *s, int share_fd, const char *src_path, const char *src_shown,
                     const struct stat *src_st, char **ret_kept);

int storage_ensure_home_link(StorageStep *s);
