#!/bin/bash
# agent-tenants: two tenants (main trusted, pr untrusted), each with its own
# agent instance of the package's template unit (a stand-in of the same
# shape: User=buildkite-agent, "start --name %H-%i"). After apply, with a
# real systemd: each instance runs as its tenant's user with its own
# DOCKER_HOST, builds path and configuration file; pr's agent, and so every
# job it runs, has the untrusted environment (clean checkout, no local
# hooks, git with hooks and fsmonitor off) and main's has none of it; a
# .git/hooks/post-checkout planted in a checkout does not run when git runs
# in pr's agent environment (control: it runs without that environment);
# each tenant's configuration file is root:<its group> 0640, readable by its
# own user and not by the other tenant's; a missing one is a warning and is
# not created. Another apply changes nothing of the agents' and restarts
# neither.
#
# Needs the [Tenant] parser (issue 16, branch t-config): without it the
# configuration is refused (exit 2) and the test skips, saying so.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=tests/machine/agent-standin.sh
source "$(dirname "$0")/agent-standin.sh"

machine_begin
machine_data_disk

standin_install
# The package's template unit, as it ships it, and a stand-in agent that
# reports the environment systemd hands it (and so every job), then proves
# what git does with it on a checkout with a planted hook.
in_machine sh -eu <<'SH'
cat >/lib/systemd/system/buildkite-agent@.service <<'UNIT'
[Unit]
Description=Buildkite Agent (%i) (stand-in for the package's template unit)
After=network.target

[Service]
Type=simple
User=buildkite-agent
Environment=HOME=/var/lib/buildkite-agent
ExecStart=/usr/local/bin/rci-tenant-agent start --name %H-%i
RestartSec=5
Restart=on-failure
TimeoutStartSec=10
TimeoutStopSec=0
KillMode=process

[Install]
WantedBy=multi-user.target
DefaultInstance=1
UNIT
cat >/usr/local/bin/rci-tenant-agent <<'AGENT'
#!/bin/sh
# Stand-in for "buildkite-agent start --name NAME": what systemd gave it.
name=$3
out=/var/tmp/rci-standin/tenant.$name
tmp=$out.tmp.$$
{
	echo "uid=$(id -u)"
	env | grep -E '^(DOCKER_HOST|BUILDKITE_[A-Z_]*|GIT_CONFIG_[A-Z_0-9]*|HOME)=' | sort
	# A checkout an earlier job poisoned: a hook git runs at every checkout.
	repo=$BUILDKITE_BUILD_PATH/poisoned
	rm -rf "$repo" && mkdir -p "$repo" && cd "$repo"
	git init -q . && git -c user.email=t@t -c user.name=t commit -q --allow-empty -m one
	printf '#!/bin/sh\necho ran >>"%s/.git/hook.log"\n' "$repo" >.git/hooks/post-checkout
	chmod +x .git/hooks/post-checkout
	git checkout -q -b next && echo "checkout=done"
	if [ -e .git/hook.log ]; then echo "hook=ran"; else echo "hook=did-not-run"; fi
	# The control: the same checkout without the agent's GIT_CONFIG_*.
	env -u GIT_CONFIG_COUNT git checkout -q -b control
	echo "hooks-ran-with-control=$(cat .git/hook.log 2>/dev/null | wc -l)"
} >"$tmp" 2>&1
mv "$tmp" "$out"
exec sleep infinity
AGENT
chmod 0755 /usr/local/bin/rci-tenant-agent
printf 'token="rci-main-token-31c7"\n' >/etc/buildkite-agent/main.cfg
chown buildkite-agent: /etc/buildkite-agent/main.cfg
chmod 0644 /etc/buildkite-agent/main.cfg
cat >>/etc/rootless-ci.conf <<'CONF'

[Tenant]
Name=main
User=buildkite
Trust=trusted

[Tenant]
Name=pr
User=buildkite-pr
CONF
SH
in_machine systemctl daemon-reload

run_json plan plan
if [[ $rc -eq 2 ]] && grep -q "Tenant" "$TEST_TMP/plan.err"; then
	sed 's/^/# /' "$TEST_TMP/plan.err"
	skip "this build does not read [Tenant] sections yet (the parser is issue 16's branch t-config)"
fi

# pr's configuration file is missing: a warning in every verb, never created.
run_json apply1 apply
sed 's/^/# stderr: /' "$TEST_TMP/apply1.err"
jq -r '.items[] | select(.step == "agent") | "#   \(.status) \(.id): \(.message)"' "$TEST_TMP/apply1.json"
assert_eq 0 "$rc" "a two-tenant apply succeeds with pr's configuration file missing"
assert_eq warn "$(item "$TEST_TMP/apply1.json" agent.config-file:pr status)" "pr's missing configuration file is a warning"
in_machine test ! -e /etc/buildkite-agent/pr.cfg || fail "apply created pr's configuration file"
ok "apply did not create pr's configuration file (the token is the operator's)"
assert_eq change "$(item "$TEST_TMP/apply1.json" agent.config-file:main status)" "apply secured main's configuration file"
assert_eq "root:buildkite 640" "$(in_machine stat -c '%U:%G %a' /etc/buildkite-agent/main.cfg)" \
	"main's configuration file is root:buildkite 0640"
assert_eq "root:root 640" "$(in_machine stat -c '%U:%G %a' /etc/buildkite-agent/buildkite-agent.cfg)" \
	"the package's own configuration file is root:root 0640 with tenants"

# The operator writes pr's file as the warning says; apply gives it pr's group.
in_machine sh -c 'printf "token=\"rci-pr-token-8a2f\"\n" >/etc/buildkite-agent/pr.cfg'
run_json apply2 apply
assert_eq 0 "$rc" "apply after pr's file was written"
assert_eq "root:buildkite-pr 640" "$(in_machine stat -c '%U:%G %a' /etc/buildkite-agent/pr.cfg)" \
	"pr's configuration file is root:buildkite-pr 0640"

# Who reads which token, by effect; root reading both is the control.
in_machine grep -q rci-main-token /etc/buildkite-agent/main.cfg || fail "the control: main's token is not in main.cfg"
in_machine runuser -u buildkite -- grep -q rci-main-token /etc/buildkite-agent/main.cfg ||
	fail "main's user cannot read its own configuration"
ok "main's user reads its own configuration"
in_machine runuser -u buildkite-pr -- grep -q rci-pr-token /etc/buildkite-agent/pr.cfg ||
	fail "pr's user cannot read its own configuration"
ok "pr's user reads its own configuration"
if in_machine runuser -u buildkite-pr -- cat /etc/buildkite-agent/main.cfg >/dev/null 2>&1; then
	fail "pr's user can read main's token"
fi
ok "pr's user cannot read main's configuration (its token)"
if in_machine runuser -u buildkite -- cat /etc/buildkite-agent/pr.cfg >/dev/null 2>&1; then
	fail "main's user can read pr's token"
fi
ok "main's user cannot read pr's configuration"

# Both instances, started as an operator does, with a real systemd.
main_uid=$(in_machine id -u buildkite)
pr_uid=$(in_machine id -u buildkite-pr)
in_machine systemctl start buildkite-agent@main.service buildkite-agent@pr.service
host=$(in_machine hostname)
main=$(standin_wait_report "tenant.$host-main")
pr=$(standin_wait_report "tenant.$host-pr")
while IFS= read -r l; do echo "#   main: $l"; done <<<"$main"
while IFS= read -r l; do echo "#   pr: $l"; done <<<"$pr"

assert_contains "$main" "uid=$main_uid" "main's agent runs as buildkite"
assert_contains "$main" "DOCKER_HOST=unix:///run/user/$main_uid/docker.sock" "main's agent talks to main's daemon"
assert_contains "$main" "BUILDKITE_AGENT_CONFIG=/etc/buildkite-agent/main.cfg" "main's agent reads main.cfg"
assert_contains "$main" "BUILDKITE_BUILD_PATH=/srv/rootless-ci/buildkite/builds" "main's builds are under its user"
assert_contains "$main" "BUILDKITE_ADDITIONAL_HOOKS_PATHS=/usr/share/rootless-ci/hooks" "main's agent runs rootless-ci's hooks"
[[ $main != *GIT_CONFIG_* && $main != *BUILDKITE_NO_LOCAL_HOOKS* && $main != *BUILDKITE_CLEAN_CHECKOUT* ]] ||
	fail "main (trusted) got the untrusted environment"
ok "main (trusted) has none of the untrusted environment"
assert_contains "$main" "hook=ran" "the control: in main's environment the planted post-checkout hook runs"
assert_contains "$main" "hooks-ran-with-control=2" "the control: and at the next checkout again"

assert_contains "$pr" "uid=$pr_uid" "pr's agent runs as buildkite-pr"
assert_contains "$pr" "DOCKER_HOST=unix:///run/user/$pr_uid/docker.sock" "pr's agent talks to pr's daemon"
assert_contains "$pr" "BUILDKITE_AGENT_CONFIG=/etc/buildkite-agent/pr.cfg" "pr's agent reads pr.cfg"
assert_contains "$pr" "BUILDKITE_BUILD_PATH=/srv/rootless-ci/buildkite-pr/builds" "pr's builds are under its user"
assert_contains "$pr" "BUILDKITE_ADDITIONAL_HOOKS_PATHS=/usr/share/rootless-ci/hooks" "pr's agent runs rootless-ci's hooks"
assert_contains "$pr" "BUILDKITE_CLEAN_CHECKOUT=true" "pr's agent checks out afresh for every job"
assert_contains "$pr" "BUILDKITE_NO_LOCAL_HOOKS=true" "pr's agent runs no repository hooks"
assert_contains "$pr" "GIT_CONFIG_COUNT=2" "pr's git configuration count"
assert_contains "$pr" "GIT_CONFIG_KEY_0=core.hooksPath" "pr's git: core.hooksPath"
assert_contains "$pr" "GIT_CONFIG_VALUE_0=/dev/null" "pr's git: hooks from /dev/null"
assert_contains "$pr" "GIT_CONFIG_KEY_1=core.fsmonitor" "pr's git: core.fsmonitor"
assert_contains "$pr" "GIT_CONFIG_VALUE_1=false" "pr's git: fsmonitor off"
assert_contains "$pr" "checkout=done" "git checked out in pr's environment"
assert_contains "$pr" "hook=did-not-run" "a post-checkout hook planted in pr's checkout did not run"
assert_contains "$pr" "hooks-ran-with-control=1" "the control: without the agent's GIT_CONFIG_* the same hook runs"

# Converged: nothing of the agents' changes, neither restarts.
pid_main=$(in_machine systemctl show -p MainPID --value buildkite-agent@main.service)
pid_pr=$(in_machine systemctl show -p MainPID --value buildkite-agent@pr.service)
run_json apply3 apply
jq -r '.items[] | select(.status == "change" or .status == "create" or .status == "remove") |
	"#   changed: \(.status) \(.id): \(.message)"' "$TEST_TMP/apply3.json"
assert_eq 0 "$rc" "a third apply succeeds"
# The agent's items only: the whole host converging with two tenants is the
# two-tenant apply's proof, not this test's.
assert_eq 0 "$(jq '[.items[] | select(.step == "agent" and (.status == "change" or .status == "create" or
	.status == "remove"))] | length' "$TEST_TMP/apply3.json")" "a third apply changes nothing of the agents'"
assert_eq "$pid_main" "$(in_machine systemctl show -p MainPID --value buildkite-agent@main.service)" \
	"main's agent was not restarted"
assert_eq "$pid_pr" "$(in_machine systemctl show -p MainPID --value buildkite-agent@pr.service)" \
	"pr's agent was not restarted"
run_json check check
jq -r '.items[] | select(.step == "agent" or .status == "fail") | "#   \(.status) \(.id): \(.message)"' \
	"$TEST_TMP/check.json"
assert_eq 0 "$(jq '[.items[] | select(.step == "agent" and .status == "fail")] | length' "$TEST_TMP/check.json")" \
	"check: no item of the agents' fails"
assert_eq pass "$(item "$TEST_TMP/check.json" agent.config-file:pr status)" "check: pr's configuration file"
assert_eq pass "$(item "$TEST_TMP/check.json" agent.dropin:pr status)" "check: pr's drop-in"
