/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/fs.h"
#include "util/macro.h"
#include "sudoers.h"

#define SUDOERS_FILE_MAX (16 * 1024 * 1024)
#define ALIAS_DEPTH_MAX 32

void sudoers_done(Sudoers *s) {
        for (size_t i = 0; i < s->n_aliases; i++)
                FREE_MANY(s->aliases[i].name, s->aliases[i].list);
        free(s->aliases);
        for (size_t i = 0; i < s->n_rules; i++)
                FREE_MANY(s->rules[i].file, s->rules[i].users);
        free(s->rules);
        for (size_t i = 0; i < s->n_includes; i++)
                free(s->includes[i]);
        free(s->includes);
        free(s->include_is_dir);
        for (size_t i = 0; i < s->n_files_read; i++)
                free(s->files_read[i]);
        free(s->files_read);
        *s = (Sudoers) {};
}

void sudoers_matches_free(SudoersMatch *m, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(m[i].file);
                free(m[i].via);
        }
        free(m);
}

static const char *skip_ws(const char *p) {
        while (*p == ' ' || *p == '\t')
                p++;
        return p;
}

static bool word_is(const char *p, const char *word) {
        size_t l = strlen(word);
        return strncmp(p, word, l) == 0 && (p[l] == ' ' || p[l] == '\t');
}

/*
 * Read one list entry at *pp (quotes removed, backslash escapes resolved),
 * stopping at blanks, ',', '=' , ':' or the end, into *ret (malloc'd). Any
 * length: an entry cut short would end the list there, and the entries
 * after it would go unseen. Returns 1, 0 for an empty entry, or -ENOMEM.
 */
static int read_entry(const char **pp, char **ret) {
        _cleanup_fclose_ FILE *out = NULL;
        _cleanup_free_ char *buf = NULL;
        const char *p = skip_ws(*pp);
        size_t size = 0;

        out = open_memstream(&buf, &size);
        if (!out)
                return -ENOMEM;
        while (*p == '!') {
                fputc('!', out);
                p = skip_ws(p + 1);
        }
        while (*p && !strchr(" \t,=:", *p)) {
                if (*p == '"') {
                        for (p++; *p && *p != '"'; p++)
                                fputc(*p, out);
                        if (*p == '"')
                                p++;
                } else if (*p == '\\' && p[1]) {
                        fputc(p[1], out);
                        p += 2;
                } else
                        fputc(*p++, out);
        }
        if (fclose(TAKE_PTR(out)) != 0)
                return -ENOMEM;
        *pp = p;
        if (size == 0)
                return 0;
        *ret = TAKE_PTR(buf);
        return 1;
}

/* Parse "a, b ,c" at *pp into a canonical "a,b,c"; *pp is left after the list. NULL: out of memory. */
static char *read_list(const char **pp) {
        _cleanup_fclose_ FILE *out = NULL;
        _cleanup_free_ char *buf = NULL;
        const char *p = *pp;
        size_t size = 0;
        bool first = true;

        out = open_memstream(&buf, &size);
        if (!out)
                return NULL;
        for (;;) {
                _cleanup_free_ char *entry = NULL;
                int r = read_entry(&p, &entry);

                if (r < 0)
                        return NULL;
                if (r == 0)
                        break;
                fprintf(out, "%s%s", first ? "" : ",", entry);
                first = false;
                p = skip_ws(p);
                if (*p != ',')
                        break;
                p++;
        }
        if (fclose(TAKE_PTR(out)) != 0)
                return NULL;
        *pp = p;
        return TAKE_PTR(buf);
}

