/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "engine/step.h"
#include "preflight.h"
#include "steps/steps.h"
#include "util/cgroup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"

/*
 * Preflight: everything apply needs, checked before anything changes. It
 * only reads, so plan, check and apply run it the same way; with --root it
 * reads the tree (and its proc/, dev/, run/ when a test fake has them) and
 * skips what only a live host can answer.
 */


static const Package pkg_dockerd_rootless = {
        "Docker's rootless scripts (dockerd-rootless.sh)",
        "docker.io (Debian's; the script is in /usr/share/docker.io/contrib), or docker-ce-rootless-extras from Docker's own repository",
        "docker-ce-rootless-extras",
};
static const Package pkg_rootlesskit = { "rootlesskit", "rootlesskit (or docker-ce-rootless-extras)", "docker-ce-rootless-extras" };
static const Package pkg_uidmap = { "newuidmap and newgidmap", "uidmap", "shadow-utils" };
static const Package pkg_dbus_user = { "the D-Bus user session", "dbus-user-session", "dbus-daemon" };
static const Package pkg_iptables = { "iptables", "iptables", "iptables-nft" };
static const Package pkg_fuse_overlayfs = { "fuse-overlayfs", "fuse-overlayfs", "fuse-overlayfs" };

/* Where the binaries are looked for: PATH is added on a live host. */
static const char *const bin_dirs[] = {
        "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin",
};

static Distro detect_distro(StepRun *run) {
        static const char *const files[] = { "/etc/os-release", "/usr/lib/os-release" };
        HostFacts *f = run_facts(run);
        _cleanup_free_ char *text = NULL;

        for (size_t i = 0; i < ELEMENTSOF(files) && !text; i++)
                if (read_file_at(run_root_fd(run), files[i], RESOLVE_POLICY_IN_ROOT, 64 * 1024, &text, NULL) < 0)
                        text = NULL;
        if (text) {
                for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
                        char **field = NULL;
                        const char *v;

                        if ((v = startswith(line, "ID=")))
                                field = &f->os_id;
                        else if ((v = startswith(line, "ID_LIKE=")))
                                field = &f->os_id_like;
                        if (!field)
                                continue;
                        free(*field);
                        *field = strndup(v + (*v == '"'), strcspn(v + (*v == '"'), "\""));
                }
        }

        for (const char *s = f->os_id; s; s = (s == f->os_id ? f->os_id_like : NULL)) {
                if (strstr(s, "debian") || strstr(s, "ubuntu"))
                        return DISTRO_DEBIAN;
                if (strstr(s, "fedora") || strstr(s, "rhel") || strstr(s, "centos"))
                        return DISTRO_FEDORA;
        }
        return DISTRO_OTHER;
}

char *package_fix(Distro d, const Package *p) {
        char *s = NULL;
        int r;

        switch (d) {
        case DISTRO_DEBIAN:
                r = asprintf(&s, "apt-get install %s", p->debian);
                break;
        case DISTRO_FEDORA:
                r = asprintf(&s, "dnf install %s", p->fedora);
                break;
        default:
                r = asprintf(&s, "install %s with your distribution's package manager", p->what);
        }
        return r < 0 ? NULL : s;
}

static bool is_executable_file(StepRun *run, const char *path, struct stat *ret_st) {
        _cleanup_close_ int fd = safe_openat(run_root_fd(run), path, O_PATH, 0, RESOLVE_POLICY_IN_ROOT);
        struct stat st;

        if (fd < 0 || fstat(fd, &st) < 0)
                return false;
        if (!S_ISREG(st.st_mode) || !(st.st_mode & 0111))
                return false;
        if (ret_st)
                *ret_st = st;
        return true;
}

/* Find name in the usual bin dirs, then extra_dir (if any). */
char *find_executable(StepRun *run, const char *name, const char *extra_dir, struct stat *ret_st) {
        const char *dirs[ELEMENTSOF(bin_dirs) + 1];
        size_t n = 0;

        /*
         * The usual directories only, never the caller's PATH: what is found
         * here is written into the CI user's unit, which must not depend on
         * who ran apply (cloud-init, sudo, a cron job) or let their PATH
         * choose what that user's manager runs.
         */
        for (size_t i = 0; i < ELEMENTSOF(bin_dirs); i++)
                dirs[n++] = bin_dirs[i];
        if (extra_dir)
                dirs[n++] = extra_dir;

        for (size_t i = 0; i < n; i++) {
                char *p;
                if (asprintf(&p, "%s/%s", dirs[i], name) < 0)
                        return NULL;
                if (is_executable_file(run, p, ret_st))
                        return p;
                free(p);
        }
        return NULL;
}

