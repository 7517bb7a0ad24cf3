/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests.h"
#include "util/fs.h"
#include "util/shadowlock.h"
#include "util/macro.h"

/*
 * Every resolution test runs twice: through openat2(2) and through the
 * fallback walk (RCI_FORCE_RESOLVE_FALLBACK=1), and both must give the same
 * answer.
 */

static bool have_openat2(void) {
        struct open_how how = { .flags = O_PATH | O_CLOEXEC };
        long fd = syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof(how));

        if (fd < 0)
                return errno != ENOSYS && errno != EPERM;
        close((int) fd);
        return true;
}

#define TEST_BOTH(name)                                                          \
        static void name##_body(void);                                           \
        TEST(name##_openat2) {                                                   \
                if (!have_openat2()) {                                           \
                        test_skip("openat2() is not available here");            \
                        return;                                                  \
                }                                                                \
                unsetenv("RCI_FORCE_RESOLVE_FALLBACK");                          \
                name##_body();                                                   \
        }                                                                        \
        TEST(name##_fallback) {                                                  \
                setenv("RCI_FORCE_RESOLVE_FALLBACK", "1", 1);                    \
                name##_body();                                                   \
                unsetenv("RCI_FORCE_RESOLVE_FALLBACK");                          \
        }                                                                        \
        static void name##_body(void)

static int open_dir(const char *dir, const char *rel) {
        return open(test_path(dir, rel), O_PATH | O_DIRECTORY | O_CLOEXEC);
}

static void mkdirs(const char *dir, const char *rel) {
        char p[4096];

        snprintf(p, sizeof(p), "%s/%s/", dir, rel);
        for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
                *s = 0;
                (void) mkdir(p, 0755);
                *s = '/';
        }
}

static int make_symlink(const char *target, const char *dir, const char *rel) {
        return symlink(target, test_path(dir, rel)) < 0 ? -errno : 0;
}

/* fd refers to dir/rel (same inode), checked without following a final symlink. */
static bool same_file(int fd, const char *dir, const char *rel) {
        struct stat a, b;

        if (fstat(fd, &a) < 0 || lstat(test_path(dir, rel), &b) < 0)
                return false;
        return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static bool exists(const char *dir, const char *rel) {
        struct stat st;
        return lstat(test_path(dir, rel), &st) == 0;
}

/* Number of entries in dir/rel other than . and .. */
static int count_entries(const char *dir, const char *rel) {
        DIR *d = opendir(test_path(dir, rel));
        int n = 0;

        if (!d)
                return -errno;
        for (struct dirent *de; (de = readdir(d)); )
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

/*
 * A fake root with an /etc/passwd of its own and links that would reach the
 * host's /etc/passwd if resolution ever left the root.
 */
static void make_tree(const char *tmp) {
        test_write(tmp, "root/etc/passwd", "fake:x:0:0::/:/bin/false\n");
        test_write(tmp, "root/home/user/file", "user's\n");
        test_write(tmp, "root/home/user/sub/file", "sub\n");
        test_write(tmp, "outside/secret", "outside the root\n");
        mkdirs(tmp, "root/a/b");
        mkdirs(tmp, "root/run");
        (void) make_symlink("/etc/passwd", tmp, "root/abs-link");
        (void) make_symlink("../../etc/passwd", tmp, "root/a/b/rel-link");
        (void) make_symlink("../../../../../../../../etc/passwd", tmp, "root/a/b/escaping-link");
        (void) make_symlink("/etc", tmp, "root/etc-link");
        (void) make_symlink("abs-link", tmp, "root/chain");
        (void) make_symlink("loop2", tmp, "root/loop1");
        (void) make_symlink("loop1", tmp, "root/loop2");
        (void) make_symlink("/etc/passwd", tmp, "root/home/user/passwd-link");
        (void) make_symlink("sub", tmp, "root/home/user/sub-link");
        (void) make_symlink("../../../outside", tmp, "root/home/user/out-link");
        (void) make_symlink("/nonexistent/target", tmp, "root/dangling");
}

TEST_BOTH(in_root_keeps_symlinks_and_dotdot_inside_the_root) {
        const char *tmp = test_tmpdir();
        static const char *const paths[] = {
                "/etc/passwd", "etc/passwd", "/abs-link", "abs-link", "/a/b/rel-link", "/a/b/escaping-link",
                "/etc-link/passwd", "/chain", "/../../../etc/passwd", "../etc/passwd", "/a/b/../../etc/passwd",
                "/a/../../a/b/../../etc/./passwd", "/home/user/passwd-link", "//etc//passwd",
        };
        _cleanup_close_ int rootfd = -1;

        make_tree(tmp);
        rootfd = open_dir(tmp, "root");
        ASSERT_OK(rootfd);

        for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
                _cleanup_close_ int fd = safe_openat(rootfd, paths[i], O_RDONLY, 0, RESOLVE_POLICY_IN_ROOT);
                if (fd < 0) {
                        test_fail(__FILE__, __LINE__, "%s: %d", paths[i], fd);
                        return;
                }
                /* ROOT/etc/passwd, never the host's. */
                if (!same_file(fd, tmp, "root/etc/passwd")) {
                        test_fail(__FILE__, __LINE__, "%s did not resolve to ROOT/etc/passwd", paths[i]);
                        return;
                }
        }
}

TEST_BOTH(in_root_never_reaches_outside) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int rootfd = -1, fd = -1, dfd = -1;
        _cleanup_free_ char *outside = NULL;

        make_tree(tmp);
        rootfd = open_dir(tmp, "root");
        ASSERT_OK(rootfd);

        /* The host's path of a file outside the root names nothing inside it. */
        outside = strdup(test_path(tmp, "outside/secret"));
        ASSERT_TRUE(outside);
        ASSERT_EQ(safe_openat(rootfd, outside, O_RDONLY, 0, RESOLVE_POLICY_IN_ROOT), -ENOENT);
        /* ".." of the root is the root. */
        dfd = safe_openat(rootfd, "..", O_RDONLY | O_DIRECTORY, 0, RESOLVE_POLICY_IN_ROOT);
        ASSERT_OK(dfd);
        ASSERT_TRUE(same_file(dfd, tmp, "root"));
        /* A relative link out of a home stays inside too: ROOT/outside does not exist. */
        ASSERT_EQ(safe_openat(rootfd, "/home/user/out-link/secret", O_RDONLY, 0, RESOLVE_POLICY_IN_ROOT), -ENOENT);

        ASSERT_EQ(safe_openat(rootfd, "/loop1", O_RDONLY, 0, RESOLVE_POLICY_IN_ROOT), -ELOOP);
        ASSERT_EQ(safe_openat(rootfd, "/nope", O_RDONLY, 0, RESOLVE_POLICY_IN_ROOT), -ENOENT);
        ASSERT_EQ(safe_openat(rootfd, "/etc/passwd/x", O_RDONLY, 0, RESOLVE_POLICY_IN_ROOT), -ENOTDIR);

        /* The root itself. */
        fd = safe_openat(rootfd, "/", O_RDONLY | O_DIRECTORY, 0, RESOLVE_POLICY_IN_ROOT);
        ASSERT_OK(fd);
        ASSERT_TRUE(same_file(fd, tmp, "root"));
}

