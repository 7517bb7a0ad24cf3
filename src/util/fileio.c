/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <sys/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "killpoint.h"
#include "log.h"
#include "macro.h"

static int write_all(int fd, const void *data, size_t size) {
        const char *p = data;
        while (size > 0) {
                ssize_t n = write(fd, p, size);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                p += n;
                size -= (size_t) n;
        }
        return 0;
}

int temp_name_random(const char *name, char ret[static NAME_MAX + 1]) {
        uint64_t rnd;

        if (strchr(name, '/') || strlen(name) > NAME_MAX - TEMP_NAME_EXTRA)
                return -ENAMETOOLONG;
        /* Unpredictable, so nobody can plant every name we would try. */
        if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t) sizeof(rnd))
                return negative_errno();
        snprintf(ret, NAME_MAX + 1, ".#%s.%0*" PRIx64, name, TEMP_NAME_HEX_DIGITS, rnd);
        return 0;
}

static bool is_our_temp_name(const char *entry, const char *name) {
        size_t len = strlen(name);

        if (strncmp(entry, ".#", 2) != 0 || strncmp(entry + 2, name, len) != 0 || entry[2 + len] != '.')
                return false;
        entry += 3 + len;
        if (strlen(entry) != TEMP_NAME_HEX_DIGITS)
                return false;
        for (; *entry; entry++)
                if (!((*entry >= '0' && *entry <= '9') || (*entry >= 'a' && *entry <= 'f')))
                        return false;
        return true;
}

struct dirent *readdir_no_dot(DIR *d) {
        struct dirent *de;

        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        return de;
        return NULL;
}

int opendir_at(int dirfd, DIR **ret) {
        int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0)
                return negative_errno();
        *ret = fdopendir(fd);
        if (!*ret) {
                int r = negative_errno();
                safe_close(fd);
                return r;
        }
        return 0;
}

