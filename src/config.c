/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build-config.h"
#include "config-tenant.h"
#include "util/error.h"
#include "util/escape.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"

#define CONFIG_MAX_SIZE (1024 * 1024)
#define READY_TIMEOUT_MAX_SEC (24 * 3600)

static const char *const filesystem_table[_FILESYSTEM_MAX] = {
        [FILESYSTEM_EXT4] = "ext4",
        [FILESYSTEM_XFS] = "xfs",
};

const char *filesystem_to_string(FileSystem f) {
        return f < _FILESYSTEM_MAX ? filesystem_table[f] : NULL;
}

FileSystem filesystem_from_string(const char *s) {
        return string_table_index(filesystem_table, _FILESYSTEM_MAX, s);
}

int config_init(Config *c) {
        *c = (Config) {
                .filesystem = FILESYSTEM_EXT4,
                .mount_point = strdup("/srv/rootless-ci"),
                .user_name = strdup("buildkite"),
                .agent_unit = strdup("buildkite-agent.service"),
                .ready_timeout_sec = 120,
        };
        if (!c->mount_point || !c->user_name || !c->agent_unit) {
                config_done(c);
                return -ENOMEM;
        }
        return 0;
}

void config_done(Config *c) {
        for (size_t i = 0; i < c->n_tenants; i++)
                tenant_done(&c->tenants[i]);
        FREE_MANY(c->tenants, c->disk_device, c->mount_point, c->user_name, c->agent_unit, c->single_origin);
        *c = (Config) {};
}