TEST_BOTH(in_root_creates_through_a_dangling_link_inside_the_root_only) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int rootfd = -1, fd = -1;

        make_tree(tmp);
        mkdirs(tmp, "root/nonexistent");
        rootfd = open_dir(tmp, "root");
        ASSERT_OK(rootfd);

        /* O_CREAT follows the link as open(2) does, but below the root. */
        fd = safe_openat(rootfd, "/dangling", O_WRONLY | O_CREAT, 0644, RESOLVE_POLICY_IN_ROOT);
        ASSERT_OK(fd);
        ASSERT_TRUE(same_file(fd, tmp, "root/nonexistent/target"));
        ASSERT_FALSE(exists("/nonexistent", "target"));
}

TEST_BOTH(in_root_o_excl_never_creates_through_a_symlink) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int rootfd = -1;

        make_tree(tmp);
        mkdirs(tmp, "root/nonexistent");
        rootfd = open_dir(tmp, "root");
        ASSERT_OK(rootfd);

        /* Like open(2): O_CREAT|O_EXCL on any existing name, a dangling symlink included, is EEXIST. */
        ASSERT_EQ(safe_openat(rootfd, "/dangling", O_WRONLY | O_CREAT | O_EXCL, 0644, RESOLVE_POLICY_IN_ROOT), -EEXIST);
        ASSERT_FALSE(exists(tmp, "root/nonexistent/target"));
        ASSERT_EQ(safe_openat(rootfd, "/etc/passwd", O_WRONLY | O_CREAT | O_EXCL, 0644, RESOLVE_POLICY_IN_ROOT), -EEXIST);
}

TEST_BOTH(in_root_o_nofollow_on_the_last_component) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int rootfd = -1, fd = -1;
        struct stat st;

        make_tree(tmp);
        rootfd = open_dir(tmp, "root");
        ASSERT_OK(rootfd);

        /* As open(2): a final symlink is ELOOP, except with O_PATH, which opens the link itself. */
        ASSERT_EQ(safe_openat(rootfd, "/abs-link", O_RDONLY | O_NOFOLLOW, 0, RESOLVE_POLICY_IN_ROOT), -ELOOP);
        fd = safe_openat(rootfd, "/abs-link", O_PATH | O_NOFOLLOW, 0, RESOLVE_POLICY_IN_ROOT);
        ASSERT_OK(fd);
        ASSERT_OK(fstat(fd, &st));
        ASSERT_TRUE(S_ISLNK(st.st_mode));
        ASSERT_TRUE(same_file(fd, tmp, "root/abs-link"));
        /* Symlinks before the last component are still followed inside the root. */
        safe_close(fd);
        fd = safe_openat(rootfd, "/etc-link/passwd", O_RDONLY | O_NOFOLLOW, 0, RESOLVE_POLICY_IN_ROOT);
        ASSERT_OK(fd);
        ASSERT_TRUE(same_file(fd, tmp, "root/etc/passwd"));
}

TEST_BOTH(no_symlinks_refuses_every_symlink) {
        const char *tmp = test_tmpdir();
        static const int flags[] = {
                O_RDONLY, O_PATH, O_PATH | O_NOFOLLOW, O_RDONLY | O_NOFOLLOW, O_WRONLY | O_CREAT | O_TRUNC,
        };
        _cleanup_close_ int homefd = -1;
        _cleanup_free_ char *passwd = NULL;

        make_tree(tmp);
        homefd = open_dir(tmp, "root/home/user");
        ASSERT_OK(homefd);

        for (size_t i = 0; i < ELEMENTSOF(flags); i++) {
                /* The last component... */
                ASSERT_EQ(safe_openat(homefd, "passwd-link", flags[i], 0644, RESOLVE_POLICY_NO_SYMLINKS), -ELOOP);
                /* ...and any before it. */
                ASSERT_EQ(safe_openat(homefd, "sub-link/file", flags[i], 0644, RESOLVE_POLICY_NO_SYMLINKS), -ELOOP);
        }
        ASSERT_EQ(safe_openat(homefd, "sub-link", O_PATH | O_DIRECTORY | O_NOFOLLOW, 0, RESOLVE_POLICY_NO_SYMLINKS), -ELOOP);
        ASSERT_EQ(safe_openat(homefd, "sub-link", O_RDONLY | O_DIRECTORY, 0, RESOLVE_POLICY_NO_SYMLINKS), -ELOOP);
        ASSERT_EQ(safe_openat(homefd, "out-link/secret", O_RDONLY, 0, RESOLVE_POLICY_NO_SYMLINKS), -ELOOP);
        /* Nothing was created or truncated through a link. */
        passwd = test_read(tmp, "root/etc/passwd");
        ASSERT_STREQ(passwd, "fake:x:0:0::/:/bin/false\n");
}

TEST_BOTH(no_symlinks_opens_plain_paths) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int homefd = -1, fd = -1, fd2 = -1;

        make_tree(tmp);
        homefd = open_dir(tmp, "root/home/user");
        ASSERT_OK(homefd);

        fd = safe_openat(homefd, "sub/file", O_RDONLY, 0, RESOLVE_POLICY_NO_SYMLINKS);
        ASSERT_OK(fd);
        ASSERT_TRUE(same_file(fd, tmp, "root/home/user/sub/file"));
        /* ".." that stays below the start is fine. */
        fd2 = safe_openat(homefd, "sub/../file", O_RDONLY, 0, RESOLVE_POLICY_NO_SYMLINKS);
        ASSERT_OK(fd2);
        ASSERT_TRUE(same_file(fd2, tmp, "root/home/user/file"));
}

TEST_BOTH(no_symlinks_refuses_escaping) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int homefd = -1;

        make_tree(tmp);
        homefd = open_dir(tmp, "root/home/user");
        ASSERT_OK(homefd);

        ASSERT_EQ(safe_openat(homefd, "..", O_RDONLY, 0, RESOLVE_POLICY_NO_SYMLINKS), -EXDEV);
        ASSERT_EQ(safe_openat(homefd, "../user/file", O_RDONLY, 0, RESOLVE_POLICY_NO_SYMLINKS), -EXDEV);
        ASSERT_EQ(safe_openat(homefd, "sub/../../../etc/passwd", O_RDONLY, 0, RESOLVE_POLICY_NO_SYMLINKS), -EXDEV);
        /* An absolute path leaves the starting directory as surely as "..". */
        ASSERT_EQ(safe_openat(homefd, "/file", O_RDONLY, 0, RESOLVE_POLICY_NO_SYMLINKS), -EXDEV);
}

TEST_BOTH(mkdir_p_creates_missing_directories) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int rootfd = -1, fd = -1, fd2 = -1;
        struct stat st;
        mode_t old = umask(0022); /* as main() sets it */

        make_tree(tmp);
        rootfd = open_dir(tmp, "root");
        ASSERT_OK(rootfd);

        fd = safe_mkdir_p(rootfd, "/srv/ci/docker", 0710, RESOLVE_POLICY_IN_ROOT);
        umask(old);
        ASSERT_OK(fd);
        ASSERT_TRUE(same_file(fd, tmp, "root/srv/ci/docker"));
        ASSERT_OK(lstat(test_path(tmp, "root/srv/ci/docker"), &st));
        ASSERT_TRUE(S_ISDIR(st.st_mode));
        ASSERT_EQ(st.st_mode & 07777, 0710);
        ASSERT_OK(lstat(test_path(tmp, "root/srv"), &st));
        ASSERT_EQ(st.st_mode & 07777, 0710);
        /* Existing ones are entered as they are. */
        fd2 = safe_mkdir_p(rootfd, "a/b", 0700, RESOLVE_POLICY_IN_ROOT);
        ASSERT_OK(fd2);
        ASSERT_TRUE(same_file(fd2, tmp, "root/a/b"));
        ASSERT_EQ(safe_mkdir_p(rootfd, "a/../b", 0700, RESOLVE_POLICY_IN_ROOT), -EINVAL);
        ASSERT_EQ(safe_mkdir_p(rootfd, "etc/passwd/x", 0700, RESOLVE_POLICY_IN_ROOT), -ENOTDIR);
}

