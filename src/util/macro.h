/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Cleanup helpers. Every resource starts in its "empty" state (NULL, -1) and
 * is released when its variable leaves scope; ownership moves explicitly with
 * TAKE_PTR()/TAKE_FD().
 */

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_ __attribute__((noreturn))
#define _warn_unused_result_ __attribute__((warn_unused_result))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define TAKE_PTR(p)                            \
        ({                                     \
                __typeof__(p) _p_ = (p);       \
                (p) = NULL;                    \
                _p_;                           \
        })

#define TAKE_FD(fd)                            \
        ({                                     \
                int _fd_ = (fd);               \
                (fd) = -1;                     \
                _fd_;                          \
        })

/*
 * Append one element to a malloc'd array of n elements: grows it, counts the
 * new element in n and returns it (not initialised: assign it at once), or
 * NULL when out of memory (array and n unchanged).
 */
#define ARRAY_PUSH(array, n)                                                                   \
        ({                                                                                     \
                __typeof__(array) _a_ = reallocarray((array), (n) + 1, sizeof(*(array)));     \
                _a_ ? ((array) = _a_, &_a_[(n)++]) : NULL;                                     \
        })

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

/* close() that keeps errno, for cleanup paths. */
static inline int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                (void) close(fd);
                errno = saved;
        }
        return -1;
}

static inline void closep(int *fd) {
        *fd = safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

static inline void fclosep(FILE **f) {
        if (*f) {
                int saved = errno;
                (void) fclose(*f);
                errno = saved;
        }
}
#define _cleanup_fclose_ _cleanup_(fclosep)

static inline void closedirp(DIR **d) {
        if (*d)
                (void) closedir(*d);
}
#define _cleanup_closedir_ _cleanup_(closedirp)

static inline void strv_free(char **l) {
        if (!l)
                return;
        for (char **i = l; *i; i++)
                free(*i);
        free(l);
}
static inline void strv_freep(char ***l) {
        strv_free(*l);
}
#define _cleanup_strv_free_ _cleanup_(strv_freep)

/* free() each of n pointers: what a destructor of a struct of strings does, in one line. */
static inline void free_many(void *const *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(p[i]);
}
#define FREE_MANY(...) \
        free_many((void *const[]) { __VA_ARGS__ }, ELEMENTSOF(((void *const[]) { __VA_ARGS__ })))

#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)        \
        static inline void func##p(type *p) {          \
                if (*p)                                \
                        func(*p);                      \
        }

static inline bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}
#define streq(a, b) (strcmp((a), (b)) == 0)

/* Where s is in table (n names, an enum's, indexed by it): its index, or n when it is none of them. */
static inline size_t string_table_index(const char *const *table, size_t n, const char *s) {
        size_t i = 0;

        while (i < n && !streq_ptr(table[i], s))
                i++;
        return i;
}

static inline const char *strempty(const char *s) {
        return s ? s : "";
}

/* Returns the rest of s after prefix, or NULL. */
static inline const char *startswith(const char *s, const char *prefix) {
        size_t l = strlen(prefix);
        return strncmp(s, prefix, l) == 0 ? s + l : NULL;
}

/* s ends with suffix: where the suffix begins in s, or NULL. */
static inline const char *endswith(const char *s, const char *suffix) {
        size_t ls = strlen(s), lx = strlen(suffix);
        return ls >= lx && memcmp(s + ls - lx, suffix, lx) == 0 ? s + ls - lx : NULL;
}

/* Is word one of the whitespace-separated words of list ("cpu io memory pids")? */
static inline bool word_in_list(const char *list, const char *word) {
        size_t n = strlen(word);

        if (n == 0)
                return false;
        for (const char *p = list; (p = strstr(p, word)); p += n)
                if ((p == list || strchr(" \t\n", p[-1])) && strchr(" \t\n", p[n]))
                        return true;
        return false;
}

static inline int negative_errno(void) {
        return errno > 0 ? -errno : -EIO;
}

/* Replace *p with a fresh copy of s. */
static inline int free_and_strdup(char **p, const char *s) {
        char *t = NULL;
        if (s) {
                t = strdup(s);
                if (!t)
                        return -ENOMEM;
        }
        free(*p);
        *p = t;
        return 0;
}
