#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The real binary on --root fake trees: the exit status contract (0 done,
# 1 failed, 2 usage or configuration) and that no run changes anything in
# the tree it was pointed at. No root needed; the one case that needs a
# setuid-root file (a complete tree) is skipped without it, and without the
# test hooks (-Dtest_hooks=true: RCI_UNITS_DIR shows the binary units/).
#
# Usage: test-exit-codes.sh PATH-TO-ROOTLESS-CI (meson passes the built binary)

set -u

BIN=${1:?usage: $0 PATH-TO-ROOTLESS-CI}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/rci-exit-codes.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT

# shellcheck source=tests/lib/fake-tree.sh
source "$(dirname "$0")/../lib/fake-tree.sh"

# --- usage ------------------------------------------------------------------

expect 0 "version" --out "rootless-ci " -- version
expect 0 "--help" --out "Usage: rootless-ci" -- --help
expect 2 "no verb" --err "No verb given" --
expect 2 "unknown verb" --err "Unknown verb 'destroy'" -- destroy
expect 2 "unknown option" --err "'--bogus'" -- plan --bogus
expect 2 "option without its value" --err "Option '--disk' needs a value" -- plan --disk
expect 2 "stray argument" --err "Unexpected argument" -- plan -- extra
expect 2 "--root not a directory" --err "not a directory" -- --root="$TMP/missing" plan
expect 2 "wait takes no --root" --err "wait looks at the live host" -- --root="$TMP" wait
expect 1 "wait for a user that does not exist" --err "User rci-no-such-user does not exist" -- wait --user=rci-no-such-user
expect 2 "reclaim without a PATH" --err "reclaim needs at least one PATH" -- reclaim --builds-dir="$TMP"
expect 2 "reclaim takes no --root" --err "reclaim takes only --builds-dir=DIR, -v and PATHs" -- --root="$TMP" reclaim "$TMP/x"
expect 2 "--builds-dir on another verb" --err "--builds-dir is an option of reclaim only" -- plan --builds-dir="$TMP"
mkdir -p "$TMP/reclaim-builds/co"
if [ "$(id -u)" = 0 ]; then
        # The CI user's command: root is refused before anything is looked at.
        expect 2 "reclaim as root" --in "$TMP/reclaim-builds" --err "reclaim is the CI user's own command" \
                -- reclaim --builds-dir="$TMP/reclaim-builds" "$TMP/reclaim-builds/co"
else
        expect 2 "reclaim of a PATH outside the builds dir" --in "$TMP/reclaim-builds" --err "is not below the builds directory" \
                -- reclaim --builds-dir="$TMP/reclaim-builds/co" "$TMP/reclaim-builds"
        expect 0 "reclaim of PATHs that do not exist" --in "$TMP/reclaim-builds" \
                --err "None of the 2 PATHs exists, nothing to do" \
                -- reclaim --builds-dir="$TMP/reclaim-builds" "$TMP/reclaim-builds/x" "$TMP/reclaim-builds/y"
fi

# --retire=NAME: only a recorded tenant the configuration no longer has; else 2 before anything runs.
expect 2 "--retire on check" --err "--retire is an option of apply (and plan) only" -- check --retire=pr
RETIRE=$TMP/retire
make_tree "$RETIRE" debian
expect 2 "--retire of a tenant never set up" --in "$RETIRE" --err "--retire=pr: rootless-ci has set up no tenant pr here" \
        -- --root="$RETIRE" apply --retire=pr
expect 2 "--retire of the configured tenant of [User]" --in "$RETIRE" \
        --err "--retire=_legacy: the tenant of [User] and [Agent] is still configured" -- --root="$RETIRE" apply --retire=_legacy

# --- configuration errors: 2, file:line, nothing changed ---------------------

BAD=$TMP/bad-config
make_tree "$BAD" debian
printf '[Disk]\nWipe=maybe\n' >"$BAD/etc/rootless-ci.conf"
for verb in plan check apply; do
        expect 2 "bad config, $verb" --in "$BAD" --err "$BAD/etc/rootless-ci.conf:2: Wipe=maybe: must be a boolean" \
                -- --root="$BAD" "$verb"
done