TEST_BOTH(mkdir_p_never_walks_through_a_planted_symlink) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int rootfd = -1, homefd = -1;

        make_tree(tmp);
        rootfd = open_dir(tmp, "root");
        homefd = open_dir(tmp, "root/home/user");
        ASSERT_OK(rootfd);
        ASSERT_OK(homefd);
        /* A build plants ~/.local -> somewhere it wants root to create directories. */
        ASSERT_OK(make_symlink(test_path(tmp, "outside"), tmp, "root/home/user/.local"));
        ASSERT_OK(make_symlink("/etc", tmp, "root/home/user/.config"));

        ASSERT_TRUE(safe_mkdir_p(homefd, ".local/share/docker", 0700, RESOLVE_POLICY_NO_SYMLINKS) < 0);
        ASSERT_TRUE(safe_mkdir_p(homefd, ".config/systemd/user", 0700, RESOLVE_POLICY_NO_SYMLINKS) < 0);
        /* Not under IN_ROOT either: a directory to be made is never a symlink. */
        ASSERT_TRUE(safe_mkdir_p(rootfd, "/home/user/.local/share", 0700, RESOLVE_POLICY_IN_ROOT) < 0);
        ASSERT_TRUE(safe_mkdir_p(rootfd, "/home/user/sub-link/x", 0700, RESOLVE_POLICY_IN_ROOT) < 0);
        /* The last component too. */
        ASSERT_TRUE(safe_mkdir_p(homefd, "sub-link", 0700, RESOLVE_POLICY_NO_SYMLINKS) < 0);

        ASSERT_EQ(count_entries(tmp, "outside"), 1);
        ASSERT_FALSE(exists(tmp, "root/etc/systemd"));
        ASSERT_FALSE(exists(tmp, "root/home/user/sub/x"));
}

static const char *only_entry(const char *dir, const char *rel) {
        static char name[256];
        DIR *d = opendir(test_path(dir, rel));
        int n = 0;

        name[0] = 0;
        if (!d)
                return NULL;
        for (struct dirent *de; (de = readdir(d)); )
                if (!streq(de->d_name, ".") && !streq(de->d_name, "..")) {
                        snprintf(name, sizeof(name), "%s", de->d_name);
                        n++;
                }
        closedir(d);
        return n == 1 ? name : NULL;
}

TEST_BOTH(write_file_atomic_writes_content_and_mode) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int rootfd = -1;
        _cleanup_free_ char *content = NULL;
        struct stat st;
        mode_t old;

        mkdirs(tmp, "root/etc/ci");
        rootfd = open_dir(tmp, "root");
        ASSERT_OK(rootfd);

        /* The mode is what was asked for, whatever the umask. */
        old = umask(0077);
        ASSERT_OK(write_file_atomic(rootfd, "/etc/ci/new.conf", "hello\n", 6, 0644, (uid_t) -1, (gid_t) -1,
                                    RESOLVE_POLICY_IN_ROOT));
        umask(old);
        content = test_read(tmp, "root/etc/ci/new.conf");
        ASSERT_STREQ(content, "hello\n");
        ASSERT_OK(lstat(test_path(tmp, "root/etc/ci/new.conf"), &st));
        ASSERT_TRUE(S_ISREG(st.st_mode));
        ASSERT_EQ(st.st_mode & 07777, 0644);
        /* No temp file left behind. */
        ASSERT_STREQ(only_entry(tmp, "root/etc/ci"), "new.conf");

        /* Replacing: new content and mode, still one file. */
        ASSERT_OK(write_file_atomic(rootfd, "etc/ci/new.conf", "", 0, 0600, (uid_t) -1, (gid_t) -1,
                                    RESOLVE_POLICY_IN_ROOT));
        free(content);
        content = test_read(tmp, "root/etc/ci/new.conf");
        ASSERT_STREQ(content, "");
        ASSERT_OK(lstat(test_path(tmp, "root/etc/ci/new.conf"), &st));
        ASSERT_EQ(st.st_mode & 07777, 0600);
        ASSERT_STREQ(only_entry(tmp, "root/etc/ci"), "new.conf");
}

TEST_BOTH(write_file_atomic_replaces_a_symlink_instead_of_writing_through_it) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int rootfd = -1;
        _cleanup_free_ char *content = NULL, *victim = NULL;
        struct stat st;

        test_write(tmp, "root/etc/victim", "victim\n");
        mkdirs(tmp, "root/etc/ci");
        ASSERT_OK(make_symlink("/etc/victim", tmp, "root/etc/ci/target"));
        rootfd = open_dir(tmp, "root");
        ASSERT_OK(rootfd);

        ASSERT_OK(write_file_atomic(rootfd, "/etc/ci/target", "new\n", 4, 0644, (uid_t) -1, (gid_t) -1,
                                    RESOLVE_POLICY_IN_ROOT));
        ASSERT_OK(lstat(test_path(tmp, "root/etc/ci/target"), &st));
        ASSERT_TRUE(S_ISREG(st.st_mode));
        content = test_read(tmp, "root/etc/ci/target");
        ASSERT_STREQ(content, "new\n");
        victim = test_read(tmp, "root/etc/victim");
        ASSERT_STREQ(victim, "victim\n");
}

TEST_BOTH(write_file_atomic_failure_leaves_target_and_no_temp) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int rootfd = -1, homefd = -1;
        _cleanup_free_ char *content = NULL;

        make_tree(tmp);
        rootfd = open_dir(tmp, "root");
        homefd = open_dir(tmp, "root/home/user");
        ASSERT_OK(rootfd);
        ASSERT_OK(homefd);

        /* The parent is a symlink under NO_SYMLINKS: refused before anything is written. */
        ASSERT_EQ(write_file_atomic(homefd, "sub-link/file", "evil\n", 5, 0644, (uid_t) -1, (gid_t) -1,
                                    RESOLVE_POLICY_NO_SYMLINKS), -ELOOP);
        content = test_read(tmp, "root/home/user/sub/file");
        ASSERT_STREQ(content, "sub\n");
        ASSERT_EQ(count_entries(tmp, "root/home/user/sub"), 1);

        /* The target is a directory: the rename fails, the temp file goes away. */
        mkdirs(tmp, "root/etc/ci/dir.conf");
        ASSERT_EQ(write_file_atomic(rootfd, "/etc/ci/dir.conf", "x", 1, 0644, (uid_t) -1, (gid_t) -1,
                                    RESOLVE_POLICY_IN_ROOT), -EISDIR);
        ASSERT_STREQ(only_entry(tmp, "root/etc/ci"), "dir.conf");
        ASSERT_EQ(count_entries(tmp, "root/etc/ci/dir.conf"), 0);

        /* The parent is missing: nothing is created on the way. */
        ASSERT_EQ(write_file_atomic(rootfd, "/etc/nope/x.conf", "x", 1, 0644, (uid_t) -1, (gid_t) -1,
                                    RESOLVE_POLICY_IN_ROOT), -ENOENT);
        ASSERT_FALSE(exists(tmp, "root/etc/nope"));

        ASSERT_EQ(write_file_atomic(rootfd, "/", "x", 1, 0644, (uid_t) -1, (gid_t) -1, RESOLVE_POLICY_IN_ROOT), -EINVAL);
}

