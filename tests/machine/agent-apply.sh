#!/bin/bash
# agent-apply: with the agent installed (a stand-in, as the package ships
# it) and running as its own user before apply, apply takes
# /etc/buildkite-agent back from the package's user and fails on a hook
# link the package's user planted (left alone, agent not restarted); once
# the operator removed it, apply makes the agent run as the CI user against
# the CI user's rootless Docker, and prints no token; a second apply changes
# nothing and restarts nothing. A dangling hook link into the builds
# directory (a job could create its target) fails check and apply.
# rootless-ci wait answers for the daemon both ways.
#
# Every step is the real one: the data disk is a blank loop disk configured
# as Device= (machine_data_disk), which apply partitions, formats and mounts.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=tests/machine/agent-standin.sh
source "$(dirname "$0")/agent-standin.sh"

machine_begin
machine_data_disk

standin_install
# A link planted in the hooks directory by the package's user, to a file of its own.
in_machine sh -c 'echo "#!/bin/sh" >/var/lib/buildkite-agent/planted && chmod 0666 /var/lib/buildkite-agent/planted &&
	chown buildkite-agent: /var/lib/buildkite-agent/planted &&
	ln -s /var/lib/buildkite-agent/planted /etc/buildkite-agent/hooks/pre-exit &&
	chown -h buildkite-agent: /etc/buildkite-agent/hooks/pre-exit'
in_machine systemctl daemon-reload
in_machine systemctl enable --now buildkite-agent.service >/dev/null 2>&1
agent_uid=$(in_machine id -u buildkite-agent)
standin_report "$agent_uid" | sed 's/^/#   before apply: /'
assert_eq "$agent_uid" "$(standin_uid)" "before apply the stand-in runs as the package's user"
assert_contains "$(in_machine stat -c %U /etc/buildkite-agent/hooks)" buildkite-agent \
	"before apply the package's user owns /etc/buildkite-agent/hooks"

