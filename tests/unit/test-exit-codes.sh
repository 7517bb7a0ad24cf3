#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The real binary on --root fake trees: the exit status contract (0 done,
# 1 failed, 2 usage or configuration) and that no run changes anything in
# the tree it was pointed at. No root needed; the one case that needs a
# setuid-root file (a complete tree) is skipped without it.
#
# Usage: test-exit-codes.sh PATH-TO-ROOTLESS-CI (meson passes the built binary)

set -u

BIN=${1:?usage: $0 PATH-TO-ROOTLESS-CI}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/rci-exit-codes.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT

passed=0 failed=0 skipped=0 started=0 n_snapshots=0
declare -A snapshots=()

fail() {
        echo "not ok - $*"
        echo "# stdout:"; sed 's/^/#   /' "$TMP/out"
        echo "# stderr:"; sed 's/^/#   /' "$TMP/err"
        failed=$((failed + 1))
}

# Every entry with inode, type, owner, mode, size, mtime, ctime and link
# target: any write, chmod, chown, rename or new entry changes this (ctime
# cannot be set back). One process, as it runs after every case; the hashes
# of every file are compared too, once per tree at the end (hashes()).
snapshot() {
        find "$1" -printf '%P %i %y %U:%G %m %s %T@ %C@ -> %l\n' >"$2"
}

hashes() {
        find "$1" -type f -exec sha256sum {} + >"$2"
}

slurp() {
        IFS= read -r -d '' "$1" <"$2" || true
}

# expect WANT_STATUS NAME [--in TREE] [--out TEXT]... [--err TEXT]... -- ARGS...
# Runs the binary; checks its status, that stdout/stderr contain each TEXT,
# and, with --in, that TREE is exactly as it was before.
expect() {
        local want=$1 name=$2 tree="" status out err before after t
        local -a outs=() errs=()
        started=$((started + 1))
        shift 2
        while [ $# -gt 0 ] && [ "$1" != "--" ]; do
                case $1 in
                --in) tree=$2 ;;
                --out) outs+=("$2") ;;
                --err) errs+=("$2") ;;
                *) echo "expect: bad argument $1" >&2; exit 1 ;;
                esac
                shift 2
        done
        shift

        # The tree's listing from before its first run; each later run must leave it so too.
        if [ -n "$tree" ] && [ -z "${snapshots[$tree]+set}" ]; then
                n_snapshots=$((n_snapshots + 1))
                snapshots[$tree]=$TMP/snapshot.$n_snapshots
                snapshot "$tree" "${snapshots[$tree]}"
                hashes "$tree" "${snapshots[$tree]}.sha256"
        fi
        "$BIN" "$@" >"$TMP/out" 2>"$TMP/err" </dev/null
        status=$?
        slurp out "$TMP/out"
        slurp err "$TMP/err"

        if [ "$status" -ne "$want" ]; then
                fail "$name: exit status $status, want $want (rootless-ci $*)"
                return
        fi
        for t in "${outs[@]+"${outs[@]}"}"; do
                if [[ $out != *"$t"* ]]; then
                        fail "$name: stdout lacks '$t'"
                        return
                fi
        done
        for t in "${errs[@]+"${errs[@]}"}"; do
                if [[ $err != *"$t"* ]]; then
                        fail "$name: stderr lacks '$t'"
                        return
                fi
        done
        if [ -n "$tree" ]; then
                snapshot "$tree" "$TMP/after"
                slurp before "${snapshots[$tree]}"
                slurp after "$TMP/after"
                if [ "$before" != "$after" ]; then
                        diff -u "${snapshots[$tree]}" "$TMP/after" | sed 's/^/# /'
                        fail "$name: the tree changed"
                        return
                fi
        fi
        echo "ok - $name"
        passed=$((passed + 1))
}

skip() {
        echo "ok - $1 # SKIP $2"
        skipped=$((skipped + 1))
}