TEST(write_file_atomic_in_a_read_only_directory_leaves_nothing) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int rootfd = -1;
        _cleanup_free_ char *content = NULL;
        int r;

        if (geteuid() == 0) {
                test_skip("root may write into a read-only directory");
                return;
        }
        test_write(tmp, "root/ro/target", "old\n");
        ASSERT_OK(chmod(test_path(tmp, "root/ro"), 0555));
        rootfd = open_dir(tmp, "root");
        ASSERT_OK(rootfd);

        r = write_file_atomic(rootfd, "/ro/target", "new\n", 4, 0644, (uid_t) -1, (gid_t) -1, RESOLVE_POLICY_IN_ROOT);
        (void) chmod(test_path(tmp, "root/ro"), 0755);
        ASSERT_EQ(r, -EACCES);
        content = test_read(tmp, "root/ro/target");
        ASSERT_STREQ(content, "old\n");
        ASSERT_STREQ(only_entry(tmp, "root/ro"), "target");
}

TEST(write_file_atomic_at_refuses_paths) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        char longname[256];

        ASSERT_OK(dfd);
        ASSERT_EQ(write_file_atomic_at(dfd, "a/b", "x", 1, 0644, (uid_t) -1, (gid_t) -1), -EINVAL);
        memset(longname, 'x', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = 0;
        ASSERT_EQ(write_file_atomic_at(dfd, longname, "x", 1, 0644, (uid_t) -1, (gid_t) -1), -EINVAL);
        ASSERT_EQ(count_entries(tmp, "."), 0);
}

TEST_BOTH(read_file_at_honours_max_size) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int rootfd = -1;
        _cleanup_free_ char *big = NULL;
        char *buf = NULL;
        size_t size = 0;

        big = malloc(10001);
        ASSERT_TRUE(big);
        memset(big, 'a', 10000);
        big[10000] = 0;
        test_write(tmp, "root/ten", "0123456789");
        test_write(tmp, "root/big", big);
        test_write(tmp, "root/empty", "");
        mkdirs(tmp, "root/dir");
        rootfd = open_dir(tmp, "root");
        ASSERT_OK(rootfd);

        ASSERT_EQ(read_file_at(rootfd, "/ten", RESOLVE_POLICY_IN_ROOT, 9, &buf, &size), -EFBIG);
        ASSERT_TRUE(buf == NULL);
        ASSERT_EQ(read_file_at(rootfd, "/big", RESOLVE_POLICY_IN_ROOT, 9999, &buf, &size), -EFBIG);

        /* Exactly max_size bytes is within the limit. */
        ASSERT_OK(read_file_at(rootfd, "/ten", RESOLVE_POLICY_IN_ROOT, 10, &buf, &size));
        ASSERT_EQ(size, 10);
        ASSERT_STREQ(buf, "0123456789");
        free(buf);
        buf = NULL;
        ASSERT_OK(read_file_at(rootfd, "/big", RESOLVE_POLICY_IN_ROOT, 10000, &buf, &size));
        ASSERT_EQ(size, 10000);
        ASSERT_STREQ(buf, big);
        free(buf);
        buf = NULL;

        ASSERT_OK(read_file_at(rootfd, "/empty", RESOLVE_POLICY_IN_ROOT, 10, &buf, &size));
        ASSERT_EQ(size, 0);
        ASSERT_STREQ(buf, "");
        free(buf);
        buf = NULL;

        ASSERT_EQ(read_file_at(rootfd, "/missing", RESOLVE_POLICY_IN_ROOT, 10, &buf, &size), -ENOENT);
        ASSERT_EQ(read_file_at(rootfd, "/dir", RESOLVE_POLICY_IN_ROOT, 10, &buf, &size), -EISDIR);
        ASSERT_TRUE(buf == NULL);
}

TEST_BOTH(read_file_at_never_blocks_on_a_fifo) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int rootfd = -1;
        char *buf = NULL;
        int r;

        mkdirs(tmp, "root/etc");
        ASSERT_OK(mkfifo(test_path(tmp, "root/etc/os-release"), 0644));
        rootfd = open_dir(tmp, "root");
        ASSERT_OK(rootfd);

        /* A FIFO planted where a file is expected is refused, not waited on forever. */
        alarm(5);
        r = read_file_at(rootfd, "/etc/os-release", RESOLVE_POLICY_IN_ROOT, 100, &buf, NULL);
        alarm(0);
        ASSERT_EQ(r, -EBADFD);
        ASSERT_TRUE(buf == NULL);
}

TEST_BOTH(read_one_line_at_strips_the_newline) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int rootfd = -1;
        _cleanup_free_ char *v = NULL;

        test_write(tmp, "root/proc/sys/kernel/osrelease", "6.1.0-18-amd64\nsecond line\n");
        rootfd = open_dir(tmp, "root");
        ASSERT_OK(rootfd);
        ASSERT_OK(read_one_line_at(rootfd, "/proc/sys/kernel/osrelease", &v));
        ASSERT_STREQ(v, "6.1.0-18-amd64");
}

TEST_BOTH(safe_open_parent_returns_the_last_component) {
        const char *tmp = test_tmpdir();
        static const struct {
                const char *path, *parent, *name;
        } cases[] = {
                { "/etc/passwd", "root/etc", "passwd" },
                { "etc/passwd", "root/etc", "passwd" },
                { "/a/b/c", "root/a/b", "c" },
                { "/a/b/", "root/a", "b" },
                { "/x", "root", "x" },
                { "x", "root", "x" },
                /* The parent is resolved (inside the root), the last component is not. */
                { "/etc-link/passwd", "root/etc", "passwd" },
                { "/abs-link", "root", "abs-link" },
        };
        _cleanup_close_ int rootfd = -1;

        make_tree(tmp);
        rootfd = open_dir(tmp, "root");
        ASSERT_OK(rootfd);

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *name = NULL;
                _cleanup_close_ int fd = safe_open_parent(rootfd, cases[i].path, RESOLVE_POLICY_IN_ROOT, &name);

                if (fd < 0) {
                        test_fail(__FILE__, __LINE__, "%s: %d", cases[i].path, fd);
                        return;
                }
                ASSERT_STREQ(name, cases[i].name);
                if (!same_file(fd, tmp, cases[i].parent)) {
                        test_fail(__FILE__, __LINE__, "%s: parent is not %s", cases[i].path, cases[i].parent);
                        return;
                }
        }

        {
                char *name = NULL;
                ASSERT_EQ(safe_open_parent(rootfd, "/", RESOLVE_POLICY_IN_ROOT, &name), -EINVAL);
                ASSERT_EQ(safe_open_parent(rootfd, "/a/..", RESOLVE_POLICY_IN_ROOT, &name), -EINVAL);
                ASSERT_EQ(safe_open_parent(rootfd, "/a/.", RESOLVE_POLICY_IN_ROOT, &name), -EINVAL);
                ASSERT_EQ(safe_open_parent(rootfd, "", RESOLVE_POLICY_IN_ROOT, &name), -EINVAL);
                ASSERT_EQ(safe_open_parent(rootfd, "/nope/x", RESOLVE_POLICY_IN_ROOT, &name), -ENOENT);
                ASSERT_TRUE(name == NULL);
        }
}