journal_cursor=$(in_machine journalctl -n 0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p')
run_json apply1 apply
sed 's/^/# stderr: /' "$TEST_TMP/apply1.err"
jq -r '.items[] | select(.step == "agent") | "#   \(.status) \(.id): \(.message)"' "$TEST_TMP/apply1.json"
assert_eq 1 "$rc" "apply exits 1: the planted link lets the package's user change a hook"
echo "# first apply took $ms ms"
uid=$(ci_uid)
assert_eq fail "$(jq -r '.items[] | select(.id == "agent.config-link:/etc/buildkite-agent/hooks/pre-exit") | .status' \
	"$TEST_TMP/apply1.json")" "the planted link is a FAIL"
assert_contains "$(jq -r '.items[] | select(.id | startswith("agent.config-link:")) | .message' "$TEST_TMP/apply1.json")" \
	"/var/lib/buildkite-agent is owned by UID $agent_uid" "the report says who can change where it leads"
assert_contains "$(jq -r '.items[] | select(.id | startswith("agent.config-link:")) | .fix' "$TEST_TMP/apply1.json")" \
	"rm /etc/buildkite-agent/hooks/pre-exit" "its fix says how"
in_machine test -L /etc/buildkite-agent/hooks/pre-exit || fail "apply removed the operator's link"
ok "apply left the link where it was"
assert_eq "$agent_uid" "$(standin_uid)" "apply did not restart the agent on a tree it could not make safe"

# The operator follows the fix; apply finishes the job.
in_machine rm /etc/buildkite-agent/hooks/pre-exit
run_json apply1b apply
sed 's/^/# stderr: /' "$TEST_TMP/apply1b.err"
assert_eq 0 "$rc" "apply exits 0 once the link is gone"

# The drop-in, and the agent restarted by apply because it ran as the package's user.
dropin=/etc/systemd/system/buildkite-agent.service.d/zz-rootless-ci.conf
assert_eq "root 644" "$(in_machine stat -c '%U %a' "$dropin")" "the drop-in is root-owned 0644"
assert_eq change "$(jq -r '.items[] | select(.id == "agent.service") | .status' "$TEST_TMP/apply1b.json")" \
	"apply restarted the running agent"
assert_eq "$uid" "$(standin_uid)" "after apply the agent runs as the CI user"
assert_contains "$(in_machine systemctl show -p Wants -p After buildkite-agent.service)" "user@$uid.service" \
	"the agent wants and is ordered after user@$uid.service"

# Secured, loudly.
assert_contains "$(cat "$TEST_TMP/apply1.err")" "Secured /etc/buildkite-agent/hooks" "apply says it secured the hooks directory"
assert_eq "root:$CI_USER 640" "$(in_machine stat -c '%U:%G %a' /etc/buildkite-agent/buildkite-agent.cfg)" \
	"the configuration is root:$CI_USER 0640"
assert_eq "root:$CI_USER 755" "$(in_machine stat -c '%U:%G %a' /etc/buildkite-agent/hooks)" "the hooks directory is root:$CI_USER 0755"
assert_eq "buildkite-agent 666" "$(in_machine stat -c '%U %a' /var/lib/buildkite-agent/planted)" \
	"the planted link's target was not chowned or chmodded"
assert_contains "$(jq -r '.items[] | select(.id | startswith("agent.config-link:")) | .message' "$TEST_TMP/apply1.json")" \
	"/etc/buildkite-agent/hooks/pre-exit is a symlink" "the report names the planted link"

# No token anywhere apply wrote, nor in the journal; the token is really in the file (the control).
in_machine grep -qF "$STANDIN_TOKEN" /etc/buildkite-agent/buildkite-agent.cfg || fail "the control: the token is not in the cfg"
in_machine journalctl --no-pager -o verbose --after-cursor="$journal_cursor" >"$TEST_TMP/journal.txt"
echo "# journal since apply began: $(wc -l <"$TEST_TMP/journal.txt") lines"
grep -q 'RCI_STEP=agent' "$TEST_TMP/journal.txt" || fail "the control: apply's agent items are not in the journal"
if grep -lF "$STANDIN_TOKEN" "$TEST_TMP/apply1.json" "$TEST_TMP/apply1.err" "$TEST_TMP/apply1b.json" \
	"$TEST_TMP/apply1b.err" "$TEST_TMP/journal.txt"; then
	fail "the token appears in apply's output or the journal"
fi
ok "the token appears in neither apply's stdout, its stderr, nor the journal"

# The stand-in, restarted once the image is there: CI user, DOCKER_HOST, a container.
as_ci docker import /var/lib/rootless-ci-test/busybox.tar rci-busybox >/dev/null
assert_standin_ran_as_ci "$uid"
assert_etc_not_writable_by_ci

# A second apply: nothing to do; the agent keeps running untouched.
pid1=$(in_machine systemctl show -p MainPID --value buildkite-agent.service)
run_json apply2 apply
[[ $rc -eq 0 ]] || { sed 's/^/# /' "$TEST_TMP/apply2.err"; fail "second apply failed"; }
echo "# second apply took $ms ms"
sed "s/^/# stderr: /" "$TEST_TMP/apply2.err"
assert_eq false "$(jq -r .changed "$TEST_TMP/apply2.json")" "a second apply changes nothing"
assert_eq "$pid1" "$(in_machine systemctl show -p MainPID --value buildkite-agent.service)" \
	"the agent was not restarted (MainPID $pid1)"

run_json check check
jq -r '.items[] | select(.step == "agent") | "#   \(.status) \(.id): \(.message)"' "$TEST_TMP/check.json"
assert_eq 0 "$rc" "check passes"
assert_eq pass "$(jq -r '.items[] | select(.id == "agent.docker-host") | .status' "$TEST_TMP/check.json")" \
	"check says DOCKER_HOST is safe because no root socket is reachable"
assert_contains "$(jq -r '.items[] | select(.id == "agent.docker-host") | .message' "$TEST_TMP/check.json")" \
	"safe only because no root-owned" "and says what that safety rests on"

# Drift: the package's postinst runs again (an upgrade). check fails, apply fixes, no restart needed.
in_machine chown -R buildkite-agent:buildkite-agent /etc/buildkite-agent
run_json check2 check
assert_eq 1 "$rc" "check fails once the package chowned /etc/buildkite-agent again"
assert_eq fail "$(jq -r '[.items[] | select(.id | startswith("agent.config:"))][0].status' "$TEST_TMP/check2.json")" \
	"check names agent.config"
in_machine rootless-ci apply >/dev/null 2>"$TEST_TMP/apply3.err" || fail "apply after the chown failed"
assert_eq "root:$CI_USER 640" "$(in_machine stat -c '%U:%G %a' /etc/buildkite-agent/buildkite-agent.cfg)" \
	"apply secured the configuration again"
assert_eq "$pid1" "$(in_machine systemctl show -p MainPID --value buildkite-agent.service)" \
	"securing the tree alone does not restart the agent"

# The issue's example: a dangling hook link into the builds directory,
# whose target any later job can create. check and apply fail; the link stays.
in_machine ln -s "/srv/rootless-ci/$CI_USER/builds/.h" /etc/buildkite-agent/hooks/pre-command
run_json check3 check
assert_eq 1 "$rc" "check fails on a dangling hook link into the builds directory"
assert_contains "$(jq -r '.items[] | select(.id == "agent.config-link:/etc/buildkite-agent/hooks/pre-command") | .message' \
	"$TEST_TMP/check3.json")" "/srv/rootless-ci/$CI_USER/builds is owned by UID $uid" "and names the directory the CI user owns"
as_ci touch "/srv/rootless-ci/$CI_USER/builds/.h" ||
	fail "the control: the CI user cannot create the link's target"
ok "the control: a job (the CI user) can create what the link leads to"
set +e
in_machine rootless-ci apply >/dev/null 2>"$TEST_TMP/apply4.err"
rc=$?
set -e
assert_eq 1 "$rc" "apply fails on it too"
in_machine test -L /etc/buildkite-agent/hooks/pre-command || fail "apply removed the operator's link"
in_machine rm /etc/buildkite-agent/hooks/pre-command
in_machine rootless-ci check >/dev/null 2>&1 || fail "check fails once the link is gone"
ok "check passes once the operator removed the link"

# wait: bounded, and honest both ways.
set +e
out=$(in_machine rootless-ci wait --ready-timeout=5 2>&1)
rc=$?
set -e
assert_eq 0 "$rc" "rootless-ci wait exits 0 while the daemon answers ($out)"
in_machine systemctl --user -M "$CI_USER@" stop docker.service
t0=$SECONDS
set +e
out=$(in_machine rootless-ci wait --ready-timeout=7 2>&1)
rc=$?
set -e
assert_eq 1 "$rc" "rootless-ci wait exits 1 when the daemon does not answer"
assert_contains "$out" "did not answer GET /_ping" "and says so"
assert_contains "$out" "Waiting for the CI user's Docker to answer GET /_ping" \
	"a long wait shows its progress (every 5 s: what, for how long)"
[[ $((SECONDS - t0)) -le 15 ]] || fail "wait --ready-timeout=7 took $((SECONDS - t0)) s"
ok "wait gave up within its timeout ($((SECONDS - t0)) s)"
# On these cgroup-v1 hosts a start right after the stop can fail once while
# systemd still tears down the old cgroup ("Failed to attach to cgroup ...:
# No such file or directory", seen in CI): the test's own restart retries.
for try in 1 2 3; do
	in_machine systemctl --user -M "$CI_USER@" start docker.service && break
	[[ $try -lt 3 ]] || fail "docker.service did not start again after the stop"
	in_machine systemctl --user -M "$CI_USER@" reset-failed docker.service || true
	sleep 2
done
assert_eq 0 "$(in_machine rootless-ci wait --ready-timeout=60 >/dev/null 2>&1; echo $?)" "wait exits 0 once the daemon is back"

echo "PASS: $TEST_NAME"
