/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "explain/explain.h"
#include "util/error.h"
#include "util/escape.h"
#include "util/fs.h"
#include "explain/json.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/subid.h"
#include "util/userns.h"

char *explain_plugin_name(const char *location) {
        _cleanup_free_ char *loc = strdup(location);
        char *name, *hash, *slash, *cut;
        size_t n;

        if (!loc)
                return NULL;
        /* The agent parses the location as a URL: "#..." is the version, never part of the name. */
        hash = strchr(loc, '#');
        if (hash)
                *hash = 0;
        for (char *c = loc; *c; c++)
                if (*c == '\\')
                        *c = '/';
        n = strlen(loc);
        while (n > 0 && loc[n - 1] == '/')
                loc[--n] = 0;
        slash = strrchr(loc, '/');
        name = slash ? slash + 1 : loc;
        name += strspn(name, ".");
        for (char *c = name; *c; c++)
                *c = isalnum((unsigned char) *c) && !((unsigned char) *c & 0x80) ? (char) tolower((unsigned char) *c) : '-';
        /* As the agent does: "-buildkite-plugin-git" first, then "-buildkite-plugin", each wherever it is. */
        for (const char *const *suffix = (const char *const[]) { "-buildkite-plugin-git", "-buildkite-plugin", NULL };
             *suffix; suffix++)
                while ((cut = strstr(name, *suffix)))
                        memmove(cut, cut + strlen(*suffix), strlen(cut + strlen(*suffix)) + 1);
        return strdup(name);
}

/* ---- one plugin's options ------------------------------------------------------------------------------- */

typedef struct Findings {
        FILE *out;
        const ExplainIds *ids;
        unsigned n;
} Findings;

/* The option as the plugin's variable would hold it: a string, a number or a bool as text, else NULL. */
static const char *option_text(const JsonValue *config, const char *key) {
        const JsonValue *v = json_object_get(config, key);

        if (!v)
                return NULL;
        switch (v->type) {
        case JSON_STRING:
        case JSON_NUMBER:
                return v->text;
        case JSON_TRUE:
                return "true";
        case JSON_FALSE:
                return "false";
        default:
                return NULL;
        }
}

/* The plugins' own test for a flag: ^(true|on|1)$. */
static bool option_on(const JsonValue *config, const char *key) {
        const char *t = option_text(config, key);
        return t && (streq(t, "true") || streq(t, "on") || streq(t, "1"));
}

/* A user: option naming root ("0", "00" (docker reads a number), "root", "0:GID", "root:GROUP"). */
static bool user_is_root(const char *user) {
        size_t n = strcspn(user, ":");
        return (n > 0 && strspn(user, "0") >= n) || (n == 4 && strncmp(user, "root", 4) == 0);
}

/*
 * "host UID X" for container UID n (1 <= n < 2^32-1) as the daemon's map has it, or a formula when the
 * ranges are unknown.
 */
static void print_host_id(Findings *f, unsigned long long n) {
        IdMap map;
        uint32_t inside_max;

        if (n == 0) {
                fprintf(f->out, "the CI user itself (container root)");
                return;
        }
        if (f->ids->n_subuids == 0 ||
            userns_map_build((uint32_t) f->ids->uid, f->ids->subuids, f->ids->n_subuids, &map, &inside_max) < 0) {
                fprintf(f->out, "the CI user's subordinate ID number %llu (its range's start + %llu)", n, n - 1);
                return;
        }
        for (size_t i = 0; i < map.n; i++)
                if (n >= map.extents[i].inside && n - map.extents[i].inside < map.extents[i].count) {
                        fprintf(f->out, "host UID %llu, one of the CI user's subordinate IDs",
                                (unsigned long long) map.extents[i].outside + (n - map.extents[i].inside));
                        return;
                }
        fprintf(f->out, "UID %llu, which the CI user's subordinate IDs do not reach (they map container UIDs up to "
                "%u; the container cannot start)", n, (unsigned) inside_max);
}

static void finding_begin(Findings *f, const char *plugin, const char *option, const char *value) {
        /* The pipeline's text: a newline in it would start a log section of its own. */
        _cleanup_free_ char *shown = escape_host_text(value, NULL);

        if (f->n++ == 0)
                fprintf(f->out, "+++ :warning: rootless-ci: plugin options that mean something else on this host\n"
                        "This agent runs Docker rootless, as the CI user (UID %u): container UID 0 is the CI user, "
                        "container UID n is the n-th of its subordinate host IDs (its /etc/subuid ranges, lowest "
                        "first). Nothing below was changed; the step runs as written.\n",
                        (unsigned) f->ids->uid);
        fprintf(f->out, "\n* %s plugin, %s: %s\n  ", plugin, option, shown ? shown : "(?)");
}

