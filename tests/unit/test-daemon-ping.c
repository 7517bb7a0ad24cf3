/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests.h"
#include "util/clock.h"
#include "steps/daemon/ping.h"

#define P(s) docker_ping_parse(s, strlen(s), &status)

TEST(ping_parse_accepts_docker_answer) {
        unsigned status = 0;
        ASSERT_EQ(P("HTTP/1.0 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nOK"), 0);
        ASSERT_EQ(status, 200);
        ASSERT_EQ(P("HTTP/1.1 200 OK\r\n\r\nOK"), 0);
}

TEST(ping_parse_refuses_wrong_status_or_body) {
        unsigned status = 0;
        ASSERT_EQ(P("HTTP/1.0 500 Internal Server Error\r\n\r\nOK"), -EPROTO);
        ASSERT_EQ(status, 500);
        ASSERT_EQ(P("HTTP/1.0 200 OK\r\n\r\nNO"), -EPROTO);
        ASSERT_EQ(P("HTTP/1.0 200 OK\r\n\r\nOKAY"), -EPROTO);
        ASSERT_EQ(P("HTTP/1.0 200 OK\r\n\r\n"), -EPROTO);
}

TEST(ping_parse_refuses_garbage) {
        unsigned status = 0;
        ASSERT_EQ(P(""), -EBADMSG);
        ASSERT_EQ(P("OK"), -EBADMSG);
        ASSERT_EQ(P("SSH-2.0-OpenSSH_9.2\r\n"), -EBADMSG);
        ASSERT_EQ(P("HTTP/2.0 200 OK\r\n\r\nOK"), -EBADMSG);
        ASSERT_EQ(P("HTTP/1.0 20 OK\r\n\r\nOK"), -EBADMSG);
        ASSERT_EQ(P("HTTP/1.0 2000 OK\r\n\r\nOK"), -EBADMSG);
        /* Headers never ended: truncated. */
        ASSERT_EQ(P("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n"), -EBADMSG);
}

/* A one-shot server on a unix socket: checks the request, sends answer. */
static pid_t serve_once(const char *path, const char *answer) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;
        pid_t pid;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 1) < 0)
                return -1;
        pid = fork();
        if (pid == 0) {
                char req[512] = {};
                size_t got = 0;
                int c = accept(fd, NULL, NULL);
                while (c >= 0 && !strstr(req, "\r\n\r\n") && got < sizeof(req) - 1) {
                        ssize_t n = read(c, req + got, sizeof(req) - 1 - got);
                        if (n <= 0)
                                break;
                        got += (size_t) n;
                }
                if (strcmp(req, DOCKER_PING_REQUEST) != 0)
                        _exit(3);
                (void) !write(c, answer, strlen(answer));
                _exit(0);
        }
        close(fd);
        return pid;
}

