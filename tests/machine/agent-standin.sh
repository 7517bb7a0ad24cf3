# shellcheck shell=bash
# tests/machine/agent-standin.sh — sourced by the agent-* machine tests.
#
# The Buildkite agent is not in Debian, so this installs a stand-in the way
# its package does: a system user buildkite-agent, a unit named
# buildkite-agent.service with the package's User= and HOME, and
# /etc/buildkite-agent (configuration with a recognisable token, a hooks
# directory with a hook) chowned to that user as the package's postinst
# does. Its ExecStart is a script that uses only the environment systemd
# hands it: it writes `id -u`, DOCKER_HOST, BUILDKITE_BUILD_PATH and the
# result of `docker run` of the imported busybox image to
# /var/tmp/rci-standin/report.UID, then sleeps. If a test wrote
# /var/tmp/rci-standin/job.sh before the agent started, the stand-in runs it
# in the background as a long "job" (its PID in job.pid) and, like the real
# agent, cancels it when it is stopped ("cancelled" in job.log).

STANDIN_TOKEN=rci-standin-token-7d1e5c93a04b

standin_install() {
	in_machine sh -eu <<'SH'
useradd --system --home-dir /var/lib/buildkite-agent --create-home --shell /usr/sbin/nologin buildkite-agent
install -d -m 1777 /var/tmp/rci-standin
cat >/usr/bin/buildkite-agent <<'AGENT'
#!/bin/sh
# Stand-in for "buildkite-agent start": only what systemd gave it.
out=/var/tmp/rci-standin/report.$(id -u)
tmp=$out.tmp.$$
{
	echo "uid=$(id -u)"
	echo "DOCKER_HOST=${DOCKER_HOST:-}"
	echo "BUILDKITE_BUILD_PATH=${BUILDKITE_BUILD_PATH:-}"
	echo "HOME=${HOME:-}"
	echo "BUILDKITE_AGENT_CONFIG=${BUILDKITE_AGENT_CONFIG:-}"
	echo "BUILDKITE_NO_LOCAL_HOOKS=${BUILDKITE_NO_LOCAL_HOOKS:-}"
	echo "BUILDKITE_CLEAN_CHECKOUT=${BUILDKITE_CLEAN_CHECKOUT:-}"
	env | grep '^GIT_CONFIG_' | sort
	echo "container=$(docker run --rm rci-busybox sh -c 'echo ran-as-$(id -u)' 2>&1 | tr '\n' ' ')"
} >"$tmp"
mv "$tmp" "$out"
# A job, when a test left one: run in the background as the real agent runs
# its job, and cancelled when the agent is stopped, as the real agent does.
job=/var/tmp/rci-standin/job.sh
if [ -e "$job" ]; then
	sh "$job" &
	jobpid=$!
	echo "$jobpid" >/var/tmp/rci-standin/job.pid
	trap 'kill "$jobpid" 2>/dev/null; echo "cancelled: the agent was stopped" >>/var/tmp/rci-standin/job.log; exit 0' TERM
	while :; do sleep 1; done
fi
exec sleep infinity
AGENT
chmod 0755 /usr/bin/buildkite-agent
cat >/lib/systemd/system/buildkite-agent.service <<'UNIT'
[Unit]
Description=Buildkite Agent (stand-in for the package's unit)
Documentation=https://buildkite.com/agent
After=syslog.target
After=network.target

[Service]
Type=simple
User=buildkite-agent
Environment=HOME=/var/lib/buildkite-agent
ExecStart=/usr/bin/buildkite-agent start
RestartSec=5
Restart=on-failure
RestartForceExitStatus=SIGPIPE
TimeoutStartSec=10
TimeoutStopSec=0
KillMode=process

[Install]
WantedBy=multi-user.target
UNIT
mkdir -p /etc/buildkite-agent/hooks /etc/buildkite-agent/plugins
cat >/etc/buildkite-agent/buildkite-agent.cfg <<'CFG'
token="@TOKEN@"
name="%hostname-%spawn"
build-path="/var/lib/buildkite-agent/builds"
hooks-path="/etc/buildkite-agent/hooks"
plugins-path="/etc/buildkite-agent/plugins"
CFG
printf '#!/bin/sh\necho environment hook\n' >/etc/buildkite-agent/hooks/environment
printf '#!/bin/sh\n' >/etc/buildkite-agent/hooks/pre-command.sample
chmod 0755 /etc/buildkite-agent/hooks/environment
chmod 0775 /etc/buildkite-agent/hooks
chown -R buildkite-agent:buildkite-agent /etc/buildkite-agent
SH
	in_machine sed -i "s/@TOKEN@/$STANDIN_TOKEN/" /etc/buildkite-agent/buildkite-agent.cfg
}

# standin_wait_report NAME: /var/tmp/rci-standin/NAME, once a stand-in
# wrote it (waits up to 60 s for it).
standin_wait_report() {
	local i
	for ((i = 0; i < 120; i++)); do
		if in_machine test -e "/var/tmp/rci-standin/$1"; then
			in_machine cat "/var/tmp/rci-standin/$1"
			return 0
		fi
		sleep 0.5
	done
	echo "(no report $1 after 60 s)"
}

# standin_report UID: the report the stand-in wrote when it last ran as UID.
standin_report() {
	standin_wait_report "report.$1"
}

# standin_uid: the real UID of the agent unit's main process (empty if none).
standin_uid() {
	local pid
	pid=$(in_machine systemctl show -p MainPID --value buildkite-agent.service)
	[[ $pid != 0 ]] || return 0
	in_machine ps -o uid= -p "$pid" | tr -d ' '
}

# assert_standin_ran_as_ci UID: the stand-in, restarted, runs as the CI user
# and ran a container through DOCKER_HOST.
assert_standin_ran_as_ci() {
	local uid=$1 report e
	in_machine rm -f "/var/tmp/rci-standin/report.$uid"
	in_machine systemctl restart buildkite-agent.service
	report=$(standin_report "$uid")
	while IFS= read -r e; do echo "#   report: $e"; done <<<"$report"
	assert_eq "$uid" "$(standin_uid)" "the agent's process runs as the CI user (UID $uid)"
	assert_contains "$report" "uid=$uid" "the agent saw itself as UID $uid"
	assert_contains "$report" "DOCKER_HOST=unix:///run/user/$uid/docker.sock" "the agent's DOCKER_HOST is the CI user's socket"
	assert_contains "$report" "BUILDKITE_BUILD_PATH=/srv/rootless-ci/$CI_USER/builds" "the builds path is on the data disk"
	assert_contains "$report" "HOME=/home/$CI_USER" "the package's HOME is overridden by the CI user's"
	assert_contains "$report" "container=ran-as-0" "the agent ran a container through DOCKER_HOST (root inside)"
}

# assert_etc_not_writable_by_ci: every directory and file below
# /etc/buildkite-agent resists the CI user, judged by effect.
assert_etc_not_writable_by_ci() {
	local before after entries n=0 e
	before=$(in_machine sh -c 'find /etc/buildkite-agent -exec stat -c "%n %U:%G %a %s" {} + | sort; find /etc/buildkite-agent -type f -exec sha256sum {} + | sort')
	entries=$(in_machine find /etc/buildkite-agent '(' -type f -o -type d ')' -print)
	while read -r e; do
		[[ -n $e ]] || continue
		n=$((n + 1))
		if in_machine test -d "$e"; then
			as_ci sh -c "touch '$e/.rci-probe'; mkdir '$e/.rci-probe-dir'; mv '$e' '$e.moved'" >/dev/null 2>&1 || true
		else
			as_ci sh -c "echo pwned >>'$e'; echo pwned >'$e'; chmod 0777 '$e'; rm -f '$e'; mv '$e' '$e.moved'" >/dev/null 2>&1 || true
		fi
	done <<<"$entries"
	after=$(in_machine sh -c 'find /etc/buildkite-agent -exec stat -c "%n %U:%G %a %s" {} + | sort; find /etc/buildkite-agent -type f -exec sha256sum {} + | sort')
	if [[ $before != "$after" ]]; then
		diff <(echo "$before") <(echo "$after") | sed 's/^/#   /'
		fail "the CI user changed something under /etc/buildkite-agent"
	fi
	in_machine test ! -e /etc/buildkite-agent.moved || fail "the CI user renamed /etc/buildkite-agent"
	ok "the CI user could change none of the $n entries under /etc/buildkite-agent (append, truncate, chmod, rm, mv, create)"
	as_ci sh -c 'wc -c </etc/buildkite-agent/buildkite-agent.cfg' >/dev/null ||
		fail "the CI user (the agent) cannot read its configuration"
	ok "the CI user (the agent) can read its configuration"
	in_machine setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'wc -c </etc/buildkite-agent/buildkite-agent.cfg' >/dev/null 2>&1 &&
		fail "nobody (another user) can read the configuration holding the token"
	ok "another user cannot read the configuration holding the token"
}

# standin_install_template: the package's template unit for agent instances
# (buildkite-agent@NAME.service, one per tenant): standin_install's unit
# (the package hard-codes User=buildkite-agent in both) with its own
# Description= and DefaultInstance=1 added to [Install], its last section.
# After standin_install.
standin_install_template() {
	in_machine sh -eu <<'SH'
t=/lib/systemd/system/buildkite-agent@.service
sed -e "s/^Description=.*/Description=Buildkite Agent (%i) (stand-in for the package's template unit)/" \
	/lib/systemd/system/buildkite-agent.service >"$t.tmp"
echo DefaultInstance=1 >>"$t.tmp"
mv "$t.tmp" "$t"
systemctl daemon-reload
SH
}
