/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake-tree.h"
#include "steps/steps.h"
#include "tests.h"
#include "util/macro.h"

uid_t fake_ci_uid(void) {
        return getuid() == 0 ? 1001 : getuid();
}

gid_t fake_ci_gid(void) {
        return getuid() == 0 ? 1001 : getgid();
}

const char *fake_ci_uid_unusable(void) {
        if (fake_ci_uid() == 65534)
                return "the fake CI user has the test's own UID, and 65534 (nobody) is the overflow UID the user "
                       "step refuses: run as root or as another user";
        return NULL;
}

void fake_tree_write_ids(const char *dir, const char *relpath, const char *fmt) {
        char buf[8192];
        size_t j = 0;

        /* @UID@, @GID@: the CI user's; @ALICE@: another user's UID and GID. */
        for (const char *p = fmt; *p && j + 16 < sizeof(buf);) {
                unsigned v;
                if (strncmp(p, "@UID@", 5) == 0)
                        v = (unsigned) fake_ci_uid(), p += 5;
                else if (strncmp(p, "@GID@", 5) == 0)
                        v = (unsigned) fake_ci_gid(), p += 5;
                else if (strncmp(p, "@ALICE@", 7) == 0)
                        v = (unsigned) fake_ci_uid() + 1, p += 7;
                else {
                        buf[j++] = *p++;
                        continue;
                }
                j += (size_t) snprintf(buf + j, sizeof(buf) - j, "%u", v);
        }
        buf[j] = 0;
        test_write(dir, relpath, buf);
}

/* /home/<user> with a .profile, 0700, the user's when run as root. */
static void fake_home(const char *dir, const char *user, uid_t uid, gid_t gid) {
        char p[4096], rel[256];

        snprintf(rel, sizeof(rel), "home/%s/.profile", user);
        test_write(dir, rel, "# profile\n");
        snprintf(p, sizeof(p), "%s/home/%s", dir, user);
        if (chmod(p, 0700) < 0)
                abort();
        if (getuid() == 0) {
                if (chown(p, uid, gid) < 0)
                        abort();
                snprintf(p, sizeof(p), "%s/home/%s/.profile", dir, user);
                if (chown(p, uid, gid) < 0)
                        abort();
        }
}

void fake_tree_populate(const char *dir, bool with_user) {
        char defs[256];
        unsigned uid_min = fake_ci_uid() < 1000 ? (unsigned) fake_ci_uid() : 1000;

        fake_tree_write_ids(dir, "etc/passwd",
                            with_user ? "root:x:0:0:root:/root:/bin/bash\n"
                                        "alice:x:@ALICE@:@ALICE@::/home/alice:/bin/bash\n"
                                        "buildkite:x:@UID@:@GID@:CI:/home/buildkite:/bin/bash\n"
                                      : "root:x:0:0:root:/root:/bin/bash\n"
                                        "alice:x:@ALICE@:@ALICE@::/home/alice:/bin/bash\n");
        fake_tree_write_ids(dir, "etc/group",
                            with_user ? "root:x:0:\nsudo:x:27:alice\ndocker:x:999:alice\nalice:x:@ALICE@:\n"
                                        "buildkite:x:@GID@:\n"
                                      : "root:x:0:\nsudo:x:27:alice\ndocker:x:999:alice\nalice:x:@ALICE@:\n");
        test_write(dir, "etc/gshadow", "root:*::\nsudo:*::alice\ndocker:!::alice\n");
        snprintf(defs, sizeof(defs), "UID_MIN %u\nUID_MAX 60000\nSUB_UID_MIN 100000\nSUB_UID_MAX 600100000\n", uid_min);
        test_write(dir, "etc/login.defs", defs);
        test_write(dir, "etc/subuid", "");
        test_write(dir, "etc/subgid", "");
        test_write(dir, "etc/sudoers", "root ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n");
        test_write(dir, "home/alice/.profile", "alice's\n");
        if (with_user)
                fake_home(dir, "buildkite", fake_ci_uid(), fake_ci_gid());
}

const FakeTenant fake_two_tenants[2] = { { "main", "buildkite" }, { "pr", "buildkite-pr" } };

uid_t fake_pr_uid(void) {
        return fake_ci_uid() + 2;  /* alice has + 1 */
}

