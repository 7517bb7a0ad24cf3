/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "tests.h"
#include "util/error.h"
#include "util/log.h"
#include "util/macro.h"

TEST(log_errno_expands_percent_m_and_returns_the_error) {
        _cleanup_free_ char *log = NULL;
        int r1, r2, r3;

        test_capture_stderr_begin();
        r1 = log_error_errno(-ENOENT, "Failed to open %s: %m", "/etc/x");
        r2 = log_error_errno(ENOENT, "positive %m too");
        r3 = log_error_errno(-ERCI_USAGE, "bad: %m (100%% sure, literally %%m)");
        log = test_capture_stderr_end();

        ASSERT_EQ(r1, -ENOENT);
        ASSERT_EQ(r2, -ENOENT);
        ASSERT_EQ(r3, -ERCI_USAGE);
        ASSERT_STREQ(log,
                     "Failed to open /etc/x: No such file or directory\n"
                     "positive No such file or directory too\n"
                     "bad: Invalid usage or configuration (100% sure, literally %m)\n");
}

TEST(log_step_prefix_and_levels) {
        _cleanup_free_ char *log = NULL;
        int r;

        log_set_max_level(LOG_INFO);
        test_capture_stderr_begin();
        log_set_step("disk");
        log_info("probing %s", "/dev/vdb");
        log_set_step(NULL);
        log_warning("no step");
        r = log_debug_errno(-EIO, "hidden: %m");
        log = test_capture_stderr_end();
        log_set_max_level(test_log_level());

        ASSERT_STREQ(log, "disk: probing /dev/vdb\nno step\n");
        /* Below the level nothing is printed, but the error still comes back. */
        ASSERT_EQ(r, -EIO);
}

TEST(log_long_messages_are_cut_not_overflowed) {
        _cleanup_free_ char *log = NULL, *big = NULL;

        big = malloc(5000);
        ASSERT_TRUE(big);
        memset(big, 'x', 4999);
        big[4999] = 0;
        test_capture_stderr_begin();
        log_error("%s %m", big);
        log_error_errno(-EPERM, "%s", big);
        log = test_capture_stderr_end();
        ASSERT_TRUE(strlen(log) > 2000);
        ASSERT_TRUE(strlen(log) < 2 * 2048 + 2);
}

TEST(log_error_to_string) {
        ASSERT_STREQ(error_to_string(-ERCI_USAGE), "Invalid usage or configuration");
        ASSERT_STREQ(error_to_string(-ERCI_REFUSED), "Refused to protect existing data");
        ASSERT_STREQ(error_to_string(-ERCI_FAILED), "Failed");
        ASSERT_STREQ(error_to_string(-EACCES), "Permission denied");
        ASSERT_STREQ(error_to_string(EACCES), "Permission denied");
}

TEST(log_escapes_host_text_and_indents_continuation_lines) {
        _cleanup_free_ char *log = NULL;

        test_capture_stderr_begin();
        log_set_step("disk");
        log_error("mkfs.ext4 failed: %s", "first\ndisk: 0 items failed\x1b]0;owned\x07 \xff größe C:\\x");
        log_set_step(NULL);
        log = test_capture_stderr_end();

        /* The forged line is indented under the real one; the escape sequence and the stray byte are hex. */
        ASSERT_STREQ(log, "disk: mkfs.ext4 failed: first\n"
                          "    disk: 0 items failed\\x1b]0;owned\\x07 \\xff größe C:\\\\x\n");
}
