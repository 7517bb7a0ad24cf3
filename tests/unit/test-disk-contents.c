/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "steps/disk/contents.h"
#include "steps/disk/layout.h"
#include "steps/disk/mkfs.h"
#include "tests.h"
#include "util/exec.h"

#define DISK_SIZE (600ULL << 20)

static char *make_image(const char *name) {
        char *p;
        int fd;

        if (asprintf(&p, "%s/%s", test_tmpdir(), name) < 0)
                return NULL;
        fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || ftruncate(fd, (off_t) DISK_SIZE) < 0)
                exit(1);
        close(fd);
        return p;
}

/* mkfs.ext4 into a byte range of an image, as if on the partition there. */
static int mkfs_at(const char *img, uint64_t offset, const char *label, const char *uuid) {
        char *prog = NULL, off[64], *err = NULL;
        int status, r;

        if (exec_find_program("mkfs.ext4", &prog) < 0)
                return -ENOENT;
        snprintf(off, sizeof(off), "offset=%llu", (unsigned long long) offset);
        {
                const char *argv[] = { prog, "-q", "-F", "-E", off, "-L", label, "-U", uuid, img, "100M", NULL };
                r = exec_run(argv, &status, &err);
        }
        free(prog);
        free(err);
        return r < 0 ? r : (status == 0 ? 0 : -EIO);
}

static DiskContents probe(const char *img) {
        DiskContents c = {};
        int fd = open(img, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || disk_contents_probe(fd, img, NULL, 0, &c) < 0)
                test_fail(__FILE__, __LINE__, "probing %s failed", img);
        if (fd >= 0)
                close(fd);
        return c;
}

TEST(contents_blank_image_is_blank) {
        char *img = make_image("blank.img");
        DiskContents c = probe(img);
        ASSERT_EQ(c.verdict, DISK_BLANK);
        ASSERT_EQ(c.found.n, 0);
        disk_contents_done(&c);
        free(img);
}

TEST(contents_our_gpt_without_filesystem_is_ours_half_made) {
        char *img = make_image("half.img");
        PartitionGeometry g;
        DiskContents c;

        ASSERT_OK(layout_plan(img, FILESYSTEM_EXT4, &g));
        ASSERT_OK(layout_write(img, FILESYSTEM_EXT4, &g));
        c = probe(img);
        ASSERT_EQ(c.verdict, DISK_OURS);
        ASSERT_EQ(c.part.start, g.start);
        ASSERT_EQ(c.part.size, g.size);
        ASSERT_TRUE(c.fs_type == NULL);
        disk_contents_done(&c);
        free(img);
}

TEST(contents_our_gpt_with_our_filesystem_is_ours) {
        char *img = make_image("ours.img");
        char uuid[UUID_STRING_MAX];
        PartitionGeometry g;
        DiskContents c;

        ASSERT_OK(layout_plan(img, FILESYSTEM_EXT4, &g));
        ASSERT_OK(layout_write(img, FILESYSTEM_EXT4, &g));
        ASSERT_OK(uuid_new_random(uuid));
        if (mkfs_at(img, g.start, RCI_FS_LABEL, uuid) == -ENOENT) {
                test_skip("mkfs.ext4 not installed");
                return;
        }
        c = probe(img);
        ASSERT_EQ(c.verdict, DISK_OURS);
        ASSERT_STREQ(c.fs_type, "ext4");
        ASSERT_STREQ(c.fs_uuid, uuid);
        disk_contents_done(&c);
        free(img);
}

TEST(contents_our_gpt_with_someone_elses_filesystem_is_foreign) {
        char *img = make_image("other.img");
        char uuid[UUID_STRING_MAX];
        PartitionGeometry g;
        DiskContents c;

        ASSERT_OK(layout_plan(img, FILESYSTEM_EXT4, &g));
        ASSERT_OK(layout_write(img, FILESYSTEM_EXT4, &g));
        ASSERT_OK(uuid_new_random(uuid));
        if (mkfs_at(img, g.start, "photos", uuid) == -ENOENT) {
                test_skip("mkfs.ext4 not installed");
                return;
        }
        c = probe(img);
        ASSERT_EQ(c.verdict, DISK_FOREIGN);
        ASSERT_TRUE(strstr(c.foreign_reason, "labelled") != NULL);
        disk_contents_done(&c);
        free(img);
}

TEST(contents_leftover_where_our_partition_would_go_is_foreign) {
        char *img = make_image("leftover.img");
        char uuid[UUID_STRING_MAX];
        PartitionGeometry g;
        DiskContents c;
        int fd;

        ASSERT_OK(layout_plan(img, FILESYSTEM_EXT4, &g));
        ASSERT_OK(uuid_new_random(uuid));
        /* A filesystem that was in a partition whose table is gone: a whole-disk probe cannot see it. */
        if (mkfs_at(img, g.start, "old", uuid) == -ENOENT) {
                test_skip("mkfs.ext4 not installed");
                return;
        }
        c = probe(img);
        ASSERT_EQ(c.verdict, DISK_BLANK);
        fd = open(img, O_RDONLY | O_CLOEXEC);
        ASSERT_OK(disk_contents_probe_area(fd, &g, &c));
        close(fd);
        ASSERT_EQ(c.verdict, DISK_FOREIGN);
        ASSERT_EQ(c.found.n, 1);
        ASSERT_STREQ(c.found.items[0].label, "old");
        disk_contents_done(&c);
        free(img);
}

TEST(contents_a_stale_kernel_partition_with_data_is_foreign) {
        char *img = make_image("stale.img");
        char uuid[UUID_STRING_MAX];
        KernelPartition kp = { .number = 1, .name = (char *) "loop9p1", .start = 1 << 20, .size = 200 << 20 };
        DiskContents c = {};
        int fd;

        ASSERT_OK(uuid_new_random(uuid));
        if (mkfs_at(img, kp.start, "old", uuid) == -ENOENT) {
                test_skip("mkfs.ext4 not installed");
                return;
        }
        fd = open(img, O_RDONLY | O_CLOEXEC);
        ASSERT_OK(disk_contents_probe(fd, img, &kp, 1, &c));
        close(fd);
        ASSERT_EQ(c.verdict, DISK_FOREIGN);
        ASSERT_TRUE(c.kernel_stale);
        ASSERT_TRUE(strstr(c.foreign_reason, "loop9p1") != NULL);
        disk_contents_done(&c);
        free(img);
}
