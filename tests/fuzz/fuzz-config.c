/* SPDX-License-Identifier: MIT */
/*
 * The configuration parser on arbitrary bytes: it never crashes, leaks or
 * reads out of bounds; it either fails with -ERCI_USAGE (or -ENOMEM) or
 * leaves a Config whose every value passes the same validation the
 * command line applies, so no key can smuggle a value past it, and whose
 * tenants are complete, unique and alone (no [User] or [Agent] with them).
 */
#include <string.h>
#include <syslog.h>

#include "config.h"
#include "fuzz.h"
#include "util/error.h"
#include "util/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void) argc;
        (void) argv;
        log_set_max_level(LOG_EMERG - 1);  /* errors are expected: keep the run quiet and fast */
        return 0;
}

static void check_tenants(const Config *c) {
        FUZZ_ASSERT(c->n_tenants <= TENANTS_MAX);
        FUZZ_ASSERT(c->n_tenants == 0 || !c->single_origin);
        for (size_t i = 0; i < c->n_tenants; i++) {
                const Tenant *t = &c->tenants[i];

                FUZZ_ASSERT(t->name && valid_tenant_name(t->name));
                FUZZ_ASSERT(t->user && valid_user_name(t->user) && strcmp(t->user, "root") != 0);
                FUZZ_ASSERT(t->agent_unit && valid_unit_name(t->agent_unit) && !strpbrk(t->agent_unit, "\n\r"));
                FUZZ_ASSERT(t->agent_config && valid_absolute_path(t->agent_config) && strcmp(t->agent_config, "/") != 0);
                FUZZ_ASSERT(trust_to_string(t->trust));
                FUZZ_ASSERT(t->origin);
                for (size_t j = 0; j < i; j++) {
                        FUZZ_ASSERT(strcmp(c->tenants[j].name, t->name) != 0);
                        FUZZ_ASSERT(strcmp(c->tenants[j].user, t->user) != 0);
                        FUZZ_ASSERT(strcmp(c->tenants[j].agent_unit, t->agent_unit) != 0);
                        FUZZ_ASSERT(strcmp(c->tenants[j].agent_config, t->agent_config) != 0);
                }
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Config c;
        const char *reason;
        int r;

        FUZZ_ASSERT(config_init(&c) >= 0);
        r = config_parse_text(&c, "fuzz.conf", (const char *) data, size);
        FUZZ_ASSERT(r == 0 || r == -ERCI_USAGE || r == -ENOMEM);
        if (r == 0) {
                FUZZ_ASSERT(c.filesystem < _FILESYSTEM_MAX);
                FUZZ_ASSERT(c.mount_point && valid_mount_point(c.mount_point, &reason));
                FUZZ_ASSERT(c.user_name && valid_user_name(c.user_name) && strcmp(c.user_name, "root") != 0);
                FUZZ_ASSERT(c.agent_unit && valid_unit_name(c.agent_unit));
                FUZZ_ASSERT(!c.disk_device || (valid_absolute_path(c.disk_device) &&
                                               strncmp(c.disk_device, "/dev/", 5) == 0));
                FUZZ_ASSERT(c.ready_timeout_sec >= 1 && c.ready_timeout_sec <= 86400);
                /* Nothing that passed may carry a byte that could end a line in a unit file or fstab. */
                FUZZ_ASSERT(!strpbrk(c.mount_point, "\n\r"));
                FUZZ_ASSERT(!strpbrk(c.user_name, "\n\r:"));
                FUZZ_ASSERT(!strpbrk(c.agent_unit, "\n\r"));
                check_tenants(&c);
        }
        config_done(&c);
        return 0;
}