static int add_include(Sudoers *s, const char *from, const char *arg, bool dir) {
        _cleanup_free_ char *path = NULL;
        char **n;
        bool *nd;
        const char *e;
        size_t l;

        arg = skip_ws(arg);
        if (*arg == '"') {
                arg++;
                e = strchrnul(arg, '"');
        } else
                e = arg + strcspn(arg, " \t");
        l = (size_t) (e - arg);
        if (l == 0)
                return 0;
        if (arg[0] == '/')
                path = strndup(arg, l);
        else {
                /* Relative to the directory of the including file (sudo >= 1.9.1). */
                const char *slash = strrchr(from, '/');
                if (asprintf(&path, "%.*s/%.*s", slash ? (int) (slash - from) : 1, slash ? from : "/", (int) l, arg) < 0)
                        path = NULL;
        }
        if (!path)
                return -ENOMEM;

        n = reallocarray(s->includes, s->n_includes + 1, sizeof(char *));
        if (!n)
                return -ENOMEM;
        s->includes = n;
        nd = reallocarray(s->include_is_dir, s->n_includes + 1, sizeof(bool));
        if (!nd)
                return -ENOMEM;
        s->include_is_dir = nd;
        s->includes[s->n_includes] = TAKE_PTR(path);
        s->include_is_dir[s->n_includes] = dir;
        s->n_includes++;
        return 0;
}

static int add_alias(Sudoers *s, const char *name, const char *list) {
        SudoersAlias *n = ARRAY_PUSH(s->aliases, s->n_aliases);
        if (!n)
                return -ENOMEM;
        *n = (SudoersAlias) { .name = strdup(name), .list = strdup(list) };
        return n->name && n->list ? 0 : -ENOMEM;
}

static int add_rule(Sudoers *s, const char *path, unsigned line, char *users) {
        SudoersRule *n = ARRAY_PUSH(s->rules, s->n_rules);
        if (!n) {
                free(users);
                return -ENOMEM;
        }
        *n = (SudoersRule) { .file = strdup(path), .line = line, .users = users };
        return n->file ? 0 : -ENOMEM;
}

/* "NAME = list : NAME2 = list2" */
static int parse_user_alias(Sudoers *s, const char *p) {
        for (;;) {
                _cleanup_free_ char *name = NULL, *list = NULL;
                size_t n = 0;
                int r;

                /* Any length: an alias cut short would be dropped, and the rules naming it unseen. */
                p = skip_ws(p);
                while (isupper((unsigned char) p[n]) || isdigit((unsigned char) p[n]) || p[n] == '_')
                        n++;
                name = strndup(p, n);
                if (!name)
                        return -ENOMEM;
                p = skip_ws(p + n);
                if (n == 0 || *p != '=')
                        return 0;
                p++;
                list = read_list(&p);
                if (!list)
                        return -ENOMEM;
                r = add_alias(s, name, list);
                if (r < 0)
                        return r;
                p = skip_ws(p);
                if (*p != ':')
                        return 0;
                p++;
        }
}

/* Remove a comment: '#' after a blank (or at the start) that is not "#<digits>" (a UID). */
static void strip_comment(char *line) {
        for (char *p = line; *p; p++)
                if (*p == '#' && (p == line || p[-1] == ' ' || p[-1] == '\t') && !isdigit((unsigned char) p[1])) {
                        *p = 0;
                        return;
                }
}

static int parse_logical_line(Sudoers *s, const char *path, unsigned lineno, char *line) {
        const char *p = skip_ws(line), *q;
        char *users;

        if ((q = startswith(p, "@includedir")) || (q = startswith(p, "#includedir"))) {
                if (*q == ' ' || *q == '\t')
                        return add_include(s, path, q, true);
        }
        if ((q = startswith(p, "@include")) || (q = startswith(p, "#include"))) {
                if (*q == ' ' || *q == '\t')
                        return add_include(s, path, q, false);
        }

        strip_comment(line);
        p = skip_ws(line);
        if (*p == 0)
                return 0;
        if (startswith(p, "Defaults"))
                return 0;
        if (word_is(p, "User_Alias"))
                return parse_user_alias(s, p + strlen("User_Alias"));
        if (word_is(p, "Runas_Alias") || word_is(p, "Host_Alias") || word_is(p, "Cmnd_Alias") || word_is(p, "Cmd_Alias"))
                return 0;

        /* A user specification: User_List Host_List = ... */
        users = read_list(&p);
        if (!users)
                return -ENOMEM;
        if (!*users || !strchr(p, '=')) {
                free(users);
                return 0;
        }
        return add_rule(s, path, lineno, users);
}

static int add_file_read(Sudoers *s, const char *path) {
        char **n = reallocarray(s->files_read, s->n_files_read + 1, sizeof(char *));
        if (!n)
                return -ENOMEM;
        s->files_read = n;
        n[s->n_files_read] = strdup(path);
        if (!n[s->n_files_read])
                return -ENOMEM;
        s->n_files_read++;
        return 0;
}