static void check_package_binary(StepRun *run, Distro distro, const char *id, const char *name,
                                 const char *extra_dir, const Package *pkg, char **ret_path) {
        _cleanup_free_ char *path = find_executable(run, name, extra_dir, NULL);
        _cleanup_free_ char *fix = NULL;

        if (path) {
                item_finding(run, id, ITEM_PASS, NULL, "%s found at %s", name, path);
                if (ret_path)
                        *ret_path = TAKE_PTR(path);
                return;
        }
        fix = package_fix(distro, pkg);
        item_finding(run, id, ITEM_FAIL, fix, "%s not found (looked in /usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin, /sbin, /bin%s%s)",
                     name, extra_dir ? " and " : "", strempty(extra_dir));
}

/* newuidmap/newgidmap write the maps of another process: they need setuid root or file capabilities. */
static void check_id_mapper(StepRun *run, Distro distro, const char *id, const char *name) {
        _cleanup_free_ char *fix = NULL;
        struct stat st;
        _cleanup_free_ char *path = find_executable(run, name, NULL, &st);

        if (!path) {
                fix = package_fix(distro, &pkg_uidmap);
                item_finding(run, id, ITEM_FAIL, fix, "%s not found", name);
                return;
        }
        if ((st.st_mode & S_ISUID) && st.st_uid == 0) {
                item_finding(run, id, ITEM_PASS, NULL, "%s is setuid root", path);
                return;
        }

        {
                _cleanup_close_ int fd = safe_openat(run_root_fd(run), path, O_RDONLY, 0, RESOLVE_POLICY_IN_ROOT);
                if (fd >= 0 && fgetxattr(fd, "security.capability", NULL, 0) > 0) {
                        item_finding(run, id, ITEM_PASS, NULL, "%s has file capabilities", path);
                        return;
                }
        }

        if (asprintf(&fix, "reinstall the package that ships %s (%s) so it is setuid root again", path,
                     distro == DISTRO_FEDORA ? pkg_uidmap.fedora : pkg_uidmap.debian) < 0)
                fix = NULL;
        item_finding(run, id, ITEM_FAIL, fix, "%s is neither setuid root nor has file capabilities", path);
}

static void check_tun(StepRun *run) {
        _cleanup_close_ int fd = safe_openat(run_root_fd(run), "/dev/net/tun", O_PATH, 0, RESOLVE_POLICY_IN_ROOT);
        struct stat st;

        if (fd < 0 && !run_live(run)) {
                item_finding(run, "preflight.tun", ITEM_SKIP, NULL, "/dev/net/tun is checked on the live host");
                return;
        }
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISCHR(st.st_mode) || major(st.st_rdev) != 10 || minor(st.st_rdev) != 200) {
                item_finding(run, "preflight.tun", ITEM_FAIL, "modprobe tun",
                             "/dev/net/tun is missing or not the TUN device (the network driver needs it)");
                return;
        }
        if ((st.st_mode & 0006) != 0006) {
                item_finding(run, "preflight.tun", ITEM_FAIL,
                             "chmod 0666 /dev/net/tun (udev normally does this; make it stick with a udev rule or tmpfiles.d)",
                             "/dev/net/tun has mode %04o: the CI user cannot open it", (unsigned) (st.st_mode & 07777));
                return;
        }
        item_finding(run, "preflight.tun", ITEM_PASS, NULL, "/dev/net/tun is usable by unprivileged users");
}

/* Read a sysctl below the root; -ENOENT when the tree has no proc. */
static int read_sysctl_long(StepRun *run, const char *name, long *ret) {
        _cleanup_free_ char *v = NULL, *path = NULL;
        char *end;
        int r;

        if (asprintf(&path, "/proc/sys/%s", name) < 0)
                return -ENOMEM;
        r = read_one_line_at(run_root_fd(run), path, &v);
        if (r < 0)
                return r;
        errno = 0;
        *ret = strtol(v, &end, 10);
        if (errno || end == v)
                return -EINVAL;
        return 0;
}