static void explain_user(Findings *f, const char *plugin, const char *option, const char *user, bool mounts_checkout) {
        size_t digits = strspn(user, "0123456789");
        bool numeric = digits > 0 && (user[digits] == 0 || user[digits] == ':');
        unsigned long long n;

        errno = 0;
        n = strtoull(user, NULL, 10);
        finding_begin(f, plugin, option, user);
        fprintf(f->out, "The container runs as ");
        if (numeric && (errno == ERANGE || n >= UINT32_MAX))
                /* Past every ID a user namespace can map (the last is 2^32-2): no host ID to name. */
                fprintf(f->out, "UID %.*s, which no user namespace maps (the container cannot start)", (int) digits,
                        user);
        else if (numeric && n > 0)
                print_host_id(f, n);
        else
                fprintf(f->out, "a user other than root, i.e. one of the CI user's subordinate IDs");
        fprintf(f->out, ", not as the CI user. %s"
                "Whatever it writes there belongs to that ID: rootless-ci's pre-checkout and pre-exit hooks give it back "
                "to the CI user, so the next checkout works, but within this job the agent and later hooks may be "
                "refused it.\n  Instead: user: \"0:0\" when the step writes to the checkout. Root in the container is "
                "the CI user here, not root on the host.\n",
                mounts_checkout ? "It can write in the mounted checkout only where the checkout is writable by others "
                                  "(the checkout is the CI user's, i.e. root's inside the container). "
                                : "");
}

static void explain_propagate(Findings *f, const char *plugin, const char *value, bool applied_even_if_false) {
        finding_begin(f, plugin, "propagate-uid-gid", value);
        if (applied_even_if_false && !streq(value, "true") && !streq(value, "on") && !streq(value, "1"))
                fprintf(f->out, "The docker plugin applies it whenever the option is set at all, %s included. ", value);
        fprintf(f->out, "The container runs as --user %u:%u, the CI user's IDs on the host, which here are container "
                "IDs: that is ", (unsigned) f->ids->uid, (unsigned) f->ids->gid);
        print_host_id(f, f->ids->uid);
        fprintf(f->out, ". It cannot write the checkout (the CI user's, i.e. root's inside the container), and "
                "what it writes elsewhere is not the CI user's. The option fixes root-owned files under rootful "
                "Docker; under rootless Docker it does the opposite.\n  Instead: remove propagate-uid-gid. Root in the "
                "container already is the CI user: files it writes in the checkout are the CI user's (write user: "
                "\"0:0\" if the image sets another USER).\n");
}

/*
 * The options of the docker plugin, or of the docker-compose plugin (which
 * has only propagate-uid-gid and user of them), in the plugin's order.
 */
static void explain_plugin(Findings *f, const char *plugin, const JsonValue *config) {
        bool docker = streq(plugin, "docker");
        /* docker-compose: the checkout is mounted where the service's volumes say; taken as mounted. */
        bool mounts_checkout = !docker || !option_text(config, "mount-checkout") ||
                               option_on(config, "mount-checkout");
        const char *t;

        /* The docker plugin tests this one with [[ -n ... ]] (set at all means applied), docker-compose for "true". */
        t = option_text(config, "propagate-uid-gid");
        if (t && (docker ? *t != 0 : streq(t, "true")))
                explain_propagate(f, plugin, t, docker);
        if (docker && option_on(config, "chown") && mounts_checkout) {
                finding_begin(f, "docker", "chown", option_text(config, "chown"));
                fprintf(f->out, "After the job the plugin runs a container with --userns host that chowns the "
                        "checkout to %u:%u. Rootless Docker has no host user namespace to give it, so that chown "
                        "hands the whole checkout to ", (unsigned) f->ids->uid, (unsigned) f->ids->gid);
                print_host_id(f, f->ids->uid);
                fprintf(f->out, ", the opposite of what it is for (and it pulls its chown image, busybox unless "
                        "chown-image says otherwise).\n  Instead: remove chown. rootless-ci's pre-exit hook gives "
                        "everything this job's containers left in the checkout back to the CI user.\n");
        }
        t = option_text(config, "user");
        if (t && *t && !user_is_root(t))
                explain_user(f, plugin, "user", t, mounts_checkout);
        if (!docker)
                return;
        t = option_text(config, "userns");
        if (t && streq(t, "host")) {
                finding_begin(f, "docker", "userns", t);
                fprintf(f->out, "There is no host user namespace to join: the container stays in the CI user's "
                        "user namespace, and root in it is the CI user, not root on the host.\n  Instead: remove "
                        "userns; it changes nothing here.\n");
        }
        if (option_on(config, "privileged")) {
                finding_begin(f, "docker", "privileged", option_text(config, "privileged"));
                fprintf(f->out, "The container gets every capability inside the CI user's user namespace only, not "
                        "on the host: no host devices, no kernel modules, no sysctls outside its own namespaces, no "
                        "mounts that need real root (loop devices, most filesystems); Docker-in-Docker needs a "
                        "rootless set-up of its own. The plugin also forces --userns host with it (see userns).\n"
                        "  Instead: drop privileged and add only the capabilities the step needs (add-caps); run "
                        "what needs root on the host on a separate, trusted agent pool.\n");
        }
}

/* ---- the list ------------------------------------------------------------------------------------------- */

