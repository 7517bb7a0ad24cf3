/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "groupfile.h"
#include "util/fileio.h"
#include "util/macro.h"
#include "util/userdb.h"

#define GROUP_FIELDS 4

static bool is_list_field(GroupFileKind kind, size_t i) {
        return i == 3 || (kind == GROUP_FILE_GSHADOW && i == 2);
}

static bool line_is_group(const char *line, size_t len, const char *group) {
        size_t gl = strlen(group);
        return len > gl && line[gl] == ':' && memcmp(line, group, gl) == 0;
}

bool group_file_lists_user(const char *text, GroupFileKind kind, const char *group, const char *user) {
        for (const char *p = text; *p;) {
                const char *eol = strchrnul(p, '\n');
                size_t len = (size_t) (eol - p);

                if (line_is_group(p, len, group)) {
                        const char *f[GROUP_FIELDS];
                        size_t l[GROUP_FIELDS];
                        size_t n = colon_split(p, len, f, l, GROUP_FIELDS);

                        for (size_t i = 0; i < n; i++)
                                if (is_list_field(kind, i) && comma_list_contains(f[i], l[i], user))
                                        return true;
                }
                p = *eol ? eol + 1 : eol;
        }
        return false;
}

/* Write the list without user; true if something was dropped. */
static bool write_list_without(FILE *out, const char *list, size_t len, const char *user) {
        size_t ul = strlen(user);
        bool first = true, dropped = false;
        const char *p = list, *end = list + len;

        for (;;) {
                const char *c = memchr(p, ',', (size_t) (end - p));
                const char *e = c ? c : end;

                if ((size_t) (e - p) == ul && memcmp(p, user, ul) == 0)
                        dropped = true;
                else {
                        if (!first)
                                fputc(',', out);
                        fwrite(p, 1, (size_t) (e - p), out);
                        first = false;
                }
                if (!c)
                        break;
                p = c + 1;
        }
        return dropped;
}

int group_file_remove_user(const char *text, size_t size, GroupFileKind kind,
                           const char *const *groups, size_t n_groups, const char *user,
                           char **ret, size_t *ret_size, unsigned *ret_changed) {
        _cleanup_fclose_ FILE *out = NULL;
        char *buf = NULL;
        size_t bufsize = 0;
        unsigned changed = 0;

        out = open_memstream(&buf, &bufsize);
        if (!out)
                return -ENOMEM;

        for (const char *p = text, *end = text + size; p < end;) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t len = (size_t) ((nl ? nl : end) - p);
                const char *f[GROUP_FIELDS];
                size_t l[GROUP_FIELDS], n;
                bool ours = false, dropped = false;

                for (size_t g = 0; g < n_groups && !ours; g++)
                        ours = line_is_group(p, len, groups[g]);

                n = ours ? colon_split(p, len, f, l, GROUP_FIELDS) : 0;
                if (!ours || n != GROUP_FIELDS)
                        fwrite(p, 1, len, out);
                else
                        for (size_t i = 0; i < n; i++) {
                                if (i > 0)
                                        fputc(':', out);
                                if (is_list_field(kind, i))
                                        dropped |= write_list_without(out, f[i], l[i], user);
                                else
                                        fwrite(f[i], 1, l[i], out);
                        }
                if (dropped)
                        changed++;
                if (nl)
                        fputc('\n', out);
                p = nl ? nl + 1 : end;
        }

        if (memstream_finish(TAKE_PTR(out), &buf) < 0)
                return -ENOMEM;
        *ret = buf;
        *ret_size = bufsize;
        *ret_changed = changed;
        return 0;
}
