/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "steps/daemon/apparmor.h"
#include "util/fs.h"
#include "util/macro.h"

#define APPARMOR_DIR "/etc/apparmor.d"
#define PROFILE_FILE_MAX (1024 * 1024)
#define MAX_VARS 32
#define MAX_ALTERNATIVES 4096

void apparmor_profile_done(AppArmorProfile *p) {
        free(p->file);
        free(p->name);
        free(p->attachment);
        *p = (AppArmorProfile) {};
}

bool apparmor_has_abi_4_0(int root_fd) {
        _cleanup_close_ int fd = safe_openat(root_fd, APPARMOR_DIR "/abi/4.0", O_PATH, 0, RESOLVE_POLICY_IN_ROOT);
        return fd >= 0;
}

/* ---- globbing ---------------------------------------------------------------------------------------------- */

/* The '}' closing the '{' at p (nested braces counted, escapes skipped), or NULL. */
static const char *brace_end(const char *p) {
        unsigned depth = 0;

        for (; *p; p++) {
                if (*p == '\\' && p[1])
                        p++;
                else if (*p == '{')
                        depth++;
                else if (*p == '}' && --depth == 0)
                        return p;
        }
        return NULL;
}

static bool class_match(const char **pp, char c) {
        const char *p = *pp + 1;
        bool negate = false, hit = false;

        if (*p == '^' || *p == '!') {
                negate = true;
                p++;
        }
        for (bool first = true; *p && (first || *p != ']'); first = false, p++) {
                char lo = *p, hi = *p;
                if (p[1] == '-' && p[2] && p[2] != ']') {
                        hi = p[2];
                        p += 2;
                }
                if (c >= lo && c <= hi)
                        hit = true;
        }
        if (*p != ']')
                return false; /* unterminated: matches nothing */
        *pp = p + 1;
        return hit != negate;
}

static bool glob_match(const char *p, const char *s, unsigned *budget) {
        if (*budget == 0)
                return false;
        (*budget)--;

        for (;;) {
                switch (*p) {
                case 0:
                        return *s == 0;
                case '*':
                        if (p[1] == '*') {
                                for (const char *t = s;; t++) {
                                        if (glob_match(p + 2, t, budget))
                                                return true;
                                        if (!*t)
                                                return false;
                                }
                        }
                        for (const char *t = s;; t++) {
                                if (glob_match(p + 1, t, budget))
                                        return true;
                                if (!*t || *t == '/')
                                        return false;
                        }
                case '?':
                        if (!*s || *s == '/')
                                return false;
                        p++, s++;
                        continue;
                case '[':
                        if (!*s || !class_match(&p, *s))
                                return false;
                        s++;
                        continue;
                case '{': {
                        /* Each alternative, then the rest of the pattern. */
                        const char *end = brace_end(p), *alt = p + 1;
                        unsigned depth = 0;

                        if (!end)
                                return false;
                        for (const char *q = p + 1; q <= end; q++) {
                                if (*q == '\\' && q[1]) {
                                        q++;
                                        continue;
                                }
                                if (*q == '{')
                                        depth++;
                                else if (*q == '}' && depth > 0)
                                        depth--;
                                else if ((*q == ',' && depth == 0) || q == end) {
                                        _cleanup_free_ char *each = NULL;
                                        if (asprintf(&each, "%.*s%s", (int) (q - alt), alt, end + 1) < 0)
                                                return false;
                                        if (glob_match(each, s, budget))
                                                return true;
                                        alt = q + 1;
                                }
                        }
                        return false;
                }
                default:
                        if (*p == '\\' && p[1])
                                p++;
                        if (*p != *s)
                                return false;
                        p++, s++;
                }
        }
}

bool apparmor_glob_match(const char *pattern, const char *path) {
        unsigned budget = 100000; /* a pathological pattern gives up, as no match */
        return glob_match(pattern, path, &budget);
}

/* ---- profile files --------------------------------------------------------------------------------------- */

typedef struct Var {
        char *name;   /* "@{exec_path}" */
        char *value;  /* "{/usr/bin/a,/usr/bin/b}": several values as alternatives */
} Var;

/* Next token of *p: quoted or up to whitespace; NULL at the end of the line. */
static char *next_token(const char **p) {
        const char *s = *p + strspn(*p, " \t"), *e;

        if (!*s)
                return NULL;
        if (*s == '"') {
                e = strchr(s + 1, '"');
                if (!e)
                        return NULL;
                *p = e + 1;
                return strndup(s + 1, (size_t) (e - s - 1));
        }
        e = s + strcspn(s, " \t");
        *p = e;
        return strndup(s, (size_t) (e - s));
}