# make_tree DIR ID [ID_LIKE]: everything preflight looks for, newuidmap and
# newgidmap not setuid (see make_setuid), no run/ (so no lock file is made).
make_tree() {
        local d=$1 b
        mkdir -p "$d/etc" "$d/usr/bin" "$d/usr/lib/systemd/user" "$d/proc/sys/user" "$d/proc/sys/kernel"
        {
                echo "NAME=\"Test $2\""
                echo "ID=$2"
                [ $# -ge 3 ] && echo "ID_LIKE=\"$3\""
        } >"$d/usr/lib/os-release"
        ln -s ../usr/lib/os-release "$d/etc/os-release"
        for b in dockerd-rootless.sh rootlesskit newuidmap newgidmap slirp4netns iptables; do
                printf '#!/bin/sh\nexit 0\n' >"$d/usr/bin/$b"
        done
        chmod 0755 "$d"/usr/bin/*
        echo "[Socket]" >"$d/usr/lib/systemd/user/dbus.socket"
        echo "root:x:0:0:root:/root:/bin/bash" >"$d/etc/passwd"
        echo "root:x:0:" >"$d/etc/group"
        echo 63432 >"$d/proc/sys/user/max_user_namespaces"
        echo 1 >"$d/proc/sys/kernel/unprivileged_userns_clone"
        echo 6.1.0-18-amd64 >"$d/proc/sys/kernel/osrelease"
}

# make_ci_user DIR: the CI user and its storage as apply leaves them (needs root for the owners).
make_ci_user() {
        local d=$1
        echo "buildkite:x:1001:1001::/home/buildkite:/bin/bash" >>"$d/etc/passwd"
        echo "buildkite:x:1001:" >>"$d/etc/group"
        echo "buildkite:100000:65536" >"$d/etc/subuid"
        echo "buildkite:100000:65536" >"$d/etc/subgid"
        install -d -m 0700 -o 1001 -g 1001 "$d/home/buildkite" "$d/home/buildkite/.local" "$d/home/buildkite/.local/share" &&
                ln -s /srv/rootless-ci/buildkite/docker "$d/home/buildkite/.local/share/docker" &&
                chown -h 1001:1001 "$d/home/buildkite/.local/share/docker" &&
                install -d -m 0755 -o 0 -g 0 "$d/srv" "$d/srv/rootless-ci" "$d/srv/rootless-ci/buildkite" &&
                install -d -m 0700 -o 1001 -g 1001 "$d/srv/rootless-ci/buildkite/docker" "$d/srv/rootless-ci/buildkite/builds"
}

make_setuid() {
        chown 0:0 "$1/usr/bin/newuidmap" "$1/usr/bin/newgidmap" 2>/dev/null &&
                chmod 04755 "$1/usr/bin/newuidmap" "$1/usr/bin/newgidmap"
}

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

# --- a complete tree: 0, nothing changed -------------------------------------

OK=$TMP/complete
make_tree "$OK" debian
if make_setuid "$OK" && make_ci_user "$OK"; then
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

# Content, byte for byte, of every tree a case ran on.
for tree in "${!snapshots[@]}"; do
        hashes "$tree" "$TMP/after.sha256"
        if cmp -s "${snapshots[$tree]}.sha256" "$TMP/after.sha256"; then
                echo "ok - content of $tree unchanged"
                passed=$((passed + 1))
        else
                diff -u "${snapshots[$tree]}.sha256" "$TMP/after.sha256" | sed 's/^/# /'
                echo "not ok - content of $tree changed"
                failed=$((failed + 1))
        fi
        started=$((started + 1))
done

# A case that ended without a verdict (a bug in this script) is a failure too.
if [ $((passed + failed)) -ne "$started" ]; then
        echo "not ok - $((started - passed - failed)) case(s) ended without a verdict"
        failed=$((failed + 1))
fi
echo "1..$((passed + failed + skipped))"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] || exit 1
[ "$passed" -gt 0 ] || exit 77
exit 0
