# shellcheck shell=bash
# SPDX-License-Identifier: MIT
# Sourced by the host tests (suite "host"). Each test runs as root in a
# private mount namespace, on loop devices backed by sparse files, so the
# machine running the tests is never changed:
#
#   /etc   an overlay whose upper layer is in the test's temp dir: the
#          private /etc/fstab can be replaced by rename (rootless-ci writes
#          atomically; renaming over a bind-mounted file fails with EBUSY)
#   /run   a fresh tmpfs (rootless-ci's lock, libmount's utab)
#   /srv   a fresh tmpfs (mount points)
#
# Every loop device is detached, and its partitions forgotten, on exit.
#
# Usage: RCI=/path/to/rootless-ci tests/host/NAME.sh   (meson sets RCI)

set -euo pipefail

skip() {
        echo "SKIP: $*"
        exit 77
}

[ "$(id -u)" = 0 ] || skip "needs root"
[ -e /dev/loop-control ] || skip "no loop devices (/dev/loop-control)"
command -v unshare >/dev/null || skip "unshare (util-linux) not installed"
: "${RCI:?set RCI to the rootless-ci binary}"
[ -x "$RCI" ] || { echo "FAIL: $RCI is not executable"; exit 1; }
# Every host test runs the disk step alone through the test hook RCI_ONLY_STEPS.
"$RCI" version | grep -q "test build" || skip "needs a build with -Dtest_hooks=true (RCI_ONLY_STEPS; scripts/test sets it)"

if [ -z "${RCI_HOST_TEST_NS:-}" ]; then
        export RCI_HOST_TEST_NS=1
        exec unshare --mount --propagation private "$BASH" "$0" "$@"
fi

WORK=$(mktemp -d /tmp/rci-host.XXXXXX)
FAILURES=0

# The loop devices backed by this test's images (found by backing file, so
# loops made in subshells are found too).
test_loops() {
        losetup --list --noheadings --output NAME,BACK-FILE 2>/dev/null |
                while read -r name back _; do
                        case "$back" in "$WORK"/*) echo "$name" ;; esac
                done
}

cleanup() {
        local loops t
        set +e
        loops=$(test_loops)
        for l in $loops; do
                for d in "$l" "$l"p*; do
                        [ -b "$d" ] || continue
                        grep -q "^$d " /proc/swaps && swapoff "$d"
                        # Unmount whatever the test mounted from it, deepest first.
                        findmnt -rn -o TARGET -S "$d" | sort -r | while read -r t; do umount "$t" || umount -l "$t"; done
                done
        done
        for l in $loops; do
                # Without partition scanning the kernel keeps partitions after detach: forget them first.
                partx -d "$l" 2>/dev/null
                losetup -d "$l" || echo "cleanup: could not detach $l"
        done
        umount -l /etc /run /srv 2>/dev/null
        rm -rf "$WORK"
}
trap cleanup EXIT

mount -t tmpfs -o mode=0755 rci-run /run
mount -t tmpfs -o mode=0755 rci-srv /srv
mkdir -p "$WORK/etc-upper" "$WORK/etc-work"
mount -t overlay rci-etc -o "lowerdir=/etc,upperdir=$WORK/etc-upper,workdir=$WORK/etc-work" /etc
printf '# fstab of a rootless-ci host test\n' >/etc/fstab

# new_loop NAME [SIZE]: a loop device on a sparse file; prints its node.
new_loop() {
        local img="$WORK/$1.img" l
        truncate -s "${2:-512M}" "$img"
        l=$(losetup --find --show "$img")
        partx -d "$l" 2>/dev/null || true   # partitions left behind by an earlier user of this number
        echo "$l"
}

need() {
        local missing=()
        for t in "$@"; do command -v "$t" >/dev/null || missing+=("$t"); done
        if [ ${#missing[@]} -gt 0 ]; then
                echo "FAIL: missing tools: ${missing[*]} (TEST_PACKAGES in scripts/deps.sh installs them)"
                exit 1
        fi
}

# rci ARGS...: run the disk step alone; output in $WORK/out, exit status in $RC.
# A FAIL item without a fix (engine/report.c logs "Internal error:") fails the test
# whatever it is about.
rci() {
        set +e
        RCI_ONLY_STEPS=disk "$RCI" "$@" >"$WORK/out" 2>&1
        RC=$?
        set -e
        if grep -q "Internal error:" "$WORK/out"; then
                fail "rootless-ci $*: $(grep -m1 'Internal error:' "$WORK/out")"
        fi
        return 0
}

# rci_killed_at POINT ARGS...: apply, killed (SIGKILL) at a killpoint.
rci_killed_at() {
        local point=$1
        shift
        set +e
        # In a subshell, so the shell's "Killed" notice goes nowhere.
        (RCI_KILL_AT=$point RCI_ONLY_STEPS=disk "$RCI" "$@" >"$WORK/out" 2>&1; exit $?) 2>/dev/null
        RC=$?
        set -e
}

fail() {
        echo "FAIL: $*"
        echo "----- rootless-ci output -----"
        cat "$WORK/out" 2>/dev/null || true
        echo "------------------------------"
        FAILURES=$((FAILURES + 1))
}

ok() {
        echo "ok: $*"
}

expect_rc() {
        local want=$1 what=$2
        if [ "$RC" = "$want" ]; then ok "$what (exit $RC)"; else fail "$what: exit $RC, expected $want"; fi
}

expect_out() {
        local pattern=$1 what=$2
        if grep -qE -- "$pattern" "$WORK/out"; then ok "$what"; else fail "$what: output lacks /$pattern/"; fi
}

expect_no_out() {
        local pattern=$1 what=$2
        if grep -qE -- "$pattern" "$WORK/out"; then fail "$what: output has /$pattern/"; else ok "$what"; fi
}

sha() {
        sha256sum "$1" | cut -d' ' -f1
}

fs_uuid() {
        blkid -p -o value -s UUID "$1"
}

is_mounted_at() {
        # $1 device, $2 mount point: the top mount there is that device.
        [ "$(findmnt -rn -o SOURCE --mountpoint "$2" 2>/dev/null | tail -n1)" = "$1" ]
}

finish() {
        if [ "$FAILURES" -gt 0 ]; then
                echo "$FAILURES check(s) failed"
                exit 1
        fi
        echo "all checks passed"
        exit 0
}
