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