int sudoers_parse_text(Sudoers *s, const char *path, const char *text) {
        _cleanup_free_ char *line = NULL;
        size_t used = 0, alloc = 0;
        unsigned lineno = 0, start = 0;
        int r;

        r = add_file_read(s, path);
        if (r < 0)
                return r;

        for (const char *p = text; *p;) {
                const char *eol = strchrnul(p, '\n');
                size_t len = (size_t) (eol - p);
                bool cont;

                lineno++;
                if (used == 0)
                        start = lineno;
                /* A backslash at the end of a line continues it on the next. */
                cont = len > 0 && p[len - 1] == '\\';
                if (cont)
                        len--;
                if (used + len + 1 > alloc) {
                        size_t na = (used + len + 1) * 2;
                        char *n = realloc(line, na);
                        if (!n)
                                return -ENOMEM;
                        line = n;
                        alloc = na;
                }
                memcpy(line + used, p, len);
                used += len;
                line[used] = 0;
                p = *eol ? eol + 1 : eol;
                if (cont && *p)
                        continue;

                r = parse_logical_line(s, path, start, line);
                if (r < 0)
                        return r;
                used = 0;
        }
        return 0;
}

typedef enum Tristate {
        MATCH_UNSPEC = -1,
        MATCH_DENY = 0,
        MATCH_ALLOW = 1,
} Tristate;

static Tristate list_matches(const Sudoers *s, const SudoersIdentity *id, const char *list, unsigned depth,
                             char **via);

static const SudoersAlias *find_alias(const Sudoers *s, const char *name) {
        /* A later definition of the same alias wins, as in sudo. */
        for (size_t i = s->n_aliases; i > 0; i--)
                if (streq(s->aliases[i - 1].name, name))
                        return &s->aliases[i - 1];
        return NULL;
}

static bool parse_number(const char *p, unsigned long *ret) {
        char *end;
        if (!isdigit((unsigned char) *p))
                return false;
        errno = 0;
        *ret = strtoul(p, &end, 10);
        return errno == 0 && *end == 0;
}

static Tristate entry_matches(const Sudoers *s, const SudoersIdentity *id, const char *e, unsigned depth,
                              char **via) {
        const SudoersAlias *a;
        unsigned long n;

        if (streq(e, "ALL"))
                return MATCH_ALLOW;
        if (e[0] == '%') {
                if (e[1] == '#') {
                        if (parse_number(e + 2, &n))
                                for (size_t i = 0; i < id->n_groups; i++)
                                        if (id->gids && id->gids[i] == (gid_t) n)
                                                return MATCH_ALLOW;
                        return MATCH_UNSPEC;
                }
                if (e[1] == ':')
                        return MATCH_UNSPEC;   /* non-Unix group: not resolvable here */
                for (size_t i = 0; i < id->n_groups; i++)
                        if (id->groups[i] && streq(id->groups[i], e + 1))
                                return MATCH_ALLOW;
                return MATCH_UNSPEC;
        }
        if (e[0] == '#')
                return parse_number(e + 1, &n) && id->uid != (uid_t) -1 && (uid_t) n == id->uid ? MATCH_ALLOW
                                                                                                 : MATCH_UNSPEC;
        if (e[0] == '+')
                return MATCH_UNSPEC;   /* netgroup */
        a = find_alias(s, e);
        if (a && depth < ALIAS_DEPTH_MAX) {
                _cleanup_free_ char *inner = NULL;
                Tristate t = list_matches(s, id, a->list, depth + 1, &inner);
                return t;
        }
        return streq(e, id->user) ? MATCH_ALLOW : MATCH_UNSPEC;
}

