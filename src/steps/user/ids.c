/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "steps/user/user.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/killpoint.h"
#include "util/log.h"
#include "util/macro.h"

/*
 * The user step's subordinate IDs: a range of /etc/subuid and /etc/subgid
 * of the CI user's own (steps/user/subid-plan.h decides it). Edits are text
 * (every other line kept byte for byte), made under shadow's locks (the ids
 * part's begin, step.c) and written atomically with the file's own mode and
 * owner.
 */

static const char *subid_file_name(SubIdKind k) {
        return k == SUBID_KIND_UID ? "subuid" : "subgid";
}

/* Read /etc/<name> for editing: its text ("" if missing), mode and owner to keep. */
int etc_file_read(StepRun *run, const char *name, char **ret_text, size_t *ret_size, struct stat *ret_st,
                  bool *ret_exists) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -1;
        int r;

        if (asprintf(&path, "/etc/%s", name) < 0)
                return -ENOMEM;
        fd = safe_openat(run_root_fd(run), path, O_PATH, 0, RESOLVE_POLICY_IN_ROOT);
        if (fd == -ENOENT) {
                *ret_text = strdup("");
                *ret_size = 0;
                *ret_exists = false;
                return *ret_text ? 0 : -ENOMEM;
        }
        if (fd < 0)
                return fd;
        if (fstat(fd, ret_st) < 0)
                return negative_errno();
        r = read_file_at(run_root_fd(run), path, RESOLVE_POLICY_IN_ROOT, ACCOUNT_FILE_MAX, ret_text, ret_size);
        if (r < 0)
                return r;
        *ret_exists = true;
        return 0;
}

int etc_file_write(StepRun *run, const char *name, const char *text, size_t size, const struct stat *st,
                   bool exists, mode_t new_mode) {
        _cleanup_free_ char *path = NULL;

        if (asprintf(&path, "/etc/%s", name) < 0)
                return -ENOMEM;
        /* Keep the file's own mode and owner (gshadow is root:shadow 0640); a new file is root's. */
        return write_file_atomic(run_root_fd(run), path, text, size, exists ? (st->st_mode & 07777) : new_mode,
                                 exists ? st->st_uid : (uid_t) -1, exists ? st->st_gid : (gid_t) -1,
                                 RESOLVE_POLICY_IN_ROOT);
}

/* A line of a file for a message: printable, at most 60 characters. */
static void format_line(char *buf, size_t size, const char *text, size_t len) {
        size_t j = 0;

        if (len > 0 && text[len - 1] == '\n')
                len--;
        for (size_t i = 0; i < len && j + 4 < size; i++) {
                if (j >= 60) {
                        buf[j++] = '.';
                        buf[j++] = '.';
                        buf[j++] = '.';
                        break;
                }
                buf[j++] = (text[i] >= 0x20 && text[i] < 0x7f) ? text[i] : '?';
        }
        buf[j] = 0;
}

void subid_result_done(SubIdResult *r) {
        free(r->ranges);
        *r = (SubIdResult) {};
}

void subid_edit_done(SubIdEdit *e) {
        subid_plan_done(&e->plan);
        subid_file_done(&e->file);
        free(e->display);
        free(e->what);
        *e = (SubIdEdit) {};
}

/* apply: the look's plan, rendered and written (under the ids part's locks). */
static int subids_write(StepRun *run, Change *c) {
        UserState *s = run_state(run);
        SubIdEdit *e = c->data;
        _cleanup_free_ char *out = NULL;
        size_t out_size = 0;
        int r;

        r = subid_render(&e->file, &e->plan, s->name, &out, &out_size);
        if (r < 0)
                return r;
        r = etc_file_write(run, subid_file_name(e->kind), out, out_size, &e->st, e->exists, 0644);
        if (r < 0)
                return log_error_errno(r, "Failed to write %s: %m", e->display);
        killpoint(e->kind == SUBID_KIND_UID ? "user-subuid-written" : "user-subgid-written");
        change_done(run, c->id, e->status, "%s: %s", e->display, e->what);
        return 0;
}

/* What changes: the lines dropped and why, and the new line. */
static int describe_edit(const SubIdEdit *e, const char *user, char **ret) {
        char *buf = NULL;
        size_t bsize = 0;
        FILE *m = open_memstream(&buf, &bsize);

        if (!m)
                return -ENOMEM;
        for (size_t i = 0; i < e->file.n_lines; i++) {
                char line[80];
                if (!e->plan.drop[i])
                        continue;
                format_line(line, sizeof(line), e->file.lines[i].text, e->file.lines[i].len);
                fprintf(m, "%sdrop line %u \"%s\" (%s)", ftell(m) > 0 ? "; " : "", e->file.lines[i].lineno, line,
                        subid_verdict_to_string(e->plan.verdict[i]));
        }
        if (e->plan.allocate)
                fprintf(m, "%sadd %s:%llu:%llu", ftell(m) > 0 ? "; " : "", user, (unsigned long long) e->plan.start,
                        (unsigned long long) e->plan.count);
        if (fclose(m) != 0 || !buf) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        return 0;
}

