/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "steps/disk/layout.h"
#include "steps/disk/mkfs.h"
#include "steps/disk/probe.h"
#include "tests.h"
#include "util/exec.h"

/* Disk images are sparse files: libblkid and libparted work on them as on disks, without root. */
static char *make_image(const char *name, unsigned long long size) {
        char *p;
        int fd;

        if (asprintf(&p, "%s/%s", test_tmpdir(), name) < 0)
                return NULL;
        fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || ftruncate(fd, (off_t) size) < 0) {
                free(p);
                return NULL;
        }
        close(fd);
        return p;
}

static bool has_type(const SignatureList *l, const char *type) {
        for (size_t i = 0; i < l->n; i++)
                if (strcmp(l->items[i].type, type) == 0)
                        return true;
        return false;
}

static size_t count_type(const SignatureList *l, const char *type) {
        size_t n = 0;
        for (size_t i = 0; i < l->n; i++)
                n += strcmp(l->items[i].type, type) == 0;
        return n;
}

TEST(probe_blank_image_finds_nothing) {
        char *img = make_image("blank.img", 1ULL << 30);
        SignatureList l = {};
        int fd = open(img, O_RDONLY | O_CLOEXEC);

        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(probe_signatures(fd, 0, 0, img, &l));
        ASSERT_EQ(l.n, 0);
        close(fd);
        signature_list_done(&l);
        free(img);
}

TEST(probe_unreadable_device_is_not_blank) {
        char *img = make_image("wo.img", 1ULL << 30);
        SignatureList l = {};
        /* Reads fail on a write-only descriptor, as on a failing disk. */
        int fd = open(img, O_WRONLY | O_CLOEXEC);

        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(probe_signatures(fd, 0, 0, "wo.img", &l));
        ASSERT_TRUE(l.n > 0);
        ASSERT_TRUE(l.items[0].error);
        close(fd);
        signature_list_done(&l);
        free(img);
}

TEST(layout_is_one_aligned_partition_spanning_the_disk) {
        char *img = make_image("gpt.img", 1ULL << 30);
        PartitionGeometry g;

        ASSERT_OK(layout_plan(img, FILESYSTEM_EXT4, &g));
        ASSERT_EQ(g.start, 1024 * 1024);
        ASSERT_EQ(g.start % (1024 * 1024), 0);
        /* Up to the backup GPT (33 sectors), less at most one alignment unit. */
        ASSERT_TRUE(g.start + g.size <= (1ULL << 30) - 33 * 512);
        ASSERT_TRUE(g.start + g.size > (1ULL << 30) - 2 * 1024 * 1024);
        free(img);
}

