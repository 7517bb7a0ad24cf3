/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "steps/disk/format.h"
#include "steps/disk/identify.h"
#include "steps/disk/layout.h"
#include "steps/disk/mkfs.h"
#include "tests.h"
#include "util/clock.h"
#include "util/exec.h"

TEST(format_bytes_uses_binary_units) {
        char b[FORMAT_BYTES_MAX];
        ASSERT_STREQ(format_bytes(b, sizeof(b), 17), "17 B");
        ASSERT_STREQ(format_bytes(b, sizeof(b), 4096), "4 KiB");
        ASSERT_STREQ(format_bytes(b, sizeof(b), 512ULL << 20), "512 MiB");
        ASSERT_STREQ(format_bytes(b, sizeof(b), 100ULL << 30), "100 GiB");
        ASSERT_STREQ(format_bytes(b, sizeof(b), 3ULL << 39), "1.5 TiB");
        /* Just below 100 GiB must not print as 100.0 or 99.99. */
        ASSERT_STREQ(format_bytes(b, sizeof(b), (100ULL << 30) - 512), "100 GiB");
}

TEST(partition_names_add_p_after_a_digit) {
        char *s;
        ASSERT_STREQ((s = disk_partition_name("sdb", 1)), "sdb1");
        free(s);
        ASSERT_STREQ((s = disk_partition_name("nvme0n1", 1)), "nvme0n1p1");
        free(s);
        ASSERT_STREQ((s = disk_partition_name("loop3", 12)), "loop3p12");
        free(s);
        ASSERT_STREQ((s = disk_partition_name("vdb", 2)), "vdb2");
        free(s);
}

TEST(uuids_are_random_version_4) {
        char a[UUID_STRING_MAX], b[UUID_STRING_MAX];
        ASSERT_OK(uuid_new_random(a));
        ASSERT_OK(uuid_new_random(b));
        ASSERT_TRUE(uuid_string_valid(a));
        ASSERT_TRUE(strcmp(a, b) != 0);
        ASSERT_EQ(a[14], '4');
        ASSERT_TRUE(strchr("89ab", a[19]) != NULL);
        ASSERT_FALSE(uuid_string_valid("0b7d3a2c-1111-4e0f-9d7a-5d1c2e3f4a5"));
        ASSERT_FALSE(uuid_string_valid("0b7d3a2c-1111-4e0f-9d7a-5d1c2e3f4a5g"));
        ASSERT_FALSE(uuid_string_valid("0b7d3a2c11111-4e0f-9d7a-5d1c2e3f4a5b"));
}

static bool argv_has(const char *const *argv, const char *s) {
        for (; *argv; argv++)
                if (strcmp(*argv, s) == 0)
                        return true;
        return false;
}

TEST(mkfs_ext4_gets_label_uuid_and_no_force) {
        const char *argv[16];
        char arg[64];
        int n = mkfs_argv(FILESYSTEM_EXT4, "/sbin/mkfs.ext4", "/dev/vdb1", "0b7d3a2c-1111-4e0f-9d7a-5d1c2e3f4a5b",
                          argv, arg, sizeof(arg));
        ASSERT_TRUE(n > 0);
        ASSERT_STREQ(argv[0], "/sbin/mkfs.ext4");
        ASSERT_STREQ(argv[n - 1], "/dev/vdb1");
        ASSERT_TRUE(argv_has(argv, "rootless-ci"));
        ASSERT_TRUE(argv_has(argv, "0b7d3a2c-1111-4e0f-9d7a-5d1c2e3f4a5b"));
        ASSERT_FALSE(argv_has(argv, "-F"));
        ASSERT_FALSE(argv_has(argv, "-f"));
}

TEST(mkfs_xfs_gets_ftype_1) {
        const char *argv[16];
        char arg[64];
        int n = mkfs_argv(FILESYSTEM_XFS, "/sbin/mkfs.xfs", "/dev/vdb1", "0b7d3a2c-1111-4e0f-9d7a-5d1c2e3f4a5b",
                          argv, arg, sizeof(arg));
        ASSERT_TRUE(n > 0);
        ASSERT_TRUE(argv_has(argv, "ftype=1"));
        ASSERT_TRUE(argv_has(argv, "uuid=0b7d3a2c-1111-4e0f-9d7a-5d1c2e3f4a5b"));
        ASSERT_TRUE(strlen(RCI_FS_LABEL) <= 12);  /* xfs labels */
        ASSERT_FALSE(argv_has(argv, "-f"));
}

TEST(mkfs_refuses_a_malformed_uuid) {
        const char *argv[16];
        char arg[64];
        ASSERT_TRUE(mkfs_argv(FILESYSTEM_EXT4, "/sbin/mkfs.ext4", "/dev/vdb1", "-F", argv, arg, sizeof(arg)) < 0);
}

