/* SPDX-License-Identifier: MIT */
/*
 * The fstab reader and rewriter on arbitrary text. The first byte picks
 * what we want (mount point, filesystem, UUID case; with its top bit set the
 * next line is the mount point, when MountPoint= would accept it); the rest
 * is the file.
 * When fstab_plan() accepts the file:
 *   - every line that does not carry our marker survives byte for byte and
 *     in order; only lines naming FSTAB_MARKER may go or be replaced;
 *   - the wanted line is written at most once, and the new file has exactly
 *     one line of ours (none when an operator's line already mounts it);
 *   - planning again on the result changes nothing (a fixed point), and
 *     fstab_find_ours() agrees with it.
 * When it refuses, it says why.
 */
#define _GNU_SOURCE
#include <stdbool.h>
#include <string.h>

#include "config.h"
#include "steps/disk/fstab.h"
#include "fuzz.h"
#include "util/error.h"

#define UUID_LOWER "0b7d3a2c-1111-4e0f-9d7a-5d1c2e3f4a5b"
#define UUID_UPPER "0B7D3A2C-1111-4E0F-9D7A-5D1C2E3F4A5B"

static const char *const targets[] = { "/srv/rootless-ci", "/srv/with space", "/data/ci\\x", "/srv/a\tb" };
static const char *const fstypes[] = { "ext4", "xfs" };

typedef struct Line {
        const char *start;
        size_t len; /* without the newline */
} Line;

static size_t split(const char *text, size_t size, Line *lines) {
        size_t n = 0;
        for (const char *p = text, *end = text + size; p < end;) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                lines[n++] = (Line) { p, (size_t) ((nl ? nl : end) - p) };
                p = nl ? nl + 1 : end;
        }
        return n;
}

static bool line_eq(const Line *l, const char *s, size_t len) {
        return l->len == len && memcmp(l->start, s, len) == 0;
}

static bool has_marker(const Line *l) {
        return memmem(l->start, l->len, FSTAB_MARKER, strlen(FSTAB_MARKER)) != NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void) argc;
        (void) argv;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static char custom_target[4096];
        FstabPlan p = {}, again = {};
        char *err = NULL;
        const char *text;
        FstabWant want;
        Line *in = NULL, *out = NULL;
        size_t n_in, n_out, j = 0, inserted = 0;
        int r;

        if (size < 1 || size > 64 * 1024)
                return 0;
        want = (FstabWant) {
                .uuid = data[0] & 0x40 ? UUID_UPPER : UUID_LOWER,
                .target = targets[data[0] & 3],
                .fstype = fstypes[(data[0] >> 2) & 1],
        };
        text = (const char *) data + 1;
        size--;
        /* With the top bit, the first line is the mount point, if the configuration would accept it. */
        if (data[0] & 0x80) {
                const char *nl = memchr(text, '\n', size), *reason;
                size_t len;

                if (!nl)
                        return 0;
                len = (size_t) (nl - text);
                if (len >= sizeof(custom_target))
                        return 0;
                memcpy(custom_target, text, len);
                custom_target[len] = 0;
                if (!valid_mount_point(custom_target, &reason))
                        return 0;
                want.target = custom_target;
                size -= len + 1;
                text = nl + 1;
        }

        r = fstab_plan("fstab", text, size, &want, &p, &err);
        if (r < 0) {
                FUZZ_ASSERT(r == -ENOMEM || ((r == -ERCI_REFUSED || r == -ERCI_FAILED) && err));
                free(err);
                return 0;
        }
        FUZZ_ASSERT(!err);
        FUZZ_ASSERT(p.new_line && !strchr(p.new_line, '\n'));

        if (p.action == FSTAB_KEEP) {
                FUZZ_ASSERT(!p.text && p.n_removed == 0);
                goto done;
        }
        FUZZ_ASSERT(p.text && strlen(p.text) == p.size);
        /* It ends with a newline, unless the old last line had none and is kept as it was. */
        FUZZ_ASSERT(p.size == 0 || p.text[p.size - 1] == '\n' ||
                    (size > 0 && text[size - 1] != '\n' && p.size >= 1 &&
                     memcmp(p.text + p.size - 1, text + size - 1, 1) == 0));

        in = calloc(size + 1, sizeof(Line));
        out = calloc(p.size + 1, sizeof(Line));
        FUZZ_ASSERT(in && out);
        n_in = split(text, size, in);
        n_out = split(p.text, p.size, out);

        /* Walk both: an input line either survives as it was, or carries the marker and goes (or is replaced). */
        for (size_t i = 0; i < n_in; i++) {
                if (j < n_out && line_eq(&out[j], in[i].start, in[i].len)) {
                        j++;
                        continue;
                }
                FUZZ_ASSERT(has_marker(&in[i]));
                if (j < n_out && line_eq(&out[j], p.new_line, strlen(p.new_line)) && inserted == 0) {
                        inserted++;
                        j++;
                }
        }
        /* Anything left is the one appended line. */
        for (; j < n_out; j++) {
                FUZZ_ASSERT(line_eq(&out[j], p.new_line, strlen(p.new_line)));
                inserted++;
        }
        FUZZ_ASSERT(inserted <= 1);
        FUZZ_ASSERT(p.action != FSTAB_ADD || inserted == 1);

        /* A fixed point: the result is accepted and left alone. */
        r = fstab_plan("fstab", p.text, p.size, &want, &again, &err);
        if (r < 0)
                fprintf(stderr, "re-plan failed: %d %s\n", r, err ? err : "");
        FUZZ_ASSERT(r == 0);
        FUZZ_ASSERT(again.action == FSTAB_KEEP && again.n_removed == 0);
        FUZZ_ASSERT(again.adopted == p.adopted);
        {
                unsigned line = 0;
                char *source = NULL, *target = NULL;
                r = fstab_find_ours(p.text, p.size, &line, &source, &target);
                FUZZ_ASSERT(r == (p.adopted ? 0 : 1));
                if (r == 1) {
                        FUZZ_ASSERT(line >= 1 && line <= n_out);
                        FUZZ_ASSERT(has_marker(&out[line - 1]));
                        /* Our line is the wanted one, or (only duplicates dropped) the right one we kept. */
                        if (p.old_line || inserted)
                                FUZZ_ASSERT(line_eq(&out[line - 1], p.new_line, strlen(p.new_line)) &&
                                            strcmp(target, want.target) == 0);
                }
                free(source);
                free(target);
        }

done:
        fstab_plan_done(&again);
        fstab_plan_done(&p);
        free(in);
        free(out);
        return 0;
}
