/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "engine/step.h"

/* Shared by the config part's walk (config-tree.c) and its judge of what the walk does not change (config-judge.c). */

#define TREE_MAX_DEPTH 16

typedef struct TreeWalk {
        StepRun *run;
        int root_fd;
        gid_t gid;              /* the CI user's; root's with tenants (no one tenant's group) */
        char **skip;            /* tenants' configuration files (as shown): each tenant's config-file part's */
        size_t n_skip;
        const char *tree;       /* /etc/buildkite-agent as shown (under the root) */
        const char *prefix;     /* the root as shown before an in-root path: "" live, else --root's DIR */
        struct stat root;       /* the root directory, where ".." stays */
        unsigned in_place, changed, left_alone, failed, links;
} TreeWalk;

/* Every entry of the directory dfd but . and .., in readdir's order; stops at the first error. */
int agent_tree_for_each_entry(int dfd, const char *shown, int (*f)(void *userdata, int dfd, const char *name),
                              void *userdata);

/*
 * An entry the walk does not change (a symlink, a file with other names, a special file), lstat'ed as st:
 * an agent.config-link:SHOWN finding, FAIL when someone other than root can change what the agent loads
 * through it, and w's counters. < 0 on error.
 */
int agent_tree_judge_other(TreeWalk *w, int dirfd, const char *name, const char *shown, const struct stat *st);
