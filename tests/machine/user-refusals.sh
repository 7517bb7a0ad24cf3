#!/bin/bash
# user-refusals: accounts rootless-ci must not turn into the CI user are
# refused with a clear message, exit 1, and the machine is left exactly as
# it was: a system account (UID below UID_MIN), the overflow UID "nobody",
# and a user whose primary group is docker.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

machine_begin

# apply_refused WHAT EXPECTED-MESSAGE [ROOTLESS-CI OPTIONS...]
apply_refused() {
	local what=$1 message=$2 rc
	shift 2
	machine_snapshot "$TEST_TMP/before"
	set +e
	in_machine rootless-ci "$@" apply >"$TEST_TMP/apply.txt" 2>&1
	rc=$?
	set -e
	sed 's/^/# apply: /' "$TEST_TMP/apply.txt"
	assert_eq 1 "$rc" "$what: apply exits 1"
	assert_contains "$(cat "$TEST_TMP/apply.txt")" "$message" "$what: the message says why"
	if grep -q '^\(+\|~\|-\) ' "$TEST_TMP/apply.txt"; then
		fail "$what: apply reported a change"
	fi
	machine_snapshot "$TEST_TMP/after"
	assert_same_snapshot "$TEST_TMP/before" "$TEST_TMP/after" "$what: nothing changed"
}

in_machine useradd --system --create-home --shell /bin/bash buildkite
apply_refused "system account" "buildkite is a system account (UID"
in_machine userdel --remove buildkite

apply_refused "nobody" "nobody has UID 65534, the kernel's overflow UID" --user=nobody

in_machine useradd --create-home --gid docker --shell /bin/bash buildkite
apply_refused "primary group docker" "the primary group of buildkite is docker"

echo "PASS: $TEST_NAME"
