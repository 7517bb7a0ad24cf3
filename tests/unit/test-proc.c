/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests.h"
#include "util/macro.h"
#include "util/proc.h"

/* The one reader of /proc/PID/status (util/proc.c): its parsers, its /proc scan, its live readers. */

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

TEST(status_name_is_printable_and_cut) {
        char name[17];

        proc_status_name("Umask:\t0022\nName:\tdockerd\nState:\tS\n", name, sizeof(name));
        ASSERT_STREQ(name, "dockerd");
        proc_status_name("Name:\t  rootlesskit\n", name, sizeof(name));
        ASSERT_STREQ(name, "rootlesskit");
        /* A command name is the process's to choose: nothing unprintable reaches a message. */
        proc_status_name("Name:\tevil\033[2J\n", name, sizeof(name));
        ASSERT_STREQ(name, "evil?[2J");
        proc_status_name("Name:\tabcdefghijklmnopqrstuvwxyz\n", name, 8);
        ASSERT_STREQ(name, "abcdefg");
        proc_status_name("Uid:\t0 0 0 0\n", name, sizeof(name));
        ASSERT_STREQ(name, "");
}

typedef struct Scan {
        pid_t pids[8];
        size_t n;
        pid_t stop_at;
} Scan;

static int scan_note(void *userdata, pid_t pid, int proc_fd, const ProcessCreds *c) {
        Scan *s = userdata;
        struct stat st;

        /* The fd is the process's own /proc directory. */
        if (fstatat(proc_fd, "status", &st, 0) < 0 || c->comm[0] == 0)
                return -EIO;
        if (s->n < ELEMENTSOF(s->pids))
                s->pids[s->n++] = pid;
        return pid == s->stop_at ? 7 : 0;
}

TEST(proc_scan_uid_visits_the_users_processes_and_stops_when_asked) {
        const char *proc = test_tmpdir();
        _cleanup_close_ int fd = -1;
        Scan s = {};

        fake_process(proc, 100, "systemd", 1600, "1600 ");
        fake_process(proc, 200, "sshd", 1500, "");       /* someone else's */
        fake_process(proc, 300, "dockerd", 1600, "");
        test_write(proc, "self/status", "Name:\tnot a pid\n");
        test_write(proc, "0/status", "Name:\tno pid 0\nUid:\t1600\t1600\t1600\t1600\n");
        test_write(proc, "400/comm", "gone\n");           /* exited while /proc was read */
        fd = open(proc, O_PATH | O_DIRECTORY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);

        ASSERT_EQ(proc_scan_uid(fd, 1600, scan_note, &s), 0);
        ASSERT_EQ(s.n, 2);
        ASSERT_TRUE((s.pids[0] == 100 && s.pids[1] == 300) || (s.pids[0] == 300 && s.pids[1] == 100));

        s = (Scan) { .stop_at = 300 };
        ASSERT_EQ(proc_scan_uid(fd, 1600, scan_note, &s), 7);
        ASSERT_EQ(s.pids[s.n - 1], 300);

        /* Any of the four UIDs counts (a set-user-ID program keeps the user's as its saved UID). */
        test_write(proc, "200/status", "Name:\tsu\nUid:\t0\t0\t1600\t0\nGid:\t1\t1\t1\t1\nGroups:\t\n");
        s = (Scan) {};
        ASSERT_EQ(proc_scan_uid(fd, 1600, scan_note, &s), 0);
        ASSERT_EQ(s.n, 3);
        s = (Scan) {};
        ASSERT_EQ(proc_scan_uid(fd, 0, scan_note, &s), 0);
        ASSERT_EQ(s.n, 1);
        ASSERT_EQ(s.pids[0], 200);

        /* A status that does not parse is an error, never a process passed over. */
        test_write(proc, "300/status", "Name:\tdockerd\nUid:\t1600\n");
        s = (Scan) {};
        ASSERT_EQ(proc_scan_uid(fd, 1600, scan_note, &s), -EBADMSG);
}

TEST(process_creds_read_pid_reads_a_live_process_and_says_when_it_is_gone) {
        _cleanup_(process_creds_done) ProcessCreds c = {};
        int status;
        pid_t pid;

        ASSERT_EQ(process_creds_read_pid(getpid(), &c), 0);
        ASSERT_STREQ(c.comm, "test-proc");
        ASSERT_EQ(c.uids[1], geteuid());
        ASSERT_EQ(c.gids[1], getegid());
        process_creds_done(&c);

        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0)
                _exit(0);
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_EQ(process_creds_read_pid(pid, &c), -ESRCH);
}
