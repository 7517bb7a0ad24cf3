#!/bin/bash
# daemon-fails-loudly: when the CI user's dockerd cannot start, apply says
# so soon (not after the whole ready timeout), exits 1, and shows the unit's
# own journal lines and its state, so the operator sees why.
#
# The failure is made deterministic: the user's Docker data root
# (~/.local/share/docker) is a plain file, so dockerd cannot create it.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

machine_begin

CI_USER=buildkite
in_machine useradd --create-home --shell /bin/bash "$CI_USER"
uid=$(in_machine id -u "$CI_USER")
in_machine setpriv --reuid="$uid" --regid="$uid" --init-groups sh -c \
	"mkdir -p /home/$CI_USER/.local/share && echo not-a-directory >/home/$CI_USER/.local/share/docker"

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
assert_contains "$err" "/home/$CI_USER/.local/share/docker" "the journal lines name the data root dockerd choked on"
assert_contains "$err" "docker.service is" "apply says what state the unit is in"
assert_contains "$err" "Likely cause: the Docker data root" "apply names the likely cause"

set +e
in_machine rootless-ci --json check >"$TEST_TMP/check.json" 2>/dev/null
rc=$?
set -e
assert_eq 1 "$rc" "check fails while the daemon is down"
assert_eq fail "$(jq -r '.items[] | select(.id == "daemon.service") | .status' "$TEST_TMP/check.json")" \
	"check names daemon.service as the failure"

echo "PASS: $TEST_NAME"
