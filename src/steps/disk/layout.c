/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <linux/blkpg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>

#include "steps/disk/layout.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"
#include "util/macro.h"

/*
 * libparted is loaded with dlopen(), only by a run that partitions a disk.
 *
 * Debian's libparted runs popen("dmidecode -s system-manufacturer") from its
 * library constructor (to detect Apple hardware for the GPT's protective
 * MBR) unless PARTED_GPT_APPLE is set: linked normally, every rootless-ci
 * process, a no-op re-run included, would start a shell as root that finds
 * dmidecode through the caller's PATH, before main() could stop it. Loading
 * it here, with PARTED_GPT_APPLE=0 for the moment of loading, means no shell
 * is ever started, the GPT written does not depend on the machine's vendor,
 * and runs with nothing to partition do not load libparted at all.
 */
#define LIBPARTED_SONAME "libparted.so.2"

#define PARTED_FUNCTIONS(X)                          \
        X(ped_device_get)                            \
        X(ped_device_destroy)                        \
        X(ped_device_get_optimal_aligned_constraint) \
        X(ped_constraint_destroy)                    \
        X(ped_disk_type_get)                         \
        X(ped_file_system_type_get)                  \
        X(ped_disk_new_fresh)                        \
        X(ped_disk_destroy)                          \
        X(ped_disk_add_partition)                    \
        X(ped_disk_commit_to_dev)                    \
        X(ped_partition_new)                         \
        X(ped_partition_destroy)                     \
        X(ped_partition_set_name)                    \
        X(ped_exception_set_handler)                 \
        X(ped_exception_get_type_string)             \
        X(ped_exception_get_option_string)

static struct {
#define DECLARE(f) __typeof__(&f) f;
        PARTED_FUNCTIONS(DECLARE)
#undef DECLARE
} parted;

static void *parted_handle;

