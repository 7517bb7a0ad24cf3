/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests.h"
#include "util/killpoint.h"

/* Run killpoint(point) in a child with the given environment; return its wait status (WUNTRACED). */
static int run_child(const char *var, const char *value, const char *point, pid_t *ret_pid) {
        int status = 0;
        pid_t pid = fork();

        if (pid < 0)
                abort();
        if (pid == 0) {
                unsetenv("RCI_KILL_AT");
                unsetenv("RCI_STOP_AT");
                setenv(var, value, 1);
                killpoint(point);
                _exit(42);
        }
        if (waitpid(pid, &status, WUNTRACED) != pid)
                abort();
        *ret_pid = pid;
        return status;
}

TEST(kill_at_the_named_point_kills_with_sigkill) {
        pid_t pid;
        int status = run_child("RCI_KILL_AT", "p", "p", &pid);

        ASSERT_TRUE(WIFSIGNALED(status));
        ASSERT_EQ(WTERMSIG(status), SIGKILL);
}

TEST(stop_at_the_named_point_stops_and_goes_on_after_sigcont) {
        pid_t pid;
        int status = run_child("RCI_STOP_AT", "p", "p", &pid);

        ASSERT_TRUE(WIFSTOPPED(status));
        ASSERT_EQ(WSTOPSIG(status), SIGSTOP);
        ASSERT_EQ(kill(pid, SIGCONT), 0);
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 42);
}

TEST(stop_at_another_point_does_nothing) {
        pid_t pid;
        int status = run_child("RCI_STOP_AT", "q", "p", &pid);

        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 42);
}

/*
 * Pass point n times in a child with RCI_KILL_AT=spec, with the details
 * details[0..n) when details is not NULL; return how many passes it survived
 * (n = all). Fewer than n must mean the killpoint's SIGKILL.
 */
static int passes_survived_at(const char *spec, const char *point, const char *const *details, int n) {
        int fds[2], status = 0, survived = 0;
        pid_t pid;

        fflush(NULL); /* or the child's kill flushes our buffered output a second time */
        if (pipe(fds) < 0)
                abort();
        pid = fork();
        if (pid < 0)
                abort();
        if (pid == 0) {
                close(fds[0]);
                setenv("RCI_KILL_AT", spec, 1);
                for (int i = 0; i < n; i++) {
                        if (details)
                                killpoint_at(point, details[i]);
                        else
                                killpoint(point);
                        if (write(fds[1], "x", 1) != 1)
                                _exit(1);
                }
                _exit(0);
        }
        close(fds[1]);
        for (char c; read(fds[0], &c, 1) == 1;)
                survived++;
        close(fds[0]);
        if (waitpid(pid, &status, 0) != pid)
                abort();
        if (survived < n && !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
                abort();
        return survived;
}

static int passes_survived(const char *spec, const char *point, int n) {
        return passes_survived_at(spec, point, NULL, n);
}

TEST(kill_at_name_colon_n_kills_at_the_nth_pass_only) {
        ASSERT_EQ(passes_survived("p:3", "p", 5), 2);
        ASSERT_EQ(passes_survived("p:1", "p", 5), 0);
        ASSERT_EQ(passes_survived("p:6", "p", 5), 5);
}

TEST(kill_at_name_kills_at_the_first_pass) {
        ASSERT_EQ(passes_survived("p", "p", 3), 0);
}

TEST(kill_at_a_longer_or_malformed_name_does_not_match) {
        ASSERT_EQ(passes_survived("p-done", "p", 3), 3);
        ASSERT_EQ(passes_survived("p:", "p", 3), 3);
        ASSERT_EQ(passes_survived("p:0", "p", 3), 3);
        ASSERT_EQ(passes_survived("p:2x", "p", 3), 3);
        ASSERT_EQ(passes_survived("p-done:1", "p", 3), 3);
}

/* The same, passing point p with details d[0..n). */
static int detail_passes_survived(const char *spec, const char *const *details, int n) {
        return passes_survived_at(spec, "p", details, n);
}

TEST(kill_at_name_at_detail_counts_the_passes_with_that_detail_only) {
        const char *d[] = { "a", "b", "a", "b", "c" };

        ASSERT_EQ(detail_passes_survived("p@b", d, 5), 1);
        ASSERT_EQ(detail_passes_survived("p@b:2", d, 5), 3);
        ASSERT_EQ(detail_passes_survived("p@c", d, 5), 4);
        ASSERT_EQ(detail_passes_survived("p@a:3", d, 5), 5);
        ASSERT_EQ(detail_passes_survived("p:4", d, 5), 3);
        ASSERT_EQ(detail_passes_survived("p@", d, 5), 5);
        ASSERT_EQ(detail_passes_survived("p@d", d, 5), 5);
}