static void check_userns(StepRun *run) {
        long max = 0, clone = 1;
        int r;

        r = read_sysctl_long(run, "user/max_user_namespaces", &max);
        if (r == -ENOENT && !run_live(run)) {
                item_finding(run, "preflight.userns", ITEM_SKIP, NULL, "user namespaces are checked on the live host");
                return;
        }
        if (r < 0) {
                item_finding(run, "preflight.userns", ITEM_FAIL,
                             "boot a kernel built with user namespaces (CONFIG_USER_NS=y, as Debian's and Ubuntu's "
                             "are) with /proc mounted, then run rootless-ci apply",
                             "cannot read user.max_user_namespaces: %s (is the kernel built with CONFIG_USER_NS?)",
                             strerror(-r));
                return;
        }
        if (max <= 0) {
                item_finding(run, "preflight.userns", ITEM_FAIL,
                             "sysctl -w user.max_user_namespaces=28633, and persist it in /etc/sysctl.d/",
                             "user namespaces are disabled (user.max_user_namespaces=%ld)", max);
                return;
        }
        /* Debian's and older Ubuntu kernels have an extra switch. */
        r = read_sysctl_long(run, "kernel/unprivileged_userns_clone", &clone);
        if (r >= 0 && clone != 1) {
                item_finding(run, "preflight.userns", ITEM_FAIL,
                             "sysctl -w kernel.unprivileged_userns_clone=1, and persist it in /etc/sysctl.d/",
                             "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=%ld)", clone);
                return;
        }
        item_finding(run, "preflight.userns", ITEM_PASS, NULL, "user namespaces enabled (user.max_user_namespaces=%ld)", max);
}

static void check_dbus_user_session(StepRun *run, Distro distro) {
        static const char *const units[] = {
                "/usr/lib/systemd/user/dbus.socket",
                "/lib/systemd/user/dbus.socket",
                "/etc/systemd/user/dbus.socket",
        };
        _cleanup_free_ char *fix = NULL;

        for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                _cleanup_close_ int fd = safe_openat(run_root_fd(run), units[i], O_PATH, 0, RESOLVE_POLICY_IN_ROOT);
                if (fd >= 0) {
                        item_finding(run, "preflight.dbus-user-session", ITEM_PASS, NULL,
                                     "the user's D-Bus socket unit is installed (%s)", units[i]);
                        return;
                }
        }
        fix = package_fix(distro, &pkg_dbus_user);
        item_finding(run, "preflight.dbus-user-session", ITEM_FAIL, fix,
                     "no D-Bus session bus for user managers (dbus.socket user unit missing); "
                     "the rootless daemon's manager needs it");
}

static void check_systemd(StepRun *run) {
        _cleanup_close_ int fd = -1;

        /* An image tree's run/systemd/system says nothing about the host it will boot on. */
        if (!run_live(run)) {
                run_facts(run)->systemd_running = false;
                item_finding(run, "preflight.systemd", ITEM_SKIP, NULL,
                             "offline tree: starting services is left to the first boot");
                return;
        }

        fd = safe_openat(run_root_fd(run), "/run/systemd/system", O_PATH | O_DIRECTORY, 0, RESOLVE_POLICY_IN_ROOT);
        run_facts(run)->systemd_running = fd >= 0;
        if (fd >= 0)
                item_finding(run, "preflight.systemd", ITEM_PASS, NULL, "systemd is running");
        else
                item_finding(run, "preflight.systemd", ITEM_FAIL,
                             "boot the host with systemd as init (apt-get install systemd-sysv), or prepare an image "
                             "offline with rootless-ci apply --root=DIR and run apply at its first boot",
                             "systemd is not running as the init system; rootless-ci needs it for the user's manager");
}

/* Parse "5.11.0-foo" into 5011; 0 when unreadable. */
static unsigned kernel_version_code(const char *release) {
        unsigned major = 0, minor = 0;
        if (sscanf(release, "%u.%u", &major, &minor) != 2)
                return 0;
        return major * 1000 + minor;
}