/* attachment with the file's own variables expanded; NULL if it uses another (or on no memory). */
static char *expand_vars(const char *attachment, const Var *vars, size_t n_vars) {
        _cleanup_free_ char *out = strdup(attachment);

        for (unsigned rounds = 0; out && strstr(out, "@{"); rounds++) {
                char *at = strstr(out, "@{"), *end = strchr(at, '}'), *n;
                const Var *v = NULL;

                if (!end || rounds > 8)
                        return NULL;
                for (size_t i = 0; i < n_vars && !v; i++)
                        if (strlen(vars[i].name) == (size_t) (end + 1 - at) && strncmp(vars[i].name, at, (size_t) (end + 1 - at)) == 0)
                                v = &vars[i];
                if (!v)
                        return NULL;
                if (asprintf(&n, "%.*s%s%s", (int) (at - out), out, v->value, end + 1) < 0)
                        return NULL;
                free(out);
                out = n;
        }
        return TAKE_PTR(out);
}

/* "@{name} = a b" (or +=) at the top of a file: remember it. */
static void parse_var(const char *line, Var *vars, size_t *n_vars) {
        const char *p = line, *eq = strchr(line, '=');
        _cleanup_free_ char *name = NULL, *value = NULL;
        char *tok;
        bool append;

        if (!eq || *n_vars >= MAX_VARS)
                return;
        append = eq > line && eq[-1] == '+';
        name = strndup(line, (size_t) ((append ? eq - 1 : eq) - line));
        if (!name)
                return;
        name[strcspn(name, " \t")] = 0;
        p = eq + 1;
        while ((tok = next_token(&p))) {
                char *n;
                if (asprintf(&n, "%s%s%s", value ? value : "", value ? "," : "", tok) < 0) {
                        free(tok);
                        return;
                }
                free(tok);
                free(value);
                value = n;
        }
        if (!value)
                return;
        for (size_t i = 0; i < *n_vars; i++)
                if (streq(vars[i].name, name)) {
                        /* "{a,b}" += c → "{a,b,c}"; = replaces. */
                        char *n;
                        if (asprintf(&n, "{%.*s%s%s}", append ? (int) strlen(vars[i].value) - 2 : 0, vars[i].value + 1,
                                     append ? "," : "", value) < 0)
                                return;
                        free(vars[i].value);
                        vars[i].value = n;
                        return;
                }
        if (asprintf(&vars[*n_vars].value, "{%s}", value) < 0)
                return;
        vars[(*n_vars)++].name = TAKE_PTR(name);
}

/*
 * Braces on a line, outside quotes: how the block depth changes. Those of
 * globs and variables ("/{usr/,}bin", "@{HOME}") pair up on their line.
 */
static int brace_delta(const char *line) {
        bool quoted = false;
        int d = 0;

        for (const char *p = line; *p; p++) {
                if (*p == '"')
                        quoted = !quoted;
                else if (!quoted && *p == '\\' && p[1])
                        p++;
                else if (!quoted && *p == '{')
                        d++;
                else if (!quoted && *p == '}')
                        d--;
        }
        return d;
}

/*
 * One file: its profiles' headers at the top level ("profile NAME [ATTACH] …{",
 * "ATTACH …{"), the first whose attachment matches path. 1 found, 0 not, < 0 ENOMEM.
 */
