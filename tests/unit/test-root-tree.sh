#!/bin/bash
# SPDX-License-Identifier: MIT
#
# --root=DIR trees someone else could change. apply --root runs useradd
# --root, which chroots into the tree and, as root, loads the NSS modules
# its etc/nsswitch.conf names from its library directories (sudo's
# CVE-2025-32463 is this bug) and runs its programs (usr/sbin/nscd, ...).
#
# - control: on a tree that is root's alone, apply's useradd really loads
#   the tree's NSS module (libnss_rcimark.so.2, built from nss-marker.c,
#   leaves /rci-nss-module-loaded in the tree). This is why the rest matters.
# - apply refuses, with exit 2 before the lock and any step, a tree where the
#   tree itself, etc, usr, a library directory (also when reached through
#   merged /usr's lib -> usr/lib), the module itself, etc/nsswitch.conf or a
#   directory on the way to the tree is not root's or is writable by group or
#   others: the message names it, the tree is exactly as it was, the module
#   was not loaded.
# - plan and check on those trees read them but run nothing from them: every
#   program in the tree leaves a mark next to it when run, the module one
#   when loaded; none appears and the tree is unchanged.
#
# The cases that need files of another owner (and the control, which needs
# useradd's chroot) need root; the group- and other-writable ones run
# without it (the tree is then the caller's, which is trusted too).
#
# Usage: test-root-tree.sh PATH-TO-ROOTLESS-CI PATH-TO-libnss_rcimark.so.2

set -u

BIN=${1:?usage: $0 PATH-TO-ROOTLESS-CI PATH-TO-NSS-MODULE}
NSS_MODULE=${2:?usage: $0 PATH-TO-ROOTLESS-CI PATH-TO-NSS-MODULE}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/rci-root-tree.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT

# shellcheck source=tests/lib/fake-tree.sh
source "$(dirname "$0")/../lib/fake-tree.sh"

ROOT=false
[ "$(id -u)" = 0 ] && ROOT=true
: >"$TMP/empty.conf"

# bait_tree DIR: a tree apply would get through preflight with, the CI user
# still to create (so apply runs useradd), and bait: the NSS module named in
# nsswitch.conf, and every program in it replaced by one that leaves
# rci-ran-NAME at the tree's top when run (from inside a chroot or not).
bait_tree() {
        local d=$1 p
        make_tree "$d" debian
        $ROOT && make_setuid "$d"
        install -d "$d/usr/sbin" "$d/etc/shadow-maint/useradd-pre.d" "$d/home"
        printf 'passwd: files rcimark\ngroup: files rcimark\nshadow: files\n' >"$d/etc/nsswitch.conf"
        install -m 0644 "$NSS_MODULE" "$d/usr/lib/libnss_rcimark.so.2"
        echo 'root:*:19000:0:99999:7:::' >"$d/etc/shadow"
        echo 'root:*::' >"$d/etc/gshadow"
        : >"$d/usr/sbin/nscd" && : >"$d/usr/sbin/sss_cache"
        for p in "$d"/usr/bin/* "$d"/usr/sbin/*; do
                bait_program "$p"
        done
        if $ROOT; then chmod 04755 "$d/usr/bin/newuidmap" "$d/usr/bin/newgidmap"; fi
}

# bait_program FILE: a program that leaves rci-ran-NAME two levels up (the tree's top for DIR/usr/bin/NAME).
bait_program() {
        # shellcheck disable=SC2016 # expanded when the bait runs
        printf '#!/bin/sh\n: >"${0%%/*/*}/rci-ran-${0##*/}"\nexit 0\n' >"$1"
        chmod 0755 "$1"
}

# no_bait_taken NAME DIR: nothing in DIR was run or loaded.
no_bait_taken() {
        local taken
        started=$((started + 1))
        taken=$(find "$1" -maxdepth 1 -name 'rci-*' -printf '%f ')
        if [ -z "$taken" ]; then
                echo "ok - $2: nothing from the tree was run or loaded"
                passed=$((passed + 1))
        else
                echo "not ok - $2: the tree's $taken was run or loaded"
                failed=$((failed + 1))
        fi
}

# --- control: useradd --root loads the tree's NSS module --------------------

if $ROOT && command -v useradd >/dev/null; then
        C=$TMP/control
        bait_tree "$C"
        "$BIN" --config="$TMP/empty.conf" --root="$C" apply >"$TMP/out" 2>"$TMP/err" </dev/null
        started=$((started + 1))
        if [ -e "$C/rci-nss-module-loaded" ] && grep -q '^buildkite:' "$C/etc/passwd"; then
                echo "ok - control: apply on a tree that is root's alone ran useradd, which loaded the tree's NSS module"
                passed=$((passed + 1))
        else
                fail "control: useradd did not load the tree's NSS module (the bait does not work)"
        fi