static int compare_names(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int dir_list_sorted(int dirfd, bool (*keep)(const struct dirent *de), char ***ret, size_t *ret_n) {
        _cleanup_closedir_ DIR *d = NULL;
        _cleanup_strv_free_ char **names = NULL;
        struct dirent *de;
        size_t n = 0;
        int r;

        r = opendir_at(dirfd, &d);
        if (r < 0)
                return r;
        while ((errno = 0, de = readdir_no_dot(d))) {
                char **nn;

                if (keep && !keep(de))
                        continue;
                nn = reallocarray(names, n + 2, sizeof(char *));
                if (!nn)
                        return -ENOMEM;
                names = nn;
                names[n] = strdup(de->d_name);
                names[n + 1] = NULL;
                if (!names[n])
                        return -ENOMEM;
                n++;
        }
        if (errno != 0)
                return negative_errno();
        if (n > 1)
                qsort(names, n, sizeof(char *), compare_names);
        if (!names) {
                /* An empty directory: an empty list, never NULL. */
                names = calloc(1, sizeof(char *));
                if (!names)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(names);
        *ret_n = n;
        return 0;
}

int dir_list_sorted_at(int dirfd, const char *path, ResolvePolicy policy, bool (*keep)(const struct dirent *de),
                       char ***ret, size_t *ret_n) {
        _cleanup_close_ int fd = safe_openat(dirfd, path, O_RDONLY | O_DIRECTORY, 0, policy);

        if (fd == -ENOENT || fd == -ENOTDIR) {
                *ret = calloc(1, sizeof(char *));
                *ret_n = 0;
                return *ret ? 0 : -ENOMEM;
        }
        if (fd < 0)
                return fd;
        return dir_list_sorted(fd, keep, ret, ret_n);
}

int remove_stale_temp_files(int dirfd, const char *name, mode_t type, uid_t owner) {
        struct dirent *de;
        int r, removed = 0;
        DIR *d;

        r = opendir_at(dirfd, &d);
        if (r < 0)
                return r;
        while ((de = readdir(d))) {
                struct stat st;

                if (!is_our_temp_name(de->d_name, name))
                        continue;
                if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || (st.st_mode & S_IFMT) != type ||
                    (st.st_uid != 0 && (owner == (uid_t) -1 || st.st_uid != owner)))
                        continue;
                if (unlinkat(dirfd, de->d_name, 0) >= 0) {
                        log_debug("Removed %s, left by a run that was killed", de->d_name);
                        removed++;
                }
        }
        closedir(d);
        return removed;
}

int write_file_atomic_at(int parentfd, const char *name, const void *data, size_t size,
                         mode_t mode, uid_t uid, gid_t gid) {
        _cleanup_close_ int fd = -1;
        char tmp[NAME_MAX + 1];
        int r;

        if (strchr(name, '/') || strlen(name) > NAME_MAX - 20)
                return -EINVAL;

        (void) remove_stale_temp_files(parentfd, name, S_IFREG, uid);

        for (unsigned attempt = 0;; attempt++) {
                r = temp_name_random(name, tmp);
                if (r < 0)
                        return r;
                fd = openat(parentfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd >= 0)
                        break;
                if (errno != EEXIST || attempt > 16)
                        return negative_errno();
        }

        if (fchmod(fd, mode) < 0 ||
            ((uid != (uid_t) -1 || gid != (gid_t) -1) && fchown(fd, uid, gid) < 0)) {
                r = negative_errno();
                goto fail;
        }
        r = write_all(fd, data, size);
        if (r < 0)
                goto fail;
        killpoint_at("write-before-fsync", name);
        if (fsync(fd) < 0) {
                r = negative_errno();
                goto fail;
        }
        if (close(TAKE_FD(fd)) < 0) {
                r = negative_errno();
                goto fail;
        }
        killpoint_at("write-before-rename", name);
        if (renameat(parentfd, tmp, parentfd, name) < 0) {
                r = negative_errno();
                goto fail;
        }
        killpoint_at("write-after-rename", name);
        return fsync_dir(parentfd);

fail:
        (void) unlinkat(parentfd, tmp, 0);
        return r;
}

int open_parent_dir(int dirfd, const char *path, ResolvePolicy policy, char **ret_name) {
        _cleanup_free_ char *name = NULL;
        _cleanup_close_ int parent = -1;
        int d;

        parent = safe_open_parent(dirfd, path, policy, &name);
        if (parent < 0)
                return parent;
        /* O_PATH fds cannot create or remove entries; reopen the directory for real. */
        d = openat(parent, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d < 0)
                return negative_errno();
        *ret_name = TAKE_PTR(name);
        return d;
}

int write_file_atomic(int dirfd, const char *path, const void *data, size_t size,
                      mode_t mode, uid_t uid, gid_t gid, ResolvePolicy policy) {
        _cleanup_free_ char *name = NULL;
        _cleanup_close_ int dfd = open_parent_dir(dirfd, path, policy, &name);

        if (dfd < 0)
                return dfd;
        return write_file_atomic_at(dfd, name, data, size, mode, uid, gid);
}

int read_file_at(int dirfd, const char *path, ResolvePolicy policy, size_t max_size,
                 char **ret, size_t *ret_size) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, alloc = 0;
        struct stat st;

        /* O_NONBLOCK: a FIFO or device planted where a file should be must not hang us in open(). */
        fd = safe_openat(dirfd, path, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0, policy);
        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode))
                return S_ISDIR(st.st_mode) ? -EISDIR : -EBADFD;

        for (;;) {
                ssize_t n;

                if (size + 1 >= alloc) {
                        size_t na = alloc ? alloc * 2 : 4096;
                        char *nb;
                        if (na > max_size + 1)
                                na = max_size + 1;
                        if (na <= size + 1) {
                                /* Full at the limit: fine if the file ends right here. */
                                char extra;
                                ssize_t k;

                                do
                                        k = read(fd, &extra, 1);
                                while (k < 0 && errno == EINTR);
                                if (k < 0)
                                        return negative_errno();
                                if (k == 0)
                                        break;
                                return -EFBIG;
                        }
                        nb = realloc(buf, na);
                        if (!nb)
                                return -ENOMEM;
                        buf = nb;
                        alloc = na;
                }
                n = read(fd, buf + size, alloc - size - 1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        break;
                size += (size_t) n;
        }
        if (!buf && !(buf = malloc(1)))
                return -ENOMEM;
        buf[size] = 0;
        *ret = TAKE_PTR(buf);
        if (ret_size)
                *ret_size = size;
        return 0;
}

int read_file_keep_stat(int dirfd, const char *path, size_t max_size, char **ret, size_t *ret_size,
                        struct stat *ret_st) {
        _cleanup_close_ int fd = safe_openat(dirfd, path, O_PATH, 0, RESOLVE_POLICY_IN_ROOT);

        if (fd == -ENOENT) {
                *ret_st = (struct stat) {};
                *ret = strdup("");
                if (ret_size)
                        *ret_size = 0;
                return *ret ? 0 : -ENOMEM;
        }
        if (fd < 0)
                return fd;
        if (fstat(fd, ret_st) < 0)
                return negative_errno();
        return read_file_at(dirfd, path, RESOLVE_POLICY_IN_ROOT, max_size, ret, ret_size);
}

int write_file_keep_stat(int dirfd, const char *path, const void *data, size_t size, const struct stat *st,
                         mode_t new_mode) {
        bool exists = st->st_mode != 0;

        return write_file_atomic(dirfd, path, data, size, exists ? (st->st_mode & 07777) : new_mode,
                                 exists ? st->st_uid : (uid_t) -1, exists ? st->st_gid : (gid_t) -1,
                                 RESOLVE_POLICY_IN_ROOT);
}

