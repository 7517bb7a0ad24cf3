/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "tests.h"
#include "config.h"
#include "engine/engine.h"
#include "steps/preflight/preflight.h"
#include "steps/steps.h"
#include "util/macro.h"

/*
 * Preflight on fake trees: context_init(VERB_PLAN, tmpdir) makes ctx->live
 * false, so the step reads only the tree (its etc/, usr/, proc/, dev/, run/)
 * and never the host's.
 */

typedef struct Fixture {
        Config config;
        Context ctx;
} Fixture;

#define FIXTURE_INIT { .ctx = { .root_fd = -1 } }

static void fixture_done(Fixture *f) {
        context_done(&f->ctx);
        config_done(&f->config);
}

static int run_preflight(Fixture *f, const char *root) {
        int r;

        r = config_init(&f->config);
        if (r < 0)
                return r;
        r = context_init(&f->ctx, VERB_PLAN, root, &f->config);
        if (r < 0)
                return r;
        f->ctx.current_step = "preflight";
        return step_run(&f->ctx, &step_preflight);
}

static const Item *find_item(const Context *ctx, const char *id) {
        const Item *found = NULL;

        for (size_t i = 0; i < ctx->n_items; i++)
                if (streq(ctx->items[i].id, id)) {
                        if (found)
                                return NULL; /* reported twice: a bug */
                        found = &ctx->items[i];
                }
        return found;
}

#define ASSERT_ITEM(ctx, id, want_status)                                               \
        do {                                                                            \
                const Item *_it = find_item((ctx), (id));                               \
                if (!_it) {                                                             \
                        test_fail(__FILE__, __LINE__, "item %s not reported exactly once", (id)); \
                        return;                                                         \
                }                                                                       \
                if (_it->status != (want_status)) {                                     \
                        test_fail(__FILE__, __LINE__, "item %s: status %s, want %s: %s", (id), \
                                  item_status_to_string(_it->status),                   \
                                  item_status_to_string(want_status), _it->message);    \
                        return;                                                         \
                }                                                                       \
        } while (0)

#define ITEM(ctx, id) find_item((ctx), (id))

static void exe(const char *root, const char *rel) {
        test_write(root, rel, "#!/bin/sh\nexit 0\n");
        if (chmod(test_path(root, rel), 0755) < 0) {
                perror(rel);
                exit(1);
        }
}

static void mkdirs(const char *root, const char *rel) {
        char p[4096];

        snprintf(p, sizeof(p), "%s/%s/", root, rel);
        for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
                *s = 0;
                (void) mkdir(p, 0755);
                *s = '/';
        }
}

/* newuidmap/newgidmap as the package installs them: setuid root (needs root to make). */
static int setuid_root(const char *root, const char *rel) {
        if (geteuid() != 0)
                return -EPERM;
        if (chown(test_path(root, rel), 0, 0) < 0 || chmod(test_path(root, rel), 04755) < 0)
                return -errno;
        return 0;
}

