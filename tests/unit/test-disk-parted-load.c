/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "steps/disk/layout.h"
#include "tests.h"

/*
 * Its own program, so libparted is not loaded yet when the test starts:
 * Debian's libparted runs dmidecode through a shell from its constructor
 * unless PARTED_GPT_APPLE is set; rootless-ci loads it late, with the
 * variable set, and only when it partitions.
 */
TEST(libparted_is_loaded_late_and_never_runs_dmidecode) {
        const char *dir = test_tmpdir();
        char path[4096], marker[4096], fake[4096], img[4096];
        PartitionGeometry g;
        int fd;

        ASSERT_FALSE(layout_libparted_loaded());

        /* A dmidecode that leaves a mark, first on PATH. */
        snprintf(marker, sizeof(marker), "%s/dmidecode-ran", dir);
        snprintf(fake, sizeof(fake), "%s/dmidecode", dir);
        {
                FILE *f = fopen(fake, "we");
                ASSERT_TRUE(f != NULL);
                fprintf(f, "#!/bin/sh\ntouch '%s'\necho 'Apple Inc.'\n", marker);
                fclose(f);
                ASSERT_OK(chmod(fake, 0755));
        }
        snprintf(path, sizeof(path), "%s:%s", dir, getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
        ASSERT_OK(setenv("PATH", path, 1));
        unsetenv("PARTED_GPT_APPLE");

        snprintf(img, sizeof(img), "%s/disk.img", dir);
        fd = open(img, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(ftruncate(fd, 1LL << 30));
        close(fd);

        ASSERT_OK(layout_plan(img, FILESYSTEM_EXT4, &g));
        ASSERT_TRUE(layout_libparted_loaded());
        ASSERT_TRUE(access(marker, F_OK) < 0);
        /* The variable was only there for the loading. */
        ASSERT_TRUE(getenv("PARTED_GPT_APPLE") == NULL);
}
