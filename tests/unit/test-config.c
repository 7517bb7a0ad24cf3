/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests.h"
#include "config.h"
#include "config-test.h"
#include "util/error.h"
#include "util/macro.h"

TEST(config_defaults) {
        _cleanup_(config_done) Config c = {};
        const char *err;

        ASSERT_OK(config_init(&c));
        ASSERT_EQ(c.filesystem, FILESYSTEM_EXT4);
        ASSERT_STREQ(filesystem_to_string(c.filesystem), "ext4");
        ASSERT_STREQ(c.mount_point, "/srv/rootless-ci");
        ASSERT_STREQ(c.user_name, "buildkite");
        ASSERT_STREQ(c.agent_unit, "buildkite-agent.service");
        ASSERT_EQ(c.ready_timeout_sec, 120);
        ASSERT_TRUE(c.disk_device == NULL);
        ASSERT_FALSE(c.wipe);
        /* The defaults are a valid configuration on their own. */
        ASSERT_OK(config_verify(&c, &err));
}

TEST(config_every_key_is_parsed) {
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *log = NULL;
        static const char text[] =
                "[Disk]\n"
                "Device=/dev/disk/by-id/virtio-data\n"
                "FileSystem=xfs\n"
                "MountPoint=/data\n"
                "Wipe=yes\n"
                "[User]\n"
                "Name=ci_runner-2\n"
                "[Agent]\n"
                "Unit=my-agent@main.service\n"
                "[Daemon]\n"
                "ReadyTimeoutSec=86400\n";

        ASSERT_OK(config_init(&c));
        ASSERT_EQ(parse(&c, text, strlen(text), &log), 0);
        ASSERT_STREQ(log, "");
        ASSERT_STREQ(c.disk_device, "/dev/disk/by-id/virtio-data");
        ASSERT_EQ(c.filesystem, FILESYSTEM_XFS);
        ASSERT_STREQ(c.mount_point, "/data");
        ASSERT_TRUE(c.wipe);
        ASSERT_STREQ(c.user_name, "ci_runner-2");
        ASSERT_STREQ(c.agent_unit, "my-agent@main.service");
        ASSERT_EQ(c.ready_timeout_sec, 86400);
}

TEST(config_comments_blank_lines_whitespace_and_crlf_are_accepted) {
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *log = NULL;
        static const char text[] =
                "# a comment\r\n"
                "; another comment\r\n"
                "\r\n"
                "   \t \r\n"
                "  [User]  \r\n"
                "\t# indented comment\r\n"
                "  Name \t=\t bob  \r\n"
                "[Daemon]\r\n"
                "ReadyTimeoutSec=7\r\n"
                "[Disk]\n"
                "Wipe = no"; /* no final newline */

        ASSERT_OK(config_init(&c));
        ASSERT_EQ(parse(&c, text, strlen(text), &log), 0);
        ASSERT_STREQ(log, "");
        ASSERT_STREQ(c.user_name, "bob");
        ASSERT_EQ(c.ready_timeout_sec, 7);
        ASSERT_FALSE(c.wipe);
}

TEST(config_empty_text_keeps_defaults) {
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *log = NULL;

        ASSERT_OK(config_init(&c));
        ASSERT_EQ(parse(&c, "", 0, &log), 0);
        ASSERT_STREQ(c.user_name, "buildkite");
}