else
        skip "control: useradd --root loads the tree's NSS module" "needs root (useradd chroots) and useradd"
fi

# --- trees someone else could change ------------------------------------------

# refused NAME NEEDS_ROOT SETUP EXPECTED: a fresh bait tree T, SETUP run on it
# (T and TREE set), then apply refused (exit 2, EXPECTED in the message, T
# unchanged, no bait taken), plan and check run nothing from it.
n=0
refused() {
        local name=$1 needs_root=$2 setup=$3 want=$4 verb
        n=$((n + 1))
        TREE=$TMP/t$n/tree
        if [ "$needs_root" = yes ] && ! $ROOT; then
                skip "apply --root refuses a tree where $name" "needs root (files of another owner)"
                return
        fi
        mkdir -p "$TMP/t$n"
        bait_tree "$TREE"
        eval "$setup"
        expect 2 "apply --root refuses a tree where $name" --in "$TREE" --err "$want" --err "Nothing was changed" \
                -- --config="$TMP/empty.conf" --root="$TREE" apply
        for verb in plan check; do
                "$BIN" --config="$TMP/empty.conf" --root="$TREE" "$verb" >/dev/null 2>&1 </dev/null
        done
        expect 2 "apply --json --root, $name" --in "$TREE" --err "$want" \
                -- --config="$TMP/empty.conf" --root="$TREE" --json apply
        no_bait_taken "$TREE" "$name: apply, plan and check"
}

# shellcheck disable=SC2016 # each setup is eval'ed with TREE set
{
refused "etc is another user's" yes 'chown 1001 "$TREE/etc"' \
        "--root=$TMP/t1/tree: $TMP/t1/tree/etc is owned by UID 1001, not root"
refused "usr is writable by its group" no 'chmod 0775 "$TREE/usr"' \
        "$TMP/t2/tree/usr is writable by its group (mode 0775)"
refused "the tree itself is writable by others" no 'chmod 0757 "$TREE"' \
        "--root=$TMP/t3/tree: $TMP/t3/tree is writable by others (mode 0757)"
refused "the tree itself is another user's" yes 'chown 1001 "$TREE"' \
        "--root=$TMP/t4/tree: $TMP/t4/tree is owned by UID 1001"
refused "usr/lib, reached through merged /usr's lib -> usr/lib, is another user's" yes \
        'ln -s usr/lib "$TREE/lib"; chown 1001 "$TREE/usr/lib"' \
        "$TMP/t5/tree/usr/lib is owned by UID 1001"
refused "the NSS module is another user's" yes 'chown 1001 "$TREE/usr/lib/libnss_rcimark.so.2"' \
        "$TMP/t6/tree/usr/lib/libnss_rcimark.so.2 is owned by UID 1001"
refused "etc/nsswitch.conf is writable by everyone" no 'chmod 0666 "$TREE/etc/nsswitch.conf"' \
        "$TMP/t7/tree/etc/nsswitch.conf is writable by its group and others (mode 0666)"
refused "usr/lib/<multiarch> is writable by its group" no \
        'mkdir -m 0775 "$TREE/usr/lib/x86_64-linux-gnu"; chmod 0775 "$TREE/usr/lib/x86_64-linux-gnu"' \
        "$TMP/t8/tree/usr/lib/x86_64-linux-gnu is writable by its group (mode 0775)"
# (useradd runs its hooks as root inside the tree: this one would fail there, no shell, and stop useradd.)
refused "a useradd hook is writable by others" no \
        'bait_program "$TREE/etc/shadow-maint/useradd-pre.d/00-hook"; chmod 0757 "$TREE/etc/shadow-maint/useradd-pre.d/00-hook"' \
        "useradd-pre.d/00-hook is writable by others (mode 0757)"
refused "a directory on the way to it is writable by everyone" no 'chmod 0777 "$TMP/t10"' \
        "--root=$TMP/t10/tree: $TMP/t10, on the way to the tree, is writable by its group and others (mode 0777)"
refused "a directory on the way to it is another user's" yes 'chown 1001 "$TMP/t11"' \
        "$TMP/t11, on the way to the tree, is owned by UID 1001"
}

# --- a tree that is root's alone: plan and check still run nothing -----------

OK=$TMP/ok
bait_tree "$OK"
for verb in plan check; do
        "$BIN" --config="$TMP/empty.conf" --root="$OK" "$verb" >"$TMP/out" 2>"$TMP/err" </dev/null
        started=$((started + 1))
        if grep -q "Nothing was changed" "$TMP/err"; then
                fail "$verb on a tree that is root's alone was refused"
        else
                echo "ok - $verb on a tree that is root's alone is not refused"
                passed=$((passed + 1))
        fi
done
no_bait_taken "$OK" "plan and check on a tree that is root's alone"

finish