TEST(layout_writes_our_gpt_and_probe_reads_it_back) {
        char *img = make_image("gpt2.img", 1ULL << 30);
        PartitionGeometry g;
        PartitionTable t = {};
        SignatureList l = {};
        int fd;

        ASSERT_OK(layout_plan(img, FILESYSTEM_XFS, &g));
        ASSERT_OK(layout_write(img, FILESYSTEM_XFS, &g));

        fd = open(img, O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(probe_partition_table(fd, &t));
        ASSERT_STREQ(t.type, "gpt");
        ASSERT_EQ(t.n_parts, 1);
        ASSERT_EQ(t.parts[0].number, 1);
        ASSERT_STREQ(t.parts[0].name, RCI_PARTITION_NAME);
        ASSERT_STREQ(t.parts[0].type, GPT_TYPE_LINUX_DATA);
        ASSERT_EQ(t.parts[0].start, g.start);
        ASSERT_EQ(t.parts[0].size, g.size);

        /* Every signature, not the first: primary and backup GPT headers and the protective MBR. */
        ASSERT_OK(probe_signatures(fd, 0, 0, img, &l));
        ASSERT_EQ(count_type(&l, "gpt"), 2);
        ASSERT_TRUE(has_type(&l, "PMBR"));
        ASSERT_EQ(l.n, 3);
        signature_list_done(&l);

        /* The partition itself is blank. */
        ASSERT_OK(probe_signatures(fd, g.start, g.size, "p1", &l));
        ASSERT_EQ(l.n, 0);
        close(fd);
        partition_table_done(&t);
        free(img);
}

TEST(layout_refuses_to_write_another_geometry_than_probed) {
        char *img = make_image("gpt3.img", 1ULL << 30);
        PartitionGeometry g;
        SignatureList l = {};
        int fd;

        ASSERT_OK(layout_plan(img, FILESYSTEM_EXT4, &g));
        g.start += 4096;
        ASSERT_TRUE(layout_write(img, FILESYSTEM_EXT4, &g) < 0);
        fd = open(img, O_RDONLY | O_CLOEXEC);
        ASSERT_OK(probe_signatures(fd, 0, 0, img, &l));
        ASSERT_EQ(l.n, 0);
        close(fd);
        signature_list_done(&l);
        free(img);
}

TEST(probe_finds_a_backup_gpt_when_the_primary_is_gone) {
        char *img = make_image("gpt4.img", 1ULL << 30);
        static const char zeros[512];
        PartitionGeometry g;
        SignatureList l = {};
        int fd;

        ASSERT_OK(layout_plan(img, FILESYSTEM_EXT4, &g));
        ASSERT_OK(layout_write(img, FILESYSTEM_EXT4, &g));
        fd = open(img, O_RDWR | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        /* Erase the protective MBR and the primary header: only the backup at the end is left. */
        ASSERT_EQ(pwrite(fd, zeros, sizeof(zeros), 0), 512);
        ASSERT_EQ(pwrite(fd, zeros, sizeof(zeros), 512), 512);
        ASSERT_OK(probe_signatures(fd, 0, 0, img, &l));
        ASSERT_TRUE(l.n >= 1);
        ASSERT_TRUE(has_type(&l, "gpt"));
        close(fd);
        signature_list_done(&l);
        free(img);
}

TEST(mkfs_makes_our_filesystem_and_wipe_destroys_it) {
        char *img = make_image("fs.img", 512ULL << 20), *prog = NULL;
        char uuid[UUID_STRING_MAX], *type = NULL, *label = NULL, *fsuuid = NULL;
        SignatureList l = {}, destroyed = {};
        int fd;

        if (exec_find_program("mkfs.ext4", &prog) < 0) {
                test_skip("mkfs.ext4 not installed");
                return;
        }
        free(prog);
        ASSERT_OK(uuid_new_random(uuid));
        ASSERT_OK(mkfs_make(FILESYSTEM_EXT4, img, uuid));

        fd = open(img, O_RDWR | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(probe_filesystem(fd, 0, 0, NULL, &type, &label, &fsuuid));
        ASSERT_STREQ(type, "ext4");
        ASSERT_STREQ(label, RCI_FS_LABEL);
        ASSERT_STREQ(fsuuid, uuid);
        free(type), free(label), free(fsuuid);
        /* The converged run's probe: ext4's prober alone finds it; another type's finds nothing. */
        ASSERT_OK(probe_filesystem(fd, 0, 0, "ext4", &type, &label, &fsuuid));
        ASSERT_STREQ(type, "ext4");
        ASSERT_STREQ(fsuuid, uuid);
        free(type), free(label), free(fsuuid);
        ASSERT_EQ(probe_filesystem(fd, 0, 0, "xfs", &type, &label, &fsuuid), -ENODATA);
        type = label = fsuuid = NULL;
        ASSERT_OK(probe_signatures(fd, 0, 0, img, &l));
        ASSERT_EQ(l.n, 1);
        ASSERT_STREQ(l.items[0].usage, "filesystem");
        ASSERT_STREQ(l.items[0].label, RCI_FS_LABEL);
        signature_list_done(&l);

        ASSERT_OK(wipe_signatures(fd, 0, 0, img, &destroyed));
        ASSERT_EQ(destroyed.n, 1);
        ASSERT_STREQ(destroyed.items[0].type, "ext4");
        ASSERT_OK(probe_signatures(fd, 0, 0, img, &l));
        ASSERT_EQ(l.n, 0);
        close(fd);
        signature_list_done(&destroyed);
        free(type);
        free(label);
        free(fsuuid);
        free(img);
}

TEST(mkfs_failure_is_reported_not_ignored) {
        char uuid[UUID_STRING_MAX], *prog = NULL;
        if (exec_find_program("mkfs.ext4", &prog) < 0) {
                test_skip("mkfs.ext4 not installed");
                return;
        }
        free(prog);
        ASSERT_OK(uuid_new_random(uuid));
        ASSERT_TRUE(mkfs_make(FILESYSTEM_EXT4, "/nonexistent/rci.img", uuid) < 0);
}
