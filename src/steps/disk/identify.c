/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdarg.h>
#include <dirent.h>
#include <fcntl.h>
#include <libmount.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "steps/disk/identify.h"
#include "steps/disk/mount.h"
#include "util/error.h"
#include "util/macro.h"

void disk_done(Disk *d) {
        free(d->given);
        free(d->node);
        free(d->name);
        free(d->sysfs);
        for (size_t i = 0; i < d->n_parts; i++)
                free(d->parts[i].name);
        free(d->parts);
        *d = (Disk) {};
}

/* Read a sysfs attribute as a string (trailing newline stripped). */
static int read_attr(const char *dir, const char *attr, char *buf, size_t size) {
        char path[PATH_MAX];
        _cleanup_close_ int fd = -1;
        ssize_t n;

        if (snprintf(path, sizeof(path), "%s/%s", dir, attr) >= (int) sizeof(path))
                return -ENAMETOOLONG;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        n = read(fd, buf, size - 1);
        if (n < 0)
                return negative_errno();
        buf[n] = 0;
        buf[strcspn(buf, "\n")] = 0;
        return 0;
}

static int read_attr_u64(const char *dir, const char *attr, uint64_t *ret) {
        char buf[64], *end;
        unsigned long long v;
        int r;

        r = read_attr(dir, attr, buf, sizeof(buf));
        if (r < 0)
                return r;
        errno = 0;
        v = strtoull(buf, &end, 10);
        if (errno || end == buf || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_devnum(const char *s, dev_t *ret) {
        unsigned ma, mi;
        char tail;

        if (sscanf(s, "%u:%u%c", &ma, &mi, &tail) != 2)
                return -EINVAL;
        *ret = makedev(ma, mi);
        return 0;
}

static bool attr_exists(const char *dir, const char *attr) {
        char path[PATH_MAX];
        if (snprintf(path, sizeof(path), "%s/%s", dir, attr) >= (int) sizeof(path))
                return false;
        return access(path, F_OK) == 0;
}

char *disk_partition_name(const char *disk_name, unsigned n) {
        size_t l = strlen(disk_name);
        char *s;

        if (asprintf(&s, "%s%s%u", disk_name, l > 0 && isdigit((unsigned char) disk_name[l - 1]) ? "p" : "", n) < 0)
                return NULL;
        return s;
}

char *disk_partition_node(const Disk *d, unsigned n) {
        _cleanup_free_ char *name = disk_partition_name(d->name, n);
        char *s;

        if (!name || asprintf(&s, "/dev/%s", name) < 0)
                return NULL;
        /* Kernel names of nested devices use '!' for '/' (cciss!c0d0). */
        for (char *p = s; *p; p++)
                if (*p == '!')
                        *p = '/';
        return s;
}

char *disk_display_name(const Disk *d) {
        char *s;

        if (streq(d->given, d->node))
                return strdup(d->node);
        if (asprintf(&s, "%s (%s)", d->given, d->node) < 0)
                return NULL;
        return s;
}

const KernelPartition *disk_kernel_partition(const Disk *d, unsigned n) {
        for (size_t i = 0; i < d->n_parts; i++)
                if (d->parts[i].number == n)
                        return &d->parts[i];
        return NULL;
}

int open_block_device(const char *node, dev_t devnum, int flags) {
        _cleanup_close_ int fd = -1;
        struct stat st;

        fd = open(node, flags | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISBLK(st.st_mode) || st.st_rdev != devnum)
                return -ENXIO;
        return TAKE_FD(fd);
}

int disk_open(const Disk *d, int flags) {
        return open_block_device(d->node, d->devnum, flags);
}

static int cmp_partition(const void *a, const void *b) {
        const KernelPartition *x = a, *y = b;
        return x->number < y->number ? -1 : x->number > y->number;
}

int disk_read_partitions(Disk *d) {
        _cleanup_closedir_ DIR *dir = NULL;
        KernelPartition *parts = NULL;
        size_t n = 0;
        struct dirent *de;
        int r = 0;

        dir = opendir(d->sysfs);
        if (!dir)
                return negative_errno();

        while ((de = readdir(dir))) {
                char sub[PATH_MAX], buf[64];
                KernelPartition p = {};
                uint64_t v;
                KernelPartition *np;

                if (de->d_name[0] == '.')
                        continue;
                snprintf(sub, sizeof(sub), "%s/%s", d->sysfs, de->d_name);
                if (!attr_exists(sub, "partition"))
                        continue;

                if (read_attr_u64(sub, "partition", &v) < 0 || v == 0 || v > UINT_MAX)
                        continue;
                p.number = (unsigned) v;
                if ((r = read_attr(sub, "dev", buf, sizeof(buf))) < 0 || (r = parse_devnum(buf, &p.devnum)) < 0)
                        goto fail;
                if ((r = read_attr_u64(sub, "start", &p.start)) < 0 || (r = read_attr_u64(sub, "size", &p.size)) < 0)
                        goto fail;
                /* sysfs counts in 512-byte sectors whatever the logical block size. */
                p.start *= 512;
                p.size *= 512;
                p.name = strdup(de->d_name);
                if (!p.name) {
                        r = -ENOMEM;
                        goto fail;
                }
                np = reallocarray(parts, n + 1, sizeof(*parts));
                if (!np) {
                        free(p.name);
                        r = -ENOMEM;
                        goto fail;
                }
                parts = np;
                parts[n++] = p;
        }
        if (n > 1) /* qsort() wants a non-NULL array even for none */
                qsort(parts, n, sizeof(*parts), cmp_partition);

        for (size_t i = 0; i < d->n_parts; i++)
                free(d->parts[i].name);
        free(d->parts);
        d->parts = parts;
        d->n_parts = n;
        return 0;

fail:
        for (size_t i = 0; i < n; i++)
                free(parts[i].name);
        free(parts);
        return r;
}

static const char *file_type_name(mode_t m) {
        if (S_ISREG(m))
                return "a regular file";
        if (S_ISCHR(m))
                return "a character device";
        if (S_ISDIR(m))
                return "a directory";
        if (S_ISFIFO(m))
                return "a FIFO";
        if (S_ISSOCK(m))
                return "a socket";
        return "not a block device";
}

#define REFUSE_USAGE(...)                                         \
        do {                                                      \
                if (asprintf(ret_reason, __VA_ARGS__) < 0)        \
                        return -ENOMEM;                           \
                return -ERCI_USAGE;                               \
        } while (0)

int disk_identify(const char *given, Disk *ret, char **ret_reason) {
        _cleanup_(disk_done) Disk d = {};
        _cleanup_free_ char *real = NULL, *sysreal = NULL, *shown = NULL;
        char buf[PATH_MAX];
        struct stat st;
        uint64_t sectors;
        int r;

        *ret_reason = NULL;

        real = realpath(given, NULL);
        if (!real) {
                if (errno == ENOENT || errno == ENOTDIR)
                        REFUSE_USAGE("%s does not exist; not a usable disk.", given);
                REFUSE_USAGE("%s cannot be resolved (%s); not a usable disk.", given, strerror(errno));
        }
        /* Messages name the device as given and, if different, as resolved. */
        if (streq(given, real))
                shown = strdup(given);
        else if (asprintf(&shown, "%s (%s)", given, real) < 0)
                shown = NULL;
        if (!shown)
                return -ENOMEM;

        if (stat(real, &st) < 0)
                REFUSE_USAGE("%s cannot be examined (%s); not a usable disk.", shown, strerror(errno));
        if (!S_ISBLK(st.st_mode))
                REFUSE_USAGE("%s is %s, not a block device; not a usable disk.", shown, file_type_name(st.st_mode));

        d.devnum = st.st_rdev;
        if (asprintf(&d.sysfs, "/sys/dev/block/%u:%u", major(d.devnum), minor(d.devnum)) < 0)
                return -ENOMEM;
        d.given = strdup(given);
        if (!d.given)
                return -ENOMEM;

        sysreal = realpath(d.sysfs, NULL);
        if (!sysreal)
                REFUSE_USAGE("%s is not known to the kernel (no %s); not a usable disk.", shown, d.sysfs);
        d.name = strdup(strrchr(sysreal, '/') + 1);
        if (!d.name)
                return -ENOMEM;

        if (attr_exists(d.sysfs, "partition")) {
                _cleanup_free_ char *parent = NULL;
                uint64_t n = 0;
                char up[PATH_MAX];

                (void) read_attr_u64(d.sysfs, "partition", &n);
                snprintf(up, sizeof(up), "%s/..", sysreal);
                parent = realpath(up, NULL);
                REFUSE_USAGE("%s is partition %llu of /dev/%s, not a whole disk; give the whole disk "
                             "(rootless-ci makes its own partition); not a usable disk.",
                             shown, (unsigned long long) n, parent ? strrchr(parent, '/') + 1 : "?");
        }
        if (attr_exists(d.sysfs, "dm"))
                REFUSE_USAGE("%s is a device-mapper device (LVM, LUKS, multipath...), not a disk; "
                             "not a usable disk.", shown);
        if (attr_exists(d.sysfs, "md"))
                REFUSE_USAGE("%s is an md RAID array, not a disk; not a usable disk.", shown);

        /* The kernel's own name for the node; fall back to the resolved path if /dev differs. */
        snprintf(buf, sizeof(buf), "/dev/%s", d.name);
        for (char *p = buf; *p; p++)
                if (*p == '!')
                        *p = '/';
        {
                struct stat nst;
                if (stat(buf, &nst) == 0 && S_ISBLK(nst.st_mode) && nst.st_rdev == d.devnum)
                        d.node = strdup(buf);
                else
                        d.node = strdup(real);
                if (!d.node)
                        return -ENOMEM;
        }

        r = read_attr_u64(d.sysfs, "size", &sectors);
        if (r < 0)
                return r;
        d.size = sectors * 512;
        if (d.size == 0)
                REFUSE_USAGE("%s has no medium (size 0); not a usable disk.", shown);
        if (d.size < DISK_MIN_SIZE)
                REFUSE_USAGE("%s is too small (%llu bytes; at least %llu MiB are needed); not a usable disk.",
                             shown, (unsigned long long) d.size, DISK_MIN_SIZE / (1024 * 1024));

        {
                uint64_t ro = 0;
                int ro_ioctl = 0;
                _cleanup_close_ int fd = disk_open(&d, O_RDONLY);

                if (fd < 0)
                        REFUSE_USAGE("%s cannot be opened (%s); not a usable disk.", shown, strerror(-fd));
                (void) read_attr_u64(d.sysfs, "ro", &ro);
                if (ioctl(fd, BLKROGET, &ro_ioctl) < 0)
                        ro_ioctl = 0;
                if (ro || ro_ioctl)
                        REFUSE_USAGE("%s is read-only; not a usable disk.", shown);
        }

        r = disk_read_partitions(&d);
        if (r < 0)
                return r;

        *ret = d;
        d = (Disk) {};
        return 0;
}

void disk_usage_done(DiskUsage *u) {
        for (size_t i = 0; i < u->n_mounts; i++) {
                free(u->mounts[i].device);
                free(u->mounts[i].target);
        }
        free(u->mounts);
        strv_free(u->busy);
        *u = (DiskUsage) {};
}

/* The disk itself or one of its partitions: its node name, or NULL. */
static const char *device_of(const Disk *d, dev_t devnum, char *buf, size_t size) {
        if (devnum == d->devnum)
                return d->node;
        for (size_t i = 0; i < d->n_parts; i++)
                if (d->parts[i].devnum == devnum) {
                        snprintf(buf, size, "/dev/%s", d->parts[i].name);
                        return buf;
                }
        return NULL;
}

int strv_add_printf(char ***l, size_t *n, const char *fmt, ...) {
        char **nl, *s;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        nl = reallocarray(*l, *n + 2, sizeof(char *));
        if (!nl) {
                free(s);
                return -ENOMEM;
        }
        *l = nl;
        (*l)[(*n)++] = s;
        (*l)[*n] = NULL;
        return 0;
}

char *strv_join(char **l, size_t n, const char *sep) {
        size_t len = 1;
        char *s;

        for (size_t i = 0; i < n; i++)
                len += strlen(l[i]) + strlen(sep);
        s = malloc(len);
        if (!s)
                return NULL;
        s[0] = 0;
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        strcat(s, sep);
                strcat(s, l[i]);
        }
        return s;
}

static int add_mount(DiskUsage *u, dev_t devnum, const char *device, const char *target) {
        DiskMount *n = reallocarray(u->mounts, u->n_mounts + 1, sizeof(DiskMount));
        if (!n)
                return -ENOMEM;
        u->mounts = n;
        u->mounts[u->n_mounts] = (DiskMount) {
                .devnum = devnum,
                .device = strdup(device),
                .target = strdup(target),
        };
        if (!u->mounts[u->n_mounts].device || !u->mounts[u->n_mounts].target) {
                free(u->mounts[u->n_mounts].device);
                free(u->mounts[u->n_mounts].target);
                return -ENOMEM;
        }
        u->n_mounts++;
        return 0;
}

static int usage_mounts(const Disk *d, struct libmnt_table *tb, DiskUsage *u) {
        _cleanup_(mnt_free_iterp) struct libmnt_iter *it = mnt_new_iter(MNT_ITER_FORWARD);
        struct libmnt_fs *fs;
        int r;

        if (!it)
                return -ENOMEM;
        while (mnt_table_next_fs(tb, it, &fs) == 0) {
                const char *src = mnt_fs_get_srcpath(fs), *dev;
                dev_t devnum = mnt_fs_get_devno(fs);
                char buf[PATH_MAX];
                struct stat st;

                /* btrfs and others report an anonymous device number: look at the source too. */
                dev = device_of(d, devnum, buf, sizeof(buf));
                if (!dev && src && src[0] == '/' && stat(src, &st) == 0 && S_ISBLK(st.st_mode)) {
                        devnum = st.st_rdev;
                        dev = device_of(d, devnum, buf, sizeof(buf));
                }
                if (!dev)
                        continue;
                r = add_mount(u, devnum, dev, strempty(mnt_fs_get_target(fs)));
                if (r < 0)
                        return r;
        }
        return 0;
}

/* /proc/swaps escapes blanks in names as \040 (octal). */
static void unescape_octal(char *s) {
        char *w = s;
        for (char *p = s; *p; ) {
                if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' && p[3] <= '7') {
                        *w++ = (char) (((p[1] - '0') << 6) | ((p[2] - '0') << 3) | (p[3] - '0'));
                        p += 4;
                } else
                        *w++ = *p++;
        }
        *w = 0;
}

