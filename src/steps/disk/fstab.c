/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <libmount.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "steps/disk/fstab.h"
#include "util/error.h"
#include "util/macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct libmnt_table *, mnt_unref_table)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct libmnt_fs *, mnt_unref_fs)

void fstab_plan_done(FstabPlan *p) {
        free(p->old_line);
        free(p->new_line);
        free(p->text);
        free(p->unparsable);
        *p = (FstabPlan) {};
}

char *fstab_line(const FstabWant *want) {
        _cleanup_free_ char *target = mnt_mangle(want->target);
        char *s;

        if (!target)
                return NULL;
        /* fsck at boot for ext4; fsck.xfs does nothing, so xfs gets 0. */
        if (asprintf(&s, "UUID=%s %s %s defaults,nofail,%s 0 %d", want->uuid, target, want->fstype, FSTAB_MARKER,
                     streq(want->fstype, "xfs") ? 0 : 2) < 0)
                return NULL;
        return s;
}

/* One line of the file, as bytes. */
typedef struct Line {
        const char *start;
        size_t len;          /* without the newline */
        bool newline;
} Line;

static int split_lines(const char *text, size_t size, Line **ret, size_t *ret_n) {
        Line *lines = NULL;
        size_t n = 0;

        for (const char *p = text, *end = text + size; p < end;) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                Line *nn = reallocarray(lines, n + 1, sizeof(Line));
                if (!nn) {
                        free(lines);
                        return -ENOMEM;
                }
                lines = nn;
                lines[n++] = (Line) {
                        .start = p,
                        .len = (size_t) ((nl ? nl : end) - p),
                        .newline = nl != NULL,
                };
                p = nl ? nl + 1 : end;
        }
        *ret = lines;
        *ret_n = n;
        return 0;
}

static bool line_is_blank_or_comment(const Line *l) {
        for (size_t i = 0; i < l->len; i++) {
                char c = l->start[i];
                if (c == ' ' || c == '\t' || c == '\r')
                        continue;
                return c == '#';
        }
        return true;
}

static int parser_error(struct libmnt_table *tb, const char *filename, int line) {
        bool *bad = mnt_table_get_userdata(tb);
        (void) filename;
        (void) line;
        *bad = true;
        return 1;  /* recoverable: we only want to know */
}

/*
 * Let libmount parse one line. *ret_fs is NULL for a blank line or a
 * comment (no entry), and when libmount cannot parse it (*ret_bad true, when
 * given). libmount sees exactly these bytes, so what it understands is what
 * mount(8) and systemd's fstab generator understand.
 */
static int parse_line(const Line *l, struct libmnt_fs **ret_fs, bool *ret_bad) {
        _cleanup_(mnt_unref_tablep) struct libmnt_table *tb = NULL;
        _cleanup_free_ char *copy = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        struct libmnt_fs *fs = NULL;
        bool bad = false;

        *ret_fs = NULL;
        if (ret_bad)
                *ret_bad = false;
        if (line_is_blank_or_comment(l))
                return 0;

        copy = strndup(l->start, l->len);
        if (!copy)
                return -ENOMEM;
        tb = mnt_new_table();
        if (!tb)
                return -ENOMEM;
        mnt_table_set_userdata(tb, &bad);
        mnt_table_set_parser_errcb(tb, parser_error);
        f = fmemopen(copy, l->len, "r");
        if (!f)
                return negative_errno();
        if (mnt_table_parse_stream(tb, f, "fstab") < 0)
                bad = true;
        if (!bad && mnt_table_first_fs(tb, &fs) == 0 && fs) {
                mnt_ref_fs(fs);
                *ret_fs = fs;
        } else
                bad = true;
        if (ret_bad)
                *ret_bad = bad;
        return 0;
}

static bool has_option(struct libmnt_fs *fs, const char *name) {
        const char *opts = mnt_fs_get_options(fs);
        char *value;
        size_t len;
        return opts && mnt_optstr_get_option(opts, name, &value, &len) == 0;
}