static int parted_load(void) {
        _cleanup_free_ char *saved = NULL;
        const char *old;
        void *h;

        if (parted_handle)
                return 0;

        old = getenv("PARTED_GPT_APPLE");
        if (old && !(saved = strdup(old)))
                return -ENOMEM;
        if (setenv("PARTED_GPT_APPLE", "0", 1) < 0)
                return negative_errno();
        h = dlopen(LIBPARTED_SONAME, RTLD_NOW | RTLD_LOCAL);
        /* The constructor has run; leave the environment as it was. */
        if (saved)
                (void) setenv("PARTED_GPT_APPLE", saved, 1);
        else
                (void) unsetenv("PARTED_GPT_APPLE");
        if (!h)
                return log_error_errno(-ELIBACC, "Failed to load %s (install libparted2): %s", LIBPARTED_SONAME, dlerror());

#define RESOLVE(f)                                                                                        \
        parted.f = (__typeof__(parted.f)) dlsym(h, #f);                                                   \
        if (!parted.f) {                                                                                  \
                dlclose(h);                                                                               \
                return log_error_errno(-ELIBBAD, "%s lacks %s.", LIBPARTED_SONAME, #f);                   \
        }
        PARTED_FUNCTIONS(RESOLVE)
#undef RESOLVE

        parted_handle = h;
        return 0;
}

bool layout_libparted_loaded(void) {
        return parted_handle != NULL;
}

static void ped_device_destroyp(PedDevice **p) {
        if (*p)
                parted.ped_device_destroy(*p);
}
static void ped_disk_destroyp(PedDisk **p) {
        if (*p)
                parted.ped_disk_destroy(*p);
}
static void ped_constraint_destroyp(PedConstraint **p) {
        if (*p)
                parted.ped_constraint_destroy(*p);
}

PedExceptionOption layout_exception_answer(PedExceptionType type, PedExceptionOption options) {
        (void) type;
        if (options & PED_EXCEPTION_CANCEL)
                return PED_EXCEPTION_CANCEL;
        if (options & PED_EXCEPTION_NO)
                return PED_EXCEPTION_NO;
        if (options & PED_EXCEPTION_OK)
                return PED_EXCEPTION_OK;
        return PED_EXCEPTION_UNHANDLED;
}

static char last_exception[512];

static PedExceptionOption exception_handler(PedException *ex) {
        PedExceptionOption answer = layout_exception_answer(ex->type, ex->options);

        snprintf(last_exception, sizeof(last_exception), "%s", strempty(ex->message));
        log_full_errno(ex->type >= PED_EXCEPTION_ERROR ? LOG_ERR : LOG_WARNING, 0, "libparted %s: %s (answered %s)",
                       parted.ped_exception_get_type_string(ex->type), strempty(ex->message),
                       answer == PED_EXCEPTION_UNHANDLED ? "nothing" : parted.ped_exception_get_option_string(answer));
        return answer;
}

/* Our handler is in place only while libparted runs on our behalf. */
static void exception_handler_pop(bool *pushed) {
        if (*pushed)
                parted.ped_exception_set_handler(NULL);
}
#define EXCEPTION_HANDLER_SCOPE                                                       \
        _cleanup_(exception_handler_pop) _unused_ bool _handler_pushed_ = true;               \
        last_exception[0] = 0;                                                        \
        parted.ped_exception_set_handler(exception_handler)

static const char *last_exception_or(const char *fallback) {
        return last_exception[0] ? last_exception : fallback;
}

/* A fresh GPT in memory with our one partition; nothing is written. */
static int build_layout(PedDevice *dev, FileSystem fs, PedDisk **ret_disk, PedPartition **ret_part) {
        _cleanup_(ped_disk_destroyp) PedDisk *disk = NULL;
        _cleanup_(ped_constraint_destroyp) PedConstraint *constraint = NULL;
        PedDiskType *gpt = parted.ped_disk_type_get("gpt");
        /* The filesystem type only selects the GPT type GUID: Linux filesystem data for both. */
        PedFileSystemType *fst = parted.ped_file_system_type_get(filesystem_to_string(fs));
        PedPartition *part;

        if (!gpt || !fst)
                return log_error_errno(-EOPNOTSUPP, "libparted lacks GPT or %s support.", filesystem_to_string(fs));

        disk = parted.ped_disk_new_fresh(dev, gpt);
        if (!disk)
                return log_error_errno(-EIO, "libparted could not lay out a GPT on %s: %s", dev->path,
                                       last_exception_or("unknown error"));
        constraint = parted.ped_device_get_optimal_aligned_constraint(dev);
        if (!constraint)
                return log_error_errno(-EIO, "libparted has no optimal alignment for %s.", dev->path);

        /* Ask for the whole device; the constraint moves the start to the first aligned sector after the GPT. */
        part = parted.ped_partition_new(disk, PED_PARTITION_NORMAL, fst, 0, dev->length - 1);
        if (!part)
                return log_error_errno(-EIO, "libparted could not create a partition on %s: %s", dev->path,
                                       last_exception_or("unknown error"));
        if (!parted.ped_disk_add_partition(disk, part, constraint)) {
                parted.ped_partition_destroy(part);
                return log_error_errno(-EIO, "libparted could not place the partition on %s: %s", dev->path,
                                       last_exception_or("unknown error"));
        }
        if (!parted.ped_partition_set_name(part, RCI_PARTITION_NAME))
                return log_error_errno(-EIO, "libparted could not name the partition on %s: %s", dev->path,
                                       last_exception_or("unknown error"));

        *ret_part = part;
        *ret_disk = TAKE_PTR(disk);
        return 0;
}

static void geometry_of(const PedDevice *dev, const PedPartition *part, PartitionGeometry *ret) {
        *ret = (PartitionGeometry) {
                .start = (uint64_t) part->geom.start * (uint64_t) dev->sector_size,
                .size = (uint64_t) part->geom.length * (uint64_t) dev->sector_size,
        };
}

/*
 * Build our layout for path in libparted's memory and give its geometry.
 * With expected: refuse unless the geometry is what was probed, then write
 * the GPT — only to the disk: the caller tells the kernel (see
 * kernel_partitions_match_gpt()).
 */
static int layout_build(const char *path, FileSystem fs, const PartitionGeometry *expected, PartitionGeometry *ret) {
        _cleanup_(ped_device_destroyp) PedDevice *dev = NULL;
        _cleanup_(ped_disk_destroyp) PedDisk *disk = NULL;
        PartitionGeometry g;
        PedPartition *part = NULL;
        int r;

        r = parted_load();
        if (r < 0)
                return r;
        EXCEPTION_HANDLER_SCOPE;
        dev = parted.ped_device_get(path);
        if (!dev)
                return log_error_errno(-EIO, "libparted cannot use %s: %s", path, last_exception_or("unknown error"));
        r = build_layout(dev, fs, &disk, &part);
        if (r < 0)
                return r;
        geometry_of(dev, part, &g);
        if (ret)
                *ret = g;
        if (!expected)
                return 0;
        if (g.start != expected->start || g.size != expected->size)
                return log_error_errno(-ESTALE, "The partition on %s would go to bytes %llu+%llu, not %llu+%llu as "
                                       "probed; not writing.", path, (unsigned long long) g.start,
                                       (unsigned long long) g.size, (unsigned long long) expected->start,
                                       (unsigned long long) expected->size);
        if (!parted.ped_disk_commit_to_dev(disk))
                return log_error_errno(-EIO, "Failed to write the GPT to %s: %s", path, last_exception_or("unknown error"));
        return 0;
}

int layout_plan(const char *path, FileSystem fs, PartitionGeometry *ret) {
        return layout_build(path, fs, NULL, ret);
}

int layout_write(const char *path, FileSystem fs, const PartitionGeometry *expected) {
        return layout_build(path, fs, expected, NULL);
}

int layout_kernel_add(int disk_fd, unsigned n, uint64_t start, uint64_t size) {
        struct blkpg_partition p = {
                .start = (long long) start,
                .length = (long long) size,
                .pno = (int) n,
        };
        struct blkpg_ioctl_arg a = {
                .op = BLKPG_ADD_PARTITION,
                .datalen = sizeof(p),
                .data = &p,
        };

        return ioctl(disk_fd, BLKPG, &a) < 0 ? negative_errno() : 0;
}

int layout_kernel_del(int disk_fd, unsigned n) {
        struct blkpg_partition p = { .pno = (int) n };
        struct blkpg_ioctl_arg a = {
                .op = BLKPG_DEL_PARTITION,
                .datalen = sizeof(p),
                .data = &p,
        };

        return ioctl(disk_fd, BLKPG, &a) < 0 ? negative_errno() : 0;
}

int layout_wait_partition(Disk *d, unsigned n, const PartitionGeometry *g, unsigned timeout_ms, char **ret_node,
                          dev_t *ret_devnum) {
        uint64_t deadline = now_usec() + (uint64_t) timeout_ms * 1000;
        int r;

        for (;;) {
                const KernelPartition *kp;

                r = disk_read_partitions(d);
                if (r < 0)
                        return r;
                kp = disk_kernel_partition(d, n);
                if (kp && kp->start == g->start && kp->size == g->size) {
                        char node[PATH_MAX];
                        struct stat st;

                        snprintf(node, sizeof(node), "/dev/%s", kp->name);
                        for (char *c = node; *c; c++)
                                if (*c == '!')
                                        *c = '/';
                        /* The node must be this partition of this disk, not a stale one of the same name. */
                        if (stat(node, &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == kp->devnum) {
                                *ret_node = strdup(node);
                                if (!*ret_node)
                                        return -ENOMEM;
                                *ret_devnum = kp->devnum;
                                return 0;
                        }
                }
                if (now_usec() >= deadline)
                        return -ETIMEDOUT;
                (void) nanosleep(&(struct timespec) { .tv_nsec = 10 * 1000 * 1000 }, NULL);
        }
}
