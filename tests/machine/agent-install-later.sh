#!/bin/bash
# agent-install-later: apply on a machine without the agent writes its
# drop-in anyway; the agent installed afterwards (a stand-in, as the package
# ships it) runs as the CI user against the CI user's rootless Docker from
# its first start, after a daemon-reload. The package's chown of
# /etc/buildkite-agent is what check then reports and the next apply fixes.
#
# Every step is the real one: the data disk is a blank loop disk configured
# as Device= (machine_data_disk), which apply partitions, formats and mounts.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=tests/machine/agent-standin.sh
source "$(dirname "$0")/agent-standin.sh"

need_test_hooks
machine_begin
machine_data_disk

run_json apply1 apply
sed 's/^/# stderr: /' "$TEST_TMP/apply1.err"
jq -r '.items[] | select(.step == "agent") | "#   \(.status) \(.id): \(.message)"' "$TEST_TMP/apply1.json"
assert_eq 0 "$rc" "apply without the agent installed exits 0"
uid=$(ci_uid)
in_machine test -f /etc/systemd/system/buildkite-agent.service.d/zz-rootless-ci.conf || fail "no drop-in"
ok "the drop-in is written although the agent is not installed"
assert_contains "$(jq -r '.items[] | select(.id == "agent.service") | .message' "$TEST_TMP/apply1.json")" \
	"not installed" "apply says the agent is not installed"

as_ci docker import /var/lib/rootless-ci-test/busybox.tar rci-busybox >/dev/null

# The package arrives: user, unit, /etc/buildkite-agent chowned to its user; daemon-reload; start.
standin_install
in_machine systemctl daemon-reload
in_machine systemctl start buildkite-agent.service
assert_standin_ran_as_ci "$uid"
in_machine test ! -e "/var/tmp/rci-standin/report.$(in_machine id -u buildkite-agent)" ||
	fail "the stand-in ran as the package's user at some point"
ok "the stand-in never ran as the package's user"

run_json check1 check
assert_eq 1 "$rc" "check fails while /etc/buildkite-agent belongs to the package's user"
jq -r '.items[] | select(.step == "agent" and .status == "fail") | "#   \(.status) \(.id): \(.message)"' "$TEST_TMP/check1.json"
assert_eq 0 "$(jq '[.items[] | select(.step != "agent" and .status == "fail")] | length' "$TEST_TMP/check1.json")" \
	"only the agent step's items fail"

pid1=$(in_machine systemctl show -p MainPID --value buildkite-agent.service)
in_machine rootless-ci apply >/dev/null 2>"$TEST_TMP/apply2.err" || { sed 's/^/# /' "$TEST_TMP/apply2.err"; fail "apply failed"; }
assert_contains "$(cat "$TEST_TMP/apply2.err")" "Secured /etc/buildkite-agent" "the next apply secures the tree, loudly"
assert_eq "$pid1" "$(in_machine systemctl show -p MainPID --value buildkite-agent.service)" \
	"the agent, already the CI user's, was not restarted"
grep -qF "$STANDIN_TOKEN" "$TEST_TMP/apply2.err" && fail "the token appears in apply's output"
ok "no token in apply's output"
assert_etc_not_writable_by_ci
in_machine rootless-ci check >/dev/null 2>&1 || fail "check fails after the second apply"
ok "check passes after the second apply"

# A run killed between rewriting a drifted drop-in and restarting the agent:
# the next run finds the file in place and still owes the restart.
dropin=/etc/systemd/system/buildkite-agent.service.d/zz-rootless-ci.conf
in_machine sed -i 's/^TimeoutStartSec=.*/TimeoutStartSec=99s/' "$dropin"
pid1=$(in_machine systemctl show -p MainPID --value buildkite-agent.service)
set +e
in_machine env RCI_KILL_AT=agent-dropin-written rootless-ci apply >/dev/null 2>"$TEST_TMP/killed.err"
rc=$?
set -e
assert_eq 137 "$rc" "apply killed right after rewriting the drop-in"
in_machine grep -q '^TimeoutStartSec=99s' "$dropin" && fail "the killed run did not rewrite the drop-in"
assert_eq "$pid1" "$(in_machine systemctl show -p MainPID --value buildkite-agent.service)" \
	"the killed run did not get to restart the agent"
run_json after-kill apply
[[ $rc -eq 0 ]] || { sed 's/^/# /' "$TEST_TMP/after-kill.err"; fail "apply after the kill failed"; }
assert_eq "" "$(jq -r '.items[] | select(.id == "agent.dropin" and .changed) | .id' "$TEST_TMP/after-kill.json")" \
	"the next apply finds the drop-in in place"
pid2=$(in_machine systemctl show -p MainPID --value buildkite-agent.service)
[[ $pid2 != "$pid1" && $pid2 != 0 ]] || fail "the owed restart was not done ($pid1 → $pid2)"
ok "the next apply did the owed restart ($pid1 → $pid2)"
assert_eq "$uid" "$(standin_uid)" "the restarted agent runs as the CI user"

echo "PASS: $TEST_NAME"