/* The other tenants' ranges (issue 16), and whose each is, for messages. */
typedef struct TenantRanges {
        SubIdRange *ranges;
        size_t n;
        const Account **owners;
        size_t n_owners;
} TenantRanges;

static void tenant_ranges_done(TenantRanges *t) {
        free(t->ranges);
        free(t->owners);
        *t = (TenantRanges) {};
}

static int tenant_ranges_add(TenantRanges *t, const Account *owner, uint64_t start, uint64_t count) {
        SubIdRange *r = ARRAY_PUSH(t->ranges, t->n);
        const Account **o;

        if (!r)
                return -ENOMEM;
        *r = (SubIdRange) { start, count };
        o = ARRAY_PUSH(t->owners, t->n_owners);
        if (!o)
                return -ENOMEM;
        *o = owner;
        return 0;
}

/*
 * With tenants: every range another tenant's user has in the file (its
 * lines, by name or by UID) or will have (a tenant this step went through
 * already: what its look settled, in plan the range apply is to write).
 * Two tenants never share an ID: their containers would own each other's
 * files. Without tenants: none, as before.
 */
static int other_tenants_ranges(StepRun *run, const UserState *s, SubIdKind kind, const SubIdFile *f,
                                TenantRanges *ret) {
        const Account *o;
        int r;

        for (size_t i = 0; (o = user_next_other_tenant(run, s, &i));) {
                const PasswdEntry *pw = userdb_find_user(&s->db, o->name);
                const SubIdRange *settled = kind == SUBID_KIND_UID ? o->subuids : o->subgids;
                size_t n_settled = kind == SUBID_KIND_UID ? o->n_subuids : o->n_subgids;

                for (size_t k = 0; k < f->n_lines; k++)
                        if (f->lines[k].kind == SUBID_LINE_RANGE &&
                            subid_line_is_users(&f->lines[k], o->name, pw ? pw->uid : (uid_t) -1)) {
                                r = tenant_ranges_add(ret, o, f->lines[k].start, f->lines[k].count);
                                if (r < 0)
                                        return r;
                        }
                for (size_t k = 0; k < n_settled; k++) {
                        r = tenant_ranges_add(ret, o, settled[k].start, settled[k].count);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/*
 * A line of the user's that shares IDs with another tenant's range: a
 * FAIL, never moved silently (the files its containers made would belong
 * to the other tenant's containers) nor kept. Returns 1 when one does.
 */
static int overlap_with_tenant(StepRun *run, const UserState *s, const SubIdEdit *e, const char *id,
                               const TenantRanges *t) {
        uid_t uid = s->pw ? s->pw->uid : (uid_t) -1;

        for (size_t i = 0; i < e->file.n_lines; i++) {
                const SubIdLine *l = &e->file.lines[i];
                const SubIdRange *o;
                const Account *owner;

                if (l->kind != SUBID_LINE_RANGE || !subid_line_is_users(l, s->name, uid))
                        continue;
                o = subid_ranges_overlapping(t->ranges, t->n, l->start, l->count);
                if (!o)
                        continue;
                owner = t->owners[o - t->ranges];
                item_finding(run, id, ITEM_FAIL,
                             run_asprintf(run, "give each tenant a range of its own: delete line %u of %s (or the "
                                          "other tenant's) and run rootless-ci apply, which allocates a free one; "
                                          "files that user's containers made then belong to IDs it no longer maps "
                                          "(remove its Docker data first: docker system prune -a --volumes)",
                                          l->lineno, e->display),
                             "%s:%u: the range %llu:%llu of %s (tenant %s) shares IDs with %llu:%llu of %s (tenant "
                             "%s): their containers would own each other's files",
                             e->display, l->lineno, (unsigned long long) l->start, (unsigned long long) l->count,
                             s->name, s->account->tenant, (unsigned long long) o->start,
                             (unsigned long long) o->count, owner->name, owner->tenant);
                return 1;
        }
        return 0;
}

/*
 * /etc/subuid or /etc/subgid: the user's range in place, or a Change that
 * writes it. s->ranges[kind] is the range once apply is done (unchanged when
 * no range fits: reported).
 */
int user_look_subids(StepRun *run, UserState *s, SubIdKind kind, uint64_t preferred) {
        const char *fname = subid_file_name(kind);
        SubIdEdit *e = &s->edits[kind];
        SubIdResult *res = &s->ranges[kind];
        _cleanup_free_ char *text = NULL, *etc = NULL, *id = NULL;
        _cleanup_free_ uint32_t *used = NULL;
        _cleanup_(tenant_ranges_done) TenantRanges tenants = {};
        size_t size = 0, n_used = 0;
        uid_t uid = s->pw ? s->pw->uid : (uid_t) -1;
        SubIdPolicy policy;
        int r;

        subid_edit_done(e);
        e->kind = kind;
        if (asprintf(&etc, "/etc/%s", fname) < 0 || asprintf(&id, "user.%s", fname) < 0)
                return -ENOMEM;
        e->display = run_shown(run, etc);
        if (!e->display)
                return -ENOMEM;

        r = etc_file_read(run, fname, &text, &size, &e->st, &e->exists);
        if (r < 0)
                return log_error_errno(r, "Failed to read %s: %m", e->display);
        r = subid_file_parse(&e->file, text, size);
        if (r < 0)
                return log_error_errno(r, "Failed to parse %s: %m", e->display);

        /* Existing UIDs (subuid) or GIDs (subgid) may not be inside a subordinate range. */
        n_used = kind == SUBID_KIND_UID ? s->db.n_users : s->db.n_groups;
        used = calloc(n_used + 1, sizeof(uint32_t));
        if (!used)
                return -ENOMEM;
        for (size_t i = 0; i < n_used; i++)
                used[i] = kind == SUBID_KIND_UID ? s->db.users[i].uid : s->db.groups[i].gid;

        r = other_tenants_ranges(run, s, kind, &e->file, &tenants);
        if (r < 0)
                return r;

        policy = (SubIdPolicy) {
                .min = kind == SUBID_KIND_UID ? s->defs.sub_uid_min : s->defs.sub_gid_min,
                .max = kind == SUBID_KIND_UID ? s->defs.sub_uid_max : s->defs.sub_gid_max,
                .count = kind == SUBID_KIND_UID ? s->defs.sub_uid_count : s->defs.sub_gid_count,
                .used_ids = used,
                .n_used_ids = n_used,
                .preferred_start = preferred,
                .reserved = tenants.ranges,
                .n_reserved = tenants.n,
        };

        for (size_t i = 0; i < e->file.n_lines; i++) {
                char line[80];
                if (e->file.lines[i].kind != SUBID_LINE_MALFORMED)
                        continue;
                format_line(line, sizeof(line), e->file.lines[i].text, e->file.lines[i].len);
                item_finding(run, id, ITEM_WARN, NULL, "%s:%u: \"%s\" is not owner:start:count; kept as it is",
                             e->display, e->file.lines[i].lineno, line);
        }

        r = overlap_with_tenant(run, s, e, id, &tenants);
        if (r != 0) {
                subid_result_done(res);  /* no range settled: nothing maps it */
                return r < 0 ? r : 0;
        }

        r = subid_plan(&e->file, s->name, uid, &policy, &e->plan);
        if (r == -ENOSPC) {
                _cleanup_free_ char *fix = NULL;
                const char *K = kind == SUBID_KIND_UID ? "UID" : "GID";
                if (asprintf(&fix, "raise SUB_%s_MAX in /etc/login.defs, or free a range in %s", K, e->display) < 0)
                        fix = NULL;
                item_finding(run, id, ITEM_FAIL, fix,
                             "%s: no free range of %llu IDs for %s between SUB_%s_MIN %llu and SUB_%s_MAX %llu",
                             e->display,
                             (unsigned long long) (policy.count < SUBID_COUNT_MIN ? SUBID_COUNT_MIN : policy.count),
                             s->name, K, (unsigned long long) policy.min, K, (unsigned long long) policy.max);
                return 0;
        }
        if (r < 0)
                return log_error_errno(r, "Failed to plan %s: %m", e->display);
        subid_result_done(res);
        r = subid_plan_ranges(&e->file, &e->plan, s->name, uid, &res->ranges, &res->n_ranges);
        if (r < 0)
                return r;
        res->start = e->plan.start;
        res->count = e->plan.count;
        res->settled = true;

        if (!e->plan.allocate && e->plan.n_dropped == 0) {
                item_ok(run, id, "%s: %s has %llu:%llu", e->display, s->name, (unsigned long long) e->plan.start,
                        (unsigned long long) e->plan.count);
                if (e->plan.outside_bounds) {
                        const char *K = kind == SUBID_KIND_UID ? "UID" : "GID";
                        item_finding(run, id, ITEM_WARN, NULL,
                                     "%s: the range %llu:%llu of %s lies outside SUB_%s_MIN..SUB_%s_MAX (%llu..%llu) "
                                     "of /etc/login.defs; it is valid and kept, since moving it would strand the "
                                     "files of existing containers",
                                     e->display, (unsigned long long) e->plan.start,
                                     (unsigned long long) e->plan.count, s->name, K, K,
                                     (unsigned long long) policy.min, (unsigned long long) policy.max);
                }
                return 0;
        }

        r = describe_edit(e, s->name, &e->what);
        if (r < 0)
                return r;
        e->status = e->plan.allocate ? (e->plan.n_dropped > 0 ? ITEM_CHANGE : ITEM_CREATE) : ITEM_REMOVE;
        item_change(run, &(Change) {
                .id = id,
                .state = e->status,
                .plan = run_asprintf(run, "%s: %s", e->display, e->what),
                .apply = subids_write,
                .data = e,
        });
        return 0;
}
