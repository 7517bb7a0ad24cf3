#!/bin/bash
# daemon-killed: an apply killed (SIGKILL) at any point of the daemon step
# is completed by the next one. The kills are chained: each run dies at the
# next killpoint, the last run finishes, and then Docker works as the CI
# user and one more apply changes nothing.
#
# The data disk is a blank loop disk configured as Device=: the first run
# also makes and mounts it (the killpoints are all in the daemon step, so
# every later run finds it mounted).

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

need_test_hooks
machine_begin
machine_data_disk

# kill_at POINT: apply must die by SIGKILL at POINT (exit 137 = 128 + 9).
kill_at() {
	local rc
	set +e
	in_machine env RCI_KILL_AT="$1" rootless-ci apply >"$TEST_TMP/$1.out" 2>"$TEST_TMP/$1.err"
	rc=$?
	set -e
	if [[ $rc -ne 137 ]]; then
		sed 's/^/# /' "$TEST_TMP/$1.err"
		fail "apply with RCI_KILL_AT=$1 exited $rc, not killed at the point"
	fi
	ok "apply killed at $1"
}

# In the order a first apply passes them: each run gets one point further.
for p in daemon-unit-written daemon-root-masked daemon-linger daemon-started; do
	kill_at "$p"
done

# The start request itself: only made when the daemon is not running, so
# stop it (as the CI user may) and kill the repair right before the start.
as_ci systemctl --user stop docker.service
kill_at daemon-before-start

run_json final apply
sed 's/^/# stderr: /' "$TEST_TMP/final.err"
assert_eq 0 "$rc" "the apply after the kills completes"
out=$(as_ci sh -c 'docker import /var/lib/rootless-ci-test/busybox.tar rci-busybox >/dev/null && docker run --rm rci-busybox echo works')
assert_eq works "$out" "Docker works as $CI_USER"

run_json again apply
assert_eq 0 "$rc" "one more apply exits 0"
assert_eq false "$(jq -r .changed "$TEST_TMP/again.json")" "and changes nothing"

# The restart a changed unit owes survives a kill between the rewrite and
# the restart: the next run finds the file up to date and restarts anyway.
pid1=$(ci_docker_pid)
in_machine sed -i 's/^RestartSec=.*/RestartSec=7s/' /etc/systemd/user/docker.service
kill_at daemon-unit-written
assert_eq "$pid1" "$(ci_docker_pid)" "the daemon still runs from before the kill (MainPID $pid1)"
run_json owed apply
sed 's/^/# stderr: /' "$TEST_TMP/owed.err"
assert_eq 0 "$rc" "the next apply exits 0"
assert_eq ok "$(jq -r '.items[] | select(.id == "daemon.unit") | .status' "$TEST_TMP/owed.json")" \
	"it finds the unit file already up to date"
pid2=$(ci_docker_pid)
[[ $pid2 != "$pid1" && $pid2 != 0 ]] || fail "the owed restart was not done (MainPID $pid1 → $pid2)"
ok "it restarts the daemon all the same (MainPID $pid1 → $pid2)"
run_json after-owed apply
assert_eq false "$(jq -r .changed "$TEST_TMP/after-owed.json")" "and the run after that changes nothing"
assert_eq "$pid2" "$(ci_docker_pid)" "nor restarts the daemon again"

echo "PASS: $TEST_NAME"
