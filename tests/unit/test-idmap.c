/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests.h"
#include "util/idmap.h"
#include "util/macro.h"

/*
 * uid_map/gid_map text as the parser reads it, and the reader of a real
 * process's maps. The /proc/PID/status parsers are test-proc.c's, the judge
 * of the rootless layout test-daemon-userns.c's.
 */

/* As the kernel prints a map: "%10u %10u %10u\n" per line. */
#define ROOTLESS_MAP "         0       1000          1\n         1     100000      65536\n"

static int parse(const char *text, IdMap *m, unsigned *line) {
        return idmap_parse(text, strlen(text), m, line);
}

TEST(idmap_parses_the_kernels_padded_format) {
        IdMap m;
        unsigned line = 99;

        ASSERT_EQ(parse(ROOTLESS_MAP, &m, &line), 0);
        ASSERT_EQ(line, 0);
        ASSERT_EQ(m.n, 2);
        ASSERT_EQ(m.extents[0].inside, 0);
        ASSERT_EQ(m.extents[0].outside, 1000);
        ASSERT_EQ(m.extents[0].count, 1);
        ASSERT_EQ(m.extents[1].inside, 1);
        ASSERT_EQ(m.extents[1].outside, 100000);
        ASSERT_EQ(m.extents[1].count, 65536);

        /* Tabs, no padding, no final newline: still the same map. */
        ASSERT_EQ(parse("0\t1000\t1\n1 100000 65536", &m, NULL), 0);
        ASSERT_EQ(m.n, 2);
        ASSERT_EQ(m.extents[1].count, 65536);

        /* The initial namespace's map, the largest single extent there is. */
        ASSERT_EQ(parse("         0          0 4294967295\n", &m, NULL), 0);
        ASSERT_EQ(m.n, 1);
        ASSERT_EQ(m.extents[0].count, 4294967295U);

        ASSERT_EQ(parse("", &m, NULL), 0);
        ASSERT_EQ(m.n, 0);
}

TEST(idmap_refuses_malformed_lines_naming_the_line) {
        static const char *const bad[] = {
                "0 1000\n",                     /* two fields */
                "0 1000 1 5\n",                 /* four */
                "a b c\n",
                "0x0 1000 1\n",
                "-1 1000 1\n",
                "0,1000,1\n",
                "01000 1\n",                    /* fields run together */
                "0 1000 0\n",                   /* count 0 */
                "0 4294967296 1\n",             /* past 32 bits */
                "0 00000000001000 1\n",         /* more than 10 digits */
                "4294967295 1 2\n",             /* inside range wraps */
                "1 4294967295 2\n",             /* outside range wraps */
                "\n",                           /* an empty line */
                "0 1000 1 # root\n",
        };
        IdMap m;
        unsigned line;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int r = parse(bad[i], &m, &line);
                if (r != -EBADMSG)
                        test_fail(__FILE__, __LINE__, "\"%s\" parsed to %d, not -EBADMSG", bad[i], r);
                ASSERT_EQ(r, -EBADMSG);
                ASSERT_EQ(line, 1);
        }

        /* The line at fault is named, here the third. */
        ASSERT_EQ(parse("0 1000 1\n1 100000 65536\n65537 x 1\n", &m, &line), -EBADMSG);
        ASSERT_EQ(line, 3);
        /* A blank line between two good ones. */
        ASSERT_EQ(parse("0 1000 1\n\n1 100000 65536\n", &m, &line), -EBADMSG);
        ASSERT_EQ(line, 2);
}

TEST(idmap_refuses_overlapping_extents) {
        IdMap m;
        unsigned line;

        /* Container IDs mapped twice. */
        ASSERT_EQ(parse("0 1000 1\n1 100000 65536\n65536 200000 1\n", &m, &line), -EBADMSG);
        ASSERT_EQ(line, 3);
        /* Two container IDs onto one host ID. */
        ASSERT_EQ(parse("0 100000 1\n1 100000 65536\n", &m, &line), -EBADMSG);
        ASSERT_EQ(line, 2);
        /* Adjacent is fine. */
        ASSERT_EQ(parse("0 1000 1\n1 100000 65536\n65537 165536 10\n", &m, &line), 0);
        ASSERT_EQ(m.n, 3);
}

static char *map_of_lines(size_t n) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        if (!f)
                return NULL;
        fprintf(f, "%10u %10u %10u\n", 0U, 1000U, 1U);
        for (size_t i = 1; i < n; i++)
                fprintf(f, "%10u %10u %10u\n", (unsigned) (i * 10), (unsigned) (100000 + i * 10), 10U);
        fclose(f);
        return buf;
}

TEST(idmap_takes_340_lines_and_refuses_341) {
        _cleanup_free_ char *full = map_of_lines(IDMAP_EXTENTS_MAX), *over = map_of_lines(IDMAP_EXTENTS_MAX + 1);
        static IdMap m;
        unsigned line;

        ASSERT_TRUE(full && over);
        ASSERT_TRUE(strlen(full) <= IDMAP_TEXT_MAX);
        ASSERT_EQ(parse(full, &m, &line), 0);
        ASSERT_EQ(m.n, 340);
        ASSERT_EQ(parse(over, &m, &line), -E2BIG);
        ASSERT_EQ(line, 341);
}

TEST(process_ids_read_reads_this_process) {
        _cleanup_close_ int fd = open("/proc/self", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        static ProcessIds p;
        const char *file = "x";

        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(process_ids_read(fd, &p, &file), 0);
        ASSERT_TRUE(file == NULL);
        ASSERT_STREQ(p.comm, "test-idmap");
        ASSERT_EQ(p.uids[0], getuid());
        ASSERT_EQ(p.uids[1], geteuid());
        ASSERT_EQ(p.gids[0], getgid());
        ASSERT_TRUE(p.uid_map.n >= 1);
        ASSERT_TRUE(p.gid_map.n >= 1);
}
