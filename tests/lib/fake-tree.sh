# shellcheck shell=bash
# SPDX-License-Identifier: MIT
#
# Sourced by the shell tests that run the real binary on --root fake trees
# (tests/unit/test-exit-codes.sh, tests/unit/test-hostile-input.sh): run a
# case, check its exit status and messages, and that the tree it was pointed
# at is exactly as before (listing after every case, content at the end).
#
# The sourcing script sets BIN (the binary) and TMP (a scratch directory it
# removes), then calls expect ... for each case and finish last.

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
# that stderr reports no internal error (a FAIL without a fix), and, with
# --in, that TREE is exactly as it was before.
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
        # engine/report.c says so when a FAIL item comes without a fix: a bug, whatever the test is about.
        if [[ $err == *"Internal error:"* ]]; then
                fail "$name: $(grep -m1 'Internal error:' "$TMP/err")"
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

# finish: compare the content of every tree a case ran on, print the TAP
# plan and the counts, and exit 0, or 1 when a case failed. A skip is a TAP
# SKIP with its reason (meson counts the test as skipped when every case
# is; scripts/test lists each skipped case).
finish() {
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
        echo "# $passed passed, $failed failed, $skipped skipped"
        [ "$failed" -eq 0 ] || exit 1
        exit 0
}