TEST(path_join_root) {
        _cleanup_free_ char *a = path_join_root(NULL, "/etc/x");
        _cleanup_free_ char *b = path_join_root("/", "/etc/x");
        _cleanup_free_ char *c = path_join_root("/img", "/etc/x");
        _cleanup_free_ char *d = path_join_root("/img", "etc/x");

        ASSERT_STREQ(a, "/etc/x");
        ASSERT_STREQ(b, "/etc/x");
        ASSERT_STREQ(c, "/img/etc/x");
        ASSERT_STREQ(d, "/img/etc/x");
}

/* What a run killed between creating its temp file and the rename leaves behind is removed by the next write. */
TEST(write_file_atomic_removes_our_stale_temp_files_and_nothing_else) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        const char *kept[] = {
                ".#a.conf.0123456789abcdeG", /* not lowercase hex */
                ".#a.conf.0123456789abcde",  /* 15 digits */
                ".#a.conf.0123456789abcdef0", /* 17 digits */
                ".#b.conf.0123456789abcdef", /* beside another file */
                "#a.conf.0123456789abcdef",
        };

        ASSERT_TRUE(dfd >= 0);
        test_write(tmp, ".#a.conf.0123456789abcdef", "stale");
        test_write(tmp, ".#a.conf.ffffffffffffffff", "stale");
        for (size_t i = 0; i < ELEMENTSOF(kept); i++)
                test_write(tmp, kept[i], "keep");
        ASSERT_EQ(symlinkat("x", dfd, ".#a.conf.1111111111111111"), 0);
        ASSERT_EQ(mkdirat(dfd, ".#a.conf.2222222222222222", 0755), 0);

        ASSERT_OK(write_file_atomic_at(dfd, "a.conf", "new\n", 4, 0644, getuid(), getgid()));

        ASSERT_EQ(faccessat(dfd, ".#a.conf.0123456789abcdef", F_OK, AT_SYMLINK_NOFOLLOW), -1);
        ASSERT_EQ(faccessat(dfd, ".#a.conf.ffffffffffffffff", F_OK, AT_SYMLINK_NOFOLLOW), -1);
        for (size_t i = 0; i < ELEMENTSOF(kept); i++)
                ASSERT_EQ(faccessat(dfd, kept[i], F_OK, AT_SYMLINK_NOFOLLOW), 0);
        /* Not a regular file: never ours. */
        ASSERT_EQ(faccessat(dfd, ".#a.conf.1111111111111111", F_OK, AT_SYMLINK_NOFOLLOW), 0);
        ASSERT_EQ(faccessat(dfd, ".#a.conf.2222222222222222", F_OK, AT_SYMLINK_NOFOLLOW), 0);
        ASSERT_STREQ(test_read_kept(tmp, "a.conf"), "new\n");
}

/* The one temp-name scheme: ".#NAME." and 16 hex digits, a new draw every time (getrandom, not random()). */
TEST(temp_name_random_is_the_one_scheme_and_never_repeats) {
        char a[NAME_MAX + 1], b[NAME_MAX + 1], longname[NAME_MAX + 1];

        ASSERT_OK(temp_name_random("docker.service", a));
        ASSERT_OK(temp_name_random("docker.service", b));
        ASSERT_EQ(strlen(a), strlen(".#docker.service.") + 16);
        ASSERT_TRUE(strncmp(a, ".#docker.service.", strlen(".#docker.service.")) == 0);
        ASSERT_EQ(strspn(a + strlen(".#docker.service."), "0123456789abcdef"), 16);
        ASSERT_FALSE(strcmp(a, b) == 0);

        memset(longname, 'n', NAME_MAX - TEMP_NAME_EXTRA);
        longname[NAME_MAX - TEMP_NAME_EXTRA] = 0;
        ASSERT_OK(temp_name_random(longname, a));
        ASSERT_EQ(strlen(a), NAME_MAX);
        longname[NAME_MAX - TEMP_NAME_EXTRA] = 'n';
        longname[NAME_MAX - TEMP_NAME_EXTRA + 1] = 0;
        ASSERT_EQ(temp_name_random(longname, a), -ENAMETOOLONG);
        ASSERT_EQ(temp_name_random("a/b", a), -ENAMETOOLONG);
}

/* Someone else's file with our temp name is left alone: only root's or the target's owner's go. */
TEST(remove_stale_temp_files_keeps_other_owners_files) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (getuid() != 0) {
                test_skip("needs root to give a file another owner");
                return;
        }
        ASSERT_TRUE(dfd >= 0);
        test_write(tmp, ".#a.conf.0123456789abcdef", "theirs");
        ASSERT_EQ(fchownat(dfd, ".#a.conf.0123456789abcdef", 4242, 4242, 0), 0);
        ASSERT_EQ(remove_stale_temp_files(dfd, "a.conf", S_IFREG, (uid_t) -1), 0);
        ASSERT_EQ(remove_stale_temp_files(dfd, "a.conf", S_IFREG, 1000), 0);
        ASSERT_EQ(faccessat(dfd, ".#a.conf.0123456789abcdef", F_OK, AT_SYMLINK_NOFOLLOW), 0);
        ASSERT_EQ(remove_stale_temp_files(dfd, "a.conf", S_IFREG, 4242), 1);
        ASSERT_EQ(faccessat(dfd, ".#a.conf.0123456789abcdef", F_OK, AT_SYMLINK_NOFOLLOW), -1);
}

/* A lock left by a killed run (its PID gone) is removed; a live owner's and an unreadable one's stay. */
TEST(shadow_lock_remove_stale_removes_only_locks_of_gone_processes) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int rootfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        static const char *const files[] = { "subuid", "subgid", "group" };
        char live[32];
        pid_t gone = fork();

        ASSERT_TRUE(gone >= 0);
        if (gone == 0)
                _exit(0);
        ASSERT_EQ(waitpid(gone, NULL, 0), gone);
        snprintf(live, sizeof(live), "%ld", (long) getpid());
        ASSERT_TRUE(rootfd >= 0);
        ASSERT_EQ(mkdirat(rootfd, "etc", 0755), 0);
        {
                char dead[32];
                snprintf(dead, sizeof(dead), "%ld", (long) gone);
                test_write(tmp, "etc/subuid.lock", dead);
        }
        test_write(tmp, "etc/subgid.lock", live);
        test_write(tmp, "etc/group.lock", "not a pid");

        ASSERT_EQ(shadow_lock_remove_stale(rootfd, files, 3), 1);
        ASSERT_EQ(faccessat(rootfd, "etc/subuid.lock", F_OK, AT_SYMLINK_NOFOLLOW), -1);
        ASSERT_EQ(faccessat(rootfd, "etc/subgid.lock", F_OK, AT_SYMLINK_NOFOLLOW), 0);
        ASSERT_EQ(faccessat(rootfd, "etc/group.lock", F_OK, AT_SYMLINK_NOFOLLOW), 0);
}

/* path_check() on d/rel: the result, and the finding's path and problem. */
static int check_path(const char *d, const char *rel, PathCheckFlags flags, PathFinding *f) {
        _cleanup_close_ int fd = open(d, O_PATH | O_DIRECTORY | O_CLOEXEC);
        return fd < 0 ? -errno : path_check(fd, rel, flags, getuid(), f, NULL);
}

