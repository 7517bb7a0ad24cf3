/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests.h"
#include "util/fs.h"
#include "steps/storage/homefs.h"

/*
 * The hostile-home helpers on a temp tree, as whoever runs the tests: a
 * "home" with planted symlinks and hard links pointing at an "outside" the
 * helpers must never touch.
 */

/* A few buffers in turn, so two paths can be used in one call. */
static const char *at(const char *d, const char *rel) {
        static char bufs[4][4096];
        static unsigned i;
        char *b = bufs[i++ % 4];

        snprintf(b, sizeof(bufs[0]), "%s/%s", d, rel);
        return b;
}

/* Make root/home/ci and root/outside/secret; returns the root fd. */
static int make_tree(const char *d) {
        test_write(d, "home/ci/.keep", "");
        test_write(d, "outside/secret", "do not touch\n");
        if (chmod(at(d, "outside/secret"), 0640) < 0)
                abort();
        return open_root(d);
}

static void snapshot(const char *p, struct stat *st, char **content) {
        if (lstat(p, st) < 0)
                abort();
        *content = S_ISREG(st->st_mode) ? test_read("/", p) : NULL;
}

/* Owner, mode, link count, content and times of the outside file are what they were. */
static int outside_unchanged(const char *d, const struct stat *before, const char *content) {
        struct stat now;
        char *c = test_read(d, "outside/secret");
        int ok = c && strcmp(c, content) == 0;

        if (lstat(at(d, "outside/secret"), &now) < 0)
                ok = 0;
        ok = ok && now.st_uid == before->st_uid && now.st_gid == before->st_gid && now.st_mode == before->st_mode &&
             now.st_nlink == before->st_nlink && now.st_ctim.tv_sec == before->st_ctim.tv_sec &&
             now.st_ctim.tv_nsec == before->st_ctim.tv_nsec;
        free(c);
        return ok;
}

TEST(home_open_accepts_own_home_and_refuses_symlinked_or_foreign_home) {
        const char *d = test_tmpdir();
        int root = make_tree(d), fd;

        ASSERT_OK(root);
        fd = home_open(root, "/home/ci", getuid(), NULL);
        ASSERT_OK(fd);
        close(fd);

        ASSERT_EQ(home_open(root, "/home/ci", getuid() + 1, NULL), -EPERM);

        ASSERT_OK(symlink("/outside", at(d, "home/evil")));
        ASSERT_EQ(home_open(root, "/home/evil", getuid(), NULL), -ELOOP);
        ASSERT_EQ(home_open(root, "/outside/secret", getuid(), NULL), -ENOTDIR);
        ASSERT_EQ(home_open(root, "/home/missing", getuid(), NULL), -ENOENT);
        close(root);
}

TEST(home_entry_inspect_never_follows_a_symlink) {
        const char *d = test_tmpdir();
        int root = make_tree(d), home;
        HomeEntry e = {};

        ASSERT_OK(root);
        ASSERT_OK(symlink("/outside/secret", at(d, "home/ci/link")));
        ASSERT_OK(symlink("/nonexistent/target", at(d, "home/ci/dangling")));
        home = home_open(root, "/home/ci", getuid(), NULL);
        ASSERT_OK(home);

        ASSERT_OK(home_entry_inspect(home, "link", &e));
        ASSERT_EQ(e.type, HOME_ENTRY_SYMLINK);
        ASSERT_STREQ(e.target, "/outside/secret");
        home_entry_done(&e);
        ASSERT_OK(home_entry_inspect(home, "dangling", &e));
        ASSERT_EQ(e.type, HOME_ENTRY_SYMLINK);
        home_entry_done(&e);
        ASSERT_OK(home_entry_inspect(home, "nothing", &e));
        ASSERT_EQ(e.type, HOME_ENTRY_MISSING);
        close(home);
        close(root);
}