TEST(libparted_is_never_told_to_fix) {
        static const PedExceptionOption offers[] = {
                PED_EXCEPTION_FIX | PED_EXCEPTION_IGNORE, PED_EXCEPTION_FIX | PED_EXCEPTION_CANCEL,
                PED_EXCEPTION_IGNORE_CANCEL, PED_EXCEPTION_YES_NO, PED_EXCEPTION_YES_NO_CANCEL,
                PED_EXCEPTION_RETRY_IGNORE_CANCEL, PED_EXCEPTION_OK, PED_EXCEPTION_OK_CANCEL,
                PED_EXCEPTION_FIX, PED_EXCEPTION_IGNORE,
        };
        for (size_t i = 0; i < sizeof(offers) / sizeof(offers[0]); i++) {
                PedExceptionOption a = layout_exception_answer(PED_EXCEPTION_ERROR, offers[i]);
                ASSERT_TRUE(a != PED_EXCEPTION_FIX && a != PED_EXCEPTION_YES && a != PED_EXCEPTION_IGNORE &&
                            a != PED_EXCEPTION_RETRY);
                ASSERT_TRUE(a == PED_EXCEPTION_UNHANDLED || (a & offers[i]));
        }
        ASSERT_EQ(layout_exception_answer(PED_EXCEPTION_WARNING, PED_EXCEPTION_FIX | PED_EXCEPTION_CANCEL), PED_EXCEPTION_CANCEL);
        ASSERT_EQ(layout_exception_answer(PED_EXCEPTION_WARNING, PED_EXCEPTION_YES_NO), PED_EXCEPTION_NO);
}

TEST(exec_finds_programs_only_in_system_directories) {
        char *p = NULL;
        ASSERT_OK(exec_find_program("sh", &p));
        ASSERT_TRUE(strncmp(p, "/usr/", 5) == 0 || strncmp(p, "/bin/", 5) == 0 || strncmp(p, "/sbin/", 6) == 0);
        free(p);
        ASSERT_EQ(exec_find_program("rootless-ci-no-such-program", &p), -ENOENT);
        ASSERT_EQ(exec_find_program("../bin/sh", &p), -EINVAL);
}

TEST(exec_reports_status_and_stderr_with_a_clean_environment) {
        const char *argv[] = { "/bin/sh", "-c", "echo \"HOME=$HOME PATH=$PATH\" >&2; echo out; exit 3", NULL };
        char *err = NULL;
        int status = -1;

        setenv("HOME", "/nonexistent-home", 1);
        ASSERT_OK(exec_run(argv, &status, &err));
        ASSERT_EQ(status, 3);
        /* stdout went to /dev/null, and nothing of our environment leaked. */
        ASSERT_STREQ(err, "HOME= PATH=/usr/sbin:/usr/bin:/sbin:/bin");
        free(err);
}

TEST(exec_reports_a_signal_as_128_plus_n) {
        const char *argv[] = { "/bin/sh", "-c", "kill -9 $$", NULL };
        int status = -1;
        ASSERT_OK(exec_run(argv, &status, NULL));
        ASSERT_EQ(status, 128 + 9);
}

TEST(exec_gives_the_child_no_stdin) {
        const char *argv[] = { "/bin/sh", "-c", "cat >&2", NULL };
        char *err = NULL;
        int status = -1;
        ASSERT_OK(exec_run(argv, &status, &err));
        ASSERT_EQ(status, 0);
        ASSERT_STREQ(err, "");
        free(err);
}

TEST(exec_refuses_a_relative_program) {
        const char *argv[] = { "sh", NULL };
        int status;
        ASSERT_EQ(exec_run(argv, &status, NULL), -EINVAL);
}

TEST(exec_capture_collects_stdout_and_stderr_as_nobody) {
        const char *argv[] = { "/bin/sh", "-c", "echo \"out $(id -u):$(id -g) groups=$(id -G) HOME=$HOME\"; echo err >&2", NULL };
        char *out = NULL, want[128];
        int status = -1;

        setenv("HOME", "/nonexistent-home", 1);
        ASSERT_OK(exec_capture_as(argv, 65534, 65534, 10000, &status, &out));
        ASSERT_EQ(status, 0);
        /* As root it gives up root and every group; anyone else runs it as themselves. */
        if (geteuid() == 0)
                snprintf(want, sizeof(want), "out 65534:65534 groups=65534 HOME=\nerr\n");
        else
                snprintf(want, sizeof(want), "out %u:%u groups=", (unsigned) getuid(), (unsigned) getgid());
        if (geteuid() == 0)
                ASSERT_STREQ(out, want);
        else
                ASSERT_TRUE(strncmp(out, want, strlen(want)) == 0);
        free(out);
}

TEST(exec_capture_gains_nothing_from_a_setuid_bit) {
        const char *argv[] = { "/bin/sh", "-c", "grep NoNewPrivs /proc/self/status", NULL };
        char *out = NULL;
        int status = -1;

        ASSERT_OK(exec_capture_as(argv, 65534, 65534, 10000, &status, &out));
        ASSERT_EQ(status, 0);
        ASSERT_CONTAINS(out, "NoNewPrivs:\t1");
        free(out);
}

TEST(exec_capture_kills_a_program_that_hangs) {
        const char *argv[] = { "/bin/sh", "-c", "echo started; exec sleep 30", NULL };
        unsigned long long t0 = now_usec();
        char *out = NULL;
        int status = -1;

        ASSERT_OK(exec_capture_as(argv, 65534, 65534, 300, &status, &out));
        ASSERT_EQ(status, 128 + 9);
        ASSERT_STREQ(out, "started\n");
        ASSERT_TRUE(now_usec() - t0 < 5ULL * 1000000ULL);
        free(out);
}