static void check_kernel(StepRun *run, Distro distro) {
        _cleanup_free_ char *release = NULL, *fuse = NULL, *fix = NULL;
        int r;

        r = read_one_line_at(run_root_fd(run), "/proc/sys/kernel/osrelease", &release);
        if (r < 0 && !run_live(run)) {
                item_finding(run, "preflight.kernel", ITEM_SKIP, NULL, "the kernel is checked on the live host");
                return;
        }
        if (r < 0) {
                item_finding(run, "preflight.kernel", ITEM_FAIL, "mount /proc (mount -t proc proc /proc), then run "
                             "rootless-ci apply", "cannot read the kernel release: %s", strerror(-r));
                return;
        }
        /* Native overlay2 inside a user namespace needs 5.11. */
        if (kernel_version_code(release) >= 5011) {
                run_facts(run)->storage_driver = strdup("overlay2");
                item_finding(run, "preflight.kernel", ITEM_PASS, NULL, "kernel %s: overlay2 works in a user namespace", release);
                return;
        }
        fuse = find_executable(run, "fuse-overlayfs", NULL, NULL);
        if (fuse) {
                run_facts(run)->storage_driver = strdup("fuse-overlayfs");
                item_finding(run, "preflight.kernel", ITEM_PASS, NULL,
                             "kernel %s is older than 5.11: the fuse-overlayfs driver (%s) will be used", release, fuse);
                return;
        }
        fix = package_fix(distro, &pkg_fuse_overlayfs);
        item_finding(run, "preflight.kernel", ITEM_FAIL, fix,
                     "kernel %s is older than 5.11 and fuse-overlayfs is missing: Docker would fall back to the vfs "
                     "driver, which copies every layer and fills the disk", release);
}

static void check_apparmor(StepRun *run) {
        long restrict_userns = 0;
        int r;

        r = read_sysctl_long(run, "kernel/apparmor_restrict_unprivileged_userns", &restrict_userns);
        if (r == -ENOENT && !run_live(run)) {
                /* An image tree without proc/ says nothing about the kernel it will boot. */
                _cleanup_close_ int fd = safe_openat(run_root_fd(run), "/proc/sys/kernel", O_PATH | O_DIRECTORY, 0,
                                                     RESOLVE_POLICY_IN_ROOT);
                if (fd < 0) {
                        item_finding(run, "preflight.apparmor", ITEM_SKIP, NULL,
                                     "AppArmor's user namespace restriction is checked on the live host");
                        return;
                }
        }
        if (r == -ENOENT) {
                item_finding(run, "preflight.apparmor", ITEM_PASS, NULL, "AppArmor does not restrict unprivileged user namespaces here");
                return;
        }
        if (r < 0) {
                item_finding(run, "preflight.apparmor", ITEM_FAIL,
                             "make sure /proc is mounted and sysctl kernel.apparmor_restrict_unprivileged_userns "
                             "prints 0 or 1, then run rootless-ci apply",
                             "cannot read kernel.apparmor_restrict_unprivileged_userns: %s", strerror(-r));
                return;
        }
        run_facts(run)->apparmor_restricts_userns = restrict_userns != 0;
        if (restrict_userns)
                item_finding(run, "preflight.apparmor", ITEM_PASS, NULL,
                             "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1): "
                             "apply installs a profile for rootlesskit only and keeps the restriction on");
        else
                item_finding(run, "preflight.apparmor", ITEM_PASS, NULL,
                             "AppArmor does not restrict unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=0)");
}

/*
 * The cgroup hierarchy, from /sys/fs/cgroup under the root: cgroup2 there
 * (its file system magic, or in a tree its cgroup.controllers) is v2; any
 * other hierarchy is v1 or hybrid, where the controllers stay on v1 and
 * Delegate= gives a user's manager none of them.
 */