TEST(path_check_reports_the_first_symlink_unless_it_follows_it) {
        const char *d = test_tmpdir();
        _cleanup_(path_finding_done) PathFinding f = {};

        mkdirs(d, "usr/lib/x");
        ASSERT_OK(make_symlink("usr/lib", d, "lib"));
        ASSERT_EQ(check_path(d, "/lib/x", 0, &f), 1);
        ASSERT_EQ((int) f.problem, (int) PATH_PROBLEM_SYMLINK);
        ASSERT_STREQ(f.path, "/lib");
        path_finding_done(&f);
        ASSERT_EQ(check_path(d, "/usr/lib/x", PATH_CHECK_TRUST, &f), 0);
        ASSERT_EQ(check_path(d, "/lib/x", PATH_CHECK_FOLLOW | PATH_CHECK_TRUST, &f), 0);
        ASSERT_EQ(check_path(d, "/usr/lib/../lib/x", 0, &f), -EINVAL);
}

TEST(path_check_follows_symlinks_inside_the_root_and_checks_where_they_lead) {
        const char *d = test_tmpdir();
        _cleanup_(path_finding_done) PathFinding f = {};
        static const char *const ways[] = { "/lib/x", "/abs/x", "/up/usr/lib/x", "/usr/lib/../lib/x" };

        mkdirs(d, "usr/lib/x");
        mkdirs(d, "a");
        ASSERT_OK(make_symlink("usr/lib", d, "lib"));              /* merged /usr */
        ASSERT_OK(make_symlink("/usr/lib", d, "abs"));             /* absolute: from the root, not the host's / */
        ASSERT_OK(make_symlink("../../../../..", d, "a/up"));      /* ".." stops at the root */
        ASSERT_OK(make_symlink("a/up", d, "up"));
        ASSERT_OK(chmod(test_path(d, "usr/lib"), 0775));
        for (size_t i = 0; i < ELEMENTSOF(ways); i++) {
                ASSERT_EQ(check_path(d, ways[i], PATH_CHECK_FOLLOW | PATH_CHECK_TRUST, &f), 1);
                ASSERT_EQ((int) f.problem, (int) PATH_PROBLEM_WRITABLE);
                ASSERT_STREQ(f.path, "/usr/lib");
                ASSERT_EQ((int) (f.st.st_mode & 07777), 0775);
                path_finding_done(&f);
        }
        /* The last component counts by itself; a missing one by the directory it would be made in. */
        ASSERT_OK(chmod(test_path(d, "usr/lib"), 0755));
        ASSERT_OK(chmod(test_path(d, "usr/lib/x"), 0757));
        ASSERT_EQ(check_path(d, "/lib/x", PATH_CHECK_FOLLOW | PATH_CHECK_TRUST, &f), 1);
        ASSERT_STREQ(f.path, "/usr/lib/x");
        path_finding_done(&f);
        ASSERT_EQ(check_path(d, "/lib/x/missing/deeper", PATH_CHECK_FOLLOW | PATH_CHECK_TRUST, &f), 1);
        ASSERT_STREQ(f.path, "/usr/lib/x");
        path_finding_done(&f);
        ASSERT_EQ(check_path(d, "/lib/missing", PATH_CHECK_FOLLOW | PATH_CHECK_TRUST, &f), 0);
        /* A writable file at the end, and the start directory itself. */
        test_write(d, "etc/nsswitch.conf", "passwd: files\n");
        ASSERT_OK(chmod(test_path(d, "etc/nsswitch.conf"), 0664));
        ASSERT_EQ(check_path(d, "/etc/nsswitch.conf", PATH_CHECK_TRUST, &f), 1);
        ASSERT_STREQ(f.path, "/etc/nsswitch.conf");
        path_finding_done(&f);
        ASSERT_OK(chmod(d, 0770));
        ASSERT_EQ(check_path(d, "/", PATH_CHECK_TRUST, &f), 1);
        ASSERT_STREQ(f.path, "/");
        ASSERT_OK(chmod(d, 0700));
}

TEST(path_check_sticky_directories_protect_trusted_entries_only_when_asked) {
        const char *d = test_tmpdir();
        _cleanup_(path_finding_done) PathFinding f = {};

        mkdirs(d, "tmp/ours");
        ASSERT_OK(chmod(test_path(d, "tmp"), 01777));
        /* MountPoint=: sticky /tmp is writable by others (the path is used again at every boot). */
        ASSERT_EQ(check_path(d, "/tmp/ours", PATH_CHECK_TRUST, &f), 1);
        ASSERT_EQ((int) f.problem, (int) PATH_PROBLEM_WRITABLE);
        ASSERT_STREQ(f.path, "/tmp");
        path_finding_done(&f);
        /* The way to a --root tree: nobody else can rename or remove our entry there. */
        ASSERT_EQ(check_path(d, "/tmp/ours", PATH_CHECK_TRUST | PATH_CHECK_STICKY_PROTECTS, &f), 0);
        /* But a missing entry could be made by anyone first. */
        ASSERT_EQ(check_path(d, "/tmp/missing", PATH_CHECK_TRUST | PATH_CHECK_STICKY_PROTECTS, &f), 1);
        ASSERT_STREQ(f.path, "/tmp");
        path_finding_done(&f);
        if (getuid() == 0) {
                ASSERT_OK(chown(test_path(d, "tmp/ours"), 1001, 1001));
                ASSERT_EQ(check_path(d, "/tmp/ours", PATH_CHECK_TRUST | PATH_CHECK_STICKY_PROTECTS, &f), 1);
                ASSERT_STREQ(f.path, "/tmp");
                path_finding_done(&f);
                ASSERT_OK(chmod(test_path(d, "tmp"), 0755));
                ASSERT_EQ(check_path(d, "/tmp/ours/x", PATH_CHECK_TRUST, &f), 1);
                ASSERT_EQ((int) f.problem, (int) PATH_PROBLEM_OWNER);
                ASSERT_STREQ(f.path, "/tmp/ours");
                ASSERT_EQ((int) f.st.st_uid, 1001);
        }
}

TEST(dir_check_entries_finds_a_writable_entry_below) {
        const char *d = test_tmpdir();
        _cleanup_(path_finding_done) PathFinding f = {};
        _cleanup_close_ int fd = -1;

        test_write(d, "lib/libnss_files.so.2", "");
        test_write(d, "lib/glibc-hwcaps/x86-64-v3/libnss_evil.so.2", "");
        ASSERT_OK(make_symlink("/anywhere", d, "lib/link"));  /* a symlink's mode means nothing */
        fd = open_dir(d, "lib");
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(dir_check_entries(fd, "/lib", 2, getuid(), &f), 0);
        ASSERT_OK(chmod(test_path(d, "lib/glibc-hwcaps/x86-64-v3/libnss_evil.so.2"), 0646));
        ASSERT_EQ(dir_check_entries(fd, "/lib", 1, getuid(), &f), 0);  /* two levels down: not looked at */
        ASSERT_EQ(dir_check_entries(fd, "/lib", 2, getuid(), &f), 1);
        ASSERT_EQ((int) f.problem, (int) PATH_PROBLEM_WRITABLE);
        ASSERT_STREQ(f.path, "/lib/glibc-hwcaps/x86-64-v3/libnss_evil.so.2");
}

static bool no_tilde(const struct dirent *de) {
        return !strchr(de->d_name, '~');
}

