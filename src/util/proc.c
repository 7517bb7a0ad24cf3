/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs.h"
#include "macro.h"
#include "proc.h"
#include "userdb.h"

#define PROC_STATUS_MAX (64 * 1024)

static bool is_blank(char c) {
        return c == ' ' || c == '\t';
}

int proc_status_ids(const char *text, const char *key, uint32_t ret[4]) {
        size_t klen = strlen(key);

        for (const char *line = text; line && *line;) {
                const char *nl = strchr(line, '\n'), *end = nl ?: line + strlen(line), *p;
                uint32_t v[4];

                if (strncmp(line, key, klen) != 0) {
                        line = nl ? nl + 1 : NULL;
                        continue;
                }
                p = line + klen;
                for (size_t i = 0; i < 4; i++) {
                        const char *before = p;
                        while (p < end && is_blank(*p))
                                p++;
                        if (p == before || !parse_u32_decimal(&p, end, &v[i]))
                                return -EBADMSG;
                }
                while (p < end && is_blank(*p))
                        p++;
                if (p != end)
                        return -EBADMSG;
                memcpy(ret, v, sizeof(v));
                return 0;
        }
        return -ENOENT;
}

void proc_status_name(const char *text, char *buf, size_t size) {
        const char *p = startswith(text, "Name:") ? text : strstr(text, "\nName:");
        size_t j = 0;

        buf[0] = 0;
        if (!p)
                return;
        p += *p == '\n' ? 6 : 5;
        p += strspn(p, " \t");
        for (; *p && *p != '\n' && j + 1 < size; p++)
                buf[j++] = (unsigned char) *p >= 0x20 && (unsigned char) *p < 0x7f ? *p : '?';
        buf[j] = 0;
}

/* Read a /proc file of the process whole (NUL-terminated). A vanished process: -ESRCH; larger than max: -E2BIG. */
static int read_proc_file(int proc_fd, const char *name, size_t max, char **ret, size_t *ret_size) {
        int r = read_file_at(proc_fd, name, RESOLVE_POLICY_NO_SYMLINKS, max, ret, ret_size);

        return r == -ENOENT ? -ESRCH : r == -EFBIG ? -E2BIG : r;
}

int proc_status_groups(const char *text, uint32_t **ret, size_t *ret_n) {
        const char *line = startswith(text, "Groups:") ? text : strstr(text, "\nGroups:");
        const char *p, *end;
        _cleanup_free_ uint32_t *groups = NULL;
        size_t n = 0;

        if (!line)
                return -ENOENT;
        p = line + (*line == '\n' ? 8 : 7);
        end = strchrnul(p, '\n');
        for (;;) {
                uint32_t v, *g;

                while (p < end && is_blank(*p))
                        p++;
                if (p == end)
                        break;
                if (!parse_u32_decimal(&p, end, &v) || (p < end && !is_blank(*p)))
                        return -EBADMSG;
                g = reallocarray(groups, n + 1, sizeof(uint32_t));
                if (!g)
                        return -ENOMEM;
                groups = g;
                groups[n++] = v;
        }
        *ret = TAKE_PTR(groups);
        *ret_n = n;
        return 0;
}

/* The Name:, Uid: and Gid: lines of a status text; -EBADMSG when one is missing or does not parse. */
static int parse_status_ids(const char *status, char comm[static 17], uint32_t uids[4], uint32_t gids[4]) {
        int r;

        proc_status_name(status, comm, 17);
        r = proc_status_ids(status, "Uid:", uids);
        if (r >= 0)
                r = proc_status_ids(status, "Gid:", gids);
        return r == -ENOENT ? -EBADMSG : r;
}

void process_creds_done(ProcessCreds *c) {
        free(c->groups);
        c->groups = NULL;
        c->n_groups = 0;
}

int process_creds_read(int proc_fd, ProcessCreds *ret) {
        _cleanup_free_ char *status = NULL;
        int r;

        *ret = (ProcessCreds) {};
        r = read_proc_file(proc_fd, "status", PROC_STATUS_MAX, &status, NULL);
        if (r < 0)
                return r;
        r = parse_status_ids(status, ret->comm, ret->uids, ret->gids);
        if (r < 0)
                return r;
        r = proc_status_groups(status, &ret->groups, &ret->n_groups);
        return r == -ENOENT ? -EBADMSG : r;
}

bool process_creds_hold_gid(const ProcessCreds *c, const gid_t *gids, size_t n_gids, gid_t *ret_gid) {
        for (size_t k = 0; k < n_gids; k++) {
                bool held = false;

                for (size_t i = 0; i < ELEMENTSOF(c->gids); i++)
                        held |= c->gids[i] == (uint32_t) gids[k];
                for (size_t i = 0; i < c->n_groups; i++)
                        held |= c->groups[i] == (uint32_t) gids[k];
                if (held) {
                        if (ret_gid)
                                *ret_gid = gids[k];
                        return true;
                }
        }
        return false;
}