int parse_boolean(const char *s) {
        static const char *const yes[] = { "1", "yes", "y", "true", "t", "on" };
        static const char *const no[] = { "0", "no", "n", "false", "f", "off" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (strcasecmp(s, yes[i]) == 0)
                        return 1;
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (strcasecmp(s, no[i]) == 0)
                        return 0;
        return -EINVAL;
}

/* shadow's default NAME_REGEX: ^[a-z_][a-z0-9_-]*[$]?$, at most 32 characters. */
bool valid_user_name(const char *s) {
        size_t l = strlen(s);

        if (l == 0 || l > 32)
                return false;
        if (!(s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z')))
                return false;
        for (size_t i = 1; i < l; i++) {
                char ch = s[i];
                if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-')
                        continue;
                if (ch == '$' && i == l - 1)
                        continue;
                return false;
        }
        return true;
}

/* A system unit name: [A-Za-z0-9:_.\-@]+ with a type suffix we can drop in for. */
bool valid_unit_name(const char *s) {
        size_t l = strlen(s);
        const char *suffix = ".service";

        if (l <= strlen(suffix) || l > 255)
                return false;
        if (!streq(s + l - strlen(suffix), suffix))
                return false;
        for (size_t i = 0; i < l; i++) {
                unsigned char ch = (unsigned char) s[i];
                if (!(isascii(ch) && (isalnum(ch) || strchr(":_.-@\\", ch))))
                        return false;
        }
        /* A template (foo@.service) is not a unit that runs. */
        return !strstr(s, "@.service") && s[0] != '.' && s[0] != '-';
}

bool valid_absolute_path(const char *s) {
        size_t l = strlen(s);

        if (l == 0 || l >= PATH_MAX || s[0] != '/')
                return false;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        return false;
        /* It ends up in fstab, unit files and messages, all of which are text. */
        if (!utf8_is_valid(s))
                return false;
        /* Normalised: no empty, "." or ".." components, no trailing slash. */
        for (const char *p = s; *p; ) {
                const char *c = p + 1, *e = strchrnul(c, '/');
                size_t n = (size_t) (e - c);

                if (n == 0 && !(l == 1))
                        return false;
                if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
                        return false;
                if (n > NAME_MAX)
                        return false;
                p = e;
        }
        return true;
}

static bool path_equal_or_under(const char *path, const char *dir) {
        const char *rest = startswith(path, dir);
        return rest && (*rest == 0 || *rest == '/');
}

bool valid_mount_point(const char *s, const char **ret_reason) {
        /* Never on top of the system itself... */
        static const char *const exact[] = {
                "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32",
                "/media", "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp",
                "/usr", "/var", "/var/lib", "/var/log", "/var/tmp", "/var/cache",
        };
        /* ...nor anywhere inside what the system or the kernel owns. */
        static const char *const beneath[] = {
                "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32",
                "/proc", "/root", "/run", "/sbin", "/sys", "/tmp", "/usr",
        };

        if (!valid_absolute_path(s)) {
                *ret_reason = "must be an absolute, normalised path (no '.', '..' or '//'), of UTF-8 text without control characters";
                return false;
        }
        for (size_t i = 0; i < ELEMENTSOF(exact); i++)
                if (streq(s, exact[i])) {
                        *ret_reason = "is a system directory; use a directory of its own such as /srv/rootless-ci";
                        return false;
                }
        for (size_t i = 0; i < ELEMENTSOF(beneath); i++)
                if (path_equal_or_under(s, beneath[i])) {
                        *ret_reason = "lies inside a system or kernel directory";
                        return false;
                }
        return true;
}

int config_set_user_name(char **slot, const char *value, const char **ret_error) {
        if (!valid_user_name(value)) {
                *ret_error = "must be a valid user name: lower-case letters, digits, '_' and '-', "
                             "starting with a letter or '_', at most 32 characters";
                return -ERCI_USAGE;
        }
        if (streq(value, "root")) {
                *ret_error = "must not be root";
                return -ERCI_USAGE;
        }
        return free_and_strdup(slot, value);
}

int config_set_unit_name(char **slot, const char *value, const char **ret_error) {
        if (!valid_unit_name(value)) {
                *ret_error = "must be a service unit name such as buildkite-agent.service";
                return -ERCI_USAGE;
        }
        return free_and_strdup(slot, value);
}

int config_set_key(Config *c, const char *section, const char *key, const char *value, const char **ret_error) {
        int r;

        *ret_error = NULL;

        if (streq(section, "Disk")) {
                if (streq(key, "Device")) {
                        if (!valid_absolute_path(value) || !startswith(value, "/dev/")) {
                                *ret_error = "must be a normalised device path under /dev/, UTF-8 without control characters (for example /dev/disk/by-id/...)";
                                return -ERCI_USAGE;
                        }
                        return free_and_strdup(&c->disk_device, value);
                }
                if (streq(key, "FileSystem")) {
                        FileSystem f = filesystem_from_string(value);
                        if (f == _FILESYSTEM_MAX) {
                                *ret_error = "must be ext4 or xfs";
                                return -ERCI_USAGE;
                        }
                        c->filesystem = f;
                        return 0;
                }
                if (streq(key, "MountPoint")) {
                        if (!valid_mount_point(value, ret_error))
                                return -ERCI_USAGE;
                        return free_and_strdup(&c->mount_point, value);
                }
                if (streq(key, "Wipe")) {
                        r = parse_boolean(value);
                        if (r < 0) {
                                *ret_error = "must be a boolean (yes or no)";
                                return -ERCI_USAGE;
                        }
                        c->wipe = r;
                        return 0;
                }
        } else if (streq(section, "User")) {
                if (streq(key, "Name"))
                        return config_set_user_name(&c->user_name, value, ret_error);
        } else if (streq(section, "Agent")) {
                if (streq(key, "Unit"))
                        return config_set_unit_name(&c->agent_unit, value, ret_error);
        } else if (streq(section, "Daemon")) {
                if (streq(key, "ReadyTimeoutSec")) {
                        char *end;
                        unsigned long v;

                        errno = 0;
                        v = strtoul(value, &end, 10);
                        if (errno || end == value || *end || value[0] == '-' || v == 0 || v > READY_TIMEOUT_MAX_SEC) {
                                *ret_error = "must be a whole number of seconds from 1 to 86400";
                                return -ERCI_USAGE;
                        }
                        c->ready_timeout_sec = (unsigned) v;
                        return 0;
                }
        } else {
                *ret_error = "unknown section";
                return -ERCI_USAGE;
        }

        *ret_error = "unknown key";
        return -ERCI_USAGE;
}

int config_verify(const Config *c, const char **ret_error) {
        *ret_error = NULL;
        if (c->wipe && !c->disk_device) {
                *ret_error = "Wipe=yes (--wipe) needs a disk: set Device= (--disk=)";
                return -ERCI_USAGE;
        }
        return 0;
}

/* "writable by its group and others (mode 1777<sticky_note>)" */
static const char *problem_text(const PathFinding *f, const char *sticky_note, char *buf, size_t size) {
        if (f->problem == PATH_PROBLEM_OWNER)
                snprintf(buf, size, "owned by UID %u, not root", (unsigned) f->st.st_uid);
        else
                snprintf(buf, size, "writable by %s (mode %04o%s)",
                         (f->st.st_mode & 0022) == 0022 ? "its group and others"
                         : (f->st.st_mode & 0020)       ? "its group"
                                                        : "others",
                         (unsigned) (f->st.st_mode & 07777),
                         (f->st.st_mode & S_ISVTX) ? sticky_note : "");
        return buf;
}

int config_check_mount_point_path(const Config *c, int root_fd, const char *root, char **ret_message) {
        _cleanup_(path_finding_done) PathFinding f = {};
        _cleanup_free_ char *shown = NULL, *msg = NULL;
        char target[PATH_MAX], why[128];
        struct stat root_st;
        ssize_t n;
        int r;

        *ret_message = NULL;
        /* "root" is whoever owns the tree's root: root on a host, the test's user in a test tree. */
        if (fstat(root_fd, &root_st) < 0)
                return negative_errno();
        r = path_check(root_fd, c->mount_point, PATH_CHECK_TRUST, root_st.st_uid, &f, NULL);
        if (r <= 0)
                return r;
        shown = path_join_root(root, f.path);
        if (!shown)
                return -ENOMEM;
        if (f.problem == PATH_PROBLEM_SYMLINK) {
                /* Every component before it is a real directory (path_check() walked them), so this reads that link. */
                n = readlinkat(root_fd, f.path + strspn(f.path, "/"), target, sizeof(target) - 1);
                target[n < 0 ? 0 : n] = 0;
                r = asprintf(&msg, "MountPoint=%s %s %s (to %s); rootless-ci never follows a symlink there. Set "
                             "MountPoint= (--mount-point=) to a path without symlinks.", c->mount_point,
                             streq(f.path, c->mount_point) ? "is the symlink" : "goes through the symlink", shown,
                             n < 0 ? "?" : target);
        } else
                /*
                 * Whoever can write a directory on the way can swap what comes
                 * after it between rootless-ci's look and the mount, and at
                 * every boot before systemd mounts the fstab line.
                 */
                r = asprintf(&msg, "MountPoint=%s: %s%s is %s; whoever can change it could swap a directory on the "
                             "way and put the data disk (and the CI user's storage) where they choose. Set "
                             "MountPoint= (--mount-point=) to a path whose every directory is root's and writable by "
                             "root only.", c->mount_point, streq(f.path, c->mount_point) ? "" : "on the way, ", shown,
                             problem_text(&f, ": sticky counts, the path is used again at every boot", why,
                                          sizeof(why)));
        if (r < 0)
                return -ENOMEM;
        *ret_message = TAKE_PTR(msg);
        return -ERCI_USAGE;
}

/*
 * What useradd --root DIR reads and runs as root once it has chrooted into
 * DIR (shadow 4.13, glibc 2.36, seen with strace): etc/nsswitch.conf names
 * the NSS modules, which are dlopen()ed through etc/ld.so.cache or else from
 * lib/<multiarch>, usr/lib/<multiarch>, lib and usr/lib (and their
 * glibc-hwcaps, tls and platform subdirectories); it runs usr/sbin/nscd and
 * usr/sbin/sss_cache to flush caches, sbin/pam_tally2 when there, and the
 * hooks in etc/shadow-maint/useradd-{pre,post}.d: programs that start
 * through lib64's dynamic loader, with etc/ld.so.preload and the same
 * library directories. Each path is walked from DIR, symlinks resolved
 * inside DIR (merged /usr: lib is usr/lib), every directory on the way
 * checked; entries: how many levels of each directory's entries too.
 */
static const struct {
        const char *path;
        int entries;  /* -1: not a directory whose entries count */
} root_tree_paths[] = {
        { "/", -1 },
        { "/etc/nsswitch.conf", -1 },
        { "/etc/ld.so.cache", -1 },
        { "/etc/ld.so.preload", -1 },
        { "/etc/shadow-maint/useradd-pre.d", 0 },
        { "/etc/shadow-maint/useradd-post.d", 0 },
        { "/usr/sbin/nscd", -1 },
        { "/usr/sbin/sss_cache", -1 },
        { "/sbin/pam_tally2", -1 },
        { "/lib", 0 },
        { "/lib64", 0 },
        { "/usr/lib", 0 },
        { "/usr/lib64", 0 },
#ifdef MULTIARCH
        { "/lib/" MULTIARCH, 2 },
        { "/usr/lib/" MULTIARCH, 2 },
#endif
};

/* f: below the tree (inside) or on the way to it from / (outside). */
static int root_tree_finding(const char *root, const PathFinding *f, bool inside, char **ret_message) {
        _cleanup_free_ char *shown = !inside || streq(f->path, "/") ? strdup(inside ? root : f->path)
                                                                     : path_join_root(root, f->path);
        char why[128];
        int r;

        if (!shown)
                return -ENOMEM;
        if (inside)
                r = asprintf(ret_message, "--root=%s: %s is %s. apply runs useradd --root, which chroots into the tree "
                             "and, as root, loads the NSS modules and libraries the tree names and runs programs from "
                             "it (sudo's CVE-2025-32463 is this bug): whoever can change them gets root. Make the tree, "
                             "its etc, usr and library directories root's and writable by root only (chown root:, "
                             "chmod go-w), or use plan and check, which run nothing from it.", root, shown,
                             problem_text(f, "", why, sizeof(why)));
        else
                r = asprintf(ret_message, "--root=%s: %s, on the way to the tree, is %s; whoever can change it can "
                             "swap the tree while apply runs useradd --root in it. Keep the tree below directories "
                             "that are root's and writable by root only.", root, shown,
                             problem_text(f, "", why, sizeof(why)));
        return r < 0 ? -ENOMEM : -ERCI_USAGE;
}

int config_check_root_tree(int root_fd, const char *root, char **ret_message) {
        _cleanup_(path_finding_done) PathFinding f = {};
        _cleanup_free_ char *real = NULL;
        _cleanup_close_ int top = -1;
        uid_t us = geteuid();
        int r;

        struct stat seen[ELEMENTSOF(root_tree_paths)];
        size_t n_seen = 0;

        *ret_message = NULL;
        for (size_t i = 0; i < ELEMENTSOF(root_tree_paths); i++) {
                _cleanup_close_ int fd = -1;
                struct stat st;
                bool again = false;

                path_finding_done(&f);
                r = path_check(root_fd, root_tree_paths[i].path, PATH_CHECK_FOLLOW | PATH_CHECK_TRUST, us, &f,
                               root_tree_paths[i].entries >= 0 ? &fd : NULL);
                /* Merged /usr: lib/<multiarch> is usr/lib/<multiarch>; its thousands of entries once are enough. */
                if (r == 0 && fd >= 0 && fstat(fd, &st) == 0) {
                        for (size_t j = 0; j < n_seen && !again; j++)
                                again = seen[j].st_dev == st.st_dev && seen[j].st_ino == st.st_ino;
                        if (!again)
                                seen[n_seen++] = st;
                }
                if (r == 0 && fd >= 0 && !again)
                        r = dir_check_entries(fd, root_tree_paths[i].path, (unsigned) root_tree_paths[i].entries, us, &f);
                if (r != 0)
                        return r < 0 ? r : root_tree_finding(root, &f, true, ret_message);
        }

        /* The way to the tree, from / (the tree itself passed above): in a sticky directory (/tmp) a root-owned entry stays put. */
        path_finding_done(&f);
        r = fd_get_path(root_fd, &real);
        if (r < 0)
                return r;
        top = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (top < 0)
                return negative_errno();
        r = path_check(top, real, PATH_CHECK_TRUST | PATH_CHECK_STICKY_PROTECTS, us, &f, NULL);
        if (r != 0)
                return r < 0 ? r : root_tree_finding(root, &f, false, ret_message);
        return 0;
}

int config_verify_in_root(const Config *c, int root_fd, const char *root, bool runs_programs_in_root) {
        _cleanup_free_ char *msg = NULL;
        int r;

        if (runs_programs_in_root) {
                r = config_check_root_tree(root_fd, root, &msg);
                if (r == -ERCI_USAGE)
                        return log_error_errno(r, "%s Nothing was changed.", msg);
                if (r < 0)
                        return log_error_errno(r, "Failed to look at the tree --root=%s: %m", root);
        }
        r = config_check_mount_point_path(c, root_fd, root, &msg);
        if (r == -ERCI_USAGE)
                return log_error_errno(r, "Configuration: %s Nothing was changed.", msg);
        if (r < 0)
                return log_error_errno(r, "Failed to look at MountPoint=%s: %m", c->mount_point);
        return 0;
}

static char *strip(char *s) {
        char *e;

        s += strspn(s, " \t");
        e = s + strlen(s);
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
                *--e = 0;
        return s;
}

typedef struct SeenKey {
        char *section_key;
        unsigned line;
} SeenKey;

int config_parse_text(Config *c, const char *path, const char *text, size_t size) {
        _cleanup_free_ char *copy = NULL, *section = NULL;
        TenantSection tenant = {};
        SeenKey *seen = NULL;
        size_t n_seen = 0;
        unsigned line = 0;
        const char *nul;
        char *p, *next;
        int r = 0;

        nul = memchr(text, 0, size);
        if (nul) {
                for (const char *q = text; q < nul; q++)
                        line += *q == '\n';
                return log_error_errno(-ERCI_USAGE, "%s:%u: contains a NUL byte; not a text file.", path, line + 1);
        }

        copy = strndup(text, size);
        if (!copy)
                return -ENOMEM;

        for (p = copy; p && *p; p = next) {
                const char *err = NULL;
                char *l, *eq, *key, *value;

                line++;
                next = strchr(p, '\n');
                if (next)
                        *next++ = 0;
                l = strip(p);

                if (*l == 0 || *l == '#' || *l == ';')
                        continue;

                if (*l == '[') {
                        size_t n = strlen(l);
                        if (n < 3 || l[n - 1] != ']') {
                                r = log_error_errno(-ERCI_USAGE, "%s:%u: malformed section header: %s", path, line, l);
                                goto finish;
                        }
                        l[n - 1] = 0;
                        if (!streq(l + 1, "Disk") && !streq(l + 1, "User") && !streq(l + 1, "Agent") &&
                            !streq(l + 1, "Daemon") && !streq(l + 1, "Tenant")) {
                                r = log_error_errno(-ERCI_USAGE, "%s:%u: unknown section [%s]", path, line, l + 1);
                                goto finish;
                        }
                        /* Each [Tenant] is a tenant of its own: the one before is complete now. */
                        r = tenant.line ? tenant_section_end(c, &tenant) : 0;
                        if (r >= 0 && streq(l + 1, "Tenant"))
                                r = tenant_section_begin(c, &tenant, path, line);
                        if (r < 0)
                                goto finish;
                        r = free_and_strdup(&section, l + 1);
                        if (r < 0)
                                goto finish;
                        continue;
                }

                eq = strchr(l, '=');
                if (!eq) {
                        r = log_error_errno(-ERCI_USAGE, "%s:%u: expected Key=value or [Section], got: %s", path, line, l);
                        goto finish;
                }
                *eq = 0;
                key = strip(l);
                value = strip(eq + 1);

                if (!section) {
                        r = log_error_errno(-ERCI_USAGE, "%s:%u: %s= is outside of any [Section]", path, line, key);
                        goto finish;
                }

                /* A key twice in one file is a typo or a merge accident, never intended. */
                {
                        _cleanup_free_ char *sk = NULL;
                        SeenKey *ns;

                        if (asprintf(&sk, "%s.%zu/%s", section, streq(section, "Tenant") ? c->n_tenants : 0, key) < 0) {
                                r = -ENOMEM;
                                goto finish;
                        }
                        for (size_t i = 0; i < n_seen; i++)
                                if (streq(seen[i].section_key, sk)) {
                                        r = log_error_errno(-ERCI_USAGE,
                                                            "%s:%u: [%s] %s= is set again (first set on line %u)",
                                                            path, line, section, key, seen[i].line);
                                        goto finish;
                                }
                        ns = reallocarray(seen, n_seen + 1, sizeof(SeenKey));
                        if (!ns) {
                                r = -ENOMEM;
                                goto finish;
                        }
                        seen = ns;
                        seen[n_seen++] = (SeenKey) { .section_key = TAKE_PTR(sk), .line = line };
                }

                if (streq(section, "Tenant"))
                        r = tenant_set_key(c, &tenant, key, value, line, &err);
                else
                        r = config_set_key(c, section, key, value, &err);
                if (r < 0) {
                        if (err && streq(err, "unknown key"))
                                log_error("%s:%u: unknown key %s= in [%s]", path, line, key, section);
                        else if (err)
                                log_error("%s:%u: %s=%s: %s", path, line, key, value, err);
                        else
                                log_error_errno(r, "%s:%u: %s=: %m", path, line, key);
                        goto finish;
                }
                /* [User] and [Agent] are the one tenant of a configuration without [Tenant]. */
                if (streq(section, "User") || streq(section, "Agent")) {
                        r = config_note_single(c, path, line, section, key);
                        if (r < 0)
                                goto finish;
                }
        }
        /* A section ends with its file: a drop-in cannot add to another file's [Tenant]. */
        if (tenant.line)
                r = tenant_section_end(c, &tenant);

finish:
        for (size_t i = 0; i < n_seen; i++)
                free(seen[i].section_key);
        free(seen);
        return r < 0 ? r : 0;
}

static int config_parse_file_at(Config *c, int dirfd, const char *path, const char *display, bool must_exist) {
        _cleanup_free_ char *text = NULL;
        size_t size;
        int r;

        r = read_file_at(dirfd, path, RESOLVE_POLICY_IN_ROOT, CONFIG_MAX_SIZE, &text, &size);
        if (r == -ENOENT && !must_exist)
                return 0;
        if (r == -EFBIG)
                return log_error_errno(-ERCI_USAGE, "%s: larger than 1 MiB; refusing to read it.", display);
        if (r == -EISDIR || r == -EBADFD)
                return log_error_errno(-ERCI_USAGE, "%s: not a regular file; refusing to read it.", display);
        if (r < 0)
                return log_error_errno(r == -ENOENT ? -ERCI_USAGE : r, "%s: cannot read: %s", display,
                                       error_to_string(r));
        return config_parse_text(c, display, text, size);
}

/* A drop-in: NAME.conf, not hidden. */
static bool dropin_name(const struct dirent *de) {
        size_t l = strlen(de->d_name);
        return de->d_name[0] != '.' && l > 5 && streq(de->d_name + l - 5, ".conf");
}

int config_load(Config *c, const char *root, const char *explicit_path) {
        _cleanup_close_ int rootfd = -1, dfd = -1;
        _cleanup_free_ char *main_display = NULL, *dropin_display = NULL;
        _cleanup_strv_free_ char **names = NULL;
        size_t n_names = 0;
        int r;

        if (explicit_path) {
                _cleanup_free_ char *cwd = NULL, *absolute = NULL;

                /*
                 * --config names a file as the operator's shell sees it, whatever --root
                 * says. Resolved from "/" (a relative name from the working directory):
                 * with AT_FDCWD, RESOLVE_IN_ROOT would take the working directory as root.
                 */
                if (explicit_path[0] != '/') {
                        cwd = get_current_dir_name();
                        if (!cwd)
                                return log_error_errno(negative_errno(), "Failed to get the working directory: %m");
                        if (asprintf(&absolute, "%s/%s", cwd, explicit_path) < 0)
                                return -ENOMEM;
                }
                rootfd = open_root("/");
                if (rootfd < 0)
                        return log_error_errno(rootfd, "Failed to open /: %m");
                return config_parse_file_at(c, rootfd, absolute ? absolute : explicit_path, explicit_path, true);
        }

        rootfd = open_root(root);
        if (rootfd < 0)
                return log_error_errno(rootfd, "Failed to open %s: %m", root ? root : "/");

        main_display = path_join_root(root, CONFIG_PATH);
        dropin_display = path_join_root(root, CONFIG_DROPIN_DIR);
        if (!main_display || !dropin_display)
                return -ENOMEM;

        r = config_parse_file_at(c, rootfd, CONFIG_PATH, main_display, false);
        if (r < 0)
                return r;

        dfd = safe_openat(rootfd, CONFIG_DROPIN_DIR, O_RDONLY | O_DIRECTORY, 0, RESOLVE_POLICY_IN_ROOT);
        if (dfd == -ENOENT)
                return 0;
        if (dfd < 0)
                return log_error_errno(dfd, "%s: cannot open: %m", dropin_display);

        r = dir_list_sorted(dfd, dropin_name, &names, &n_names);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return log_error_errno(r, "%s: cannot read: %m", dropin_display);

        r = 0;
        for (size_t i = 0; i < n_names && r >= 0; i++) {
                _cleanup_free_ char *rel = NULL, *display = NULL;
                if (asprintf(&rel, "%s/%s", CONFIG_DROPIN_DIR, names[i]) < 0 ||
                    !(display = path_join_root(root, rel)))
                        r = -ENOMEM;
                else
                        r = config_parse_file_at(c, rootfd, rel, display, true);
        }
        return r;
}