static int wait_child(pid_t pid) {
        int st;
        if (waitpid(pid, &st, 0) < 0)
                return -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(ping_once_talks_to_a_socket) {
        char path[256];
        pid_t pid;

        snprintf(path, sizeof(path), "%s/ok.sock", test_tmpdir());
        pid = serve_once(path, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK");
        ASSERT_TRUE(pid > 0);
        ASSERT_EQ(docker_ping_peer(path, getuid(), 2000, NULL), 0);
        ASSERT_EQ(wait_child(pid), 0);  /* and it sent exactly the request */
}

/*
 * The peer is whoever called listen() — here this process, before it forked
 * the child that accepts and answers — with /proc/PID open on that process.
 */
TEST(ping_peer_names_the_listening_process) {
        DockerPeer peer = DOCKER_PEER_NULL;
        struct stat a, b;
        char path[256], self[64];
        pid_t pid;

        snprintf(path, sizeof(path), "%s/peer.sock", test_tmpdir());
        pid = serve_once(path, "HTTP/1.0 200 OK\r\n\r\nOK");
        ASSERT_TRUE(pid > 0);
        ASSERT_EQ(docker_ping_peer(path, getuid(), 2000, &peer), 0);
        ASSERT_EQ(wait_child(pid), 0);
        ASSERT_EQ(peer.pid, getpid());
        ASSERT_EQ(peer.uid, geteuid());
        ASSERT_EQ(peer.gid, getegid());
        ASSERT_TRUE(peer.proc_fd >= 0);
        snprintf(self, sizeof(self), "/proc/%d", (int) getpid());
        ASSERT_EQ(fstat(peer.proc_fd, &a), 0);
        ASSERT_EQ(stat(self, &b), 0);
        ASSERT_TRUE(a.st_dev == b.st_dev && a.st_ino == b.st_ino);
        docker_peer_done(&peer);
        ASSERT_EQ(peer.proc_fd, -1);
}

TEST(ping_peer_leaves_the_peer_alone_on_failure) {
        DockerPeer peer = DOCKER_PEER_NULL;
        char path[256];
        pid_t pid;

        snprintf(path, sizeof(path), "%s/none.sock", test_tmpdir());
        ASSERT_EQ(docker_ping_peer(path, getuid(), 500, &peer), -ENOENT);
        ASSERT_EQ(peer.pid, 0);
        ASSERT_EQ(peer.proc_fd, -1);

        snprintf(path, sizeof(path), "%s/bad.sock", test_tmpdir());
        pid = serve_once(path, "HTTP/1.0 503 Service Unavailable\r\n\r\n");
        ASSERT_TRUE(pid > 0);
        ASSERT_EQ(docker_ping_peer(path, getuid(), 2000, &peer), -EPROTO);
        ASSERT_EQ(wait_child(pid), 0);
        ASSERT_EQ(peer.pid, 0);
        ASSERT_EQ(peer.proc_fd, -1);
}

TEST(ping_once_reports_a_bad_answer) {
        char path[256];
        pid_t pid;

        snprintf(path, sizeof(path), "%s/bad.sock", test_tmpdir());
        pid = serve_once(path, "HTTP/1.0 503 Service Unavailable\r\n\r\n");
        ASSERT_TRUE(pid > 0);
        ASSERT_EQ(docker_ping_peer(path, getuid(), 2000, NULL), -EPROTO);
        ASSERT_EQ(wait_child(pid), 0);
}

TEST(ping_once_refuses_wrong_owner_and_symlinks) {
        char path[256], link[256];
        pid_t pid;

        snprintf(path, sizeof(path), "%s/own.sock", test_tmpdir());
        snprintf(link, sizeof(link), "%s/link.sock", test_tmpdir());
        pid = serve_once(path, "HTTP/1.0 200 OK\r\n\r\nOK");
        ASSERT_TRUE(pid > 0);
        ASSERT_EQ(docker_ping_peer(path, getuid() + 1, 2000, NULL), -EPERM);
        ASSERT_EQ(symlink(path, link), 0);
        ASSERT_EQ(docker_ping_peer(link, getuid(), 2000, NULL), -EPERM);
        kill(pid, SIGKILL);
        wait_child(pid);
}

TEST(ping_once_missing_socket) {
        char path[256];
        snprintf(path, sizeof(path), "%s/none.sock", test_tmpdir());
        ASSERT_EQ(docker_ping_peer(path, getuid(), 500, NULL), -ENOENT);
}

TEST(ping_wait_times_out) {
        char path[256];
        unsigned long long t0 = now_usec();

        snprintf(path, sizeof(path), "%s/never.sock", test_tmpdir());
        ASSERT_EQ(docker_ping_wait(path, getuid(), 1, "nobody", NULL, NULL, NULL), -ETIMEDOUT);
        ASSERT_TRUE(now_usec() - t0 >= 1000000ULL);
        ASSERT_TRUE(now_usec() - t0 < 3000000ULL);
}

static int give_up(void *userdata) {
        (*(int *) userdata)++;
        return -ESRCH;
}

TEST(ping_wait_stops_when_no_longer_hopeful) {
        char path[256];
        unsigned long long t0 = now_usec();
        int asked = 0;

        snprintf(path, sizeof(path), "%s/never.sock", test_tmpdir());
        ASSERT_EQ(docker_ping_wait(path, getuid(), 30, "nobody", give_up, &asked, NULL), -ESRCH);
        ASSERT_EQ(asked, 1);
        ASSERT_TRUE(now_usec() - t0 < 3000000ULL);
}