int process_creds_read_pid(pid_t pid, ProcessCreds *ret) {
        _cleanup_close_ int fd = -1;
        char path[32];

        *ret = (ProcessCreds) {};
        snprintf(path, sizeof(path), "/proc/%ld", (long) pid);
        fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? -ESRCH : negative_errno();
        return process_creds_read(fd, ret);
}

int pid_holds_gid(pid_t pid, const gid_t *gids, size_t n_gids, gid_t *ret_gid) {
        _cleanup_(process_creds_done) ProcessCreds c = {};
        int r;

        if (pid <= 0 || n_gids == 0)
                return 0;
        r = process_creds_read_pid(pid, &c);
        if (r == -ESRCH)
                return 0;
        if (r < 0)
                return r;
        return process_creds_hold_gid(&c, gids, n_gids, ret_gid);
}

int proc_scan_uid(int proc_dir_fd, uid_t uid, ProcScanFunc f, void *userdata) {
        _cleanup_closedir_ DIR *d = NULL;
        struct dirent *de;
        int fd;

        fd = openat(proc_dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        d = fdopendir(fd);
        if (!d) {
                safe_close(fd);
                return negative_errno();
        }
        while ((errno = 0, de = readdir(d))) {
                _cleanup_(process_creds_done) ProcessCreds c = {};
                _cleanup_close_ int pfd = -1;
                unsigned long pid;
                bool mine = false;
                int r;

                if (parse_account_id(de->d_name, strlen(de->d_name), &pid) < 0 || pid == 0)
                        continue;
                pfd = openat(dirfd(d), de->d_name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (pfd < 0)
                        continue;  /* exited meanwhile */
                r = process_creds_read(pfd, &c);
                if (r == -ESRCH)
                        continue;
                if (r < 0)
                        return r;
                /* Any of its four UIDs: a set-user-ID program started by the user is still the user's. */
                for (size_t i = 0; i < ELEMENTSOF(c.uids); i++)
                        mine |= c.uids[i] == (uint32_t) uid;
                if (!mine)
                        continue;
                r = f(userdata, (pid_t) pid, pfd, &c);
                if (r != 0)
                        return r;
        }
        return errno != 0 ? negative_errno() : 0;
}

typedef struct HolderScan {
        const gid_t *gids;
        size_t n_gids;
        GroupHolder *holders;
        size_t n, seen;
} HolderScan;

static int holder_add(void *userdata, pid_t pid, int proc_fd, const ProcessCreds *c) {
        HolderScan *s = userdata;
        GroupHolder *h;
        gid_t gid;

        (void) proc_fd;
        s->seen++;
        if (!process_creds_hold_gid(c, s->gids, s->n_gids, &gid))
                return 0;
        h = ARRAY_PUSH(s->holders, s->n);
        if (!h)
                return -ENOMEM;
        *h = (GroupHolder) { .pid = pid, .gid = gid };
        memcpy(h->comm, c->comm, sizeof(c->comm));
        return 0;
}

int group_holders_find(int proc_dir_fd, uid_t uid, const gid_t *gids, size_t n_gids, GroupHolder **ret,
                       size_t *ret_n, size_t *ret_seen) {
        HolderScan s = { .gids = gids, .n_gids = n_gids };
        int r;

        r = proc_scan_uid(proc_dir_fd, uid, holder_add, &s);
        if (r < 0) {
                free(s.holders);
                return r;
        }
        *ret = s.holders;
        *ret_n = s.n;
        if (ret_seen)
                *ret_seen = s.seen;
        return 0;
}

int process_ids_read(int proc_fd, ProcessIds *ret, const char **ret_file) {
        static const char *const maps[] = { "uid_map", "gid_map" };
        _cleanup_free_ char *status = NULL;
        size_t size;
        int r;

        *ret = (ProcessIds) {};
        if (ret_file)
                *ret_file = "status";
        r = read_proc_file(proc_fd, "status", PROC_STATUS_MAX, &status, &size);
        if (r < 0)
                return r;
        r = parse_status_ids(status, ret->comm, ret->uids, ret->gids);
        if (r < 0)
                return r;

        for (size_t i = 0; i < ELEMENTSOF(maps); i++) {
                _cleanup_free_ char *text = NULL;

                if (ret_file)
                        *ret_file = maps[i];
                r = read_proc_file(proc_fd, maps[i], IDMAP_TEXT_MAX, &text, &size);
                if (r < 0)
                        return r;
                r = idmap_parse(text, size, i == 0 ? &ret->uid_map : &ret->gid_map, NULL);
                if (r < 0)
                        return r;
        }
        if (ret_file)
                *ret_file = NULL;
        return 0;
}