static void check_open_dir_refuses_planted_link(int fallback) {
        const char *d = test_tmpdir();
        int root = make_tree(d), home;
        struct stat before;
        char *content;

        if (fallback)
                setenv("RCI_FORCE_RESOLVE_FALLBACK", "1", 1);
        ASSERT_OK(root);
        snapshot(at(d, "outside/secret"), &before, &content);
        /* ~/.local -> the outside directory */
        ASSERT_OK(symlink(at(d, "outside"), at(d, "home/ci/.local")));
        home = home_open(root, "/home/ci", getuid(), NULL);
        ASSERT_OK(home);
        ASSERT_EQ(home_open_dir(home, ".local"), -ELOOP);
        /* Nor through a deeper path that crosses it. */
        ASSERT_EQ(safe_openat(home, ".local/secret", O_RDONLY, 0, RESOLVE_POLICY_NO_SYMLINKS), -ELOOP);
        /* Creating a directory "in" it never reaches the outside. */
        ASSERT_EQ(home_make_dir(home, ".local", 0700, getuid(), getgid()), -EEXIST);
        ASSERT_TRUE(outside_unchanged(d, &before, content));
        ASSERT_TRUE(access(at(d, "outside/share"), F_OK) < 0);
        free(content);
        close(home);
        close(root);
        unsetenv("RCI_FORCE_RESOLVE_FALLBACK");
}

TEST(home_open_dir_refuses_planted_symlink) {
        check_open_dir_refuses_planted_link(0);
}

TEST(home_open_dir_refuses_planted_symlink_fallback_walk) {
        check_open_dir_refuses_planted_link(1);
}

TEST(home_make_dir_creates_private_directory_for_the_user) {
        const char *d = test_tmpdir();
        int root = make_tree(d), home, fd;
        struct stat st;

        ASSERT_OK(root);
        home = home_open(root, "/home/ci", getuid(), NULL);
        ASSERT_OK(home);
        fd = home_make_dir(home, ".local", 0700, getuid(), getgid());
        ASSERT_OK(fd);
        ASSERT_OK(fstat(fd, &st));
        ASSERT_TRUE(S_ISDIR(st.st_mode));
        ASSERT_EQ(st.st_mode & 07777, 0700);
        ASSERT_EQ(st.st_uid, getuid());
        close(fd);
        /* Something there already: never reused blindly. */
        ASSERT_EQ(home_make_dir(home, ".local", 0700, getuid(), getgid()), -EEXIST);
        close(home);
        close(root);
}

