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
 * uid_map/gid_map and /proc/PID/status text as the parsers read them, and
 * the reader of a real process's files (the judge of the rootless layout:
 * test-daemon-userns.c).
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

TEST(status_ids_from_proc_status_text) {
        static const char status[] = "Name:\tdockerd\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\n"
                                     "Uid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1001\t1002\t1003\nFDSize:\t64\n";
        uint32_t ids[4];

        ASSERT_EQ(proc_status_ids(status, "Uid:", ids), 0);
        ASSERT_EQ(ids[0], 1000);
        ASSERT_EQ(ids[3], 1000);
        ASSERT_EQ(proc_status_ids(status, "Gid:", ids), 0);
        ASSERT_EQ(ids[1], 1001);
        ASSERT_EQ(ids[3], 1003);
        ASSERT_EQ(proc_status_ids(status, "Groups:", ids), -ENOENT);
        ASSERT_EQ(proc_status_ids("Uid:\t1000\t1000\t1000\n", "Uid:", ids), -EBADMSG);
        ASSERT_EQ(proc_status_ids("Uid:\t1000\t1000\t1000\t1000\t7\n", "Uid:", ids), -EBADMSG);
        ASSERT_EQ(proc_status_ids("Uid:1000\t1000\t1000\t1000\n", "Uid:", ids), -EBADMSG);
        /* Only a line that starts with the key counts. */
        ASSERT_EQ(proc_status_ids("Name:\tUid: 0 0 0 0\n", "Uid:", ids), -ENOENT);
}

TEST(status_groups_from_proc_status_text) {
        _cleanup_free_ uint32_t *g = NULL;
        size_t n = 99;

        ASSERT_EQ(proc_status_groups("Name:\tsleep\nGroups:\t6 27 1600 \nNStgid:\t7\n", &g, &n), 0);
        ASSERT_EQ(n, 3);
        ASSERT_EQ(g[0], 6);
        ASSERT_EQ(g[2], 1600);
        free(g);
        g = NULL;
        /* No supplementary groups: the kernel prints the key and a tab. */
        ASSERT_EQ(proc_status_groups("Groups:\t\nNStgid:\t7\n", &g, &n), 0);
        ASSERT_EQ(n, 0);
        ASSERT_TRUE(g == NULL);
        ASSERT_EQ(proc_status_groups("Name:\tx\n", &g, &n), -ENOENT);
        ASSERT_EQ(proc_status_groups("Groups:\t6 x7\n", &g, &n), -EBADMSG);
        ASSERT_EQ(proc_status_groups("Groups:\t6x 7\n", &g, &n), -EBADMSG);
}

static void fake_process(const char *proc, unsigned pid, const char *name, unsigned uid, const char *groups) {
        char rel[64], text[256];

        snprintf(rel, sizeof(rel), "%u/status", pid);
        snprintf(text, sizeof(text), "Name:\t%s\nUid:\t%u\t%u\t%u\t%u\nGid:\t%u\t%u\t%u\t%u\nGroups:\t%s\n", name,
                 uid, uid, uid, uid, uid, uid, uid, uid, groups);
        test_write(proc, rel, text);
}

/* Every process of the UID that holds one of the GIDs, from the Groups: line of a (fake) /proc. */
TEST(group_holders_found_in_proc) {
        const char *proc = test_tmpdir();
        const gid_t privileged[] = { 6, 999 };
        _cleanup_free_ GroupHolder *h = NULL;
        _cleanup_close_ int fd = -1;
        size_t n = 0, seen = 0;

        fake_process(proc, 100, "systemd", 1600, "6 1600 ");
        fake_process(proc, 200, "tmux: server", 1600, "44 999 ");
        fake_process(proc, 300, "bash", 1600, "1600 ");
        fake_process(proc, 400, "sshd", 1500, "6 ");          /* someone else's */
        test_write(proc, "self/status", "Name:\tnot a pid\n");  /* not a process directory */
        test_write(proc, "500/comm", "gone\n");                 /* exited while /proc was read */
        fd = open(proc, O_PATH | O_DIRECTORY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);

        ASSERT_EQ(group_holders_find(fd, 1600, privileged, ELEMENTSOF(privileged), &h, &n, &seen), 0);
        ASSERT_EQ(seen, 3);
        ASSERT_EQ(n, 2);
        for (size_t i = 0; i < n; i++) {
                if (h[i].pid == 100) {
                        ASSERT_STREQ(h[i].comm, "systemd");
                        ASSERT_EQ(h[i].gid, 6);
                } else {
                        ASSERT_EQ(h[i].pid, 200);
                        ASSERT_STREQ(h[i].comm, "tmux: server");
                        ASSERT_EQ(h[i].gid, 999);
                }
        }
        free(h);
        h = NULL;

        /* A primary or effective GID counts as much as a supplementary group. */
        test_write(proc, "300/status", "Name:\tsg\nUid:\t1600\t1600\t1600\t1600\nGid:\t1600\t6\t6\t6\nGroups:\t\n");
        ASSERT_EQ(group_holders_find(fd, 1600, privileged, ELEMENTSOF(privileged), &h, &n, NULL), 0);
        ASSERT_EQ(n, 3);
        free(h);
        h = NULL;

        /* A status that does not parse is an error, never a process passed over. */
        test_write(proc, "300/status", "Name:\tbash\nUid:\t1600\n");
        ASSERT_EQ(group_holders_find(fd, 1600, privileged, ELEMENTSOF(privileged), &h, &n, NULL), -EBADMSG);
}

/* The live reader: this process holds its own GIDs, and nothing it does not. */
TEST(pid_holds_gid_reads_a_live_process) {
        gid_t mine = getegid(), other = (gid_t) 4242424;
        gid_t found = (gid_t) -1;

        ASSERT_EQ(pid_holds_gid(getpid(), &mine, 1, &found), 1);
        ASSERT_EQ(found, mine);
        ASSERT_EQ(pid_holds_gid(getpid(), &other, 1, NULL), 0);
        ASSERT_EQ(pid_holds_gid(0, &mine, 1, NULL), 0);
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
