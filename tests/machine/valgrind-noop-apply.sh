#!/bin/bash
# valgrind-noop-apply: on a converged machine (the whole apply done once, on
# a real data disk), apply, check and plan run clean under valgrind's
# memcheck: no invalid read or write, no use of uninitialised memory, no
# definitely lost block. Any such error makes valgrind exit 99 (and the log
# is shown); the runs must also do what they do without valgrind (exit 0,
# apply changes nothing).

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

machine_begin

in_machine test -x /usr/bin/valgrind || fail "valgrind is not in the machine image (PACKAGES in scripts/machine)"
disk=$("$MACHINE" attach-disk "$RCI_MACHINE" 4G)

set +e
in_machine rootless-ci apply --disk="$disk" >"$TEST_TMP/converge.txt" 2>&1
rc=$?
set -e
if [[ $rc -ne 0 ]]; then
	sed 's/^/# /' "$TEST_TMP/converge.txt"
fi
assert_eq 0 "$rc" "the first apply converges the machine"

# vg NAME ARGS...: rootless-ci ARGS under memcheck; its stdout in
# $TEST_TMP/NAME.out, valgrind's log in $TEST_TMP/NAME.vg, the status in rc.
vg() {
	local name=$1
	shift
	set +e
	in_machine valgrind --tool=memcheck --error-exitcode=99 --leak-check=full \
		--errors-for-leak-kinds=definite --show-leak-kinds=definite --track-origins=yes \
		--log-file=/var/tmp/valgrind-"$name".log \
		rootless-ci "$@" >"$TEST_TMP/$name.out" 2>"$TEST_TMP/$name.err"
	rc=$?
	set -e
	in_machine cat /var/tmp/valgrind-"$name".log >"$TEST_TMP/$name.vg" 2>/dev/null || true
	if [[ $rc -ne 0 ]]; then
		sed 's/^/# valgrind: /' "$TEST_TMP/$name.vg"
		sed 's/^/# stderr: /' "$TEST_TMP/$name.err"
	fi
	grep -E 'ERROR SUMMARY|definitely lost' "$TEST_TMP/$name.vg" | sed "s/^/# $name: /" || true
}

vg apply --json apply --disk="$disk"
assert_eq 0 "$rc" "apply on the converged machine is clean under valgrind (exit 0, not 99)"
assert_eq false "$(jq -r .changed "$TEST_TMP/apply.out")" "apply under valgrind changes nothing"
grep -q 'ERROR SUMMARY: 0 errors' "$TEST_TMP/apply.vg" || fail "apply: valgrind counted errors"
ok "apply: valgrind's summary says 0 errors"

vg check check --disk="$disk"
assert_eq 0 "$rc" "check on the converged machine is clean under valgrind"

vg plan plan --disk="$disk"
assert_eq 0 "$rc" "plan on the converged machine is clean under valgrind"

echo "PASS: $TEST_NAME"
