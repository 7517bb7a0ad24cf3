/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"
#include "units.h"

TEST(template_fills_every_placeholder) {
        const UnitValue v[] = { { "A", "one" }, { "B_2", "/usr/bin/x" } };
        char *out = NULL;

        ASSERT_OK(unit_template_fill("t", "x=@A@\ny=@B_2@ z=@A@\n", v, 2, &out));
        ASSERT_STREQ(out, "x=one\ny=/usr/bin/x z=one\n");
        free(out);
}

TEST(template_keeps_at_signs_that_are_no_placeholder) {
        const UnitValue v[] = { { "UID", "1000" } };
        char *out = NULL;

        /* "user@@UID@" is a literal '@' then a placeholder; lower case and lone '@' stay as they are. */
        ASSERT_OK(unit_template_fill("t", "user@@UID@.service user@.service a@b@ mail@ @", v, 1, &out));
        ASSERT_STREQ(out, "user@1000.service user@.service a@b@ mail@ @");
        free(out);
}

TEST(template_refuses_unknown_placeholder) {
        const UnitValue v[] = { { "A", "one" } };
        char *out = NULL;

        ASSERT_EQ(unit_template_fill("t", "x=@A@\ny=@TYPO@\n", v, 1, &out), -EINVAL);
        ASSERT_TRUE(out == NULL);
}

TEST(template_refuses_value_it_does_not_use) {
        const UnitValue v[] = { { "A", "one" }, { "B", "two" } };
        char *out = NULL;

        ASSERT_EQ(unit_template_fill("t", "x=@A@\n", v, 2, &out), -EINVAL);
        ASSERT_TRUE(out == NULL);
}

TEST(template_refuses_newline_in_value) {
        const UnitValue v[] = { { "A", "/bin/true\nExecStartPre=/bin/sh -c evil" } };
        char *out = NULL;

        ASSERT_EQ(unit_template_fill("t", "ExecStart=@A@\n", v, 1, &out), -EINVAL);
        ASSERT_TRUE(out == NULL);
}

TEST(template_refuses_other_control_characters) {
        const UnitValue v[] = { { "A", "a\rb" } };
        char *out = NULL;

        ASSERT_EQ(unit_template_fill("t", "@A@", v, 1, &out), -EINVAL);
}

TEST(plain_values) {
        ASSERT_TRUE(unit_value_is_plain("/usr/share/docker.io/contrib/dockerd-rootless.sh"));
        ASSERT_TRUE(unit_value_is_plain("fuse-overlayfs"));
        ASSERT_TRUE(unit_value_is_plain("/srv/rootless-ci"));
        ASSERT_FALSE(unit_value_is_plain("/srv/with space"));
        ASSERT_FALSE(unit_value_is_plain("/srv/%h"));
        ASSERT_FALSE(unit_value_is_plain("a;b"));
        ASSERT_FALSE(unit_value_is_plain(""));
        ASSERT_FALSE(unit_value_is_plain(NULL));
}

/* The shipped templates: every one renders with exactly the values the daemon step gives. */
TEST(shipped_docker_unit_renders) {
        const UnitValue v[] = {
                { "USER", "buildkite" },
                { "PATH", "/usr/bin:/usr/sbin" },
                { "NET", "slirp4netns" },
                { "DOCKERD_ROOTLESS", "/usr/share/docker.io/contrib/dockerd-rootless.sh" },
                { "STORAGE_DRIVER", "overlay2" },
        };
        char *out = NULL;

        ASSERT_OK(unit_template_render(UNITS_SOURCE_DIR, "docker.service.in", v, 5, &out));
        ASSERT_TRUE(strstr(out, "\nExecStart=/usr/share/docker.io/contrib/dockerd-rootless.sh --storage-driver=overlay2\n"));
        ASSERT_TRUE(strstr(out, "\nEnvironment=DOCKERD_ROOTLESS_ROOTLESSKIT_NET=slirp4netns\n"));
        ASSERT_TRUE(strstr(out, "\nEnvironment=PATH=/usr/bin:/usr/sbin\n"));
        ASSERT_TRUE(strstr(out, "\nConditionUser=buildkite\n"));
        ASSERT_TRUE(strstr(out, "\nType=notify\n"));
        ASSERT_TRUE(strstr(out, "\nNotifyAccess=all\n"));
        ASSERT_TRUE(strstr(out, "\nDelegate=yes\n"));
        ASSERT_TRUE(strstr(out, "\nKillMode=mixed\n"));
        ASSERT_TRUE(strstr(out, "\nStartLimitBurst=3\n"));
        ASSERT_TRUE(strchr(out, '@') == NULL || strstr(out, "buildkite@") != NULL);
        free(out);
}

TEST(shipped_dropins_and_profile_render) {
        const UnitValue mount[] = { { "UID", "1001" }, { "MOUNT_POINT", "/srv/rootless-ci" } };
        const UnitValue aa[] = {
                { "ROOTLESSKIT", "/usr/bin/rootlesskit" },
                { "ABI", "abi <abi/4.0>," },
                { "USERNS_RULE", "userns," },
        };
        char *out = NULL;

        ASSERT_OK(unit_template_render(UNITS_SOURCE_DIR, "user-mount.conf.in", mount, 2, &out));
        ASSERT_TRUE(strstr(out, "\n[Unit]\nRequiresMountsFor=/srv/rootless-ci\n"));
        ASSERT_TRUE(strstr(out, "user@1001.service.d"));
        free(out);
        out = NULL;

        ASSERT_OK(unit_template_render(UNITS_SOURCE_DIR, "user-delegate.conf.in", NULL, 0, &out));
        ASSERT_TRUE(strstr(out, "\n[Service]\nDelegate=cpu cpuset io memory pids\n"));
        free(out);
        out = NULL;

        ASSERT_OK(unit_template_render(UNITS_SOURCE_DIR, "apparmor-rootlesskit.in", aa, 3, &out));
        ASSERT_TRUE(strstr(out, "\nabi <abi/4.0>,\ninclude <tunables/global>\n"));
        ASSERT_TRUE(strstr(out, "profile rootless-ci-rootlesskit /usr/bin/rootlesskit flags=(unconfined) {\n  userns,\n"));
        free(out);
}

TEST(missing_template_is_an_error) {
        char *out = NULL;
        ASSERT_TRUE(unit_template_render(UNITS_SOURCE_DIR, "no-such.in", NULL, 0, &out) < 0);
}