static int bad_shape(char **ret_error, const char *what, const char *type) {
        if (asprintf(ret_error, "%s is %s, not %s", what, type,
                     streq(what, "a plugin list entry") ? "a name or an object" :
                     streq(what, "the plugin list") ? "an array" : "an object") < 0)
                *ret_error = NULL;
        return -EINVAL;
}

int explain_plugins(const char *plugins_json, const ExplainIds *ids, char **ret_text, char **ret_error) {
        _cleanup_(json_freep) JsonValue *list = NULL;
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        Findings f = { .ids = ids };
        int r;

        *ret_text = NULL;
        *ret_error = NULL;
        r = json_parse(plugins_json, strlen(plugins_json), &list, ret_error);
        if (r < 0)
                return r;
        if (list->type != JSON_ARRAY)
                return bad_shape(ret_error, "the plugin list", json_type_name(list->type));

        f.out = open_memstream(&text, &size);
        if (!f.out)
                return -ENOMEM;
        for (size_t i = 0; i < list->n; i++) {
                const JsonValue *e = list->items[i];

                /* A bare name: a plugin without options, nothing to explain. */
                if (e->type == JSON_STRING)
                        continue;
                if (e->type != JSON_OBJECT) {
                        fclose(f.out);
                        return bad_shape(ret_error, "a plugin list entry", json_type_name(e->type));
                }
                for (size_t j = 0; j < e->n; j++) {
                        _cleanup_free_ char *name = explain_plugin_name(e->keys[j]);
                        const JsonValue *config = e->items[j];

                        if (!name) {
                                fclose(f.out);
                                return -ENOMEM;
                        }
                        if (config->type == JSON_NULL)
                                continue;
                        if (config->type != JSON_OBJECT) {
                                fclose(f.out);
                                return bad_shape(ret_error, "a plugin's configuration", json_type_name(config->type));
                        }
                        if (streq(name, "docker") || streq(name, "docker-compose"))
                                explain_plugin(&f, name, config);
                }
        }
        if (f.n > 0)
                fprintf(f.out, "\nSee \"Pipelines on a rootless-ci host\" in rootless-ci's README.\n");
        if (fclose(f.out) != 0)
                return -ENOMEM;
        *ret_text = TAKE_PTR(text);
        return 0;
}

/* ---- the verb ------------------------------------------------------------------------------------------- */

/*
 * The CI user's subordinate UID ranges (/etc/subuid), every one of them as newuidmap reads them (the
 * daemon's map is built from all of them): *ret NULL and *ret_n 0 when they cannot be told.
 */
static void own_subuid_ranges(uid_t uid, SubIdRange **ret, size_t *ret_n) {
        _cleanup_(subid_file_done) SubIdFile file = {};
        _cleanup_free_ char *text = NULL;
        _cleanup_close_ int root_fd = open_root(NULL);
        struct passwd *pw = getpwuid(uid);
        size_t size;

        *ret = NULL;
        *ret_n = 0;
        /* An absolute path is taken below the fd: "/" itself, not the job's working directory. */
        if (!pw || root_fd < 0 || read_file_at(root_fd, "/etc/subuid", RESOLVE_POLICY_IN_ROOT, 16U << 20, &text, &size) < 0 ||
            subid_file_parse(&file, text, size) < 0 || subid_file_user_ranges(&file, pw->pw_name, uid, ret, ret_n) < 0) {
                *ret = NULL;
                *ret_n = 0;
        }
}

int explain_main(int argc, char *argv[]) {
        _cleanup_free_ char *text = NULL, *error = NULL;
        _cleanup_free_ SubIdRange *subuids = NULL;
        ExplainIds ids = { .uid = getuid(), .gid = getgid() };
        const char *plugins;
        int r;

        if (argc > 1) {
                if (streq(argv[1], "--help") || streq(argv[1], "-h")) {
                        printf("Usage: rootless-ci explain\n\n"
                               "Run by rootless-ci's pre-command agent hook: reads the job's BUILDKITE_PLUGINS and\n"
                               "explains, in the job log, docker and docker-compose plugin options that mean\n"
                               "something else under rootless Docker. Changes nothing.\n"
                               "Exit status: 0 (also when there is nothing to say); 2 BUILDKITE_PLUGINS is malformed.\n");
                        return EXIT_OK;
                }
                log_error("explain takes no arguments; it reads BUILDKITE_PLUGINS. See rootless-ci explain --help.");
                return EXIT_USAGE;
        }
        plugins = getenv("BUILDKITE_PLUGINS");
        if (!plugins || !*plugins)
                return EXIT_OK;

        own_subuid_ranges(ids.uid, &subuids, &ids.n_subuids);
        ids.subuids = subuids;
        r = explain_plugins(plugins, &ids, &text, &error);
        if (r == -ENOMEM)
                return log_error_errno(r, "Failed to explain the job's plugins: %m"), EXIT_FAILED;
        if (r < 0) {
                log_error("BUILDKITE_PLUGINS cannot be read: %s. Nothing explained.", error ? error : "malformed");
                return EXIT_USAGE;
        }
        fputs(text, stdout);
        return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAILED;
}