TEST(config_booleans) {
        static const char *const yes[] = { "1", "yes", "y", "true", "t", "on", "YES", "True" };
        static const char *const no[] = { "0", "no", "n", "false", "f", "off", "NO", "Off" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                ASSERT_EQ(parse_boolean(yes[i]), 1);
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                ASSERT_EQ(parse_boolean(no[i]), 0);
        ASSERT_EQ(parse_boolean(""), -EINVAL);
        ASSERT_EQ(parse_boolean("maybe"), -EINVAL);
        ASSERT_EQ(parse_boolean("yes "), -EINVAL);
        ASSERT_EQ(parse_boolean("2"), -EINVAL);
}

TEST(config_unknown_section) {
        ASSERT_REFUSED("# comment\n[Disks]\nDevice=/dev/sdb\n", "test.conf:2: unknown section [Disks]");
        /* Section names are case-sensitive, like systemd's. */
        ASSERT_REFUSED("[disk]\n", "test.conf:1: unknown section [disk]");
}

TEST(config_unknown_key) {
        ASSERT_REFUSED("[Disk]\n\nDevise=/dev/sdb\n", "test.conf:3: unknown key Devise= in [Disk]");
        /* A key of another section is unknown here. */
        ASSERT_REFUSED("[User]\nDevice=/dev/sdb\n", "test.conf:2: unknown key Device= in [User]");
        ASSERT_REFUSED("[Agent]\n=x\n", "test.conf:2: unknown key = in [Agent]");
        ASSERT_REFUSED("[Daemon]\nreadytimeoutsec=5\n", "test.conf:2: unknown key readytimeoutsec= in [Daemon]");
}

TEST(config_key_outside_section) {
        ASSERT_REFUSED("# no section yet\nName=bob\n[User]\n", "test.conf:2: Name= is outside of any [Section]");
}

TEST(config_malformed_section_header) {
        ASSERT_REFUSED("[Disk\n", "test.conf:1: malformed section header: [Disk");
        ASSERT_REFUSED("[User]\nName=a\n[]\n", "test.conf:3: malformed section header: []");
        ASSERT_REFUSED("[Disk] Device=/dev/sdb\n", "test.conf:1: malformed section header: [Disk] Device=/dev/sdb");
}

TEST(config_missing_equals) {
        ASSERT_REFUSED("[Disk]\nDevice /dev/sdb\n", "test.conf:2: expected Key=value or [Section], got: Device /dev/sdb");
}

TEST(config_bad_boolean) {
        ASSERT_REFUSED("[Disk]\nWipe=maybe\n", "test.conf:2: Wipe=maybe: must be a boolean");
        ASSERT_REFUSED("[Disk]\nWipe=\n", "test.conf:2: Wipe=: must be a boolean");
        /* No trailing comments: the whole rest of the line is the value. */
        ASSERT_REFUSED("[Disk]\nWipe=no # not yet\n", "test.conf:2: Wipe=no # not yet: must be a boolean");
}

TEST(config_bad_filesystem) {
        ASSERT_REFUSED("[Disk]\nFileSystem=btrfs\n", "test.conf:2: FileSystem=btrfs: must be ext4 or xfs");
        ASSERT_REFUSED("[Disk]\nFileSystem=EXT4\n", "test.conf:2: FileSystem=EXT4: must be ext4 or xfs");
        ASSERT_REFUSED("[Disk]\nFileSystem=\n", "test.conf:2: FileSystem=: must be ext4 or xfs");
}

TEST(config_paths_must_be_absolute_and_normalised) {
        ASSERT_REFUSED("[Disk]\nMountPoint=srv/ci\n", "test.conf:2: MountPoint=srv/ci: must be an absolute, normalised path");
        ASSERT_REFUSED("[Disk]\nMountPoint=\n", "test.conf:2: MountPoint=: must be an absolute");
        ASSERT_REFUSED("[Disk]\nMountPoint=/srv/../etc\n", "test.conf:2: MountPoint=/srv/../etc: must be an absolute, normalised path");
        ASSERT_REFUSED("[Disk]\nMountPoint=/srv//ci\n", "test.conf:2: MountPoint=/srv//ci: must be an absolute, normalised path");
        ASSERT_REFUSED("[Disk]\nMountPoint=/srv/./ci\n", "test.conf:2: MountPoint=/srv/./ci: must be an absolute, normalised path");
        ASSERT_REFUSED("[Disk]\nMountPoint=/srv/ci/\n", "test.conf:2: MountPoint=/srv/ci/: must be an absolute, normalised path");
        ASSERT_REFUSED("[Disk]\nMountPoint=/srv/ci/..\n", "test.conf:2: MountPoint=/srv/ci/..: must be an absolute");
        ASSERT_REFUSED("[Disk]\nMountPoint=/srv/c\ti\n", "test.conf:2:");

        ASSERT_REFUSED("[Disk]\nDevice=sdb\n", "test.conf:2: Device=sdb: must be a normalised device path under /dev/");
        ASSERT_REFUSED("[Disk]\nDevice=/dev/../sdb\n", "test.conf:2: Device=/dev/../sdb: must be a normalised device path under /dev/");
        ASSERT_REFUSED("[Disk]\nDevice=/dev//sdb\n", "test.conf:2: Device=/dev//sdb: must be a normalised device path");
        ASSERT_REFUSED("[Disk]\nDevice=/dev/./sdb\n", "test.conf:2: Device=/dev/./sdb: must be a normalised device path");
}

TEST(config_paths_must_be_utf8) {
        ASSERT_REFUSED("[Disk]\nMountPoint=/srv/\xff\xfe\n", "test.conf:2: MountPoint=");
        ASSERT_REFUSED("[Disk]\nDevice=/dev/disk/by-id/\xc0\xaf\n", "test.conf:2: Device=");
        ASSERT_FALSE(valid_absolute_path("/srv/\xc3"));           /* cut short */
        ASSERT_FALSE(valid_absolute_path("/srv/\xc0\xaf"));       /* overlong '/' */
        ASSERT_FALSE(valid_absolute_path("/srv/\xed\xa0\x80"));   /* a surrogate */
        ASSERT_FALSE(valid_absolute_path("/srv/\xf4\x90\x80\x80")); /* past U+10FFFF */
        ASSERT_TRUE(valid_absolute_path("/srv/caf\xc3\xa9"));
        ASSERT_TRUE(valid_absolute_path("/srv/\xf0\x9f\x90\xb3"));
}

TEST(config_valid_absolute_path) {
        ASSERT_TRUE(valid_absolute_path("/"));
        ASSERT_TRUE(valid_absolute_path("/srv/rootless-ci"));
        ASSERT_TRUE(valid_absolute_path("/a/.hidden/..b/c.."));
        ASSERT_FALSE(valid_absolute_path(""));
        ASSERT_FALSE(valid_absolute_path("srv"));
        ASSERT_FALSE(valid_absolute_path("//"));
        ASSERT_FALSE(valid_absolute_path("//srv"));
        ASSERT_FALSE(valid_absolute_path("/srv/"));
        ASSERT_FALSE(valid_absolute_path("/."));
        ASSERT_FALSE(valid_absolute_path("/.."));
        ASSERT_FALSE(valid_absolute_path("/srv/."));
        ASSERT_FALSE(valid_absolute_path("/srv/\n"));
        ASSERT_FALSE(valid_absolute_path("/srv/\x7f"));
}

TEST(config_device_must_be_under_dev) {
        ASSERT_REFUSED("[Disk]\nDevice=/tmp/disk.img\n", "test.conf:2: Device=/tmp/disk.img: must be a normalised device path under /dev/");
        ASSERT_REFUSED("[Disk]\nDevice=/dev\n", "test.conf:2: Device=/dev: must be a normalised device path under /dev/");
        ASSERT_REFUSED("[Disk]\nDevice=/devices/sdb\n", "test.conf:2: Device=/devices/sdb:");
        ASSERT_ACCEPTED("[Disk]\nDevice=/dev/vdb\n");
}

TEST(config_invalid_user_names) {
        ASSERT_REFUSED("[User]\nName=build:kite\n", "test.conf:2: Name=build:kite: must be a valid user name");
        ASSERT_REFUSED("[User]\nName=-buildkite\n", "test.conf:2: Name=-buildkite: must be a valid user name");
        ASSERT_REFUSED("[User]\nName=Buildkite\n", "test.conf:2: Name=Buildkite: must be a valid user name");
        ASSERT_REFUSED("[User]\nName=1ci\n", "test.conf:2: Name=1ci: must be a valid user name");
        ASSERT_REFUSED("[User]\nName=build kite\n", "test.conf:2: Name=build kite: must be a valid user name");
        ASSERT_REFUSED("[User]\nName=\n", "test.conf:2: Name=: must be a valid user name");
        ASSERT_REFUSED("[User]\nName=a23456789012345678901234567890123\n",
                       "test.conf:2: Name=a23456789012345678901234567890123: must be a valid user name");
        ASSERT_REFUSED("[User]\nName=root\n", "test.conf:2: Name=root: must not be root");

        /* 32 characters is the limit, not past it. */
        ASSERT_ACCEPTED("[User]\nName=a2345678901234567890123456789012\n");
        ASSERT_ACCEPTED("[User]\nName=_ci\n");
        ASSERT_TRUE(valid_user_name("build-kite_2"));
        ASSERT_FALSE(valid_user_name("bu$ild"));
}

TEST(config_bad_unit_names) {
        static const char *const bad[] = {
                "buildkite-agent",          /* no suffix */
                "buildkite-agent.socket",   /* not a service */
                "buildkite-agent@.service", /* a template */
                "-agent.service",
                ".service",
                "agent .service",
                "../agent.service",
                "a/b.service",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                ASSERT_FALSE(valid_unit_name(bad[i]));
                ASSERT_KEY_REFUSED("Agent", "Unit", bad[i], bad[i], "must be a service unit name");
        }
        ASSERT_FALSE(valid_unit_name("agent.service\n"));
        ASSERT_FALSE(valid_unit_name(""));
        ASSERT_TRUE(valid_unit_name("buildkite-agent.service"));
        ASSERT_TRUE(valid_unit_name("buildkite-agent@2.service"));
}

TEST(config_bad_ready_timeout) {
        ASSERT_REFUSED("[Daemon]\nReadyTimeoutSec=0\n", "test.conf:2: ReadyTimeoutSec=0: must be a whole number of seconds from 1 to 86400");
        ASSERT_REFUSED("[Daemon]\nReadyTimeoutSec=-1\n", "test.conf:2: ReadyTimeoutSec=-1: must be a whole number");
        ASSERT_REFUSED("[Daemon]\nReadyTimeoutSec=1x\n", "test.conf:2: ReadyTimeoutSec=1x: must be a whole number");
        ASSERT_REFUSED("[Daemon]\nReadyTimeoutSec=1.5\n", "test.conf:2: ReadyTimeoutSec=1.5: must be a whole number");
        ASSERT_REFUSED("[Daemon]\nReadyTimeoutSec=\n", "test.conf:2: ReadyTimeoutSec=: must be a whole number");
        ASSERT_REFUSED("[Daemon]\nReadyTimeoutSec=86401\n", "test.conf:2: ReadyTimeoutSec=86401: must be a whole number");
        ASSERT_REFUSED("[Daemon]\nReadyTimeoutSec=4294967417\n", "test.conf:2: ReadyTimeoutSec=4294967417: must be");
        ASSERT_REFUSED("[Daemon]\nReadyTimeoutSec=99999999999999999999999\n",
                       "test.conf:2: ReadyTimeoutSec=99999999999999999999999: must be");
        ASSERT_REFUSED("[Daemon]\nReadyTimeoutSec=18446744073709551615\n", "test.conf:2: ReadyTimeoutSec=18446744073709551615: must be");
        ASSERT_ACCEPTED("[Daemon]\nReadyTimeoutSec=1\n");
}

TEST(config_duplicate_key_names_both_lines) {
        ASSERT_REFUSED("[Disk]\nWipe=yes\n\n# again\nWipe=no\n",
                       "test.conf:5: [Disk] Wipe= is set again (first set on line 2)");
        /* Coming back to a section does not reset what it has seen. */
        ASSERT_REFUSED("[User]\nName=alice\n[Disk]\nWipe=no\n[User]\nName=bob\n",
                       "test.conf:6: [User] Name= is set again (first set on line 2)");
        /* The same key name in two sections is two keys. */
        ASSERT_ACCEPTED("[Agent]\nUnit=a.service\n[Disk]\nWipe=no\n");
}

TEST(config_nul_byte_is_refused_with_its_line) {
        static const char text[] = "[User]\nName=bob\n# x\0y\n";

        ASSERT_TRUE(memchr(text, 0, sizeof(text) - 1) != NULL);
        {
                Config c;
                char *log;
                int r;

                ASSERT_OK(config_init(&c));
                r = parse(&c, text, sizeof(text) - 1, &log);
                config_done(&c);
                if (r != -ERCI_USAGE || !strstr(log, "test.conf:3: contains a NUL byte")) {
                        test_fail(__FILE__, __LINE__, "got %d \"%s\"", r, log);
                        free(log);
                        return;
                }
                free(log);
        }
}

TEST(config_mount_point_refusals) {
        static const char *const refused[] = {
                "/", "/proc/x", "/proc", "/sys", "/sys/fs/x", "/dev/x", "/etc", "/etc/x", "/usr",
                "/usr/lib/x", "/run/x", "/run", "/home", "/boot/efi", "/var", "/var/lib", "/tmp/ci",
                "/root/ci", "/srv", "/lib/x", "/bin/x",
        };
        static const char *const accepted[] = {
                "/srv/rootless-ci", "/var/lib/rootless-ci", "/data", "/srv/ci/docker", "/etcetera", "/devdata",
        };

        for (size_t i = 0; i < ELEMENTSOF(refused); i++) {
                _cleanup_free_ char *text = NULL, *want = NULL;
                const char *reason = NULL;

                if (valid_mount_point(refused[i], &reason)) {
                        test_fail(__FILE__, __LINE__, "mount point %s accepted", refused[i]);
                        return;
                }
                ASSERT_TRUE(reason != NULL);
                ASSERT_TRUE(asprintf(&text, "[Disk]\nMountPoint=%s\n", refused[i]) > 0);
                ASSERT_TRUE(asprintf(&want, "test.conf:2: MountPoint=%s: %s", refused[i], reason) > 0);
                ASSERT_REFUSED(text, want);
        }
        for (size_t i = 0; i < ELEMENTSOF(accepted); i++) {
                _cleanup_free_ char *text = NULL;
                const char *reason = NULL;

                if (!valid_mount_point(accepted[i], &reason)) {
                        test_fail(__FILE__, __LINE__, "mount point %s refused: %s", accepted[i], reason);
                        return;
                }
                ASSERT_TRUE(asprintf(&text, "[Disk]\nMountPoint=%s\n", accepted[i]) > 0);
                ASSERT_ACCEPTED(text);
        }
}

TEST(config_verify_wipe_needs_device) {
        _cleanup_(config_done) Config c = {};
        const char *err = NULL;

        ASSERT_OK(config_init(&c));
        c.wipe = true;
        ASSERT_EQ(config_verify(&c, &err), -ERCI_USAGE);
        ASSERT_CONTAINS(err, "Wipe=yes (--wipe) needs a disk");

        ASSERT_OK(free_and_strdup(&c.disk_device, "/dev/vdb"));
        ASSERT_EQ(config_verify(&c, &err), 0);
        ASSERT_TRUE(err == NULL);
}

/* config_load() on a fake root. */

TEST(config_load_main_then_dropins_in_lexical_order) {
        const char *root = test_tmpdir();
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *log = NULL;

        test_write(root, "etc/rootless-ci.conf",
                   "[User]\nName=main\n[Disk]\nMountPoint=/data\n[Daemon]\nReadyTimeoutSec=1\n");
        /* Lexical, not numeric: "9-…" sorts after "10-…" and so wins. */
        test_write(root, "etc/rootless-ci.conf.d/9-late.conf", "[User]\nName=nine\n");
        test_write(root, "etc/rootless-ci.conf.d/10-early.conf", "[User]\nName=ten\n[Daemon]\nReadyTimeoutSec=10\n");
        test_write(root, "etc/rootless-ci.conf.d/50-middle.conf", "[Daemon]\nReadyTimeoutSec=50\n");
        /* Each file may set a key once; across files the later one wins, not an error. */
        test_write(root, "etc/rootless-ci.conf.d/a.conf", "[Agent]\nUnit=a.service\n");
        test_write(root, "etc/rootless-ci.conf.d/b.conf", "[Agent]\nUnit=b.service\n");
        /* Ignored: not *.conf, or dotfiles. Each would be an error if read. */
        test_write(root, "etc/rootless-ci.conf.d/z.conf.bak", "garbage\n");
        test_write(root, "etc/rootless-ci.conf.d/z.conf~", "garbage\n");
        test_write(root, "etc/rootless-ci.conf.d/README", "garbage\n");
        test_write(root, "etc/rootless-ci.conf.d/.conf", "garbage\n");
        test_write(root, "etc/rootless-ci.conf.d/.hidden.conf", "garbage\n");
        test_write(root, "etc/rootless-ci.conf.d/.#z.conf.1234abcd", "garbage\n");

        ASSERT_OK(config_init(&c));
        ASSERT_EQ(load(&c, root, NULL, &log), 0);
        ASSERT_STREQ(log, "");
        ASSERT_STREQ(c.user_name, "nine");
        ASSERT_EQ(c.ready_timeout_sec, 50);
        ASSERT_STREQ(c.agent_unit, "b.service");
        /* Set only in the main file: kept. */
        ASSERT_STREQ(c.mount_point, "/data");
}

TEST(config_load_missing_main_file_is_fine) {
        const char *root = test_tmpdir();
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *log = NULL;

        ASSERT_OK(config_init(&c));
        ASSERT_EQ(load(&c, root, NULL, &log), 0);
        ASSERT_STREQ(c.user_name, "buildkite");

        test_write(root, "etc/rootless-ci.conf.d/10-user.conf", "[User]\nName=dropin\n");
        free(log);
        log = NULL;
        ASSERT_EQ(load(&c, root, NULL, &log), 0);
        ASSERT_STREQ(c.user_name, "dropin");
}

TEST(config_load_resolves_symlinks_inside_the_root) {
        const char *root = test_tmpdir();
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *log = NULL;

        /* An absolute symlink in the tree means the tree's file, never the host's. */
        test_write(root, "usr/share/ci/real.conf", "[User]\nName=linked\n");
        ASSERT_OK(mkdir(test_path(root, "etc"), 0755));
        ASSERT_OK(symlink("/usr/share/ci/real.conf", test_path(root, "etc/rootless-ci.conf")) < 0 ? -errno : 0);

        ASSERT_OK(config_init(&c));
        ASSERT_EQ(load(&c, root, NULL, &log), 0);
        ASSERT_STREQ(c.user_name, "linked");
}

TEST(config_load_error_in_dropin_names_the_dropin) {
        const char *root = test_tmpdir();
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *log = NULL, *want = NULL;

        test_write(root, "etc/rootless-ci.conf", "[User]\nName=main\n");
        test_write(root, "etc/rootless-ci.conf.d/10-ok.conf", "[User]\nName=ok\n");
        test_write(root, "etc/rootless-ci.conf.d/20-bad.conf", "# typo below\n[Disk]\nWipe=yes\nWype=no\n");
        test_write(root, "etc/rootless-ci.conf.d/30-never.conf", "[User]\nName=never\n");

        ASSERT_OK(config_init(&c));
        ASSERT_EQ(load(&c, root, NULL, &log), -ERCI_USAGE);
        ASSERT_TRUE(asprintf(&want, "%s/etc/rootless-ci.conf.d/20-bad.conf:4: unknown key Wype= in [Disk]", root) > 0);
        ASSERT_CONTAINS(log, want);
        /* Nothing after the bad file was read. */
        ASSERT_STREQ(c.user_name, "ok");
}

TEST(config_load_error_in_main_file_names_it) {
        const char *root = test_tmpdir();
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *log = NULL, *want = NULL;

        test_write(root, "etc/rootless-ci.conf", "[Disk]\nFileSystem=zfs\n");

        ASSERT_OK(config_init(&c));
        ASSERT_EQ(load(&c, root, NULL, &log), -ERCI_USAGE);
        ASSERT_TRUE(asprintf(&want, "%s/etc/rootless-ci.conf:2: FileSystem=zfs: must be ext4 or xfs", root) > 0);
        ASSERT_CONTAINS(log, want);
}

TEST(config_load_explicit_file_is_read_alone) {
        const char *root = test_tmpdir();
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *log = NULL, *explicit = NULL;

        test_write(root, "etc/rootless-ci.conf", "[User]\nName=main\n[Disk]\nMountPoint=/data\n");
        test_write(root, "etc/rootless-ci.conf.d/10.conf", "[User]\nName=dropin\n");
        test_write(root, "elsewhere/my.conf", "[User]\nName=explicit\n");
        explicit = strdup(test_path(root, "elsewhere/my.conf"));
        ASSERT_TRUE(explicit);

        /* An absolute --config path is the host's path, whatever the working directory. */
        ASSERT_OK(config_init(&c));
        ASSERT_EQ(load(&c, root, explicit, &log), 0);
        ASSERT_STREQ(log, "");
        ASSERT_STREQ(c.user_name, "explicit");
        ASSERT_STREQ(c.mount_point, "/srv/rootless-ci");
}

TEST(config_load_explicit_relative_path_is_taken_from_the_working_directory) {
        const char *root = test_tmpdir();
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *log = NULL, *cwd = get_current_dir_name();

        ASSERT_TRUE(cwd);
        test_write(root, "conf/my.conf", "[User]\nName=relative\n");
        test_write(root, "sub/.keep", "");
        ASSERT_OK(chdir(test_path(root, "sub")));

        ASSERT_OK(config_init(&c));
        int r = load(&c, NULL, "../conf/my.conf", &log);
        ASSERT_OK(chdir(cwd));
        ASSERT_EQ(r, 0);
        ASSERT_STREQ(c.user_name, "relative");
}

TEST(config_load_explicit_file_must_exist) {
        const char *root = test_tmpdir();
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *log = NULL, *missing = NULL;

        test_write(root, "etc/rootless-ci.conf", "[User]\nName=main\n");
        missing = strdup(test_path(root, "nope.conf"));
        ASSERT_TRUE(missing);

        ASSERT_OK(config_init(&c));
        ASSERT_EQ(load(&c, root, missing, &log), -ERCI_USAGE);
        ASSERT_CONTAINS(log, missing);
        ASSERT_CONTAINS(log, "No such file or directory");
        /* And the main file was not read in its place. */
        ASSERT_STREQ(c.user_name, "buildkite");
}

TEST(config_load_explicit_file_errors_name_it) {
        const char *root = test_tmpdir();
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *log = NULL, *path = NULL, *want = NULL;

        test_write(root, "my.conf", "[User]\nName=Root\n");
        path = strdup(test_path(root, "my.conf"));
        ASSERT_TRUE(path);
        ASSERT_TRUE(asprintf(&want, "%s:2: Name=Root: must be a valid user name", path) > 0);

        ASSERT_OK(config_init(&c));
        ASSERT_EQ(load(&c, NULL, path, &log), -ERCI_USAGE);
        ASSERT_CONTAINS(log, want);
}

TEST(config_load_refuses_huge_file) {
        const char *root = test_tmpdir();
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *log = NULL, *big = NULL;
        size_t n = 1024 * 1024 + 1;

        big = malloc(n + 1);
        ASSERT_TRUE(big);
        memset(big, '#', n);
        big[n] = 0;
        test_write(root, "etc/rootless-ci.conf", big);

        ASSERT_OK(config_init(&c));
        ASSERT_EQ(load(&c, root, NULL, &log), -ERCI_USAGE);
        ASSERT_CONTAINS(log, "rootless-ci.conf: larger than 1 MiB");
}

TEST(config_load_refuses_what_is_not_a_regular_file) {
        const char *root = test_tmpdir();
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *log = NULL, *want = NULL;

        /* A directory named like a drop-in is a mistake to point out, not an I/O failure. */
        test_write(root, "etc/rootless-ci.conf.d/10.conf/x", "");
        ASSERT_OK(config_init(&c));
        ASSERT_EQ(load(&c, root, NULL, &log), -ERCI_USAGE);
        ASSERT_TRUE(asprintf(&want, "%s/etc/rootless-ci.conf.d/10.conf: not a regular file", root) > 0);
        ASSERT_CONTAINS(log, want);

        free(log);
        log = NULL;
        ASSERT_EQ(load(&c, NULL, "/dev/null", &log), -ERCI_USAGE);
        ASSERT_CONTAINS(log, "/dev/null: not a regular file");
}

/* MountPoint=mp against the tree d: the result, and the message in *ret (malloc'd, NULL when fine). */
static int check_mount_point(const char *d, const char *mp, char **ret) {
        _cleanup_(config_done) Config c = {};
        _cleanup_close_ int fd = -1;

        if (config_init(&c) < 0 || free_and_strdup(&c.mount_point, mp) < 0)
                return -ENOMEM;
        fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return config_check_mount_point_path(&c, fd, d, ret);
}

TEST(config_mount_point_that_is_or_goes_through_a_symlink_is_a_usage_error) {
        const char *d = test_tmpdir();
        char p[4096];
        char *msg = NULL;

        test_write(d, "srv/real/ci/.keep", "");
        test_write(d, "etc/x", "");
        snprintf(p, sizeof(p), "%s/srv/link", d);
        ASSERT_OK(symlink("/etc", p));
        snprintf(p, sizeof(p), "%s/srv/real/rel", d);
        ASSERT_OK(symlink("../link", p));

        ASSERT_EQ(check_mount_point(d, "/srv/link/ci", &msg), -ERCI_USAGE);
        ASSERT_CONTAINS(msg, "MountPoint=/srv/link/ci goes through the symlink ");
        ASSERT_CONTAINS(msg, "/srv/link (to /etc)");
        ASSERT_CONTAINS(msg, "Set MountPoint= (--mount-point=) to a path without symlinks");
        free(msg);

        ASSERT_EQ(check_mount_point(d, "/srv/link", &msg), -ERCI_USAGE);
        ASSERT_CONTAINS(msg, "MountPoint=/srv/link is the symlink ");
        free(msg);

        /* Deeper, and a relative target: named as it is written. */
        ASSERT_EQ(check_mount_point(d, "/srv/real/rel/x", &msg), -ERCI_USAGE);
        ASSERT_CONTAINS(msg, "goes through the symlink ");
        ASSERT_CONTAINS(msg, "/srv/real/rel (to ../link)");
        free(msg);

        /* Real directories, and paths that do not exist yet (apply makes them), are fine. */
        msg = NULL;
        ASSERT_EQ(check_mount_point(d, "/srv/real/ci", &msg), 0);
        ASSERT_EQ(check_mount_point(d, "/srv/real/new/ci", &msg), 0);
        ASSERT_EQ(check_mount_point(d, "/srv/rootless-ci", &msg), 0);
        ASSERT_TRUE(msg == NULL);
}

TEST(config_mount_point_on_ground_someone_else_can_write_is_a_usage_error) {
        const char *d = test_tmpdir();
        char p[4096];
        char *msg = NULL;

        test_write(d, "srv/shared/.keep", "");
        test_write(d, "srv/tmp/ci/.keep", "");
        test_write(d, "srv/group/.keep", "");
        test_write(d, "srv/fine/ci/.keep", "");
        test_write(d, "srv/open/ci/.keep", "");
        ASSERT_OK(chmod(test_path(d, "srv/shared"), 0777));
        ASSERT_OK(chmod(test_path(d, "srv/tmp"), 01777));
        ASSERT_OK(chmod(test_path(d, "srv/group"), 0775));
        ASSERT_OK(chmod(test_path(d, "srv/open/ci"), 0757));

        ASSERT_EQ(check_mount_point(d, "/srv/shared/ci", &msg), -ERCI_USAGE);
        snprintf(p, sizeof(p), "MountPoint=/srv/shared/ci: on the way, %s/srv/shared is writable by its group and "
                 "others (mode 0777)", d);
        ASSERT_CONTAINS(msg, p);
        ASSERT_CONTAINS(msg, "could swap a directory on the way and put the data disk");
        ASSERT_CONTAINS(msg, "whose every directory is root's and writable by root only");
        free(msg);

        /* Sticky counts: fstab mounts the path again at every boot, when /tmp/ci may not be there. */
        ASSERT_EQ(check_mount_point(d, "/srv/tmp/ci", &msg), -ERCI_USAGE);
        ASSERT_CONTAINS(msg, "/srv/tmp is writable by its group and others (mode 1777: sticky counts");
        free(msg);

        ASSERT_EQ(check_mount_point(d, "/srv/group/new/ci", &msg), -ERCI_USAGE);
        ASSERT_CONTAINS(msg, "/srv/group is writable by its group (mode 0775)");
        free(msg);

        /* The mount point itself. */
        ASSERT_EQ(check_mount_point(d, "/srv/open/ci", &msg), -ERCI_USAGE);
        snprintf(p, sizeof(p), "MountPoint=/srv/open/ci: %s/srv/open/ci is writable by others (mode 0757)", d);
        ASSERT_CONTAINS(msg, p);
        free(msg);

        if (getuid() == 0) {
                test_write(d, "home/buildkite/data/.keep", "");
                ASSERT_OK(chown(test_path(d, "home/buildkite"), 1001, 1001));
                ASSERT_EQ(check_mount_point(d, "/home/buildkite/data", &msg), -ERCI_USAGE);
                ASSERT_CONTAINS(msg, "/home/buildkite is owned by UID 1001, not root");
                free(msg);
        }

        msg = NULL;
        ASSERT_EQ(check_mount_point(d, "/srv/fine/ci", &msg), 0);
        ASSERT_EQ(check_mount_point(d, "/srv/fine/new/ci", &msg), 0);
        ASSERT_TRUE(msg == NULL);
}

/* config_check_root_tree() on d: the result, the message in *ret. */
static int check_root_tree(const char *d, char **ret) {
        _cleanup_close_ int fd = open(d, O_PATH | O_DIRECTORY | O_CLOEXEC);
        return fd < 0 ? -errno : config_check_root_tree(fd, d, ret);
}

TEST(config_root_tree_that_someone_else_can_change_is_a_usage_error) {
        const char *d = test_tmpdir();
        char *msg = NULL;

        test_write(d, "etc/nsswitch.conf", "passwd: files\n");
        test_write(d, "usr/lib/libnss_files.so.2", "");
        test_write(d, "usr/sbin/nscd", "");
        ASSERT_OK(symlink("usr/lib", test_path(d, "lib")));
        ASSERT_EQ(check_root_tree(d, &msg), 0);
        ASSERT_TRUE(msg == NULL);

        /* Reached through merged /usr's lib -> usr/lib: named where it really is. */
        ASSERT_OK(chmod(test_path(d, "usr/lib"), 0775));
        ASSERT_EQ(check_root_tree(d, &msg), -ERCI_USAGE);
        ASSERT_CONTAINS(msg, "/usr/lib is writable by its group (mode 0775)");
        ASSERT_CONTAINS(msg, "useradd --root, which chroots into the tree");
        ASSERT_CONTAINS(msg, "CVE-2025-32463");
        free(msg);
        ASSERT_OK(chmod(test_path(d, "usr/lib"), 0755));

        ASSERT_OK(chmod(test_path(d, "usr/lib/libnss_files.so.2"), 0666));
        ASSERT_EQ(check_root_tree(d, &msg), -ERCI_USAGE);
        ASSERT_CONTAINS(msg, "/lib/libnss_files.so.2 is writable by its group and others (mode 0666)");
        free(msg);
        ASSERT_OK(chmod(test_path(d, "usr/lib/libnss_files.so.2"), 0644));

        ASSERT_OK(chmod(test_path(d, "usr/sbin/nscd"), 0646));
        ASSERT_EQ(check_root_tree(d, &msg), -ERCI_USAGE);
        ASSERT_CONTAINS(msg, "/usr/sbin/nscd is writable by others (mode 0646)");
        free(msg);
        ASSERT_OK(chmod(test_path(d, "usr/sbin/nscd"), 0755));

        ASSERT_OK(chmod(test_path(d, "etc"), 0775));
        ASSERT_EQ(check_root_tree(d, &msg), -ERCI_USAGE);
        ASSERT_CONTAINS(msg, "/etc is writable by its group (mode 0775)");
        free(msg);
        ASSERT_OK(chmod(test_path(d, "etc"), 0755));

        if (getuid() == 0) {
                ASSERT_OK(chown(test_path(d, "usr"), 1001, 1001));
                ASSERT_EQ(check_root_tree(d, &msg), -ERCI_USAGE);
                ASSERT_CONTAINS(msg, "/usr is owned by UID 1001, not root");
                free(msg);
                ASSERT_OK(chown(test_path(d, "usr"), 0, 0));
        }
        msg = NULL;
        ASSERT_EQ(check_root_tree(d, &msg), 0);
}
