/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <blkid.h>
#include <inttypes.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "steps/disk/probe.h"
#include "util/macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(blkid_probe, blkid_free_probe)

/* More hits than this in one range means the probe is going round in circles. */
#define PROBE_MAX_HITS 256

void signature_list_done(SignatureList *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].where);
                free(l->items[i].type);
                free(l->items[i].usage);
                free(l->items[i].label);
                free(l->items[i].uuid);
        }
        free(l->items);
        *l = (SignatureList) {};
}

static int strdup_or_null(const char *s, char **ret) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

int signature_list_add(SignatureList *l, const Signature *s) {
        Signature c = { .offset = s->offset, .disk_offset = s->disk_offset, .error = s->error }, *n;

        if (strdup_or_null(s->where, &c.where) < 0 || strdup_or_null(s->type, &c.type) < 0 ||
            strdup_or_null(s->usage, &c.usage) < 0 || strdup_or_null(s->label, &c.label) < 0 ||
            strdup_or_null(s->uuid, &c.uuid) < 0)
                goto fail;
        n = ARRAY_PUSH(l->items, l->n);
        if (!n)
                goto fail;
        *n = c;
        return 0;
fail:
        free(c.where);
        free(c.type);
        free(c.usage);
        free(c.label);
        free(c.uuid);
        return -ENOMEM;
}

static const char *lookup(blkid_probe pr, const char *name) {
        const char *v = NULL;
        if (blkid_probe_lookup_value(pr, name, &v, NULL) < 0)
                return NULL;
        return v && *v ? v : NULL;
}

static blkid_probe new_probe(int fd, uint64_t offset, uint64_t size) {
        blkid_probe pr = blkid_new_probe();

        if (!pr)
                return NULL;
        if (blkid_probe_set_device(pr, fd, (blkid_loff_t) offset, (blkid_loff_t) size) < 0 ||
            blkid_probe_enable_superblocks(pr, 1) < 0 ||
            blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_MAGIC | BLKID_SUBLKS_TYPE | BLKID_SUBLKS_USAGE |
                                                      BLKID_SUBLKS_LABEL | BLKID_SUBLKS_UUID | BLKID_SUBLKS_BADCSUM) < 0 ||
            blkid_probe_enable_partitions(pr, 1) < 0 ||
            blkid_probe_set_partitions_flags(pr, BLKID_PARTS_MAGIC | BLKID_PARTS_FORCE_GPT) < 0) {
                blkid_free_probe(pr);
                return NULL;
        }
        return pr;
}

/* One hit of the prober: a Signature (borrowed strings), and where its magic is. */
typedef struct Hit {
        Signature s;
        bool has_magic;
        uint64_t magic_off;
        size_t magic_len;
} Hit;

static void current_hit(blkid_probe pr, const char *where, Hit *h) {
        const char *type, *off, *usage;
        bool pt = false;

        type = lookup(pr, "TYPE");
        if (!type) {
                type = lookup(pr, "PTTYPE");
                pt = type != NULL;
        }
        usage = pt ? "partition table" : lookup(pr, "USAGE");

        h->s = (Signature) {
                .where = (char *) where,
                .type = (char *) (type ? type : "unknown"),
                .usage = (char *) (usage ? usage : "other"),
                .label = (char *) lookup(pr, "LABEL"),
                .uuid = (char *) (pt ? lookup(pr, "PTUUID") : lookup(pr, "UUID")),
        };

        off = lookup(pr, pt ? "PTMAGIC_OFFSET" : "SBMAGIC_OFFSET");
        h->magic_len = 0;
        if (off)
                (void) blkid_probe_lookup_value(pr, pt ? "PTMAGIC" : "SBMAGIC", NULL, &h->magic_len);
        h->has_magic = off && h->magic_len > 0;
        h->magic_off = off ? strtoull(off, NULL, 10) : 0;
        h->s.offset = h->magic_off;
}

/*
 * The prober's next hit, for the probe and the wipe loops alike (*hits counts
 * them): 1 with *ret, 0 when there are no more, -ELOOP after PROBE_MAX_HITS,
 * -EIO when libblkid fails.
 */
static int next_hit(blkid_probe pr, const char *where, unsigned *hits, Hit *ret) {
        int r;

        if ((*hits)++ >= PROBE_MAX_HITS)
                return -ELOOP;
        r = blkid_do_probe(pr);
        if (r == 1)
                return 0;
        if (r < 0)
                return -EIO;
        current_hit(pr, where, ret);
        return 1;
}