DROPIN=$TMP/bad-dropin
make_tree "$DROPIN" debian
mkdir -p "$DROPIN/etc/rootless-ci.conf.d"
printf '[User]\nName=ci\n' >"$DROPIN/etc/rootless-ci.conf"
printf '# ok\n[User]\nNmae=ci\n' >"$DROPIN/etc/rootless-ci.conf.d/50-typo.conf"
expect 2 "bad drop-in" --in "$DROPIN" --err "$DROPIN/etc/rootless-ci.conf.d/50-typo.conf:3: unknown key Nmae= in [User]" \
        -- apply --root="$DROPIN"

expect 2 "--config missing" --in "$DROPIN" --err "$TMP/nope.conf" -- --config="$TMP/nope.conf" --root="$DROPIN" plan
printf '[Disk]\nMountPoint=/etc\n' >"$TMP/explicit.conf"
expect 2 "--config with a bad value" --in "$DROPIN" --err "$TMP/explicit.conf:2: MountPoint=/etc" \
        -- --config="$TMP/explicit.conf" --root="$DROPIN" plan
: >"$TMP/empty.conf"
expect 2 "bad command-line setting" --in "$BAD" --err "--user=root: must not be root" \
        -- --config="$TMP/empty.conf" --root="$BAD" apply --user=root
expect 2 "--wipe without a disk" --in "$BAD" --err "needs a disk" -- --config="$TMP/empty.conf" --root="$BAD" apply --wipe
expect 2 "--config is a directory" --in "$BAD" --err "$BAD/etc: not a regular file" -- --config="$BAD/etc" --root="$BAD" plan
expect 2 "--config is a device" --in "$BAD" --err "/dev/null: not a regular file" -- --config=/dev/null --root="$BAD" plan

# [Tenant] (issue 16): with [User] in another file, malformed, not unique, with --user: 2, both places named.
TEN=$TMP/bad-tenant
make_tree "$TEN" debian
mkdir -p "$TEN/etc/rootless-ci.conf.d"
printf '[User]\nName=ci\n' >"$TEN/etc/rootless-ci.conf"
printf '# tenants\n[Tenant]\nName=pr\nUser=ci-pr\n' >"$TEN/etc/rootless-ci.conf.d/50-tenants.conf"
for verb in plan check apply; do
        expect 2 "[Tenant] with [User], $verb" --in "$TEN" \
                --err "$TEN/etc/rootless-ci.conf.d/50-tenants.conf:2: [Tenant] cannot be combined with [User] Name= at $TEN/etc/rootless-ci.conf:2" \
                -- --root="$TEN" "$verb"
done
printf '[Tenant]\nName=PR\nUser=ci-pr\n' >"$TMP/tenant-name.conf"
expect 2 "tenant Name= not of [a-z0-9-]" --in "$TEN" --err "$TMP/tenant-name.conf:2: Name=PR: must be 1 to 32 of a-z, 0-9 and '-'" \
        -- --config="$TMP/tenant-name.conf" --root="$TEN" apply
printf '[Tenant]\nName=main\nUser=ci\n[Tenant]\nName=pr\nUser=ci\n' >"$TMP/tenant-user.conf"
expect 2 "two tenants, one User=" --in "$TEN" \
        --err "$TMP/tenant-user.conf:6: User=ci: tenant main ([Tenant] at $TMP/tenant-user.conf:1) has it too" \
        -- --config="$TMP/tenant-user.conf" --root="$TEN" apply
printf '[Tenant]\nName=pr\nUser=ci-pr\n' >"$TMP/tenant.conf"
expect 2 "--user with [Tenant]" --in "$TEN" --err "--user=ci cannot be combined with [Tenant] at $TMP/tenant.conf:1" \
        -- --config="$TMP/tenant.conf" --root="$TEN" apply --user=ci

# --- preflight failures: 1, the distribution's package, nothing changed -----

DEB=$TMP/debian-no-uidmap
make_tree "$DEB" debian
rm "$DEB/usr/bin/newuidmap" "$DEB/usr/bin/newgidmap"
expect 1 "plan, Debian without uidmap" --in "$DEB" --out "apt-get install uidmap" -- --root="$DEB" plan
expect 1 "check, Debian without uidmap" --in "$DEB" --out "apt-get install uidmap" -- --root="$DEB" check
expect 1 "apply, Debian without uidmap" --in "$DEB" --out "apt-get install uidmap" \
        --err "stopping before anything is changed" -- --root="$DEB" apply
