/* SPDX-License-Identifier: MIT */
#pragma once

#include <sys/stat.h>

#include "engine/step.h"

/*
 * The network drivers "rootlesskit --help" lists for --net, as a list of
 * words: "--net value  network driver [host, pasta(experimental),
 * slirp4netns]" gives "host pasta slirp4netns". -ENOENT when the text has
 * no such list.
 */
int rootlesskit_net_drivers_parse(const char *help, char **ret);

/* The rest is between the preflight step (step.c) and its network check (netdrivers.c). */

typedef enum Distro {
        DISTRO_DEBIAN,   /* Debian, Ubuntu and their derivatives: apt-get */
        DISTRO_FEDORA,   /* Fedora, RHEL, CentOS, Rocky, Alma: dnf */
        DISTRO_OTHER,
} Distro;

typedef struct Package {
        const char *what;     /* what is missing, in words */
        const char *debian;
        const char *fedora;
} Package;

/* The command that installs p on d (malloc'd; NULL on OOM). */
char *package_fix(Distro d, const Package *p);
/* name in the usual bin dirs, then extra_dir (may be NULL); ret_st (may be NULL): its stat. NULL: not found. */
char *find_executable(StepRun *run, const char *name, const char *extra_dir, struct stat *ret_st);

typedef struct NetAnswer {
        char *key;      /* the rootlesskit asked: "PATH DEV:INO SIZE MTIME CTIME" */
        char *drivers;  /* "host slirp4netns vpnkit lxc-user-nic" */
        bool fresh;     /* asked in this run: apply records it once the preflight passes */
} NetAnswer;

void net_answer_done(NetAnswer *a);
/* The network driver check (preflight.network), the answer asked in this run kept in answer. */
void check_network(StepRun *run, Distro distro, NetAnswer *answer);
/* Record a fresh answer in /run/rootless-ci (apply, once preflight passed: the step's commit). */
int net_answer_record(StepRun *run, const NetAnswer *a);
