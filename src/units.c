/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "units.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"

#define TEMPLATE_MAX_SIZE (256 * 1024)

static const char *templates_dir = UNITS_DIR;

const char *units_dir(void) {
        return templates_dir;
}

void units_set_dir(const char *dir) {
        templates_dir = dir ? dir : UNITS_DIR;
}

static bool is_name_start(char c) {
        return c >= 'A' && c <= 'Z';
}

static bool is_name_char(char c) {
        return is_name_start(c) || (c >= '0' && c <= '9') || c == '_';
}

/* If p starts a placeholder "@NAME@", return NAME's length, else 0. */
static size_t placeholder_length(const char *p) {
        size_t l = 1;

        if (p[0] != '@' || !is_name_start(p[1]))
                return 0;
        while (is_name_char(p[l]))
                l++;
        return p[l] == '@' ? l - 1 : 0;
}

static bool value_is_safe(const char *v) {
        for (const unsigned char *p = (const unsigned char *) v; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        return false;
        return true;
}

bool unit_value_is_plain(const char *s) {
        if (!s || !*s)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      strchr("/._+-", *p)))
                        return false;
        return true;
}

int unit_template_fill(const char *template_name, const char *text, const UnitValue *values, size_t n_values,
                       char **ret) {
        _cleanup_free_ char *out = NULL;
        _cleanup_free_ bool *used = NULL;
        size_t out_size = 0;
        FILE *f;
        unsigned line = 1;

        for (size_t i = 0; i < n_values; i++)
                if (!value_is_safe(values[i].value))
                        return log_error_errno(-EINVAL,
                                               "Refusing to fill @%s@ in %s: its value contains a newline or "
                                               "another control character",
                                               values[i].name, template_name);

        used = calloc(n_values ? n_values : 1, sizeof(bool));
        if (!used)
                return -ENOMEM;
        f = open_memstream(&out, &out_size);
        if (!f)
                return -ENOMEM;

        for (const char *p = text; *p;) {
                size_t l = placeholder_length(p);
                size_t i;

                if (l == 0) {
                        if (*p == '\n')
                                line++;
                        fputc(*p++, f);
                        continue;
                }
                for (i = 0; i < n_values; i++)
                        if (strlen(values[i].name) == l && strncmp(values[i].name, p + 1, l) == 0)
                                break;
                if (i == n_values) {
                        fclose(f);
                        return log_error_errno(-EINVAL, "%s:%u: unknown placeholder @%.*s@", template_name, line,
                                               (int) l, p + 1);
                }
                fputs(values[i].value, f);
                used[i] = true;
                p += l + 2;
        }
        if (fclose(f) != 0)
                return -ENOMEM;

        for (size_t i = 0; i < n_values; i++)
                if (!used[i])
                        return log_error_errno(-EINVAL, "%s does not use placeholder @%s@ (template and code disagree)",
                                               template_name, values[i].name);

        *ret = TAKE_PTR(out);
        return 0;
}

int unit_template_render(const char *dir, const char *template_name, const UnitValue *values, size_t n_values,
                         char **ret) {
        _cleanup_close_ int dfd = -1;
        _cleanup_free_ char *text = NULL;
        int r;

        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return log_error_errno(negative_errno(), "Failed to open the unit templates directory %s: %m", dir);
        r = read_file_at(dfd, template_name, RESOLVE_POLICY_NO_SYMLINKS, TEMPLATE_MAX_SIZE, &text, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to read unit template %s/%s: %m", dir, template_name);
        return unit_template_fill(template_name, text, values, n_values, ret);
}
