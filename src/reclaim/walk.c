/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reclaim/reclaim.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"

/*
 * The walk of reclaim_tree() (reclaim.h): which entries go back to the user,
 * and the walk itself, by file descriptors, without recursion. reclaim.c has
 * the PATHs and the verb.
 */

#define STATX_WANT (STATX_TYPE | STATX_MODE | STATX_UID | STATX_GID | STATX_NLINK | STATX_INO | STATX_MNT_ID)

/* ------------------------------------------------------------ one entry */

int reclaim_statx_fd(int fd, struct statx *ret) {
        if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_WANT, ret) < 0)
                return negative_errno();
        return 0;
}

/* Same mount: the same device and, where the kernel says (5.8+), the same mount ID (a bind mount has its own). */
bool reclaim_same_mount(const struct statx *a, const struct statx *b) {
        if (a->stx_dev_major != b->stx_dev_major || a->stx_dev_minor != b->stx_dev_minor)
                return false;
        if ((a->stx_mask & STATX_MNT_ID) && (b->stx_mask & STATX_MNT_ID))
                return a->stx_mnt_id == b->stx_mnt_id;
        return true;
}

/* ------------------------------------------------------------ what to give back */

static bool is_subordinate(uint32_t id, uint32_t self, uint32_t max) {
        return id != self && id >= 1 && id <= max;
}

ReclaimVerdict reclaim_judge_owner(const ReclaimIds *ids, uint32_t uid, uint32_t gid) {
        bool gid_sub = is_subordinate(gid, ids->self_gid, ids->gid_max);

        if (uid == ids->self_uid) {
                /*
                 * The user's own entry. A subordinate group goes back to the user's;
                 * a group that reads as the overflow ID may be any group of the
                 * user's (its owner could change it): it stays.
                 */
                return gid != ids->self_gid && gid_sub && gid != ids->overflow_gid ? RECLAIM_CHOWN : RECLAIM_KEEP;
        }
        if (is_subordinate(uid, ids->self_uid, ids->uid_max) && (gid == ids->self_gid || gid_sub))
                return RECLAIM_CHOWN;
        return RECLAIM_FOREIGN;
}

void reclaim_stats_done(ReclaimStats *s) {
        free(s->first_foreign);
        free(s->first_hardlinked);
        free(s->first_mount);
        *s = (ReclaimStats) {};
}

/* ------------------------------------------------------------ the walk */

typedef struct Level {
        int fd;                  /* O_PATH; -1 while closed to bound the fds (reopened through "..") */
        uint64_t ino;
        uint32_t dev_major, dev_minor;
        char **subdirs;          /* its subdirectories, read when it was entered */
        size_t n_subdirs, next;
        size_t shown_len;        /* length of its name in Walk.shown */
} Level;

/* A file of subordinate IDs with several names, and how many of them the walk has met. */
typedef struct Linked {
        uint64_t ino;            /* every entry given back is on the PATH's mount: the inode says which */
        uint32_t nlink, seen;    /* seen 0: a free slot */
        char *first;             /* its first name met, for the message when it is left */
} Linked;

typedef struct Walk {
        const ReclaimIds *ids;
        ReclaimStats *stats;
        Linked *linked;          /* open addressing, a power of two of slots, at most half full */
        size_t n_linked_slots, n_linked;
        struct statx root;       /* the PATH: every entry must be on its mount */
        Level *levels;
        size_t depth, allocated;
        char *shown;             /* the current directory's path, for messages only: never resolved */
        size_t shown_size;
} Walk;

static void level_done(Level *l) {
        for (size_t i = 0; i < l->n_subdirs; i++)
                free(l->subdirs[i]);
        free(l->subdirs);
        l->fd = safe_close(l->fd);
        l->subdirs = NULL;
        l->n_subdirs = l->next = 0;
}