static int usage_swaps(const Disk *d, DiskUsage *u) {
        _cleanup_fclose_ FILE *f = fopen("/proc/swaps", "re");
        char line[PATH_MAX + 128];
        bool header = true;

        if (!f)
                return errno == ENOENT ? 0 : negative_errno();
        while (fgets(line, sizeof(line), f)) {
                char *name = line, buf[PATH_MAX];
                const char *dev;
                struct stat st;

                if (header) {
                        header = false;
                        continue;
                }
                name[strcspn(name, " \t\n")] = 0;
                unescape_octal(name);
                if (stat(name, &st) < 0 || !S_ISBLK(st.st_mode))
                        continue;
                dev = device_of(d, st.st_rdev, buf, sizeof(buf));
                if (dev && strv_add_printf(&u->busy, &u->n_busy, "%s is in use as swap", dev) < 0)
                        return -ENOMEM;
        }
        return 0;
}

static int usage_holders_of(const char *sysdir, const char *dev, DiskUsage *u) {
        _cleanup_closedir_ DIR *dir = NULL;
        char path[PATH_MAX];
        struct dirent *de;

        snprintf(path, sizeof(path), "%s/holders", sysdir);
        dir = opendir(path);
        if (!dir)
                return errno == ENOENT ? 0 : negative_errno();
        while ((de = readdir(dir))) {
                char holder[PATH_MAX], dmname[256] = "";

                if (de->d_name[0] == '.')
                        continue;
                if (snprintf(holder, sizeof(holder), "%s/%s", path, de->d_name) < (int) sizeof(holder))
                        (void) read_attr(holder, "dm/name", dmname, sizeof(dmname));
                if (strv_add_printf(&u->busy, &u->n_busy,
                                    "%s is held by %s%s%s%s (LVM, device-mapper, md RAID or another driver)", dev,
                                    de->d_name, dmname[0] ? " (" : "", dmname, dmname[0] ? ")" : "") < 0)
                        return -ENOMEM;
        }
        return 0;
}

