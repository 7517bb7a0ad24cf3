#!/bin/bash
# daemon-fails-loudly: when the CI user's dockerd cannot start, apply says
# so soon (not after the whole ready timeout), exits 1, and shows the unit's
# own journal lines and its state, so the operator sees why.
#
# The failure is a real one: no data disk, so Docker's data root lies on the
# machine's root filesystem, an overlayfs, on which overlay2 cannot mount.
# Exactly what the data disk is for.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

machine_begin

[[ $(in_machine findmnt -n -o FSTYPE /) == overlay ]] || skip "the machine's root is not an overlayfs here"

t0=$SECONDS
set +e
in_machine rootless-ci --ready-timeout=100 apply >"$TEST_TMP/apply.out" 2>"$TEST_TMP/apply.err"
rc=$?
set -e
took=$((SECONDS - t0))
sed 's/^/# stderr: /' "$TEST_TMP/apply.err"
assert_eq 1 "$rc" "apply exits 1 when the daemon cannot start"
((took < 60)) || fail "apply took $took s: it waited out the timeout instead of seeing the unit fail"
ok "apply gave up after $took s, well before the 100 s ready timeout"
err=$(cat "$TEST_TMP/apply.err")
assert_contains "$err" "Last lines of its journal" "apply prints the unit's journal"
assert_contains "$err" "failed to mount overlay" "the journal lines show dockerd's own error"
assert_contains "$err" "docker.service is" "apply says what state the unit is in"
assert_contains "$err" "Likely cause: overlay2 does not work on the data root's filesystem" "apply names the likely cause"

run_json check check
assert_eq 1 "$rc" "check fails while the daemon is down"
assert_eq fail "$(jq -r '.items[] | select(.id == "daemon.service") | .status' "$TEST_TMP/check.json")" \
	"check names daemon.service as the failure"

echo "PASS: $TEST_NAME"