TEST(home_put_symlink_creates_and_replaces_only_symlinks) {
        const char *d = test_tmpdir();
        int root = make_tree(d), home;
        char target[256];
        ssize_t n;
        struct stat before, st;
        char *content;

        ASSERT_OK(root);
        snapshot(at(d, "outside/secret"), &before, &content);
        home = home_open(root, "/home/ci", getuid(), NULL);
        ASSERT_OK(home);

        /* Missing: created. */
        ASSERT_OK(home_put_symlink(home, "docker", "/srv/rootless-ci/ci/docker", getuid(), getgid()));
        n = readlink(at(d, "home/ci/docker"), target, sizeof(target) - 1);
        ASSERT_TRUE(n > 0);
        target[n] = 0;
        ASSERT_STREQ(target, "/srv/rootless-ci/ci/docker");

        /* A wrong symlink (to a file outside): replaced, and what it pointed to is untouched. */
        ASSERT_OK(unlink(at(d, "home/ci/docker")));
        ASSERT_OK(symlink(at(d, "outside/secret"), at(d, "home/ci/docker")));
        ASSERT_OK(home_put_symlink(home, "docker", "/srv/rootless-ci/ci/docker", getuid(), getgid()));
        n = readlink(at(d, "home/ci/docker"), target, sizeof(target) - 1);
        ASSERT_TRUE(n > 0);
        target[n] = 0;
        ASSERT_STREQ(target, "/srv/rootless-ci/ci/docker");
        ASSERT_TRUE(outside_unchanged(d, &before, content));

        /* A regular file (here a hard link to the outside file): refused, kept. */
        ASSERT_OK(unlink(at(d, "home/ci/docker")));
        ASSERT_OK(link(at(d, "outside/secret"), at(d, "home/ci/docker")));
        ASSERT_OK(lstat(at(d, "outside/secret"), &before));
        ASSERT_EQ(home_put_symlink(home, "docker", "/srv/rootless-ci/ci/docker", getuid(), getgid()), -EEXIST);
        ASSERT_OK(lstat(at(d, "home/ci/docker"), &st));
        ASSERT_TRUE(S_ISREG(st.st_mode));
        ASSERT_TRUE(outside_unchanged(d, &before, content));

        /* A directory: refused, kept. */
        ASSERT_OK(mkdir(at(d, "home/ci/dir"), 0755));
        ASSERT_EQ(home_put_symlink(home, "dir", "/x", getuid(), getgid()), -EEXIST);
        ASSERT_OK(lstat(at(d, "home/ci/dir"), &st));
        ASSERT_TRUE(S_ISDIR(st.st_mode));

        /* No temporary names are left behind. */
        {
                char *listing = NULL;
                FILE *p;
                char cmd[4200], buf[256];
                snprintf(cmd, sizeof(cmd), "ls -A '%s/home/ci'", d);
                p = popen(cmd, "r");
                ASSERT_TRUE(p != NULL);
                while (fgets(buf, sizeof(buf), p))
                        ASSERT_TRUE(strstr(buf, "rootless-ci") == NULL);
                pclose(p);
                free(listing);
        }
        free(content);
        close(home);
        close(root);
}

TEST(home_dir_is_empty_never_follows) {
        const char *d = test_tmpdir();
        int root = make_tree(d), home;

        ASSERT_OK(root);
        ASSERT_OK(mkdir(at(d, "home/ci/empty"), 0700));
        ASSERT_OK(symlink(at(d, "outside"), at(d, "home/ci/link")));
        home = home_open(root, "/home/ci", getuid(), NULL);
        ASSERT_OK(home);
        ASSERT_EQ(home_dir_is_empty(home, "empty"), 1);
        ASSERT_EQ(home_dir_is_empty(home, "link"), -ELOOP);
        test_write(d, "home/ci/empty/x", "");
        ASSERT_EQ(home_dir_is_empty(home, "empty"), 0);
        close(home);
        close(root);
}

TEST(home_finish_dir_takes_only_our_empty_private_directory) {
        const char *d = test_tmpdir();
        int root = make_tree(d), home, fd;
        struct stat st;

        ASSERT_OK(root);
        home = home_open(root, "/home/ci", getuid(), NULL);
        ASSERT_OK(home);

        ASSERT_OK(mkdir(at(d, "home/ci/fresh"), 0700));
        ASSERT_OK(chmod(at(d, "home/ci/fresh"), 0700));
        fd = home_finish_dir(home, "fresh", 0700, getuid(), getgid());
        ASSERT_OK(fd);
        ASSERT_OK(fstat(fd, &st));
        ASSERT_EQ(st.st_uid, getuid());
        close(fd);

        ASSERT_OK(mkdir(at(d, "home/ci/full"), 0700));
        ASSERT_OK(chmod(at(d, "home/ci/full"), 0700));
        test_write(d, "home/ci/full/x", "");
        ASSERT_EQ(home_finish_dir(home, "full", 0700, getuid(), getgid()), -ENOTEMPTY);

        ASSERT_OK(mkdir(at(d, "home/ci/open"), 0755));
        ASSERT_OK(chmod(at(d, "home/ci/open"), 0755));
        ASSERT_EQ(home_finish_dir(home, "open", 0700, getuid(), getgid()), -EBUSY);

        ASSERT_OK(symlink(at(d, "outside"), at(d, "home/ci/link")));
        ASSERT_EQ(home_finish_dir(home, "link", 0700, getuid(), getgid()), -EBUSY);
        close(home);
        close(root);
}