static int usage_holders(const Disk *d, DiskUsage *u) {
        int r = usage_holders_of(d->sysfs, d->node, u);
        if (r < 0)
                return r;
        for (size_t i = 0; i < d->n_parts; i++) {
                char sub[PATH_MAX], dev[PATH_MAX];
                snprintf(sub, sizeof(sub), "%s/%s", d->sysfs, d->parts[i].name);
                snprintf(dev, sizeof(dev), "/dev/%s", d->parts[i].name);
                r = usage_holders_of(sub, dev, u);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int usage_system(const Disk *d, DiskUsage *u) {
        static const char *const system_dirs[] = { "/", "/boot", "/boot/efi", "/usr", "/var" };

        for (size_t i = 0; i < ELEMENTSOF(system_dirs); i++) {
                char buf[PATH_MAX];
                const char *dev;
                struct stat st;

                if (stat(system_dirs[i], &st) < 0)
                        continue;
                dev = device_of(d, st.st_dev, buf, sizeof(buf));
                if (dev && strv_add_printf(&u->busy, &u->n_busy, "%s holds %s of the running system", dev,
                                           system_dirs[i]) < 0)
                        return -ENOMEM;
        }
        return 0;
}

int disk_usage(const Disk *d, struct libmnt_table *mounts, DiskUsage *ret) {
        DiskUsage u = {};
        int r;

        if ((r = usage_system(d, &u)) < 0 ||
            (r = usage_mounts(d, mounts, &u)) < 0 ||
            (r = usage_swaps(d, &u)) < 0 ||
            (r = usage_holders(d, &u)) < 0) {
                disk_usage_done(&u);
                return r;
        }
        *ret = u;
        return 0;
}