static void check_cgroup(StepRun *run) {
        _cleanup_close_ int fd = safe_openat(run_root_fd(run), "/sys/fs/cgroup", O_PATH | O_DIRECTORY, 0,
                                             RESOLVE_POLICY_IN_ROOT);
        _cleanup_free_ char *offered = NULL;
        char missing[CONTROLLERS_MISSING_MAX];
        struct statfs sfs;
        bool hybrid;

        if (fd < 0 && !run_live(run)) {
                item_finding(run, "preflight.cgroup", ITEM_SKIP, NULL, "the cgroup hierarchy is checked on the live host");
                return;
        }
        if (fd >= 0 && ((fstatfs(fd, &sfs) >= 0 && sfs.f_type == CGROUP2_SUPER_MAGIC) ||
                        faccessat(fd, "cgroup.controllers", F_OK, AT_SYMLINK_NOFOLLOW) >= 0)) {
                run_facts(run)->cgroup = CGROUP_V2;
                /* What the kernel offers at the top is all a user's manager can ever be given. */
                if (read_one_line_at(fd, "cgroup.controllers", &offered) < 0)
                        offered = NULL;
                delegated_controllers_missing(offered, missing);
                if (missing[0])
                        item_finding(run, "preflight.cgroup", ITEM_WARN,
                                     "boot a kernel with these cgroup v2 controllers (Debian's and Ubuntu's have them all)",
                                     "cgroup v2, but the kernel offers no %s controller (/sys/fs/cgroup/cgroup.controllers: "
                                     "%s): the matching docker run limits do not hold", missing, strempty(offered));
                else
                        item_finding(run, "preflight.cgroup", ITEM_PASS, NULL,
                                     "cgroup v2: " DELEGATED_CONTROLLERS " can be delegated to the CI user's manager "
                                     "(daemon.delegation checks that they are)");
                return;
        }
        run_facts(run)->cgroup = CGROUP_V1;
        hybrid = fd >= 0 && faccessat(fd, "unified/cgroup.controllers", F_OK, AT_SYMLINK_NOFOLLOW) >= 0;
        item_finding(run, "preflight.cgroup", ITEM_WARN,
                     "boot with cgroup v2: add systemd.unified_cgroup_hierarchy=1 to the kernel command line (on Debian "
                     "GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub) and reboot",
                     "cgroup %s: Delegate= gives the CI user's manager no controller, so docker run --memory, --cpus "
                     "and --pids-limit (and any per-tenant limit) do not hold: its containers run without resource limits",
                     fd < 0 ? "file system missing at /sys/fs/cgroup" : hybrid ? "v1 (hybrid)" : "v1");
}

static void preflight_state_done(void *state) {
        net_answer_done(state);
}

static int preflight_look(StepRun *run, Account *a) {
        HostFacts *f = run_facts(run);
        Distro distro = detect_distro(run);

        log_debug("Detected distribution: %s (like: %s)", strempty(f->os_id), strempty(f->os_id_like));

        check_package_binary(run, distro, "preflight.dockerd-rootless", "dockerd-rootless.sh",
                             "/usr/share/docker.io/contrib", &pkg_dockerd_rootless, &f->dockerd_rootless_path);
        check_package_binary(run, distro, "preflight.rootlesskit", "rootlesskit", NULL, &pkg_rootlesskit,
                             &f->rootlesskit_path);
        check_id_mapper(run, distro, "preflight.newuidmap", "newuidmap");
        check_id_mapper(run, distro, "preflight.newgidmap", "newgidmap");
        check_network(run, distro, run_state(run));
        check_package_binary(run, distro, "preflight.iptables", "iptables", NULL, &pkg_iptables, NULL);
        check_tun(run);
        check_userns(run);
        check_dbus_user_session(run, distro);
        check_systemd(run);
        check_kernel(run, distro);
        check_apparmor(run);
        check_cgroup(run);
        return 0;
}

/* Only an apply that goes on changes the host (the engine commits then), and only then is the answer recorded. */
static int preflight_commit(StepRun *run, Account *a) {
        const NetAnswer *answer = run_state(run);

        return answer->fresh ? net_answer_record(run, answer) : 0;
}

static const Part preflight_parts[] = {
        { .name = "checks", .look = preflight_look, .commit = preflight_commit },
};

const Step step_preflight = {
        .name = "preflight",
        STEP_PARTS(preflight_parts),
        .state_size = sizeof(NetAnswer),    /* the rootlesskit answer, recorded by commit */
        .state_done = preflight_state_done,
};