static bool path_eq(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);
        while (la > 1 && a[la - 1] == '/')
                la--;
        while (lb > 1 && b[lb - 1] == '/')
                lb--;
        return la == lb && strncmp(a, b, la) == 0;
}

/* Does this line's source name the filesystem with this UUID? */
static bool source_is_uuid(struct libmnt_fs *fs, const char *uuid) {
        const char *name, *value, *src;

        if (mnt_fs_get_tag(fs, &name, &value) == 0)
                return streq(name, "UUID") && strcasecmp(value, uuid) == 0;
        src = mnt_fs_get_source(fs);
        if (src && (src = startswith(src, "/dev/disk/by-uuid/")))
                return strcasecmp(src, uuid) == 0;
        return false;
}

static bool our_line_is_right(struct libmnt_fs *fs, const FstabWant *want) {
        return source_is_uuid(fs, want->uuid) && path_eq(strempty(mnt_fs_get_target(fs)), want->target) &&
               streq_ptr(mnt_fs_get_fstype(fs), want->fstype) && has_option(fs, "nofail");
}

static int set_error(char **ret_error, int r, const char *fmt, ...) _printf_(3, 4);
static int set_error(char **ret_error, int r, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(ret_error, fmt, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
        return *ret_error ? r : -ENOMEM;
}

static int append(char **buf, size_t *len, size_t *alloc, const char *data, size_t n) {
        if (*len + n + 1 > *alloc) {
                size_t na = (*len + n + 1) * 2;
                char *nb = realloc(*buf, na);
                if (!nb)
                        return -ENOMEM;
                *buf = nb;
                *alloc = na;
        }
        memcpy(*buf + *len, data, n);
        *len += n;
        (*buf)[*len] = 0;
        return 0;
}

int fstab_plan(const char *path, const char *text, size_t size, const FstabWant *want, FstabPlan *ret,
               char **ret_error) {
        _cleanup_free_ Line *lines = NULL;
        _cleanup_free_ bool *drop = NULL;
        FstabPlan p = {};
        size_t n_lines = 0, ours = SIZE_MAX, len = 0, alloc = 0;
        int r;

        *ret_error = NULL;

        if (memchr(text, 0, size))
                return set_error(ret_error, -ERCI_FAILED, "%s contains a NUL byte; not touching it.", path);

        r = split_lines(text, size, &lines, &n_lines);
        if (r < 0)
                return r;
        drop = calloc(n_lines ? n_lines : 1, sizeof(bool));
        p.new_line = fstab_line(want);
        if (!drop || !p.new_line) {
                r = -ENOMEM;
                goto fail;
        }

        for (size_t i = 0; i < n_lines; i++) {
                _cleanup_(mnt_unref_fsp) struct libmnt_fs *fs = NULL;
                unsigned lineno = (unsigned) i + 1;
                bool bad;

                r = parse_line(&lines[i], &fs, &bad);
                if (r < 0)
                        goto fail;
                if (!fs && !bad)
                        continue;  /* blank or a comment */
                if (bad) {
                        unsigned *nu;
                        if (memmem(lines[i].start, lines[i].len, FSTAB_MARKER, strlen(FSTAB_MARKER))) {
                                r = set_error(ret_error, -ERCI_FAILED,
                                              "%s:%u: libmount cannot parse this line, and it mentions %s, so it may "
                                              "be rootless-ci's own; fix or remove it by hand.",
                                              path, lineno, FSTAB_MARKER);
                                goto fail;
                        }
                        nu = reallocarray(p.unparsable, p.n_unparsable + 1, sizeof(unsigned));
                        if (!nu) {
                                r = -ENOMEM;
                                goto fail;
                        }
                        p.unparsable = nu;
                        p.unparsable[p.n_unparsable++] = lineno;
                        continue;
                }

                if (has_option(fs, FSTAB_MARKER)) {
                        if (ours == SIZE_MAX) {
                                ours = i;
                                p.line = lineno;
                                if (our_line_is_right(fs, want))
                                        p.action = FSTAB_KEEP;
                                else {
                                        p.action = FSTAB_REPLACE;
                                        p.old_line = strndup(lines[i].start, lines[i].len);
                                        if (!p.old_line) {
                                                r = -ENOMEM;
                                                goto fail;
                                        }
                                }
                        } else {
                                drop[i] = true;
                                p.n_removed++;
                        }
                        continue;
                }

                /* Not ours: it must neither use our mount point nor mount our filesystem elsewhere. */
                if (path_eq(strempty(mnt_fs_get_target(fs)), want->target)) {
                        if (source_is_uuid(fs, want->uuid)) {
                                p.adopted = true;
                                continue;
                        }
                        r = set_error(ret_error, -ERCI_REFUSED,
                                      "%s:%u already mounts %s at %s; rootless-ci will not replace a line it did not "
                                      "write. Remove that line or choose another MountPoint=.",
                                      path, lineno, strempty(mnt_fs_get_source(fs)), want->target);
                        goto fail;
                }
                if (source_is_uuid(fs, want->uuid)) {
                        r = set_error(ret_error, -ERCI_REFUSED,
                                      "%s:%u already mounts the data disk's filesystem (UUID=%s) at %s; remove that "
                                      "line or set MountPoint=%s.",
                                      path, lineno, want->uuid, strempty(mnt_fs_get_target(fs)),
                                      strempty(mnt_fs_get_target(fs)));
                        goto fail;
                }
        }

        if (ours == SIZE_MAX)
                p.action = p.adopted ? FSTAB_KEEP : FSTAB_ADD;
        else if (p.adopted) {
                /* Our line and an operator's line for the same mount: keep theirs, drop ours. */
                p.action = FSTAB_REPLACE;
                drop[ours] = true;
                p.n_removed++;
                ours = SIZE_MAX;
        }
        if (p.action == FSTAB_KEEP && p.n_removed > 0)
                p.action = FSTAB_REPLACE;  /* only duplicates to drop */

        if (p.action != FSTAB_KEEP) {
                for (size_t i = 0; i < n_lines; i++) {
                        if (drop[i])
                                continue;
                        if (i == ours && p.old_line) {
                                r = append(&p.text, &len, &alloc, p.new_line, strlen(p.new_line));
                                if (r >= 0)
                                        r = append(&p.text, &len, &alloc, "\n", 1);
                        } else {
                                r = append(&p.text, &len, &alloc, lines[i].start, lines[i].len);
                                if (r >= 0 && lines[i].newline)
                                        r = append(&p.text, &len, &alloc, "\n", 1);
                        }
                        if (r < 0)
                                goto fail;
                }
                if (p.action == FSTAB_ADD) {
                        if (len > 0 && p.text[len - 1] != '\n' && (r = append(&p.text, &len, &alloc, "\n", 1)) < 0)
                                goto fail;
                        if ((r = append(&p.text, &len, &alloc, p.new_line, strlen(p.new_line))) < 0 ||
                            (r = append(&p.text, &len, &alloc, "\n", 1)) < 0)
                                goto fail;
                }
                if (!p.text && (r = append(&p.text, &len, &alloc, "", 0)) < 0)
                        goto fail;
                p.size = len;
        }

        *ret = p;
        return 0;

fail:
        fstab_plan_done(&p);
        return r;
}

int fstab_find_ours(const char *text, size_t size, unsigned *ret_line, char **ret_source, char **ret_target) {
        _cleanup_free_ Line *lines = NULL;
        size_t n_lines = 0;
        int r;

        r = split_lines(text, size, &lines, &n_lines);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_lines; i++) {
                _cleanup_(mnt_unref_fsp) struct libmnt_fs *fs = NULL;

                r = parse_line(&lines[i], &fs, NULL);
                if (r < 0)
                        return r;
                if (!fs || !has_option(fs, FSTAB_MARKER))
                        continue;
                *ret_line = (unsigned) i + 1;
                *ret_source = strdup(strempty(mnt_fs_get_source(fs)));
                *ret_target = strdup(strempty(mnt_fs_get_target(fs)));
                if (!*ret_source || !*ret_target) {
                        free(*ret_source);
                        free(*ret_target);
                        return -ENOMEM;
                }
                return 1;
        }
        return 0;
}
