/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests.h"
#include "util/log.h"

int test_failed_flag;
int test_skipped_flag;
static char skip_reason[512];
static char *tmpdir;
static int saved_stderr = -1, capture_fd = -1;
static char **kept;
static size_t n_kept;

extern const TestCase __start_rci_tests[];
extern const TestCase __stop_rci_tests[];

void test_fail(const char *file, int line, const char *fmt, ...) {
        va_list ap;

        fprintf(stdout, "# %s:%d: ", file, line);
        va_start(ap, fmt);
        vfprintf(stdout, fmt, ap);
        va_end(ap);
        fputc('\n', stdout);
        test_failed_flag = 1;
}

void test_skip(const char *reason) {
        /* One line: the reason goes on the test's "# SKIP" line, where meson and scripts/test read it. */
        snprintf(skip_reason, sizeof(skip_reason), "%s", reason);
        for (char *c = skip_reason; *c; c++)
                if (*c == '\n' || *c == '#')
                        *c = ' ';
        test_skipped_flag = 1;
}

const char *test_tmpdir(void) {
        if (!tmpdir) {
                const char *base = getenv("TMPDIR");
                char t[4096];

                snprintf(t, sizeof(t), "%s/rci-test.XXXXXX", base && base[0] == '/' ? base : "/tmp");
                if (!mkdtemp(t)) {
                        perror("mkdtemp");
                        exit(1);
                }
                tmpdir = strdup(t);
        }
        return tmpdir;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st; (void) flag; (void) ftw;
        (void) remove(p);
        return 0;
}

static void mkdir_parents(char *path) {
        for (char *s = strchr(path + 1, '/'); s; s = strchr(s + 1, '/')) {
                *s = 0;
                (void) mkdir(path, 0755);
                *s = '/';
        }
}

void test_write(const char *dir, const char *relpath, const char *text) {
        char p[4096];
        FILE *f;

        snprintf(p, sizeof(p), "%s/%s", dir, relpath);
        mkdir_parents(p);
        f = fopen(p, "we");
        if (!f) {
                perror(p);
                exit(1);
        }
        fputs(text, f);
        fclose(f);
}

char *test_read(const char *dir, const char *relpath) {
        char p[4096], *buf = NULL;
        size_t size = 0;
        FILE *f, *m;
        int c;

        snprintf(p, sizeof(p), "%s/%s", dir, relpath);
        f = fopen(p, "re");
        if (!f)
                return NULL;
        m = open_memstream(&buf, &size);
        while ((c = fgetc(f)) != EOF)
                fputc(c, m);
        fclose(m);
        fclose(f);
        return buf;
}

const char *test_read_kept(const char *dir, const char *relpath) {
        char *buf = test_read(dir, relpath), **n;

        if (!buf)
                return NULL;
        n = reallocarray(kept, n_kept + 1, sizeof(char *));
        if (!n) {
                perror("test_read_kept");
                exit(1);
        }
        kept = n;
        kept[n_kept++] = buf;
        return buf;
}

static void free_kept(void) {
        for (size_t i = 0; i < n_kept; i++)
                free(kept[i]);
        free(kept);
        kept = NULL;
        n_kept = 0;
}

const char *test_path(const char *dir, const char *relpath) {
        static char p[4096];
        snprintf(p, sizeof(p), "%s/%s", dir, relpath);
        return p;
}

void test_capture_stderr_begin(void) {
        fflush(stderr);
        capture_fd = memfd_create("rci-test-stderr", MFD_CLOEXEC);
        saved_stderr = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
        if (capture_fd < 0 || saved_stderr < 0 || dup2(capture_fd, STDERR_FILENO) < 0) {
                perror("capturing stderr");
                exit(1);
        }
}

char *test_capture_stderr_end(void) {
        char *buf = NULL;
        off_t size;

        fflush(stderr);
        if (dup2(saved_stderr, STDERR_FILENO) < 0) {
                perror("restoring stderr");
                exit(1);
        }
        close(saved_stderr);
        saved_stderr = -1;

        size = lseek(capture_fd, 0, SEEK_END);
        buf = calloc(1, (size_t) (size > 0 ? size : 0) + 1);
        if (!buf || (size > 0 && pread(capture_fd, buf, (size_t) size, 0) != size)) {
                perror("reading captured stderr");
                exit(1);
        }
        close(capture_fd);
        capture_fd = -1;

        if (getenv("RCI_TEST_VERBOSE"))
                for (char *l = buf, *e; *l; l = e + (*e != 0)) {
                        e = strchrnul(l, '\n');
                        printf("# stderr: %.*s\n", (int) (e - l), l);
                }
        return buf;
}

int test_log_level(void) {
        return getenv("RCI_TEST_VERBOSE") ? LOG_DEBUG : LOG_WARNING;
}

int main(int argc, char *argv[]) {
        int n = 0, failed = 0, ran = 0;

        log_set_max_level(test_log_level());

        for (const TestCase *t = __start_rci_tests; t < __stop_rci_tests; t++)
                if (argc < 2 || strstr(t->name, argv[1]))
                        n++;
        printf("1..%d\n", n);
        /* Flushed before any test forks, so a child that flushes cannot print it twice. */
        fflush(stdout);

        for (const TestCase *t = __start_rci_tests; t < __stop_rci_tests; t++) {
                if (argc >= 2 && !strstr(t->name, argv[1]))
                        continue;
                test_failed_flag = test_skipped_flag = 0;
                t->func();
                ran++;
                free_kept();
                if (tmpdir) {
                        (void) nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
                        free(tmpdir);
                        tmpdir = NULL;
                }
                if (test_failed_flag) {
                        failed++;
                        printf("not ok %d - %s\n", ran, t->name);
                } else if (test_skipped_flag) {
                        printf("ok %d - %s # SKIP %s\n", ran, t->name, skip_reason);
                } else
                        printf("ok %d - %s\n", ran, t->name);
                fflush(stdout);
        }

        /* TAP: a skip is an "ok ... # SKIP" line and exit 0 (meson calls the test skipped when all are). */
        return failed ? 1 : 0;
}
