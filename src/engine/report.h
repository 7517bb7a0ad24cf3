/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

/*
 * What one item of a step reports. Plan/apply items say what changes
 * (ok "=", create "+", change "~", remove "-"); checks give a verdict
 * (pass, fail, warn, skip). In JSON these are the lower-case names.
 */
typedef enum ItemStatus {
        ITEM_OK,
        ITEM_CREATE,
        ITEM_CHANGE,
        ITEM_REMOVE,
        ITEM_PASS,
        ITEM_FAIL,
        ITEM_WARN,
        ITEM_SKIP,
        _ITEM_STATUS_MAX,
} ItemStatus;

typedef struct Item {
        char *id;        /* "preflight.newuidmap", "disk.fstab", ...; NULL only inside a part's
                          * apply: the place a pending Change keeps (engine/report.c) */
        const char *step;
        const char *tenant; /* the tenant whose run of a per-account step reported it (JSON "tenant"), or NULL */
        ItemStatus status;
        char *message;
        char *fix;       /* NULL when there is nothing to do */
        bool changed;    /* apply: this run changed the host */
} Item;

const char *item_status_to_string(ItemStatus s);
