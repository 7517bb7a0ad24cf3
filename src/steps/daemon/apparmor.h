/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

/*
 * What the daemon step needs to know of AppArmor's own files in a tree:
 * whether a profile there already attaches to a program (a second one for
 * the same path makes exec ambiguous), and which policy ABI its parser knows.
 * Read from the files only; no parser, no child.
 */

/* A profile in /etc/apparmor.d that attaches to the program asked about. */
typedef struct AppArmorProfile {
        char *file;        /* "/etc/apparmor.d/rootlesskit" */
        char *name;        /* "rootlesskit" ("/usr/bin/x" for a profile named by its path) */
        char *attachment;  /* as written: "/usr/bin/rootlesskit", "/{usr/,}bin/rootlesskit" */
        bool userns;       /* its block, in that file, has a userns rule */
} AppArmorProfile;

void apparmor_profile_done(AppArmorProfile *p);

/*
 * The first profile, files in lexical order as apparmor_parser loads them
 * (dot files, backups, package leftovers and those disabled through
 * /etc/apparmor.d/disable/ passed over, and the file named skip), whose
 * attachment matches path. Variables defined in the same file are expanded;
 * others (from tunables: @{HOME}) are not, and such an attachment never
 * matches. 1 found, 0 none, < 0 error.
 */
int apparmor_find_attaching(int root_fd, const char *path, const char *skip, AppArmorProfile *ret);

/* The tree's AppArmor knows the 4.0 policy ABI (/etc/apparmor.d/abi/4.0: its userns rule). */
bool apparmor_has_abi_4_0(int root_fd);

/* AppArmor's globbing of an attachment: * (not /), ** (any), ?, [set], [^set], {a,b,…} nested, \ escapes. */
bool apparmor_glob_match(const char *pattern, const char *path);