/* root/name in buf (test_path()'s buffer is reused by the helpers, so trees get their own). */
static const char *subtree(char *buf, size_t size, const char *root, const char *name) {
        snprintf(buf, size, "%s/%s", root, name);
        return buf;
}
#define SUBTREE(var, root, name) \
        char var##_buf[4096];    \
        const char *var = subtree(var##_buf, sizeof(var##_buf), (root), (name))

#define OS_DEBIAN "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n"
#define OS_UBUNTU "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"24.04\"\n"
#define OS_POP "NAME=\"Pop!_OS\"\nID=pop\nID_LIKE=\"ubuntu\"\n"
#define OS_FEDORA "NAME=\"Fedora Linux\"\nVERSION=\"40\"\nID=fedora\nVERSION_ID=40\n"
#define OS_ROCKY "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n"
#define OS_ARCH "NAME=\"Arch Linux\"\nID=arch\n"

/* Everything preflight wants, but newuidmap/newgidmap not setuid (the caller decides). */
static void make_tree(const char *root, const char *os_release) {
        if (os_release)
                test_write(root, "etc/os-release", os_release);
        exe(root, "usr/bin/dockerd-rootless.sh");
        exe(root, "usr/bin/rootlesskit");
        exe(root, "usr/bin/newuidmap");
        exe(root, "usr/bin/newgidmap");
        exe(root, "usr/bin/slirp4netns");
        exe(root, "usr/sbin/iptables");
        test_write(root, "usr/lib/systemd/user/dbus.socket", "[Socket]\n");
        test_write(root, "proc/sys/user/max_user_namespaces", "63432\n");
        test_write(root, "proc/sys/kernel/unprivileged_userns_clone", "1\n");
        test_write(root, "proc/sys/kernel/osrelease", "6.1.0-18-amd64\n");
}

TEST(preflight_complete_tree_passes) {
        const char *root = test_tmpdir();
        _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;

        make_tree(root, OS_DEBIAN);
        if (setuid_root(root, "usr/bin/newuidmap") < 0 || setuid_root(root, "usr/bin/newgidmap") < 0) {
                test_skip("making a setuid-root newuidmap needs root");
                return;
        }
        ASSERT_OK(run_preflight(&f, root));

        ASSERT_FALSE(f.ctx.live);
        ASSERT_FALSE(f.ctx.any_failed);
        ASSERT_FALSE(f.ctx.any_changed);
        ASSERT_ITEM(&f.ctx, "preflight.dockerd-rootless", ITEM_PASS);
        ASSERT_ITEM(&f.ctx, "preflight.rootlesskit", ITEM_PASS);
        ASSERT_ITEM(&f.ctx, "preflight.newuidmap", ITEM_PASS);
        ASSERT_CONTAINS(ITEM(&f.ctx, "preflight.newuidmap")->message, "/usr/bin/newuidmap is setuid root");
        ASSERT_ITEM(&f.ctx, "preflight.newgidmap", ITEM_PASS);
        ASSERT_ITEM(&f.ctx, "preflight.network", ITEM_PASS);
        ASSERT_ITEM(&f.ctx, "preflight.iptables", ITEM_PASS);
        ASSERT_ITEM(&f.ctx, "preflight.tun", ITEM_SKIP);
        ASSERT_ITEM(&f.ctx, "preflight.userns", ITEM_PASS);
        ASSERT_ITEM(&f.ctx, "preflight.dbus-user-session", ITEM_PASS);
        ASSERT_ITEM(&f.ctx, "preflight.systemd", ITEM_SKIP);
        ASSERT_ITEM(&f.ctx, "preflight.kernel", ITEM_PASS);
        ASSERT_ITEM(&f.ctx, "preflight.apparmor", ITEM_PASS);
        ASSERT_ITEM(&f.ctx, "preflight.cgroup", ITEM_SKIP);
        ASSERT_EQ(f.ctx.n_items, 13);
        for (size_t i = 0; i < f.ctx.n_items; i++) {
                ASSERT_TRUE(f.ctx.items[i].fix == NULL);
                ASSERT_FALSE(f.ctx.items[i].changed);
        }

        ASSERT_STREQ(f.ctx.facts.os_id, "debian");
        ASSERT_STREQ(f.ctx.facts.dockerd_rootless_path, "/usr/bin/dockerd-rootless.sh");
        ASSERT_STREQ(f.ctx.facts.rootlesskit_path, "/usr/bin/rootlesskit");
        ASSERT_STREQ(f.ctx.facts.network_driver, "slirp4netns");
        ASSERT_STREQ(f.ctx.facts.storage_driver, "overlay2");
        ASSERT_FALSE(f.ctx.facts.apparmor_restricts_userns);
        ASSERT_FALSE(f.ctx.facts.systemd_running);
}

TEST(preflight_empty_tree_names_every_missing_package) {
        const char *root = test_tmpdir();
        _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;

        test_write(root, "etc/os-release", OS_DEBIAN);
        ASSERT_OK(run_preflight(&f, root));

        ASSERT_TRUE(f.ctx.any_failed);
        ASSERT_ITEM(&f.ctx, "preflight.dockerd-rootless", ITEM_FAIL);
        ASSERT_CONTAINS(ITEM(&f.ctx, "preflight.dockerd-rootless")->fix, "apt-get install docker.io");
        ASSERT_CONTAINS(ITEM(&f.ctx, "preflight.dockerd-rootless")->message, "/usr/share/docker.io/contrib");
        ASSERT_ITEM(&f.ctx, "preflight.rootlesskit", ITEM_FAIL);
        ASSERT_CONTAINS(ITEM(&f.ctx, "preflight.rootlesskit")->fix, "apt-get install rootlesskit");
        ASSERT_ITEM(&f.ctx, "preflight.newuidmap", ITEM_FAIL);
        ASSERT_STREQ(ITEM(&f.ctx, "preflight.newuidmap")->fix, "apt-get install uidmap");
        ASSERT_ITEM(&f.ctx, "preflight.newgidmap", ITEM_FAIL);
        ASSERT_STREQ(ITEM(&f.ctx, "preflight.newgidmap")->fix, "apt-get install uidmap");
        ASSERT_ITEM(&f.ctx, "preflight.network", ITEM_FAIL);
        ASSERT_STREQ(ITEM(&f.ctx, "preflight.network")->fix, "apt-get install slirp4netns (or passt)");
        ASSERT_ITEM(&f.ctx, "preflight.iptables", ITEM_FAIL);
        ASSERT_STREQ(ITEM(&f.ctx, "preflight.iptables")->fix, "apt-get install iptables");
        ASSERT_ITEM(&f.ctx, "preflight.dbus-user-session", ITEM_FAIL);
        ASSERT_STREQ(ITEM(&f.ctx, "preflight.dbus-user-session")->fix, "apt-get install dbus-user-session");
        /* No proc/, dev/ or run/ in an image tree: left to the live host, and said so. */
        ASSERT_ITEM(&f.ctx, "preflight.tun", ITEM_SKIP);
        ASSERT_ITEM(&f.ctx, "preflight.userns", ITEM_SKIP);
        ASSERT_ITEM(&f.ctx, "preflight.systemd", ITEM_SKIP);
        ASSERT_ITEM(&f.ctx, "preflight.kernel", ITEM_SKIP);
        ASSERT_ITEM(&f.ctx, "preflight.apparmor", ITEM_SKIP);
        ASSERT_ITEM(&f.ctx, "preflight.cgroup", ITEM_SKIP);
        ASSERT_EQ(f.ctx.facts.cgroup, CGROUP_UNKNOWN);
        ASSERT_FALSE(f.ctx.facts.apparmor_restricts_userns);
        ASSERT_TRUE(f.ctx.facts.storage_driver == NULL);
        ASSERT_TRUE(f.ctx.facts.network_driver == NULL);
        ASSERT_TRUE(f.ctx.facts.dockerd_rootless_path == NULL);
}

/* The fix preflight gives for a missing newuidmap under the given os-release. */
static void check_uidmap_fix(const char *os_release, const char *want_fix, const char *want_id) {
        const char *root = test_tmpdir();
        _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;

        make_tree(root, os_release);
        ASSERT_OK(unlink(test_path(root, "usr/bin/newuidmap")));
        ASSERT_OK(run_preflight(&f, root));
        ASSERT_ITEM(&f.ctx, "preflight.newuidmap", ITEM_FAIL);
        ASSERT_STREQ(ITEM(&f.ctx, "preflight.newuidmap")->fix, want_fix);
        ASSERT_CONTAINS(ITEM(&f.ctx, "preflight.newuidmap")->message, "newuidmap not found");
        if (want_id)
                ASSERT_STREQ(f.ctx.facts.os_id, want_id);
        else
                ASSERT_TRUE(f.ctx.facts.os_id == NULL);
}

TEST(preflight_debian_fix) {
        check_uidmap_fix(OS_DEBIAN, "apt-get install uidmap", "debian");
}

TEST(preflight_ubuntu_fix) {
        check_uidmap_fix(OS_UBUNTU, "apt-get install uidmap", "ubuntu");
}

TEST(preflight_ubuntu_derivative_via_id_like_fix) {
        check_uidmap_fix(OS_POP, "apt-get install uidmap", "pop");
}

TEST(preflight_fedora_fix) {
        check_uidmap_fix(OS_FEDORA, "dnf install shadow-utils", "fedora");
}

TEST(preflight_fedora_derivative_via_id_like_fix) {
        check_uidmap_fix(OS_ROCKY, "dnf install shadow-utils", "rocky");
}

TEST(preflight_unknown_distribution_gets_generic_wording) {
        check_uidmap_fix(OS_ARCH, "install newuidmap and newgidmap with your distribution's package manager", "arch");
}

TEST(preflight_no_os_release_gets_generic_wording) {
        check_uidmap_fix(NULL, "install newuidmap and newgidmap with your distribution's package manager", NULL);
}

TEST(preflight_os_release_in_usr_lib_and_through_symlinks) {
        const char *root = test_tmpdir();

        /* /usr/lib/os-release alone. */
        {
                _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
                SUBTREE(t, root, "a");
                test_write(t, "usr/lib/os-release", OS_FEDORA);
                ASSERT_OK(run_preflight(&f, t));
                ASSERT_STREQ(f.ctx.facts.os_id, "fedora");
                ASSERT_STREQ(ITEM(&f.ctx, "preflight.newuidmap")->fix, "dnf install shadow-utils");
        }
        /* /etc/os-release -> ../usr/lib/os-release, as Debian ships it. */
        {
                _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
                SUBTREE(t, root, "b");
                test_write(t, "usr/lib/os-release", OS_UBUNTU);
                mkdirs(t, "etc");
                ASSERT_OK(symlink("../usr/lib/os-release", test_path(t, "etc/os-release")));
                ASSERT_OK(run_preflight(&f, t));
                ASSERT_STREQ(f.ctx.facts.os_id, "ubuntu");
                ASSERT_STREQ(f.ctx.facts.os_id_like, "debian");
        }
        /* An absolute link means the tree's file, not the host's. */
        {
                _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
                SUBTREE(t, root, "c");
                test_write(t, "usr/lib/os-release", OS_ARCH);
                mkdirs(t, "etc");
                ASSERT_OK(symlink("/usr/lib/os-release", test_path(t, "etc/os-release")));
                ASSERT_OK(run_preflight(&f, t));
                ASSERT_STREQ(f.ctx.facts.os_id, "arch");
        }
}

TEST(preflight_dockerd_rootless_in_docker_io_contrib) {
        const char *root = test_tmpdir();
        _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;

        make_tree(root, OS_DEBIAN);
        ASSERT_OK(unlink(test_path(root, "usr/bin/dockerd-rootless.sh")));
        exe(root, "usr/share/docker.io/contrib/dockerd-rootless.sh");
        ASSERT_OK(run_preflight(&f, root));
        ASSERT_ITEM(&f.ctx, "preflight.dockerd-rootless", ITEM_PASS);
        ASSERT_STREQ(f.ctx.facts.dockerd_rootless_path, "/usr/share/docker.io/contrib/dockerd-rootless.sh");
}

TEST(preflight_finds_only_executable_files_inside_the_root) {
        const char *root = test_tmpdir();
        _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;

        make_tree(root, OS_DEBIAN);
        /* Not executable. */
        ASSERT_OK(chmod(test_path(root, "usr/bin/dockerd-rootless.sh"), 0644));
        /* A directory of that name. */
        ASSERT_OK(unlink(test_path(root, "usr/sbin/iptables")));
        mkdirs(root, "usr/sbin/iptables");
        /* A link to a host path that the tree does not have. */
        ASSERT_OK(unlink(test_path(root, "usr/bin/rootlesskit")));
        ASSERT_OK(symlink("/bin/sh", test_path(root, "usr/bin/rootlesskit")));
        /* A link that resolves inside the tree is followed. */
        ASSERT_OK(unlink(test_path(root, "usr/bin/slirp4netns")));
        exe(root, "opt/slirp/slirp4netns");
        ASSERT_OK(symlink("/opt/slirp/slirp4netns", test_path(root, "usr/bin/slirp4netns")));

        ASSERT_OK(run_preflight(&f, root));
        ASSERT_ITEM(&f.ctx, "preflight.dockerd-rootless", ITEM_FAIL);
        ASSERT_ITEM(&f.ctx, "preflight.iptables", ITEM_FAIL);
        ASSERT_ITEM(&f.ctx, "preflight.rootlesskit", ITEM_FAIL);
        ASSERT_ITEM(&f.ctx, "preflight.network", ITEM_PASS);
        ASSERT_CONTAINS(ITEM(&f.ctx, "preflight.network")->message, "/usr/bin/slirp4netns");
}

TEST(preflight_live_path_is_not_consulted_under_root) {
        const char *root = test_tmpdir();
        _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
        _cleanup_free_ char *old_path = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
        int r;

        make_tree(root, OS_DEBIAN);
        ASSERT_OK(unlink(test_path(root, "usr/bin/rootlesskit")));
        exe(root, "opt/custom/bin/rootlesskit");

        setenv("PATH", "/opt/custom/bin", 1);
        r = run_preflight(&f, root);
        if (old_path)
                setenv("PATH", old_path, 1);
        else
                unsetenv("PATH");
        ASSERT_OK(r);
        ASSERT_ITEM(&f.ctx, "preflight.rootlesskit", ITEM_FAIL);
        ASSERT_TRUE(f.ctx.facts.rootlesskit_path == NULL);
}

TEST(preflight_newuidmap_not_setuid_fails) {
        const char *root = test_tmpdir();
        _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
        const Item *it;

        make_tree(root, OS_DEBIAN);
        ASSERT_OK(run_preflight(&f, root));
        ASSERT_ITEM(&f.ctx, "preflight.newuidmap", ITEM_FAIL);
        it = ITEM(&f.ctx, "preflight.newuidmap");
        ASSERT_CONTAINS(it->message, "/usr/bin/newuidmap is neither setuid root nor has file capabilities");
        ASSERT_STREQ(it->fix, "reinstall the package that ships /usr/bin/newuidmap (uidmap) so it is setuid root again");
        ASSERT_ITEM(&f.ctx, "preflight.newgidmap", ITEM_FAIL);
        ASSERT_TRUE(f.ctx.any_failed);
}

TEST(preflight_newuidmap_setuid_but_not_root_owned_fails) {
        const char *root = test_tmpdir();
        _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;

        make_tree(root, OS_FEDORA);
        /* Owned by nobody (as root) or by us (as a user): setuid, but not to root. */
        if (geteuid() == 0)
                ASSERT_OK(chown(test_path(root, "usr/bin/newuidmap"), 65534, 65534));
        ASSERT_OK(chmod(test_path(root, "usr/bin/newuidmap"), 04755));
        ASSERT_OK(run_preflight(&f, root));
        ASSERT_ITEM(&f.ctx, "preflight.newuidmap", ITEM_FAIL);
        ASSERT_STREQ(ITEM(&f.ctx, "preflight.newuidmap")->fix,
                     "reinstall the package that ships /usr/bin/newuidmap (shadow-utils) so it is setuid root again");
}

TEST(preflight_newuidmap_setuid_root_passes) {
        const char *root = test_tmpdir();
        _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;

        make_tree(root, OS_DEBIAN);
        if (setuid_root(root, "usr/bin/newuidmap") < 0) {
                test_skip("making a setuid-root file needs root");
                return;
        }
        ASSERT_OK(run_preflight(&f, root));
        ASSERT_ITEM(&f.ctx, "preflight.newuidmap", ITEM_PASS);
        ASSERT_ITEM(&f.ctx, "preflight.newgidmap", ITEM_FAIL);
}

TEST(preflight_newuidmap_with_file_capabilities_passes) {
        const char *root = test_tmpdir();
        _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
        struct vfs_cap_data cap = {
                .magic_etc = VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE,
                .data = { { .permitted = 1u << CAP_SETUID, .inheritable = 0 }, { 0, 0 } },
        };

        make_tree(root, OS_DEBIAN);
        if (geteuid() != 0) {
                test_skip("setting file capabilities needs root");
                return;
        }
        if (setxattr(test_path(root, "usr/bin/newuidmap"), "security.capability", &cap, XATTR_CAPS_SZ_2, 0) < 0) {
                test_skip("this file system does not take file capabilities");
                return;
        }
        ASSERT_OK(run_preflight(&f, root));
        ASSERT_ITEM(&f.ctx, "preflight.newuidmap", ITEM_PASS);
        ASSERT_CONTAINS(ITEM(&f.ctx, "preflight.newuidmap")->message, "/usr/bin/newuidmap has file capabilities");
}

TEST(preflight_network_driver) {
        const char *root = test_tmpdir();

        {
                /* slirp4netns settles it (every rootlesskit drives it), pasta or not. */
                _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
                SUBTREE(t, root, "both");
                make_tree(t, OS_DEBIAN);
                exe(t, "usr/bin/pasta");
                ASSERT_OK(run_preflight(&f, t));
                ASSERT_ITEM(&f.ctx, "preflight.network", ITEM_PASS);
                ASSERT_STREQ(f.ctx.facts.network_driver, "slirp4netns");
        }
        {
                /* pasta alone: offline, rootlesskit cannot be asked (a tree's programs never run). */
                _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
                SUBTREE(t, root, "pasta");
                make_tree(t, OS_DEBIAN);
                ASSERT_OK(unlink(test_path(t, "usr/bin/slirp4netns")));
                exe(t, "usr/bin/pasta");
                ASSERT_OK(run_preflight(&f, t));
                ASSERT_ITEM(&f.ctx, "preflight.network", ITEM_SKIP);
                ASSERT_CONTAINS(ITEM(&f.ctx, "preflight.network")->message, "asked on the live host");
                ASSERT_TRUE(f.ctx.facts.network_driver == NULL);
        }
        {
                _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
                SUBTREE(t, root, "none");
                make_tree(t, OS_FEDORA);
                ASSERT_OK(unlink(test_path(t, "usr/bin/slirp4netns")));
                ASSERT_OK(run_preflight(&f, t));
                ASSERT_ITEM(&f.ctx, "preflight.network", ITEM_FAIL);
                ASSERT_STREQ(ITEM(&f.ctx, "preflight.network")->fix, "dnf install slirp4netns (or passt)");
                ASSERT_TRUE(f.ctx.facts.network_driver == NULL);
        }
}

/* The Network section of Debian 12's rootlesskit 1.1.0 --help, as it prints it, and 2.x's --net line. */
#define HELP_1_1_0                                                                                                       \
        "OPTIONS:\n"                                                                                                     \
        "  Misc:                          \n"                                                                            \
        "    --debug                      debug mode (default: false)\n"                                                 \
        "  Network:                       \n"                                                                            \
        "    --net value                  network driver [host, slirp4netns, vpnkit, lxc-user-nic(experimental)] "       \
        "(default: \"host\")\n"                                                                                          \
        "    --mtu value                  MTU for non-host network (default: 65520 for slirp4netns, 1500 for others) "   \
        "(default: 0)\n"                                                                                                 \
        "  Port:                          \n"                                                                            \
        "    --port-driver value          port driver for non-host network. [none, builtin, slirp4netns] (default: "     \
        "\"none\")\n"
#define NET_LINE_2_X \
        "   --net value  network driver [host, pasta(experimental), slirp4netns, vpnkit, lxc-user-nic(experimental)] (default: \"host\")\n"

TEST(rootlesskit_net_drivers_are_read_from_its_help) {
        char *d = NULL;

        ASSERT_OK(rootlesskit_net_drivers_parse(HELP_1_1_0, &d));
        ASSERT_STREQ(d, "host slirp4netns vpnkit lxc-user-nic");
        free(d);
        ASSERT_OK(rootlesskit_net_drivers_parse("NAME:\n   rootlesskit\n" NET_LINE_2_X "   --mtu value\n", &d));
        ASSERT_STREQ(d, "host pasta slirp4netns vpnkit lxc-user-nic");
        free(d);
        /* Other bracketed lists, --netns-type, no --net at all: nothing. */
        d = NULL;
        ASSERT_EQ(rootlesskit_net_drivers_parse("  --port-driver value  [none, builtin]\n  --netns-type [path]\n", &d),
                  -ENOENT);
        ASSERT_EQ(rootlesskit_net_drivers_parse("", &d), -ENOENT);
        ASSERT_EQ(rootlesskit_net_drivers_parse("  --net value   network driver [] \n", &d), -ENOENT);
        ASSERT_TRUE(d == NULL);
}

/* The answer a live apply recorded for the tree's rootlesskit (the key is its identity). */
static void record_net_answer(const char *root, const char *drivers) {
        char text[1024];
        struct stat st;

        ASSERT_OK(stat(test_path(root, "usr/bin/rootlesskit"), &st));
        snprintf(text, sizeof(text),
                 "# rootless-ci: the --net drivers \"rootlesskit --help\" listed, for the binary on the next line\n"
                 "/usr/bin/rootlesskit %lu:%lu %lld %lld.%09ld %lld.%09ld\n%s\n",
                 (unsigned long) st.st_dev, (unsigned long) st.st_ino, (long long) st.st_size,
                 (long long) st.st_mtim.tv_sec, st.st_mtim.tv_nsec, (long long) st.st_ctim.tv_sec, st.st_ctim.tv_nsec,
                 drivers);
        test_write(root, "run/rootless-ci/rootlesskit-net-drivers", text);
}

static void make_pasta_tree(const char *root) {
        make_tree(root, OS_DEBIAN);
        ASSERT_OK(unlink(test_path(root, "usr/bin/slirp4netns")));
        exe(root, "usr/bin/pasta");
}

TEST(preflight_pasta_only_with_a_rootlesskit_that_drives_it) {
        const char *root = test_tmpdir();

        {
                /* Debian 12's rootlesskit: no pasta. A failure naming what it drives and the package. */
                _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
                const Item *it;
                SUBTREE(t, root, "old");
                make_pasta_tree(t);
                record_net_answer(t, "host slirp4netns vpnkit lxc-user-nic");
                ASSERT_OK(run_preflight(&f, t));
                ASSERT_ITEM(&f.ctx, "preflight.network", ITEM_FAIL);
                it = ITEM(&f.ctx, "preflight.network");
                ASSERT_CONTAINS(it->message, "/usr/bin/rootlesskit drives only host slirp4netns vpnkit lxc-user-nic");
                ASSERT_CONTAINS(it->message, "pasta (/usr/bin/pasta) cannot be used");
                ASSERT_STREQ(it->fix, "apt-get install slirp4netns (this rootlesskit cannot drive pasta)");
                ASSERT_TRUE(f.ctx.facts.network_driver == NULL);
        }
        {
                _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
                SUBTREE(t, root, "new");
                make_pasta_tree(t);
                record_net_answer(t, "host pasta slirp4netns vpnkit lxc-user-nic");
                ASSERT_OK(run_preflight(&f, t));
                ASSERT_ITEM(&f.ctx, "preflight.network", ITEM_PASS);
                ASSERT_CONTAINS(ITEM(&f.ctx, "preflight.network")->message, "drives host pasta slirp4netns");
                ASSERT_STREQ(f.ctx.facts.network_driver, "pasta");
        }
        {
                /* Another rootlesskit since (a package upgrade): the record is not its answer, so it is asked anew. */
                _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
                SUBTREE(t, root, "upgraded");
                make_pasta_tree(t);
                record_net_answer(t, "host pasta slirp4netns vpnkit lxc-user-nic");
                ASSERT_OK(unlink(test_path(t, "usr/bin/rootlesskit")));
                test_write(t, "usr/bin/rootlesskit", "#!/bin/sh\n# another build\n");
                ASSERT_OK(chmod(test_path(t, "usr/bin/rootlesskit"), 0755));
                ASSERT_OK(run_preflight(&f, t));
                ASSERT_ITEM(&f.ctx, "preflight.network", ITEM_SKIP);
                ASSERT_TRUE(f.ctx.facts.network_driver == NULL);
        }
}

TEST(preflight_dbus_user_session_in_lib) {
        const char *root = test_tmpdir();
        _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;

        make_tree(root, OS_DEBIAN);
        ASSERT_OK(unlink(test_path(root, "usr/lib/systemd/user/dbus.socket")));
        test_write(root, "lib/systemd/user/dbus.socket", "[Socket]\n");
        ASSERT_OK(run_preflight(&f, root));
        ASSERT_ITEM(&f.ctx, "preflight.dbus-user-session", ITEM_PASS);
}

TEST(preflight_user_namespaces_disabled) {
        const char *root = test_tmpdir();
        _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
        const Item *it;

        make_tree(root, OS_DEBIAN);
        test_write(root, "proc/sys/user/max_user_namespaces", "0\n");
        ASSERT_OK(run_preflight(&f, root));
        ASSERT_ITEM(&f.ctx, "preflight.userns", ITEM_FAIL);
        it = ITEM(&f.ctx, "preflight.userns");
        ASSERT_CONTAINS(it->fix, "sysctl -w user.max_user_namespaces=");
        ASSERT_CONTAINS(it->fix, "/etc/sysctl.d/");
        ASSERT_CONTAINS(it->message, "user.max_user_namespaces=0");
}

TEST(preflight_unprivileged_userns_clone_disabled) {
        const char *root = test_tmpdir();
        _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;

        make_tree(root, OS_DEBIAN);
        test_write(root, "proc/sys/kernel/unprivileged_userns_clone", "0\n");
        ASSERT_OK(run_preflight(&f, root));
        ASSERT_ITEM(&f.ctx, "preflight.userns", ITEM_FAIL);
        ASSERT_CONTAINS(ITEM(&f.ctx, "preflight.userns")->fix, "sysctl -w kernel.unprivileged_userns_clone=1");
}

TEST(preflight_userns_clone_switch_absent_is_fine) {
        const char *root = test_tmpdir();
        _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;

        /* Upstream kernels have no such switch. */
        make_tree(root, OS_FEDORA);
        ASSERT_OK(unlink(test_path(root, "proc/sys/kernel/unprivileged_userns_clone")));
        ASSERT_OK(run_preflight(&f, root));
        ASSERT_ITEM(&f.ctx, "preflight.userns", ITEM_PASS);
}

TEST(preflight_userns_unreadable_value_fails) {
        const char *root = test_tmpdir();
        _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;

        make_tree(root, OS_DEBIAN);
        test_write(root, "proc/sys/user/max_user_namespaces", "lots\n");
        ASSERT_OK(run_preflight(&f, root));
        ASSERT_ITEM(&f.ctx, "preflight.userns", ITEM_FAIL);
}

TEST(preflight_old_kernel_without_fuse_overlayfs_fails) {
        const char *root = test_tmpdir();
        _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
        const Item *it;

        make_tree(root, OS_DEBIAN);
        test_write(root, "proc/sys/kernel/osrelease", "5.10.0-28-amd64\n");
        ASSERT_OK(run_preflight(&f, root));
        ASSERT_ITEM(&f.ctx, "preflight.kernel", ITEM_FAIL);
        it = ITEM(&f.ctx, "preflight.kernel");
        ASSERT_STREQ(it->fix, "apt-get install fuse-overlayfs");
        ASSERT_CONTAINS(it->message, "kernel 5.10.0-28-amd64 is older than 5.11");
        ASSERT_TRUE(f.ctx.facts.storage_driver == NULL);
}

TEST(preflight_old_kernel_with_fuse_overlayfs_passes) {
        const char *root = test_tmpdir();
        _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;

        make_tree(root, OS_DEBIAN);
        test_write(root, "proc/sys/kernel/osrelease", "5.10.0-28-amd64\n");
        exe(root, "usr/bin/fuse-overlayfs");
        ASSERT_OK(run_preflight(&f, root));
        ASSERT_ITEM(&f.ctx, "preflight.kernel", ITEM_PASS);
        ASSERT_CONTAINS(ITEM(&f.ctx, "preflight.kernel")->message, "/usr/bin/fuse-overlayfs");
        ASSERT_STREQ(f.ctx.facts.storage_driver, "fuse-overlayfs");
}

TEST(preflight_new_kernel_uses_overlay2) {
        static const char *const releases[] = { "5.11.0\n", "6.1.0-18-amd64\n", "10.0.1\n" };

        for (size_t i = 0; i < ELEMENTSOF(releases); i++) {
                const char *root = test_tmpdir();
                _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
                make_tree(root, OS_DEBIAN);
                test_write(root, "proc/sys/kernel/osrelease", releases[i]);
                ASSERT_OK(run_preflight(&f, root));
                ASSERT_ITEM(&f.ctx, "preflight.kernel", ITEM_PASS);
                ASSERT_STREQ(f.ctx.facts.storage_driver, "overlay2");
        }
}

TEST(preflight_apparmor_restriction_is_a_fact) {
        const char *root = test_tmpdir();

        {
                _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
                SUBTREE(t, root, "on");
                make_tree(t, OS_UBUNTU);
                test_write(t, "proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1\n");
                ASSERT_OK(run_preflight(&f, t));
                ASSERT_ITEM(&f.ctx, "preflight.apparmor", ITEM_PASS);
                ASSERT_TRUE(f.ctx.facts.apparmor_restricts_userns);
        }
        {
                /* A tree with proc/ but no such sysctl: a kernel without the restriction. */
                _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
                SUBTREE(t, root, "absent");
                make_tree(t, OS_DEBIAN);
                ASSERT_OK(run_preflight(&f, t));
                ASSERT_ITEM(&f.ctx, "preflight.apparmor", ITEM_PASS);
                ASSERT_CONTAINS(ITEM(&f.ctx, "preflight.apparmor")->message, "does not restrict");
                ASSERT_FALSE(f.ctx.facts.apparmor_restricts_userns);
        }
        {
                _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
                SUBTREE(t, root, "off");
                make_tree(t, OS_UBUNTU);
                test_write(t, "proc/sys/kernel/apparmor_restrict_unprivileged_userns", "0\n");
                ASSERT_OK(run_preflight(&f, t));
                ASSERT_ITEM(&f.ctx, "preflight.apparmor", ITEM_PASS);
                ASSERT_FALSE(f.ctx.facts.apparmor_restricts_userns);
        }
}

TEST(preflight_tun_regular_file_fails) {
        const char *root = test_tmpdir();
        _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;

        make_tree(root, OS_DEBIAN);
        test_write(root, "dev/net/tun", "");
        ASSERT_OK(run_preflight(&f, root));
        ASSERT_ITEM(&f.ctx, "preflight.tun", ITEM_FAIL);
        ASSERT_STREQ(ITEM(&f.ctx, "preflight.tun")->fix, "modprobe tun");
}

TEST(preflight_tun_device_modes) {
        const char *root = test_tmpdir();

        if (geteuid() != 0) {
                test_skip("making a device node needs root");
                return;
        }
        {
                _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
                SUBTREE(t, root, "open");
                make_tree(t, OS_DEBIAN);
                mkdirs(t, "dev/net");
                ASSERT_OK(mknod(test_path(t, "dev/net/tun"), S_IFCHR | 0666, makedev(10, 200)));
                ASSERT_OK(chmod(test_path(t, "dev/net/tun"), 0666));
                ASSERT_OK(run_preflight(&f, t));
                ASSERT_ITEM(&f.ctx, "preflight.tun", ITEM_PASS);
        }
        {
                _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
                SUBTREE(t, root, "closed");
                make_tree(t, OS_DEBIAN);
                mkdirs(t, "dev/net");
                ASSERT_OK(mknod(test_path(t, "dev/net/tun"), S_IFCHR | 0600, makedev(10, 200)));
                ASSERT_OK(run_preflight(&f, t));
                ASSERT_ITEM(&f.ctx, "preflight.tun", ITEM_FAIL);
                ASSERT_CONTAINS(ITEM(&f.ctx, "preflight.tun")->fix, "chmod 0666 /dev/net/tun");
                ASSERT_CONTAINS(ITEM(&f.ctx, "preflight.tun")->message, "mode 0600");
        }
        {
                _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
                SUBTREE(t, root, "null");
                make_tree(t, OS_DEBIAN);
                mkdirs(t, "dev/net");
                ASSERT_OK(mknod(test_path(t, "dev/net/tun"), S_IFCHR | 0666, makedev(1, 3)));
                ASSERT_OK(run_preflight(&f, t));
                ASSERT_ITEM(&f.ctx, "preflight.tun", ITEM_FAIL);
                ASSERT_STREQ(ITEM(&f.ctx, "preflight.tun")->fix, "modprobe tun");
        }
}

TEST(preflight_offline_tree_never_counts_systemd_as_running) {
        const char *root = test_tmpdir();

        /* An image tree may well have run/systemd/system; that says nothing about first boot. */
        {
                _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
                SUBTREE(t, root, "with");
                make_tree(t, OS_DEBIAN);
                mkdirs(t, "run/systemd/system");
                ASSERT_OK(run_preflight(&f, t));
                ASSERT_ITEM(&f.ctx, "preflight.systemd", ITEM_SKIP);
                ASSERT_FALSE(f.ctx.facts.systemd_running);
        }
        {
                _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
                SUBTREE(t, root, "without");
                make_tree(t, OS_DEBIAN);
                ASSERT_OK(run_preflight(&f, t));
                ASSERT_ITEM(&f.ctx, "preflight.systemd", ITEM_SKIP);
                ASSERT_CONTAINS(ITEM(&f.ctx, "preflight.systemd")->message, "first boot");
                ASSERT_FALSE(f.ctx.facts.systemd_running);
        }
}

TEST(preflight_reports_the_same_under_every_verb) {
        static const Verb verbs[] = { VERB_PLAN, VERB_CHECK, VERB_APPLY };
        const char *root = test_tmpdir();

        make_tree(root, OS_DEBIAN);
        for (size_t v = 0; v < ELEMENTSOF(verbs); v++) {
                _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;

                ASSERT_OK(config_init(&f.config));
                ASSERT_OK(context_init(&f.ctx, verbs[v], root, &f.config));
                ASSERT_OK(step_run(&f.ctx, &step_preflight));
                ASSERT_EQ(f.ctx.n_items, 13);
                ASSERT_ITEM(&f.ctx, "preflight.newuidmap", ITEM_FAIL);
                ASSERT_FALSE(f.ctx.any_changed);
        }
}

#define CGROUP2_TOP "cpuset cpu io memory hugetlb pids rdma misc\n"

TEST(preflight_cgroup_v2_with_every_controller_passes) {
        const char *root = test_tmpdir();
        _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;

        make_tree(root, OS_DEBIAN);
        test_write(root, "sys/fs/cgroup/cgroup.controllers", CGROUP2_TOP);
        ASSERT_OK(run_preflight(&f, root));
        ASSERT_ITEM(&f.ctx, "preflight.cgroup", ITEM_PASS);
        ASSERT_CONTAINS(ITEM(&f.ctx, "preflight.cgroup")->message, "cgroup v2");
        ASSERT_EQ(f.ctx.facts.cgroup, CGROUP_V2);
}

TEST(preflight_cgroup_v2_without_a_controller_warns_naming_it) {
        const char *root = test_tmpdir();
        _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
        const Item *it;

        make_tree(root, OS_DEBIAN);
        test_write(root, "sys/fs/cgroup/cgroup.controllers", "cpu memory pids\n");
        ASSERT_OK(run_preflight(&f, root));
        ASSERT_ITEM(&f.ctx, "preflight.cgroup", ITEM_WARN);
        it = ITEM(&f.ctx, "preflight.cgroup");
        ASSERT_CONTAINS(it->message, "no cpuset io controller");
        ASSERT_TRUE(it->fix != NULL);
        ASSERT_EQ(f.ctx.facts.cgroup, CGROUP_V2);
}

/* v1 and hybrid: a warning naming what does not hold, never a failure (Docker runs, without limits). */
TEST(preflight_cgroup_v1_warns_that_limits_do_not_hold) {
        static const char *const kinds[] = { "v1", "hybrid" };
        const char *root = test_tmpdir();

        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                _cleanup_(fixture_done) Fixture f = FIXTURE_INIT;
                SUBTREE(t, root, kinds[i]);
                const Item *it;

                make_tree(t, OS_DEBIAN);
                mkdirs(t, "sys/fs/cgroup/memory");
                mkdirs(t, "sys/fs/cgroup/cpu,cpuacct");
                test_write(t, "sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
                if (i == 1)
                        test_write(t, "sys/fs/cgroup/unified/cgroup.controllers", "\n");
                ASSERT_OK(run_preflight(&f, t));
                ASSERT_ITEM(&f.ctx, "preflight.cgroup", ITEM_WARN);
                it = ITEM(&f.ctx, "preflight.cgroup");
                ASSERT_CONTAINS(it->message, i == 1 ? "cgroup v1 (hybrid)" : "cgroup v1:");
                ASSERT_CONTAINS(it->message, "--memory, --cpus and --pids-limit");
                ASSERT_CONTAINS(it->message, "per-tenant limit");
                ASSERT_CONTAINS(it->fix, "systemd.unified_cgroup_hierarchy=1");
                ASSERT_EQ(f.ctx.facts.cgroup, CGROUP_V1);
        }
}