expect 1 "plan --json, Debian without uidmap" --in "$DEB" --out '"exit":1' --out '"fix":"apt-get install uidmap"' \
        -- --root="$DEB" --json plan

UBU=$TMP/ubuntu-like-no-uidmap
make_tree "$UBU" pop "ubuntu debian"
rm "$UBU/usr/bin/newuidmap"
expect 1 "plan, Ubuntu derivative without uidmap" --in "$UBU" --out "apt-get install uidmap" -- plan --root="$UBU"

FED=$TMP/fedora-no-uidmap
make_tree "$FED" fedora
rm "$FED/usr/bin/newuidmap" "$FED/usr/bin/newgidmap"
expect 1 "plan, Fedora without shadow-utils" --in "$FED" --out "dnf install shadow-utils" -- --root="$FED" plan
expect 1 "apply, Fedora without shadow-utils" --in "$FED" --out "dnf install shadow-utils" -- apply --root="$FED"

# --- the test hook RCI_ONLY_STEPS: a partial run is marked as one ------------

if "$BIN" version | grep -q "test build"; then
        RCI_ONLY_STEPS=no-such-step expect 2 "RCI_ONLY_STEPS naming no step" --in "$DEB" \
                --err "'no-such-step' names no step" -- --root="$DEB" plan
        RCI_ONLY_STEPS='' expect 2 "RCI_ONLY_STEPS empty (it would run nothing)" --in "$DEB" --err "names no step" \
                -- --root="$DEB" plan
        RCI_ONLY_STEPS=preflight, expect 2 "RCI_ONLY_STEPS with an empty name" --in "$DEB" --err "names no step" \
                -- --root="$DEB" plan
        RCI_ONLY_STEPS=preflight expect 1 "RCI_ONLY_STEPS=preflight: the report says partial" --in "$DEB" \
                --out "PARTIAL run: only the steps preflight ran" --err "Running only the steps preflight" \
                -- --root="$DEB" check
        RCI_ONLY_STEPS=user,preflight expect 1 "RCI_ONLY_STEPS: the JSON says partial, and which steps" --in "$DEB" \
                --out '"partial":true,"only_steps":["user","preflight"],"items"' -- --root="$DEB" --json check
fi
expect 1 "a whole run: the JSON says not partial" --in "$DEB" --out '"partial":false,"items"' -- --root="$DEB" --json check

# --- a complete tree: 0, nothing changed -------------------------------------

OK=$TMP/complete
make_tree "$OK" debian
if ! "$BIN" version | grep -q "test build"; then
        # A build-tree binary finds units/ only through the test hook RCI_UNITS_DIR.
        skip "plan, check and apply, complete tree" "needs a build with -Dtest_hooks=true (RCI_UNITS_DIR)"
elif make_setuid "$OK" && make_ci_user "$OK"; then
        expect 0 "plan, complete tree" --in "$OK" --out "PASS preflight.newuidmap" --out "SKIP preflight.systemd" \
                -- --root="$OK" plan
        expect 1 "check, complete tree before apply" --in "$OK" --out "FAIL daemon.unit" -- --root="$OK" check
        # apply converges a copy offline; then check holds and apply has nothing left to do.
        CONV=$TMP/converged
        cp -a "$OK" "$CONV"
        expect 0 "apply, complete tree" --out "daemon.unit" --out "agent.dropin" -- --root="$CONV" apply
        expect 0 "check, converged tree" --in "$CONV" -- --root="$CONV" check
        expect 0 "apply again, converged tree" --in "$CONV" --out "Nothing changed" -- --root="$CONV" apply
        # With a run/ (as an image may have) systemd still counts as not running. Not compared:
        # the lock is taken on run/rootless-ci.lock, which is created in the tree.
        RUN=$TMP/complete-with-run
        cp -a "$OK" "$RUN"
        mkdir -p "$RUN/run/systemd/system"
        expect 0 "plan, complete tree with run/" --out "SKIP preflight.systemd" -- --root="$RUN" plan
else
        skip "plan, complete tree" "a setuid-root newuidmap needs root"
fi

finish