/* sudo's rule: the last entry of a list that matches decides; '!' inverts an entry. */
static Tristate list_matches(const Sudoers *s, const SudoersIdentity *id, const char *list, unsigned depth,
                             char **via) {
        _cleanup_free_ char *copy = strdup(list);

        if (!copy)
                return MATCH_UNSPEC;
        /* From the last entry back, however many there are (a cap would drop the deciding one). */
        for (size_t end = strlen(copy); end > 0;) {
                char *comma = memrchr(copy, ',', end);
                const char *e = comma ? comma + 1 : copy;
                bool negated = false;
                Tristate t;

                copy[end] = 0;
                end = comma ? (size_t) (comma - copy) : 0;
                if (*e == 0)
                        continue;

                while (*e == '!') {
                        negated = !negated;
                        e++;
                }
                t = entry_matches(s, id, e, depth, via);
                if (t == MATCH_UNSPEC)
                        continue;
                if (negated)
                        t = t == MATCH_ALLOW ? MATCH_DENY : MATCH_ALLOW;
                if (t == MATCH_ALLOW && depth == 0 && via && !*via)
                        *via = strdup(e);
                return t;
        }
        return MATCH_UNSPEC;
}

int sudoers_match(const Sudoers *s, const SudoersIdentity *id, SudoersMatch **ret, size_t *ret_n) {
        SudoersMatch *m = NULL;
        size_t n = 0;

        for (size_t i = 0; i < s->n_rules; i++) {
                char *via = NULL;
                SudoersMatch *nm;

                if (list_matches(s, id, s->rules[i].users, 0, &via) != MATCH_ALLOW) {
                        free(via);
                        continue;
                }
                nm = reallocarray(m, n + 1, sizeof(SudoersMatch));
                if (!nm) {
                        free(via);
                        sudoers_matches_free(m, n);
                        return -ENOMEM;
                }
                m = nm;
                m[n] = (SudoersMatch) { .file = strdup(s->rules[i].file), .line = s->rules[i].line,
                                        .via = via ? via : strdup(s->rules[i].users) };
                n++;
                if (!m[n - 1].file || !m[n - 1].via) {
                        sudoers_matches_free(m, n);
                        return -ENOMEM;
                }
        }
        *ret = m;
        *ret_n = n;
        return 0;
}

static bool already_read(const Sudoers *s, const char *path) {
        for (size_t i = 0; i < s->n_files_read; i++)
                if (streq(s->files_read[i], path))
                        return true;
        return false;
}

static int load_file(Sudoers *s, int root_fd, const char *path) {
        _cleanup_free_ char *text = NULL;
        int r;

        if (already_read(s, path))
                return 0;
        r = read_file_at(root_fd, path, RESOLVE_POLICY_IN_ROOT, SUDOERS_FILE_MAX, &text, NULL);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        return sudoers_parse_text(s, path, text);
}

/* Like sudo: the files of an includedir, skipping names with a '.' or ending in '~'. */
static bool included_name(const struct dirent *de) {
        size_t l = strlen(de->d_name);
        return !strchr(de->d_name, '.') && !(l > 0 && de->d_name[l - 1] == '~');
}

/* The files of dir in lexical order, as sudo reads them. */
static int load_dir(Sudoers *s, int root_fd, const char *dir) {
        _cleanup_strv_free_ char **names = NULL;
        size_t n = 0;
        int r;

        r = dir_list_sorted_at(root_fd, dir, RESOLVE_POLICY_IN_ROOT, included_name, &names, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n && r >= 0; i++) {
                _cleanup_free_ char *path = NULL;

                if (asprintf(&path, "%s/%s", dir, names[i]) < 0)
                        return -ENOMEM;
                r = load_file(s, root_fd, path);
                if (r == -EISDIR || r == -EBADFD)
                        r = 0;  /* not a regular file: sudo skips it too */
        }
        return r;
}

int sudoers_load(Sudoers *s, int root_fd) {
        int r;

        r = load_file(s, root_fd, "/etc/sudoers");
        if (r < 0)
                return r;
        /* Includes found while loading are appended, so this also follows nested ones. */
        for (size_t i = 0; i < s->n_includes; i++) {
                _cleanup_free_ char *p = strdup(s->includes[i]);
                if (!p)
                        return -ENOMEM;
                if (strstr(p, "%h"))
                        continue;  /* per-host file names: not resolvable offline */
                r = s->include_is_dir[i] ? load_dir(s, root_fd, p) : load_file(s, root_fd, p);
                if (r < 0)
                        return r;
        }
        /* sudo reads /etc/sudoers.d only when included; a rule there is still one step from active. */
        return load_dir(s, root_fd, "/etc/sudoers.d");
}