/* Walk.shown + "/" + name: the current directory's path, or an entry's (then cut back). */
static int shown_push(Walk *w, size_t at, const char *name) {
        size_t l = strlen(name);

        if (at + 1 + l + 1 > w->shown_size) {
                size_t n = (at + 1 + l + 1) * 2;
                char *s = realloc(w->shown, n);
                if (!s)
                        return -ENOMEM;
                w->shown = s;
                w->shown_size = n;
        }
        w->shown[at] = '/';
        memcpy(w->shown + at + 1, name, l + 1);
        return 0;
}

static void remember(char **first, const char *shown) {
        if (!*first)
                *first = strdup(shown);
}

static void count_error(Walk *w, int r, const char *what, const char *shown) {
        if (w->stats->errors++ < RECLAIM_ERRORS_LOGGED)
                log_error_errno(r, "Failed to %s %s: %m", what, shown);
}

static size_t linked_slot(const Linked *t, size_t n_slots, uint64_t ino) {
        size_t i = (size_t) ((ino * 0x9e3779b97f4a7c15ULL) >> 17) & (n_slots - 1);

        while (t[i].seen && t[i].ino != ino)
                i = (i + 1) & (n_slots - 1);
        return i;
}

/*
 * Meet one name of a file with several: 1 when every name of it has now been
 * met below the PATH (it can be given back through this one), 0 when not yet.
 */
static int linked_meet(Walk *w, const struct statx *st, const char *shown) {
        Linked *l;

        if ((w->n_linked + 1) * 2 > w->n_linked_slots) {
                size_t n = w->n_linked_slots ? w->n_linked_slots * 2 : 1024;
                Linked *t = calloc(n, sizeof(Linked));
                if (!t)
                        return -ENOMEM;
                for (size_t i = 0; i < w->n_linked_slots; i++)
                        if (w->linked[i].seen)
                                t[linked_slot(t, n, w->linked[i].ino)] = w->linked[i];
                free(w->linked);
                w->linked = t;
                w->n_linked_slots = n;
        }
        l = &w->linked[linked_slot(w->linked, w->n_linked_slots, st->stx_ino)];
        if (!l->seen) {
                l->first = strdup(shown);
                if (!l->first)
                        return -ENOMEM;
                l->ino = st->stx_ino;
                w->n_linked++;
        }
        l->seen++;
        l->nlink = st->stx_nlink;
        return l->seen >= l->nlink;
}

/* After the walk: what has a name that was not met below the PATH is left, and reported. */
static void linked_done(Walk *w) {
        for (size_t i = 0; i < w->n_linked_slots; i++) {
                Linked *l = &w->linked[i];
                if (l->seen && l->seen < l->nlink) {
                        w->stats->hardlinked++;
                        if (!w->stats->first_hardlinked)
                                w->stats->first_hardlinked = TAKE_PTR(l->first);
                }
                free(l->first);
        }
        free(w->linked);
        w->linked = NULL;
        w->n_linked_slots = w->n_linked = 0;
}

/*
 * Give one entry back: chown through dirfd/name without following it (name
 * "" with AT_EMPTY_PATH: dirfd itself). Returns the verdict that held.
 */
static ReclaimVerdict give_back(Walk *w, int dirfd, const char *name, const struct statx *st, const char *shown) {
        ReclaimVerdict v = reclaim_judge_owner(w->ids, st->stx_uid, st->stx_gid);

        if (v == RECLAIM_CHOWN && !S_ISDIR(st->stx_mode) && st->stx_nlink > 1) {
                /*
                 * Another name may be outside the PATH: given back only once every
                 * name has been met below it, else left (removing this name needs
                 * only its directory).
                 */
                int r = linked_meet(w, st, shown);
                if (r < 0) {
                        count_error(w, r, "keep track of", shown);
                        return RECLAIM_FOREIGN;
                }
                if (r == 0)
                        return RECLAIM_KEEP;
        }
        if (v == RECLAIM_CHOWN) {
                if (fchownat(dirfd, name, w->ids->self_uid, w->ids->self_gid,
                             AT_SYMLINK_NOFOLLOW | (name[0] ? 0 : AT_EMPTY_PATH)) >= 0) {
                        w->stats->reowned++;
                        return RECLAIM_CHOWN;
                }
                if (errno == ENOENT)  /* removed meanwhile (a container still at work): nothing to give back */
                        return RECLAIM_KEEP;
                if (errno != EPERM && errno != EINVAL) {
                        count_error(w, negative_errno(), "give back", shown);
                        return RECLAIM_FOREIGN;
                }
                /* The overflow ID was an unmapped one after all: the kernel knows. */
                v = RECLAIM_FOREIGN;
        }
        if (v == RECLAIM_FOREIGN) {
                w->stats->foreign++;
                remember(&w->stats->first_foreign, shown);
        }
        return v;
}

