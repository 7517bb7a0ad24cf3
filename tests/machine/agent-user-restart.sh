#!/bin/bash
# agent-user-restart: apply's own restart of the CI user's manager
# (user@UID.service, restarted when its drop-ins changed) does not restart
# the agent, so a job that runs meanwhile is not cancelled: it goes on, and
# once the daemon is back its `docker run` works. The agent's drop-in asks
# for the manager with Wants= + After= (a restart or stop of the manager does
# not propagate), not Requires= (which restarted the agent with it).
#
# The agent is the stand-in (agent-standin.sh) with a long job: like the
# real agent, it cancels its running job when it is stopped.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=tests/machine/agent-standin.sh
source "$(dirname "$0")/agent-standin.sh"

machine_begin
machine_data_disk

standin_install
in_machine systemctl daemon-reload
in_machine rootless-ci apply >/dev/null 2>"$TEST_TMP/apply1.err" || { sed 's/^/# /' "$TEST_TMP/apply1.err"; fail "apply failed"; }
uid=$(ci_uid)
as_ci docker import /var/lib/rootless-ci-test/busybox.tar rci-busybox >/dev/null

# The job: says it started, waits until the test lets it go on (after the
# restart), then waits for the daemon (at most 60 s) and runs a container.
in_machine sh -c 'cat >/var/tmp/rci-standin/job.sh' <<'JOB'
log=/var/tmp/rci-standin/job.log
echo "started as $(id -u)" >>"$log"
while [ ! -e /var/tmp/rci-standin/job.go ]; do sleep 0.2; done
i=0
until docker info >/dev/null 2>&1; do
	i=$((i + 1))
	[ "$i" -le 300 ] || break
	sleep 0.2
done
echo "after the restart: $(docker run --rm rci-busybox sh -c 'echo container-ran-as-$(id -u)' 2>&1 | tr '\n' ' ')" >>"$log"
echo finished >>"$log"
JOB
in_machine systemctl start buildkite-agent.service
for ((i = 0; i < 120; i++)); do
	in_machine grep -q started /var/tmp/rci-standin/job.log 2>/dev/null && break
	sleep 0.5
done
assert_contains "$(in_machine cat /var/tmp/rci-standin/job.log)" "started as $uid" "the stand-in runs a job as the CI user"
agent_pid=$(in_machine systemctl show -p MainPID --value buildkite-agent.service)
job_pid=$(in_machine cat /var/tmp/rci-standin/job.pid)
mgr_pid=$(in_machine systemctl show -p MainPID --value "user@$uid.service")
docker_pid=$(ci_docker_pid)
echo "# before: agent $agent_pid, job $job_pid, user@$uid $mgr_pid, dockerd $docker_pid"

# Drift that makes apply restart the user's manager: its mount drop-in gone.
in_machine rm "/etc/systemd/system/user@$uid.service.d/rootless-ci-mount.conf"
run_json apply2 apply
sed 's/^/# stderr: /' "$TEST_TMP/apply2.err"
assert_eq 0 "$rc" "apply exits 0"
echo "# apply with the manager's restart took $ms ms"
assert_eq change "$(jq -r '.items[] | select(.id == "daemon.user-manager") | .status' "$TEST_TMP/apply2.json")" \
	"apply restarted user@$uid.service itself"
mgr_pid2=$(in_machine systemctl show -p MainPID --value "user@$uid.service")
[[ $mgr_pid2 != "$mgr_pid" && $mgr_pid2 != 0 ]] || fail "user@$uid.service was not restarted (MainPID $mgr_pid2)"
ok "user@$uid.service runs again with a new process ($mgr_pid -> $mgr_pid2)"

assert_eq "$agent_pid" "$(in_machine systemctl show -p MainPID --value buildkite-agent.service)" \
	"the agent was not restarted with the manager (MainPID $agent_pid)"
in_machine kill -0 "$job_pid" || fail "the running job (PID $job_pid) did not survive the manager's restart"
ok "the running job (PID $job_pid) survived the manager's restart"
assert_eq "" "$(in_machine grep cancelled /var/tmp/rci-standin/job.log || true)" "the job was not cancelled"
assert_eq ok "$(jq -r '.items[] | select(.id == "agent.service") | .status' "$TEST_TMP/apply2.json")" \
	"apply's agent step had nothing to restart"

# The job goes on: once the daemon is back, its containers run.
in_machine touch /var/tmp/rci-standin/job.go
for ((i = 0; i < 180; i++)); do
	in_machine grep -q finished /var/tmp/rci-standin/job.log && break
	sleep 0.5
done
sed 's/^/#   job: /' <(in_machine cat /var/tmp/rci-standin/job.log)
assert_contains "$(in_machine cat /var/tmp/rci-standin/job.log)" "container-ran-as-0" \
	"the job ran a container after the restart, through the new daemon"
[[ $(ci_docker_pid) != "$docker_pid" ]] || fail "the daemon was not restarted with its manager (the test proves nothing)"
ok "the daemon was restarted with its manager ($docker_pid -> $(ci_docker_pid))"

# And a direct restart of the manager, as an operator would do it.
agent_pid=$(in_machine systemctl show -p MainPID --value buildkite-agent.service)
in_machine systemctl restart "user@$uid.service"
assert_eq "$agent_pid" "$(in_machine systemctl show -p MainPID --value buildkite-agent.service)" \
	"systemctl restart user@$uid.service leaves the agent running"
assert_eq 0 "$(in_machine rootless-ci wait --ready-timeout=60 >/dev/null 2>&1; echo $?)" "the daemon answers again"
in_machine rootless-ci check >/dev/null 2>"$TEST_TMP/check.err" || { sed 's/^/# /' "$TEST_TMP/check.err"; fail "check fails"; }
ok "check passes"

deps=$(in_machine systemctl show -p Requires -p Wants -p After -p BindsTo -p PartOf buildkite-agent.service)
while IFS= read -r l; do echo "#   $l"; done <<<"$deps"
assert_contains "$(grep '^Wants=' <<<"$deps")" "user@$uid.service" "the agent wants user@$uid.service"
assert_contains "$(grep '^After=' <<<"$deps")" "user@$uid.service" "the agent is ordered after user@$uid.service"
for p in Requires BindsTo PartOf; do
	if grep "^$p=" <<<"$deps" | grep -qF "user@$uid.service"; then
		fail "the agent has $p=user@$uid.service: a restart of the manager restarts the agent"
	fi
done
ok "no Requires=, BindsTo= or PartOf= on user@$uid.service"

echo "PASS: $TEST_NAME"