void fake_tree_populate_tenants(const char *dir, bool with_pr) {
        _cleanup_free_ char *passwd = NULL, *group = NULL;

        fake_tree_populate(dir, true);
        if (!with_pr)
                return;
        if (asprintf(&passwd, "%sbuildkite-pr:x:%u:%u::/home/buildkite-pr:/bin/bash\n", test_read_kept(dir, "etc/passwd"),
                     (unsigned) fake_pr_uid(), (unsigned) fake_pr_uid()) < 0 ||
            asprintf(&group, "%sbuildkite-pr:x:%u:\n", test_read_kept(dir, "etc/group"), (unsigned) fake_pr_uid()) < 0)
                abort();
        test_write(dir, "etc/passwd", passwd);
        test_write(dir, "etc/group", group);
        fake_home(dir, "buildkite-pr", fake_pr_uid(), fake_pr_uid());
}

void fake_config_tenants(Config *c, const FakeTenant *tenants, size_t n) {
        if (n == 0)
                return;
        c->tenants = calloc(n, sizeof(Tenant));
        if (!c->tenants)
                abort();
        c->n_tenants = n;
        for (size_t i = 0; i < n; i++) {
                Tenant *t = &c->tenants[i];

                /* The parser's defaults (issue 16). */
                if (!(t->name = strdup(tenants[i].name)) || !(t->user = strdup(tenants[i].user)) ||
                    asprintf(&t->agent_unit, "buildkite-agent@%s.service", tenants[i].name) < 0 ||
                    asprintf(&t->agent_config, "/etc/buildkite-agent/%s.cfg", tenants[i].name) < 0)
                        abort();
                t->trust = TRUST_UNTRUSTED;
        }
}

void fake_run(FakeRun *run, const char *dir, Verb verb, bool with_storage) {
        static const Step *const steps[] = { &step_user, &step_storage };

        if (config_init(&run->config) < 0)
                abort();
        if (run->disk_device && !(run->config.disk_device = strdup(run->disk_device)))
                abort();
        fake_config_tenants(&run->config, run->tenants, run->n_tenants);
        if (context_init(&run->ctx, verb, dir, &run->config) < 0)
                abort();
        if (run->live) {
                run->r = engine_run_steps(&run->ctx, steps, 1);
                run->ctx.live = true;
                run->ctx.facts.data_mounted = run->data_mounted;
                run->ctx.facts.data_mount_planned = run->data_mount_planned;
                if (run->r >= 0 && with_storage)
                        run->r = engine_run_steps(&run->ctx, steps + 1, 1);
        } else
                run->r = engine_run_steps(&run->ctx, steps, with_storage ? 2 : 1);
        if (getenv("RCI_TEST_VERBOSE"))
                fake_dump(run);
        fake_assert_every_failure_has_a_fix(&run->ctx);
}

void fake_run_done(FakeRun *run) {
        context_done(&run->ctx);
        config_done(&run->config);
}

size_t fake_assert_every_failure_has_a_fix(const Context *ctx) {
        size_t n = 0;

        for (size_t i = 0; i < ctx->n_items; i++) {
                const Item *it = &ctx->items[i];
                if (it->status != ITEM_FAIL)
                        continue;
                n++;
                if (!it->fix || !*it->fix)
                        test_fail(__FILE__, __LINE__, "%s failed without a fix: %s", it->id, it->message);
        }
        return n;
}

size_t fake_count(const FakeRun *run, const char *id, ItemStatus status, const char *needle) {
        size_t n = 0;

        for (size_t i = 0; i < run->ctx.n_items; i++) {
                const Item *it = &run->ctx.items[i];
                if (strncmp(it->id, id, strlen(id)) != 0)
                        continue;
                if (status != _ITEM_STATUS_MAX && it->status != status)
                        continue;
                if (needle && !strstr(it->message, needle))
                        continue;
                n++;
        }
        return n;
}

char *fake_report(const FakeRun *run, bool json) {
        Context c = run->ctx;
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        if (!f)
                abort();
        c.json = json;
        report_print(&c, c.any_failed ? 1 : 0, f);
        if (fclose(f) != 0)
                abort();
        return buf;
}

void fake_dump(const FakeRun *run) {
        for (size_t i = 0; i < run->ctx.n_items; i++)
                printf("# %-6s %s: %s%s%s\n", item_status_to_string(run->ctx.items[i].status), run->ctx.items[i].id,
                       run->ctx.items[i].message, run->ctx.items[i].fix ? " | fix: " : "",
                       run->ctx.items[i].fix ? run->ctx.items[i].fix : "");
}