static int parse_profile_file(const char *text, const char *file, const char *path, AppArmorProfile *ret) {
        _cleanup_free_ char *copy = strdup(text);
        Var vars[MAX_VARS] = {};
        size_t n_vars = 0;
        int depth = 0, found_depth = -1, r = 0;
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                const char *p;
                char *hash;
                int delta;

                line += strspn(line, " \t");
                if (line[0] == '#')
                        continue; /* a comment, or an old-style #include: neither is a header */
                /* A comment at the end of a line (a '#' after whitespace, outside quotes: enough for headers). */
                for (hash = line; (hash = strchr(hash, '#')); hash++)
                        if (hash > line && (hash[-1] == ' ' || hash[-1] == '\t')) {
                                *hash = 0;
                                break;
                        }
                delta = brace_delta(line);

                if (found_depth >= 0 && depth == found_depth + 1) {
                        /* Inside the profile found: a userns rule of its own. */
                        _cleanup_free_ char *first = NULL, *second = NULL;
                        p = line;
                        first = next_token(&p);
                        if (first && (streq(first, "audit") || streq(first, "allow")))
                                second = next_token(&p);
                        const char *rule = second ? second : first;
                        if (rule && (streq(rule, "userns") || streq(rule, "userns,") || startswith(rule, "userns,")))
                                ret->userns = true;
                }
                if (depth == 0 && found_depth < 0) {
                        _cleanup_free_ char *tok = NULL, *name = NULL, *attach = NULL, *expanded = NULL;

                        p = line;
                        tok = next_token(&p);
                        /* "@{x} = …" defines a variable; "@{x} flags=(…) {" is a header attaching to it. */
                        const char *after = p + strspn(p, " \t");
                        if (tok && startswith(tok, "@{") &&
                            (strchr(tok, '=') || after[0] == '=' || startswith(after, "+="))) {
                                parse_var(line, vars, &n_vars);
                        } else if (tok && streq(tok, "profile")) {
                                name = next_token(&p);
                                attach = next_token(&p);
                                if (attach && !(attach[0] == '/' || startswith(attach, "@{"))) {
                                        free(attach);
                                        attach = NULL;
                                }
                                if (!attach && name && name[0] == '/')
                                        attach = strdup(name);
                        } else if (tok && (tok[0] == '/' || startswith(tok, "@{")) && delta > 0) {
                                name = strdup(tok);
                                attach = strdup(tok);
                        }
                        if (attach)
                                expanded = expand_vars(attach, vars, n_vars);
                        if (expanded && delta > 0 && apparmor_glob_match(expanded, path)) {
                                ret->file = strdup(file);
                                ret->name = TAKE_PTR(name);
                                ret->attachment = TAKE_PTR(attach);
                                if (!ret->file || !ret->name) {
                                        r = -ENOMEM;
                                        break;
                                }
                                found_depth = depth;
                        }
                }
                depth += delta;
                if (depth < 0)
                        depth = 0;
                if (found_depth >= 0 && depth <= found_depth)
                        break; /* the profile found is closed */
        }
        for (size_t i = 0; i < n_vars; i++) {
                free(vars[i].name);
                free(vars[i].value);
        }
        if (r < 0)
                return r;
        return found_depth >= 0;
}

/* What apparmor_parser passes over in its directory. */
static bool skipped_name(const char *n) {
        static const char *const suffixes[] = { "~", ".dpkg-new", ".dpkg-old", ".dpkg-dist", ".dpkg-bak", ".dpkg-remove",
                                                ".pacsave", ".pacnew", ".rpmnew", ".rpmsave", ".orig", ".rej" };
        size_t l = strlen(n);

        if (n[0] == '.' || streq(n, "README"))
                return true;
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                size_t s = strlen(suffixes[i]);
                if (l >= s && streq(n + l - s, suffixes[i]))
                        return true;
        }
        return false;
}

/* What apparmor_parser reads: regular files (or of a type readdir() does not tell) it does not pass over. */
static bool profile_name(const struct dirent *de) {
        return !skipped_name(de->d_name) && (de->d_type == DT_REG || de->d_type == DT_UNKNOWN);
}

int apparmor_find_attaching(int root_fd, const char *path, const char *skip, AppArmorProfile *ret) {
        _cleanup_(strv_freep) char **names = NULL;
        size_t n = 0;
        int r = 0;

        *ret = (AppArmorProfile) {};
        r = dir_list_sorted_at(root_fd, APPARMOR_DIR, RESOLVE_POLICY_IN_ROOT, profile_name, &names, &n);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *file = NULL, *disabled = NULL, *text = NULL;
                _cleanup_close_ int dfd = -1;

                if (asprintf(&file, APPARMOR_DIR "/%s", names[i]) < 0 ||
                    asprintf(&disabled, APPARMOR_DIR "/disable/%s", names[i]) < 0)
                        return -ENOMEM;
                if (skip && streq(file, skip))
                        continue;
                dfd = safe_openat(root_fd, disabled, O_PATH, 0, RESOLVE_POLICY_IN_ROOT);
                if (dfd >= 0)
                        continue; /* disabled: not loaded */
                r = read_file_at(root_fd, file, RESOLVE_POLICY_IN_ROOT, PROFILE_FILE_MAX, &text, NULL);
                if (r == -EISDIR || r == -EFBIG || r == -EBADFD || r == -ENOENT)
                        continue;
                if (r < 0)
                        return r;
                r = parse_profile_file(text, file, path, ret);
                if (r != 0)
                        return r;
        }
        return 0;
}