static int add_error(SignatureList *l, const char *where, uint64_t offset, const char *why) {
        Signature s = {
                .where = (char *) where,
                .type = (char *) "unreadable",
                .usage = (char *) why,
                .offset = offset,
                .error = true,
        };
        return signature_list_add(l, &s);
}

int probe_signatures(int fd, uint64_t offset, uint64_t size, const char *where, SignatureList *l) {
        _cleanup_(blkid_free_probep) blkid_probe pr = NULL;
        unsigned hits = 0;
        Hit h;
        int r;

        pr = new_probe(fd, offset, size);
        if (!pr)
                return add_error(l, where, 0, errno == ENOMEM ? "out of memory" : "libblkid could not open it for probing");

        while ((r = next_hit(pr, where, &hits, &h)) > 0) {
                h.s.disk_offset = offset + h.magic_off;
                r = signature_list_add(l, &h.s);
                if (r < 0)
                        return r;

                /* Hide this magic and run the same prober again: it may find a second copy. */
                if (h.has_magic) {
                        if (blkid_probe_hide_range(pr, h.magic_off, h.magic_len) < 0 || blkid_probe_step_back(pr) < 0)
                                return add_error(l, where, h.magic_off, "libblkid could not continue past a signature");
                }
        }
        if (r == -ELOOP)
                return add_error(l, where, 0, "libblkid kept finding signatures; giving up");
        if (r < 0)
                return add_error(l, where, 0, "libblkid failed to probe it (I/O error?)");
        return 0;
}

int wipe_signatures(int fd, uint64_t offset, uint64_t size, const char *where, SignatureList *destroyed) {
        _cleanup_(blkid_free_probep) blkid_probe pr = NULL;
        uint64_t last_off = UINT64_MAX;
        _cleanup_free_ char *last_type = NULL;
        unsigned hits = 0;
        Hit h;
        int r;

        pr = new_probe(fd, offset, size);
        if (!pr)
                return errno == ENOMEM ? -ENOMEM : -EIO;

        while ((r = next_hit(pr, where, &hits, &h)) > 0) {
                if (!h.has_magic)
                        /* Nothing to erase by magic; the verification after the wipe reports it. */
                        continue;
                /* The same signature again after erasing it: the write did not take. */
                if (h.magic_off == last_off && last_type && streq(last_type, h.s.type))
                        return -EIO;
                last_off = h.magic_off;
                r = free_and_strdup(&last_type, h.s.type);
                if (r < 0)
                        return r;

                h.s.disk_offset = offset + h.magic_off;
                r = signature_list_add(destroyed, &h.s);
                if (r < 0)
                        return r;
                /* Zeroes the magic, fsyncs, and steps back so the prober runs again. */
                errno = 0;
                if (blkid_do_wipe(pr, 0) < 0)
                        return errno > 0 ? -errno : -EIO;
        }
        if (r < 0)
                return r;

        return fsync(fd) < 0 ? negative_errno() : 0;
}

char *signature_describe(const Signature *s) {
        char *d;
        int r;

        if (s->error)
                r = asprintf(&d, "%s: %s", s->where, s->usage);
        else
                r = asprintf(&d, "%s: %s %s%s%s%s%s%s at offset %" PRIu64, s->where, s->type, s->usage,
                             s->label ? ", label \"" : "", strempty(s->label), s->label ? "\"" : "",
                             s->uuid ? ", UUID " : "", strempty(s->uuid), s->offset);
        return r < 0 ? NULL : d;
}

char *signature_list_describe(const SignatureList *l) {
        size_t len = 0;
        char *out = NULL;

        for (size_t i = 0; i < l->n; i++) {
                _cleanup_free_ char *d = NULL;
                bool seen = false;
                char *n;

                for (size_t j = 0; j < i && !seen; j++)
                        seen = !l->items[i].error && !l->items[j].error && l->items[j].disk_offset == l->items[i].disk_offset &&
                               streq(l->items[j].type, l->items[i].type);
                if (seen)
                        continue;
                d = signature_describe(&l->items[i]);
                if (!d)
                        goto fail;
                n = realloc(out, len + strlen(d) + 3);
                if (!n)
                        goto fail;
                out = n;
                len += (size_t) sprintf(out + len, "%s%s", len ? "; " : "", d);
        }
        return out ? out : strdup("nothing");
fail:
        free(out);
        return NULL;
}