TEST(dir_list_sorted_lists_what_the_filter_keeps_in_order) {
        const char *d = test_tmpdir();
        _cleanup_strv_free_ char **names = NULL;
        _cleanup_close_ int fd = -1;
        size_t n = 99;

        test_write(d, "list/b", "");
        test_write(d, "list/a~", "");
        test_write(d, "list/C", "");
        test_write(d, "list/a", "");
        test_write(d, "list/sub/x", "");
        fd = open_dir(d, "list");
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(dir_list_sorted(fd, no_tilde, &names, &n));
        ASSERT_EQ(n, 4u);
        ASSERT_STREQ(names[0], "C");
        ASSERT_STREQ(names[1], "a");
        ASSERT_STREQ(names[2], "b");
        ASSERT_STREQ(names[3], "sub");
        ASSERT_TRUE(names[4] == NULL);
        strv_free(TAKE_PTR(names));
        /* No filter: every entry but "." and ".."; the fd stays usable (the list reads its own). */
        ASSERT_OK(dir_list_sorted(fd, NULL, &names, &n));
        ASSERT_EQ(n, 5u);
        ASSERT_STREQ(names[1], "a");
        ASSERT_STREQ(names[2], "a~");
        strv_free(TAKE_PTR(names));
        /* An empty directory: an empty list, not NULL. */
        fd = safe_close(fd);
        ASSERT_OK(mkdir(test_path(d, "empty"), 0755));
        fd = open_dir(d, "empty");
        ASSERT_OK(dir_list_sorted(fd, NULL, &names, &n));
        ASSERT_EQ(n, 0u);
        ASSERT_TRUE(names && !names[0]);
}

TEST(dir_list_sorted_at_gives_an_empty_list_for_no_directory) {
        const char *d = test_tmpdir();
        _cleanup_strv_free_ char **names = NULL;
        _cleanup_close_ int root = open(d, O_PATH | O_DIRECTORY | O_CLOEXEC);
        size_t n = 99;

        test_write(d, "file", "");
        test_write(d, "dir/z", "");
        test_write(d, "dir/y", "");
        ASSERT_OK(dir_list_sorted_at(root, "/missing", RESOLVE_POLICY_IN_ROOT, NULL, &names, &n));
        ASSERT_TRUE(n == 0 && names && !names[0]);
        strv_free(TAKE_PTR(names));
        ASSERT_OK(dir_list_sorted_at(root, "/file", RESOLVE_POLICY_IN_ROOT, NULL, &names, &n));
        ASSERT_TRUE(n == 0 && names && !names[0]);
        strv_free(TAKE_PTR(names));
        ASSERT_OK(dir_list_sorted_at(root, "/dir", RESOLVE_POLICY_IN_ROOT, NULL, &names, &n));
        ASSERT_EQ(n, 2u);
        ASSERT_STREQ(names[0], "y");
        ASSERT_STREQ(names[1], "z");
}

/* What a path_walk() visitor saw, one line per call: "entry DIR NAME type" or "last DIR NAME type". */
typedef struct WalkLog {
        char text[2048];
        const char *stop_at;    /* on_entry stops the walk (returns 5) at this name */
} WalkLog;

static const char *step_type(const PathWalkStep *s) {
        if (!s->st)
                return "missing";
        if (S_ISLNK(s->st->st_mode))
                return s->target;
        return S_ISDIR(s->st->st_mode) ? "dir" : "file";
}

static int log_entry(void *userdata, const PathWalkStep *s) {
        WalkLog *l = userdata;
        struct stat st;

        /* dir_st is the directory dir_fd is. */
        if (fstat(s->dir_fd, &st) < 0 || st.st_ino != s->dir_st->st_ino)
                return -EIO;
        snprintf(l->text + strlen(l->text), sizeof(l->text) - strlen(l->text), "entry %s %s %s%s\n", s->dir_path,
                 s->name, step_type(s), s->last ? " last" : "");
        return l->stop_at && streq(s->name, l->stop_at) ? 5 : 0;
}

static int log_last(void *userdata, const PathWalkStep *s) {
        WalkLog *l = userdata;

        snprintf(l->text + strlen(l->text), sizeof(l->text) - strlen(l->text), "last %s %s %s\n", s->dir_path,
                 strempty(s->name), step_type(s));
        return 0;
}

static const PathWalkVisitor log_visitor = { .on_entry = log_entry, .on_last = log_last };

static int walk_logged(int rootfd, const char *path, WalkFlags flags, WalkLog *l, int *ret_fd) {
        l->text[0] = 0;
        return path_walk(rootfd, path, flags, &log_visitor, l, ret_fd);
}

TEST(path_walk_shows_every_entry_and_follows_links_inside_the_root) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int rootfd = -1, fd = -1;
        WalkLog l = {};

        make_tree(tmp);
        rootfd = open_dir(tmp, "root");
        ASSERT_OK(rootfd);

        ASSERT_EQ(walk_logged(rootfd, "/a/b/rel-link", WALK_FOLLOW, &l, &fd), 0);
        ASSERT_STREQ(l.text, "entry / a dir\n"
                             "entry /a b dir\n"
                             "entry /a/b rel-link ../../etc/passwd last\n"
                             "entry / etc dir\n"
                             "entry /etc passwd file last\n"
                             "last /etc passwd file\n");
        ASSERT_TRUE(same_file(fd, tmp, "root/etc/passwd"));
        fd = safe_close(fd);

        /* An absolute target starts again at the root; ".." of the root is the root. */
        ASSERT_EQ(walk_logged(rootfd, "/../etc-link/./passwd", WALK_FOLLOW, &l, &fd), 0);
        ASSERT_STREQ(l.text, "entry / etc-link /etc\n"
                             "entry / etc dir\n"
                             "entry /etc passwd file last\n"
                             "last /etc passwd file\n");
        ASSERT_TRUE(same_file(fd, tmp, "root/etc/passwd"));
        fd = safe_close(fd);

        /* A path that names a directory ends there (name NULL). */
        ASSERT_EQ(walk_logged(rootfd, "a/b/..", WALK_FOLLOW, &l, &fd), 0);
        ASSERT_STREQ(l.text, "entry / a dir\n"
                             "entry /a b dir\n"
                             "last /a  dir\n");
        ASSERT_TRUE(same_file(fd, tmp, "root/a"));
        fd = safe_close(fd);

        /* Not following the last link: the walk ends at the link itself. */
        ASSERT_EQ(walk_logged(rootfd, "/chain", WALK_FOLLOW | WALK_NOFOLLOW_LAST, &l, &fd), 0);
        ASSERT_STREQ(l.text, "entry / chain abs-link last\n"
                             "last / chain abs-link\n");
        ASSERT_TRUE(same_file(fd, tmp, "root/chain"));
        fd = safe_close(fd);

        /* A missing last entry is shown to both, then -ENOENT; a missing one on the way to on_entry. */
        ASSERT_EQ(walk_logged(rootfd, "/a/nope", WALK_FOLLOW, &l, &fd), -ENOENT);
        ASSERT_STREQ(l.text, "entry / a dir\n"
                             "entry /a nope missing last\n"
                             "last /a nope missing\n");
        ASSERT_EQ(fd, -1);
        ASSERT_EQ(walk_logged(rootfd, "/nope/x", WALK_FOLLOW, &l, NULL), -ENOENT);
        ASSERT_STREQ(l.text, "entry / nope missing\n");
        ASSERT_EQ(walk_logged(rootfd, "/etc/passwd/x", WALK_FOLLOW, &l, NULL), -ENOTDIR);
        ASSERT_EQ(walk_logged(rootfd, "/loop1", WALK_FOLLOW, &l, NULL), -ELOOP);
        /* The host's own /etc is never reached: the escaping link ends at ROOT/etc. */
        ASSERT_EQ(walk_logged(rootfd, "/a/b/escaping-link", WALK_FOLLOW, &l, &fd), 0);
        ASSERT_TRUE(same_file(fd, tmp, "root/etc/passwd"));
}

