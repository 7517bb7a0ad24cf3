/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/*
 * Unit templates: real files in units/, installed in UNITS_DIR, with
 * placeholders @NAME@ (NAME is upper-case letters, digits and '_', starting
 * with a letter). Filling is strict both ways: a placeholder the caller gives
 * no value for is an error, and so is a value the template never uses (the
 * code and the template disagree). Values may not contain a newline or any
 * other control character, so a value can never add a line (a directive) to
 * a unit file.
 */

typedef struct UnitValue {
        const char *name;   /* without the '@'s */
        const char *value;
} UnitValue;

/* Fill text; *ret is malloc'd. On a bad template or value, logs what and where and returns -EINVAL. */
int unit_template_fill(const char *template_name, const char *text, const UnitValue *values, size_t n_values,
                       char **ret);

/* Where templates are read from: UNITS_DIR, unless a test points elsewhere. */
const char *units_dir(void);
void units_set_dir(const char *dir);

/* Read template_name from dir (units_dir() in production) and fill it. */
int unit_template_render(const char *dir, const char *template_name, const UnitValue *values, size_t n_values,
                         char **ret);

/*
 * A value that can stand unquoted in a unit file or AppArmor profile: an
 * absolute path (or word) of letters, digits and "/._+-" only, so it needs no
 * quoting, holds no systemd specifier ('%') and no whitespace.
 */
bool unit_value_is_plain(const char *s);