int read_one_line_at(int dirfd, const char *path, char **ret) {
        char *buf;
        size_t l;
        int r;

        r = read_file_at(dirfd, path, RESOLVE_POLICY_IN_ROOT, 64 * 1024, &buf, &l);
        if (r < 0)
                return r;
        buf[strcspn(buf, "\n")] = 0;
        *ret = buf;
        return 0;
}

int memstream_finish(FILE *f, char **buf) {
        bool ok = fflush(f) == 0 && !ferror(f);

        if (fclose(f) != 0 || !ok) {
                free(*buf);
                *buf = NULL;
                return -ENOMEM;
        }
        return 0;
}

int dir_fd_is_empty(int fd) {
        _cleanup_closedir_ DIR *d = NULL;
        int r = opendir_at(fd, &d);

        if (r < 0)
                return r;
        errno = 0;
        if (readdir_no_dot(d))
                return 0;
        return errno != 0 ? negative_errno() : 1;
}

int readlinkat_malloc(int dirfd, const char *name, char **ret) {
        char buf[PATH_MAX];
        ssize_t n = readlinkat(dirfd, name, buf, sizeof(buf) - 1);

        if (n < 0)
                return negative_errno();
        buf[n] = 0;
        *ret = strdup(buf);
        return *ret ? 0 : -ENOMEM;
}

/* Open the symlink itself and check it is the one we just made: ours, one link, pointing at target. */
static int open_own_symlink(int dirfd, const char *name, const char *target) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *t = NULL;
        struct stat st;
        int r;

        fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISLNK(st.st_mode) || st.st_uid != geteuid() || st.st_nlink != 1)
                return -EBUSY;
        r = readlinkat_malloc(fd, "", &t);
        if (r < 0)
                return r;
        if (!streq(t, target))
                return -EBUSY;
        return TAKE_FD(fd);
}

/* 1 if dirfd/name is a symlink, 0 if missing, -EEXIST if it is something else, < 0 on error. */
static int symlink_or_missing(int dirfd, const char *name) {
        struct stat st;

        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : negative_errno();
        return S_ISLNK(st.st_mode) ? 1 : -EEXIST;
}

int symlink_atomic_at(int dirfd, const char *name, const char *target, uid_t uid, gid_t gid,
                      const char *killpoint_name) {
        _cleanup_close_ int fd = -1;
        char tmp[NAME_MAX + 1];
        int r, old;

        if (strchr(name, '/') || strlen(name) > NAME_MAX - 32)
                return -EINVAL;

        old = symlink_or_missing(dirfd, name);
        if (old < 0)
                return old;
        /* Left by a killed run: ours (root's, or given to uid already), symlinks only. */
        (void) remove_stale_temp_files(dirfd, name, S_IFLNK, uid);

        for (unsigned attempt = 0;; attempt++) {
                r = temp_name_random(name, tmp);
                if (r < 0)
                        return r;
                if (symlinkat(target, dirfd, tmp) >= 0)
                        break;
                if (errno != EEXIST || attempt > 16)
                        return negative_errno();
        }

        fd = open_own_symlink(dirfd, tmp, target);
        if (fd < 0) {
                r = fd;
                goto fail;
        }
        if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
                r = negative_errno();
                goto fail;
        }
        killpoint_at(killpoint_name, name);

        if (old == 0)
                r = renameat2(dirfd, tmp, dirfd, name, RENAME_NOREPLACE) < 0 ? negative_errno() : 0;
        else {
                /* Swap, then look at what came out: a symlink is dropped, anything else swapped in is kept. */
                r = renameat2(dirfd, tmp, dirfd, name, RENAME_EXCHANGE) < 0 ? negative_errno() : 0;
                if (r >= 0) {
                        if (symlink_or_missing(dirfd, tmp) != 1)
                                return -EBUSY;  /* raced: something else was there; it stays, under tmp */
                        (void) unlinkat(dirfd, tmp, 0);
                }
        }
        if (r < 0)
                goto fail;
        return fsync_dir(dirfd);

fail:
        /* Only our temporary name goes, and only while it is still a symlink. */
        if (symlink_or_missing(dirfd, tmp) == 1)
                (void) unlinkat(dirfd, tmp, 0);
        return r;
}

int remove_file_at(int dirfd, const char *path, ResolvePolicy policy) {
        _cleanup_free_ char *name = NULL;
        _cleanup_close_ int d = open_parent_dir(dirfd, path, policy, &name);

        if (d < 0)
                return d;
        if (unlinkat(d, name, 0) < 0)
                return negative_errno();
        return fsync_dir(d);
}
