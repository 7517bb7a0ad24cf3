/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "steps/disk/contents.h"
#include "steps/disk/mkfs.h"
#include "util/macro.h"

void disk_contents_done(DiskContents *c) {
        signature_list_done(&c->found);
        partition_table_done(&c->table);
        FREE_MANY(c->foreign_reason, c->fs_type, c->fs_uuid);
        *c = (DiskContents) {};
}

static int set_foreign(DiskContents *c, const char *fmt, ...) _printf_(2, 3);
static int set_foreign(DiskContents *c, const char *fmt, ...) {
        va_list ap;
        int r;

        c->verdict = DISK_FOREIGN;
        if (c->foreign_reason)  /* the first reason is the one that counts */
                return 0;
        va_start(ap, fmt);
        r = vasprintf(&c->foreign_reason, fmt, ap);
        va_end(ap);
        return r < 0 ? -ENOMEM : 0;
}

bool disk_partition_is_ours(const TablePartition *p) {
        return p->number == 1 && streq_ptr(p->name, RCI_PARTITION_NAME) && streq_ptr(p->type, GPT_TYPE_LINUX_DATA);
}

/* The disk's own signatures (the first n) are a GPT and its protective MBR, nothing else. */
static bool only_gpt(const SignatureList *l, size_t n) {
        bool gpt = false;
        for (size_t i = 0; i < n; i++) {
                const Signature *s = &l->items[i];
                if (s->error || !streq(s->usage, "partition table") || !(streq(s->type, "gpt") || streq(s->type, "PMBR")))
                        return false;
                gpt = gpt || streq(s->type, "gpt");
        }
        return gpt;
}

static bool is_our_filesystem(const SignatureList *l) {
        const Signature *s = &l->items[0];
        return l->n == 1 && !s->error && streq(s->usage, "filesystem") && streq_ptr(s->label, RCI_FS_LABEL) && s->uuid &&
               filesystem_from_string(s->type) != _FILESYSTEM_MAX;
}

static bool range_in_table(const PartitionTable *t, uint64_t start, uint64_t size) {
        for (size_t i = 0; i < t->n_parts; i++)
                if (t->parts[i].start == start && t->parts[i].size == size)
                        return true;
        return false;
}

int disk_contents_probe(int fd, const char *node, const KernelPartition *kparts, size_t n_kparts, DiskContents *ret) {
        _cleanup_(signature_list_done) SignatureList in_ours = {};
        DiskContents c = {};
        size_t n_disk;
        int r;

        r = probe_signatures(fd, 0, 0, node, &c.found);
        if (r < 0)
                goto fail;
        n_disk = c.found.n;

        for (size_t i = 0; i < n_disk; i++)
                if (streq(c.found.items[i].usage, "partition table")) {
                        if (probe_partition_table(fd, &c.table) < 0 &&
                            (r = set_foreign(&c, "its partition table cannot be read")) < 0)
                                goto fail;
                        break;
                }

        /* Each partition of the table, through the disk at its offset: the kernel need not know it. */
        for (size_t i = 0; i < c.table.n_parts; i++) {
                const TablePartition *p = &c.table.parts[i];
                _cleanup_free_ char *where = NULL;
                const char *kname = NULL;
                size_t before = c.found.n;

                for (size_t j = 0; j < n_kparts; j++)
                        if (kparts[j].number == p->number && kparts[j].start == p->start && kparts[j].size == p->size)
                                kname = kparts[j].name;
                r = kname ? asprintf(&where, "/dev/%s", kname) : asprintf(&where, "partition %u of %s", p->number, node);
                if (r < 0) {
                        r = -ENOMEM;
                        goto fail;
                }
                r = probe_signatures(fd, p->start, p->size, where, &c.found);
                if (r < 0)
                        goto fail;
                if (c.table.n_parts == 1)
                        for (size_t j = before; j < c.found.n; j++)
                                if ((r = signature_list_add(&in_ours, &c.found.items[j])) < 0)
                                        goto fail;
        }

        /* Partitions the kernel knows but the table does not: stale, or the table changed under it. */
        for (size_t i = 0; i < n_kparts; i++) {
                _cleanup_free_ char *where = NULL;
                size_t before = c.found.n;

                if (range_in_table(&c.table, kparts[i].start, kparts[i].size))
                        continue;
                c.kernel_stale = true;
                if (asprintf(&where, "/dev/%s (known to the kernel, not in the partition table)", kparts[i].name) < 0) {
                        r = -ENOMEM;
                        goto fail;
                }
                r = probe_signatures(fd, kparts[i].start, kparts[i].size, where, &c.found);
                if (r < 0)
                        goto fail;
                if (c.found.n > before &&
                    (r = set_foreign(&c, "/dev/%s is not in its partition table and holds data", kparts[i].name)) < 0)
                        goto fail;
        }

        if (c.found.n == 0) {
                c.verdict = DISK_BLANK;
                *ret = c;
                return 0;
        }

        /* Is it ours? Each test names what is not. */
        if (c.table.type && !streq(c.table.type, "gpt"))
                r = set_foreign(&c, "its partition table is %s, not GPT", c.table.type);
        else if (!only_gpt(&c.found, n_disk))
                r = set_foreign(&c, "%s", c.table.type ? "it holds signatures besides a GPT" : "it holds signatures");
        else if (!c.table.type)
                r = set_foreign(&c, "its GPT cannot be read");
        else if (c.table.n_parts != 1)
                r = set_foreign(&c, "its GPT has %zu partitions, not one", c.table.n_parts);
        else if (!disk_partition_is_ours(&c.table.parts[0]))
                r = set_foreign(&c, "its partition is not number 1, named \"%s\", of the Linux data type", RCI_PARTITION_NAME);
        else if (in_ours.n > 0 && !is_our_filesystem(&in_ours))
                r = set_foreign(&c, "its partition holds something other than one filesystem labelled \"%s\"", RCI_FS_LABEL);
        else
                r = 0;
        if (r < 0)
                goto fail;
        if (c.verdict == DISK_FOREIGN) {
                *ret = c;
                return 0;
        }

        c.verdict = DISK_OURS;
        c.part = (PartitionGeometry) { .start = c.table.parts[0].start, .size = c.table.parts[0].size };
        if (in_ours.n == 1 &&
            ((r = free_and_strdup(&c.fs_type, in_ours.items[0].type)) < 0 ||
             (r = free_and_strdup(&c.fs_uuid, in_ours.items[0].uuid)) < 0))
                goto fail;
        *ret = c;
        return 0;

fail:
        disk_contents_done(&c);
        return r;
}

int disk_contents_probe_area(int fd, const PartitionGeometry *g, DiskContents *c) {
        _cleanup_free_ char *where = NULL;
        size_t before = c->found.n;
        int r;

        if (asprintf(&where, "the area of the new partition (from byte %llu)", (unsigned long long) g->start) < 0)
                return -ENOMEM;
        r = probe_signatures(fd, g->start, g->size, where, &c->found);
        if (r < 0)
                return r;
        if (c->found.n > before && c->verdict == DISK_BLANK)
                return set_foreign(c, "a signature remains where its partition would go");
        return 0;
}
