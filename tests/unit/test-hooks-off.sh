#!/bin/bash
# SPDX-License-Identifier: MIT
#
# A build without -Dtest_hooks=true ignores the test hooks (RCI_ONLY_STEPS,
# RCI_UNITS_DIR, RCI_KILL_AT, RCI_STOP_AT, RCI_FORCE_RESOLVE_FALLBACK): their
# names are not even in the binary, and setting them changes nothing. Every probe also runs on the
# build's own binary when that one has the hooks, where it must come out
# the other way round: each assertion is shown to be able to fail.
#
# Usage: test-hooks-off.sh NOHOOKS [HOOKED]   (TAP; meson passes the
# hookless program, and the hooked one when the build has -Dtest_hooks=true)

set -u

NOHOOKS=${1:?usage: $0 NOHOOKS [HOOKED]}
HOOKED=${2:-}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/rci-hooks-off.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT

# shellcheck source=tests/lib/fake-tree.sh
source "$(dirname "$0")/../lib/fake-tree.sh"

n=0 failures=0
tap_ok() { n=$((n + 1)); echo "ok $n - $*"; }
tap_not_ok() { n=$((n + 1)); failures=$((failures + 1)); echo "not ok $n - $*"; }
tap_skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }

# The probes: each runs BIN and succeeds when the hook took effect.
name_in_binary() { grep -a -q -F "$2" "$1"; }
version_says_test_build() { "$1" version | grep -q "test build"; }
only_steps_refuses_an_unknown_step() {
        RCI_ONLY_STEPS=no-such-step "$1" --root="$TREE" plan >"$TMP/out" 2>&1
        [ $? -eq 2 ]
}
only_steps_makes_a_partial_run() {
        RCI_ONLY_STEPS=preflight "$1" --root="$TREE" --json plan >"$TMP/out" 2>/dev/null
        grep -q '"partial":true' "$TMP/out" && ! grep -q '"step":"user"' "$TMP/out"
}
units_dir_is_read() {
        RCI_UNITS_DIR=$TMP/no-units "$1" --root="$TREE" plan >"$TMP/out" 2>&1
        grep -q -F "$TMP/no-units" "$TMP/out"
}
# The resolver's fallback walk never calls openat2(); without the hook plan opens every path with it.
resolve_fallback_skips_openat2() {
        RCI_FORCE_RESOLVE_FALLBACK=1 strace -f -qq -e trace=openat2 -o "$TMP/trace" \
                "$1" --root="$TREE" plan >"$TMP/out" 2>&1
        ! grep -q openat2 "$TMP/trace"
}
# apply on a fresh complete tree passes killpoints (user-before-useradd).
fresh_tree() {
        rm -rf "$TMP/run"
        cp -a "$TREE" "$TMP/run"
}
kill_at_list_prints_points() {
        fresh_tree
        RCI_KILL_AT=list "$1" --root="$TMP/run" apply >/dev/null 2>"$TMP/out"
        grep -q "^killpoint: " "$TMP/out"
}
kill_at_kills() {
        fresh_tree
        (RCI_KILL_AT=user-before-useradd "$1" --root="$TMP/run" apply >/dev/null 2>&1; exit $?) 2>/dev/null
        [ $? -eq 137 ]
}
stop_at_stops() {
        local pid state="" _
        fresh_tree
        RCI_STOP_AT=user-before-useradd "$1" --root="$TMP/run" apply >/dev/null 2>&1 &
        pid=$!
        for _ in $(seq 200); do
                state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null)
                # Stopped, or gone (a zombie until the wait below): either is the answer.
                case $state in T | Z | "") break ;; esac
                sleep 0.1
        done
        [ "$state" = T ] && kill -CONT "$pid"
        wait "$pid"
        [ "$state" = T ]
}

# check WHAT PROBE ARGS...: ignored by the hookless binary, in effect in the hooked one.
check() {
        local what=$1
        shift
        if "$1" "$NOHOOKS" "${@:2}"; then
                tap_not_ok "without test hooks: $what"
                sed 's/^/# /' "$TMP/out" 2>/dev/null
        else
                tap_ok "without test hooks: $what"
        fi
        [ -n "$HOOKED" ] || return 0
        if "$1" "$HOOKED" "${@:2}"; then
                tap_ok "control, with test hooks: $*"
        else
                tap_not_ok "control, with test hooks: $* does not see the hook"
        fi
}

TREE=$TMP/tree
make_tree "$TREE" debian
ROOT_OK=0
make_setuid "$TREE" && ROOT_OK=1

for name in RCI_ONLY_STEPS RCI_UNITS_DIR RCI_KILL_AT RCI_STOP_AT RCI_FORCE_RESOLVE_FALLBACK; do
        check "the name $name is not in the binary" name_in_binary "$name"
done
check "version does not say test build" version_says_test_build
check "RCI_ONLY_STEPS=no-such-step is no usage error" only_steps_refuses_an_unknown_step
check "RCI_ONLY_STEPS=preflight runs every step, not marked partial" only_steps_makes_a_partial_run
check "RCI_UNITS_DIR does not move the templates" units_dir_is_read
if strace -qq -e trace=openat2 -o /dev/null true 2>/dev/null; then
        check "RCI_FORCE_RESOLVE_FALLBACK=1 still opens paths with openat2" resolve_fallback_skips_openat2
else
        tap_skip "RCI_FORCE_RESOLVE_FALLBACK ignored" "needs strace, which is missing or may not trace here"
fi
if [ "$ROOT_OK" = 1 ]; then
        check "RCI_KILL_AT=list prints no killpoint" kill_at_list_prints_points
        check "RCI_KILL_AT=user-before-useradd does not kill apply" kill_at_kills
        check "RCI_STOP_AT=user-before-useradd does not stop apply" stop_at_stops
else
        for what in "RCI_KILL_AT=list" "RCI_KILL_AT=POINT" "RCI_STOP_AT=POINT"; do
                tap_skip "$what ignored" "needs root: apply reaches a killpoint only on a complete tree (setuid-root newuidmap)"
        done
fi

echo "1..$n"
[ "$failures" -eq 0 ]