TEST(path_walk_without_follow_refuses_links_dotdot_and_escapes_as_asked) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int rootfd = -1, fd = -1;
        WalkLog l = {};

        make_tree(tmp);
        rootfd = open_dir(tmp, "root");
        ASSERT_OK(rootfd);

        /* A link is shown to on_entry (with its target), then refused. */
        ASSERT_EQ(walk_logged(rootfd, "etc-link/passwd", 0, &l, &fd), -ELOOP);
        ASSERT_STREQ(l.text, "entry / etc-link /etc\n");
        ASSERT_EQ(fd, -1);
        /* ... unless the visitor stops the walk there: its value comes back. */
        l.stop_at = "etc-link";
        ASSERT_EQ(walk_logged(rootfd, "etc-link/passwd", 0, &l, &fd), 5);
        ASSERT_EQ(fd, -1);
        l.stop_at = NULL;
        ASSERT_EQ(path_walk(rootfd, "/dangling", 0, NULL, NULL, NULL), -ELOOP);

        ASSERT_EQ(walk_logged(rootfd, "a/../etc/passwd", WALK_NO_DOTDOT, &l, NULL), -EINVAL);
        ASSERT_STREQ(l.text, "entry / a dir\n");
        ASSERT_EQ(path_walk(rootfd, "/etc/passwd", WALK_BENEATH, NULL, NULL, NULL), -EXDEV);
        ASSERT_EQ(path_walk(rootfd, "a/../../etc", WALK_BENEATH, NULL, NULL, NULL), -EXDEV);
        /* Inside, ".." is fine with WALK_BENEATH, and without a visitor the walk just opens. */
        ASSERT_EQ(path_walk(rootfd, "a/b/../../etc/passwd", WALK_BENEATH, NULL, NULL, &fd), 0);
        ASSERT_TRUE(same_file(fd, tmp, "root/etc/passwd"));
}

static int refuse_last(void *userdata, const PathWalkStep *s) {
        (void) userdata;
        return s->st && S_ISREG(s->st->st_mode) ? -EPERM : 0;
}

TEST(path_walk_on_last_decides_the_end) {
        const char *tmp = test_tmpdir();
        _cleanup_close_ int rootfd = -1, fd = -1;
        const PathWalkVisitor v = { .on_last = refuse_last };

        make_tree(tmp);
        rootfd = open_dir(tmp, "root");
        ASSERT_OK(rootfd);
        ASSERT_EQ(path_walk(rootfd, "/abs-link", WALK_FOLLOW, &v, NULL, &fd), -EPERM);
        ASSERT_EQ(fd, -1);
        /* on_last returning 0 leaves the end to the walk: an O_PATH fd. */
        ASSERT_EQ(path_walk(rootfd, "/home/user/sub-link", WALK_FOLLOW, &v, NULL, &fd), 0);
        ASSERT_TRUE(same_file(fd, tmp, "root/home/user/sub"));
        ASSERT_EQ(fcntl(fd, F_GETFL) & O_PATH, O_PATH);
}

TEST(symlink_atomic_at_creates_replaces_and_never_replaces_anything_else) {
        const char *d = test_tmpdir();
        _cleanup_close_ int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        char buf[64];
        ssize_t n;

        ASSERT_OK(dfd);
        ASSERT_EQ(symlink_atomic_at(dfd, "link", "/dev/null", (uid_t) -1, (gid_t) -1, "test-link"), 0);
        n = readlink(test_path(d, "link"), buf, sizeof(buf) - 1);
        ASSERT_EQ(n, 9);
        buf[n] = 0;
        ASSERT_STREQ(buf, "/dev/null");

        /* A symlink is replaced (by an exchange: the name never goes missing), and only one entry is left. */
        ASSERT_EQ(symlink_atomic_at(dfd, "link", "/etc/hostname", (uid_t) -1, (gid_t) -1, "test-link"), 0);
        n = readlink(test_path(d, "link"), buf, sizeof(buf) - 1);
        ASSERT_TRUE(n > 0);
        buf[n] = 0;
        ASSERT_STREQ(buf, "/etc/hostname");
        ASSERT_EQ(count_entries(d, ""), 1);

        /* Anything but a symlink stays as it is. */
        test_write(d, "file", "mine\n");
        mkdirs(d, "dir");
        ASSERT_EQ(symlink_atomic_at(dfd, "file", "/dev/null", (uid_t) -1, (gid_t) -1, "test-link"), -EEXIST);
        ASSERT_EQ(symlink_atomic_at(dfd, "dir", "/dev/null", (uid_t) -1, (gid_t) -1, "test-link"), -EEXIST);
        ASSERT_STREQ(test_read_kept(d, "file"), "mine\n");
        ASSERT_EQ(symlink_atomic_at(dfd, "a/b", "/dev/null", (uid_t) -1, (gid_t) -1, "test-link"), -EINVAL);
        ASSERT_EQ(count_entries(d, ""), 3);
}

TEST(symlink_atomic_at_killed_at_its_killpoint_leaves_the_old_link_and_the_next_run_sweeps) {
        const char *d = test_tmpdir();
        _cleanup_close_ int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        char buf[64];
        int status;
        ssize_t n;
        pid_t pid;

        ASSERT_OK(dfd);
        ASSERT_OK(make_symlink("/old", d, "link"));
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                /* The caller names the point: killed there, and only there. */
                setenv("RCI_KILL_AT", "some-caller-before-rename@link", 1);
                (void) symlink_atomic_at(dfd, "link", "/new", getuid(), (gid_t) -1, "some-caller-before-rename");
                _exit(0);
        }
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        /* Killed before the rename: the old link, and our temp link beside it. */
        n = readlink(test_path(d, "link"), buf, sizeof(buf) - 1);
        ASSERT_TRUE(n > 0);
        buf[n] = 0;
        ASSERT_STREQ(buf, "/old");
        ASSERT_EQ(count_entries(d, ""), 2);

        /* Our stale temp link (given to uid as the killed run would have) is swept; the link replaced. */
        ASSERT_EQ(symlink_atomic_at(dfd, "link", "/new", getuid(), (gid_t) -1, "some-caller-before-rename"), 0);
        n = readlink(test_path(d, "link"), buf, sizeof(buf) - 1);
        ASSERT_TRUE(n > 0);
        buf[n] = 0;
        ASSERT_STREQ(buf, "/new");
        ASSERT_EQ(count_entries(d, ""), 1);
}

TEST(memstream_finish_leaves_the_text_or_frees_it) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        ASSERT_TRUE(f);
        fputs("a line\n", f);
        ASSERT_EQ(memstream_finish(f, &buf), 0);
        ASSERT_STREQ(buf, "a line\n");
        ASSERT_EQ(size, 7);
        free(buf);
}

TEST(dir_fd_is_empty_on_an_o_path_fd) {
        const char *d = test_tmpdir();
        _cleanup_close_ int fd = -1;

        mkdirs(d, "empty");
        test_write(d, "full/.hidden", "x");
        fd = open_dir(d, "empty");
        ASSERT_OK(fd);
        ASSERT_EQ(dir_fd_is_empty(fd), 1);
        fd = safe_close(fd);
        fd = open_dir(d, "full");
        ASSERT_OK(fd);
        ASSERT_EQ(dir_fd_is_empty(fd), 0);
}