/* u+rwx on a directory of the user's, through its O_PATH fd (fchmod() refuses those; the fd's /proc link does not). */
static void open_up(Walk *w, int fd, const struct statx *st, const char *shown) {
        char link[64];

        if ((st->stx_mode & 0700) == 0700)
                return;
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        if (chmod(link, (st->stx_mode & 07777) | 0700) < 0) {
                count_error(w, negative_errno(), "open up", shown);
                return;
        }
        w->stats->opened++;
}

static int add_subdir(Level *l, const char *name) {
        char **n, *s;

        if (l->n_subdirs % 64 == 0) {
                n = reallocarray(l->subdirs, l->n_subdirs + 64, sizeof(char *));
                if (!n)
                        return -ENOMEM;
                l->subdirs = n;
        }
        s = strdup(name);
        if (!s)
                return -ENOMEM;
        l->subdirs[l->n_subdirs++] = s;
        return 0;
}

/* Read the directory of level l: every entry but the subdirectories is dealt with now; those are listed. */
static int read_level(Walk *w, Level *l) {
        _cleanup_close_ int rfd = -1;
        DIR *d;
        struct dirent *de;
        int r = 0;

        rfd = openat(l->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (rfd < 0) {
                if (errno == EACCES)
                        return 0;  /* a directory not the user's, closed to it: reported as foreign already */
                count_error(w, negative_errno(), "read", w->shown);
                return 0;
        }
        d = fdopendir(rfd);
        if (!d) {
                count_error(w, negative_errno(), "read", w->shown);
                return 0;
        }
        rfd = -1;  /* the DIR has it */

        for (errno = 0; (de = readdir(d)); errno = 0) {
                struct statx st;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                w->stats->entries++;
                if (de->d_type == DT_DIR) {
                        r = add_subdir(l, de->d_name);
                        if (r < 0)
                                break;
                        continue;
                }
                r = shown_push(w, l->shown_len, de->d_name);
                if (r < 0)
                        break;
                if (statx(dirfd(d), de->d_name, AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC, STATX_WANT, &st) < 0) {
                        if (errno != ENOENT)  /* gone meanwhile: nothing to do */
                                count_error(w, negative_errno(), "look at", w->shown);
                } else if (S_ISDIR(st.stx_mode)) {
                        r = add_subdir(l, de->d_name);
                        if (r < 0)
                                break;
                } else if (!reclaim_same_mount(&w->root, &st)) {
                        /* A file bind-mounted here: what is mounted is not ours to touch. */
                        w->stats->mounts++;
                        remember(&w->stats->first_mount, w->shown);
                } else
                        (void) give_back(w, dirfd(d), de->d_name, &st, w->shown);
                w->shown[l->shown_len] = 0;
        }
        if (r >= 0 && errno != 0)
                count_error(w, negative_errno(), "read", w->shown);
        w->shown[l->shown_len] = 0;
        closedir(d);
        return r;
}

/*
 * Enter the directory fd (O_PATH, already opened without following): check
 * its mount, give it back, open it up, and push it with its listing.
 * Returns 1 when pushed, 0 when left alone.
 */
static int enter(Walk *w, int fd, size_t shown_len) {
        _cleanup_close_ int owned = fd;
        struct statx st;
        ReclaimVerdict v;
        Level *l;
        int r;

        w->stats->entries += w->depth == 0;  /* the PATH itself; the others were counted when listed */
        r = reclaim_statx_fd(fd, &st);
        if (r < 0) {
                count_error(w, r, "look at", w->shown);
                return 0;
        }
        if (w->depth == 0)
                w->root = st;
        else if (!reclaim_same_mount(&w->root, &st)) {
                w->stats->mounts++;
                remember(&w->stats->first_mount, w->shown);
                return 0;
        }
        v = give_back(w, fd, "", &st, w->shown);
        if (v != RECLAIM_FOREIGN)
                open_up(w, fd, &st, w->shown);

        if (w->depth == w->allocated) {
                size_t n = w->allocated ? w->allocated * 2 : 16;
                Level *nl = reallocarray(w->levels, n, sizeof(Level));
                if (!nl)
                        return -ENOMEM;
                w->levels = nl;
                w->allocated = n;
        }
        l = &w->levels[w->depth++];
        *l = (Level) {
                .fd = TAKE_FD(owned), .ino = st.stx_ino, .dev_major = st.stx_dev_major,
                .dev_minor = st.stx_dev_minor, .shown_len = shown_len,
        };
        r = read_level(w, l);
        return r < 0 ? r : 1;
}

/* Leave the top level; reopen its parent through ".." if that was closed, and check it is the same directory. */
static int leave(Walk *w) {
        Level *top = &w->levels[w->depth - 1], *parent = w->depth > 1 ? &w->levels[w->depth - 2] : NULL;
        struct statx st;
        int r;

        if (parent && parent->fd < 0) {
                parent->fd = openat(top->fd, "..", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (parent->fd < 0)
                        return log_error_errno(negative_errno(), "Failed to go back up from %s: %m", w->shown);
                r = reclaim_statx_fd(parent->fd, &st);
                if (r < 0)
                        return log_error_errno(r, "Failed to go back up from %s: %m", w->shown);
                if (st.stx_ino != parent->ino || st.stx_dev_major != parent->dev_major ||
                    st.stx_dev_minor != parent->dev_minor)
                        return log_error_errno(-ESTALE, "%s was moved while it was being walked; stopping there.",
                                               w->shown);
        }
        level_done(top);
        w->depth--;
        if (parent)
                w->shown[parent->shown_len] = 0;
        return 0;
}

int reclaim_tree(int fd, const char *shown, const ReclaimIds *ids, ReclaimStats *stats) {
        Walk w = { .ids = ids, .stats = stats };
        int start, r;

        w.shown = strdup(shown);
        if (!w.shown)
                return -ENOMEM;
        w.shown_size = strlen(shown) + 1;

        start = openat(fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (start < 0) {
                r = log_error_errno(negative_errno(), "Failed to open %s: %m", shown);
                goto out;
        }
        r = enter(&w, start, strlen(shown));
        while (r >= 0 && w.depth > 0) {
                size_t at = w.depth - 1;
                Level *l = &w.levels[at];
                const char *name;
                int sub;

                if (l->next == l->n_subdirs) {
                        r = leave(&w);
                        continue;
                }
                name = l->subdirs[l->next++];
                r = shown_push(&w, l->shown_len, name);
                if (r < 0)
                        break;
                /* O_PATH needs no permission on the directory itself: the user's own 0000 one opens too. */
                sub = openat(l->fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0) {
                        /* Gone, or replaced by something else meanwhile: not ours to chase. */
                        if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP)
                                count_error(&w, negative_errno(), "open", w.shown);
                        w.shown[l->shown_len] = 0;
                        continue;
                }
                r = enter(&w, sub, strlen(w.shown));
                if (r == 0)  /* not entered */
                        w.shown[w.levels[at].shown_len] = 0;
                else if (r > 0 && at >= RECLAIM_FDS_KEPT)
                        /* Bounded fds: deep below, a level's parent is closed, and reopened through ".." on the way up. */
                        w.levels[at].fd = safe_close(w.levels[at].fd);
        }
out:
        while (w.depth > 0)
                level_done(&w.levels[--w.depth]);
        linked_done(&w);
        free(w.levels);
        free(w.shown);
        return r < 0 ? r : 0;
}