void partition_table_done(PartitionTable *t) {
        free(t->type);
        free(t->uuid);
        for (size_t i = 0; i < t->n_parts; i++) {
                free(t->parts[i].name);
                free(t->parts[i].type);
        }
        free(t->parts);
        *t = (PartitionTable) {};
}

int probe_partition_table(int fd, PartitionTable *ret) {
        _cleanup_(blkid_free_probep) blkid_probe pr = NULL;
        _cleanup_(partition_table_done) PartitionTable t = {};
        blkid_partlist ls;
        blkid_parttable tab;
        int n, r;

        pr = blkid_new_probe();
        if (!pr)
                return -ENOMEM;
        if (blkid_probe_set_device(pr, fd, 0, 0) < 0 || blkid_probe_enable_superblocks(pr, 0) < 0 ||
            blkid_probe_enable_partitions(pr, 1) < 0 ||
            blkid_probe_set_partitions_flags(pr, BLKID_PARTS_FORCE_GPT) < 0)
                return -EIO;

        r = blkid_do_safeprobe(pr);
        if (r < 0)
                return -EIO;
        if (r == 1) {   /* no partition table */
                *ret = (PartitionTable) {};
                return 0;
        }

        ls = blkid_probe_get_partitions(pr);
        if (!ls)
                return -EIO;
        tab = blkid_partlist_get_table(ls);
        if (!tab)
                return -EIO;
        if (strdup_or_null(blkid_parttable_get_type(tab), &t.type) < 0 ||
            strdup_or_null(blkid_parttable_get_id(tab), &t.uuid) < 0)
                return -ENOMEM;
        if (!t.type)
                return -EIO;

        n = blkid_partlist_numof_partitions(ls);
        if (n < 0)
                return -EIO;
        if (n > 0) {
                t.parts = calloc((size_t) n, sizeof(TablePartition));
                if (!t.parts)
                        return -ENOMEM;
        }
        for (int i = 0; i < n; i++) {
                blkid_partition p = blkid_partlist_get_partition(ls, i);
                TablePartition *tp = &t.parts[t.n_parts];
                const char *type;
                char hex[16];

                if (!p)
                        return -EIO;
                t.n_parts++;
                tp->number = (unsigned) blkid_partition_get_partno(p);
                tp->start = (uint64_t) blkid_partition_get_start(p) * 512;
                tp->size = (uint64_t) blkid_partition_get_size(p) * 512;
                type = blkid_partition_get_type_string(p);
                if (!type && blkid_partition_get_type(p) != 0) {
                        snprintf(hex, sizeof(hex), "0x%x", (unsigned) blkid_partition_get_type(p));
                        type = hex;
                }
                if (strdup_or_null(blkid_partition_get_name(p), &tp->name) < 0 || strdup_or_null(type, &tp->type) < 0)
                        return -ENOMEM;
                if (tp->type)
                        for (char *c = tp->type; *c; c++)
                                *c = (char) tolower((unsigned char) *c);
        }

        *ret = t;
        t = (PartitionTable) {};
        return 0;
}

int probe_filesystem(int fd, uint64_t offset, uint64_t size, const char *only_type, char **ret_type, char **ret_label,
                     char **ret_uuid) {
        _cleanup_(blkid_free_probep) blkid_probe pr = NULL;
        int r;

        pr = blkid_new_probe();
        if (!pr)
                return -ENOMEM;
        if (blkid_probe_set_device(pr, fd, (blkid_loff_t) offset, (blkid_loff_t) size) < 0 ||
            blkid_probe_enable_superblocks(pr, 1) < 0 ||
            blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_LABEL | BLKID_SUBLKS_UUID) < 0)
                return -EIO;
        if (only_type &&
            blkid_probe_filter_superblocks_type(pr, BLKID_FLTR_ONLYIN, (char *[]) { (char *) only_type, NULL }) < 0)
                return -EIO;
        r = blkid_do_safeprobe(pr);
        if (r < 0)
                return -EIO;
        if (r == 1)
                return -ENODATA;
        {
                _cleanup_free_ char *type = NULL, *label = NULL, *uuid = NULL;
                if (strdup_or_null(lookup(pr, "TYPE"), &type) < 0 || strdup_or_null(lookup(pr, "LABEL"), &label) < 0 ||
                    strdup_or_null(lookup(pr, "UUID"), &uuid) < 0)
                        return -ENOMEM;
                *ret_type = TAKE_PTR(type);
                *ret_label = TAKE_PTR(label);
                *ret_uuid = TAKE_PTR(uuid);
        }
        return 0;
}
