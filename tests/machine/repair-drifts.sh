#!/bin/bash
# repair-drifts: on one converged machine, each drift an operator meets in
# the field, one after the other: `check` exits 1 naming the drifted item
# by its id, `apply` repairs it, `check` passes again, and a second apply
# changes nothing. One boot for all of them keeps the tier's time down;
# every drift is asserted on its own lines.
#
# Then, on the same machine, the host gains a second, untrusted tenant (its
# first user stays as the trusted tenant main, with its agent unit as it
# was and its own configuration file): apply adds it without restarting main's
# daemon, and the drifts that are per tenant are repeated on the new
# tenant's objects, each named by its id with ":pr".

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

machine_begin

CI=$CI_USER
machine_data_disk
# The agent's configuration as its package leaves it, so the agent step has a tree to secure.
in_machine install -d -m 0755 /etc/buildkite-agent/hooks
printf 'token="xxx"\n' | in_machine install -m 0644 /dev/stdin /etc/buildkite-agent/buildkite-agent.cfg

status_of() { # status_of NAME ID: the status of item ID ("" when absent, "N items" when not unique)
	jq -r --arg id "$2" '[.items[] | select(.id == $id)] |
		if length == 1 then .[0].status elif length == 0 then "" else "\(length) items" end' "$TEST_TMP/$1.json"
}
show_err() { sed 's/^/#   stderr: /' "$TEST_TMP/$1.err"; }
ci_docker() { in_machine systemctl --user -M "$CI@" "$@"; }

run_json apply0 apply
show_err apply0
assert_eq 0 "$rc" "first apply converges the machine"
run_json check0 check
assert_eq 0 "$rc" "check passes on the converged machine"
dups=$(jq -r '[.items[].id] | group_by(.) | map(select(length > 1) | .[0]) | join(" ")' "$TEST_TMP/check0.json")
assert_eq "" "$dups" "every check item has an id of its own"

# repair NAME ID DRIFT-COMMAND...: drift, then the four assertions.
repair() {
	local name=$1 id=$2
	shift 2
	echo "# drift: $name"
	"$@"
	run_json "$name-plan" plan
	assert_eq 0 "$rc" "$name: plan exits 0"
	run_json "$name-check" check
	[[ $rc -eq 1 ]] || { show_err "$name-check"; jq -c '.items[] | select(.status == "fail")' "$TEST_TMP/$name-check.json"; }
	assert_eq 1 "$rc" "$name: check exits 1"
	assert_eq fail "$(status_of "$name-check" "$id")" "$name: check names $id"
	jq -r '.items[] | select(.status == "fail") | "#   FAIL \(.id): \(.message) [fix: \(.fix)]"' "$TEST_TMP/$name-check.json"
	run_json "$name-apply" apply
	[[ $rc -eq 0 ]] || show_err "$name-apply"
	assert_eq 0 "$rc" "$name: apply repairs it"
	jq -r '.items[] | select(.changed) | "#   \(.status) \(.id): \(.message)"' "$TEST_TMP/$name-apply.json"
	# plan listed, by id, everything apply then changed.
	unplanned=$(jq -r --slurpfile plan "$TEST_TMP/$name-plan.json" '
		($plan[0].items | map(select(.status == "create" or .status == "change" or .status == "remove") | .id)) as $p |
		[.items[] | select(.changed) | .id | select(. as $id | $p | index($id) | not)] | join(" ")' \
		"$TEST_TMP/$name-apply.json")
	assert_eq "" "$unplanned" "$name: plan listed every change apply made"
	run_json "$name-recheck" check
	[[ $rc -eq 0 ]] || jq -c '.items[] | select(.status == "fail")' "$TEST_TMP/$name-recheck.json"
	assert_eq 0 "$rc" "$name: check passes after the repair"
	run_json "$name-again" apply
	[[ $(jq -r .changed "$TEST_TMP/$name-again.json") == false ]] ||
		jq -c '.items[] | select(.changed)' "$TEST_TMP/$name-again.json"
	assert_eq "0 false" "$rc $(jq -r .changed "$TEST_TMP/$name-again.json")" "$name: a second apply changes nothing"
}

drift_unit_deleted() { in_machine rm /etc/systemd/user/docker.service; }
drift_unit_edited() { in_machine sed -i 's/^RestartSec=.*/RestartSec=30s/' /etc/systemd/user/docker.service; }
drift_linger_off() { in_machine loginctl disable-linger "$CI"; }
drift_daemon_stopped() { ci_docker stop docker.service; }
# Restart it until its manager refuses: StartLimitBurst=3 per 60 s, so the
# fourth start within the minute hits the limit, as a crash loop does.
# (Each restart waits for the start, so the result before is "success" and
# the refusal shows as Result=start-limit-hit.)
drift_start_limit() {
	for _ in $(seq 6); do
		[[ $(ci_docker show -p Result --value docker.service) == start-limit-hit ]] && break
		ci_docker restart docker.service 2>/dev/null || true
	done
	echo "#   docker.service: $(ci_docker show -p ActiveState,Result docker.service | tr '\n' ' ')"
	[[ $(ci_docker show -p Result --value docker.service) == start-limit-hit ]] ||
		fail "could not drive docker.service into start-limit-hit"
}
drift_docker_group() { in_machine usermod -aG docker "$CI"; }
drift_root_socket() { in_machine systemctl unmask docker.socket docker.service && in_machine systemctl enable --now docker.socket; }
drift_root_service() { in_machine systemctl unmask docker.service && in_machine systemctl enable docker.service; }
drift_unmounted() { ci_docker stop docker.service && in_machine umount /srv/rootless-ci; }
drift_fstab_deleted() { in_machine sed -i '/x-rootless-ci/d' /etc/fstab; }
drift_fstab_edited() { in_machine sed -i '/x-rootless-ci/s/nofail,//' /etc/fstab; }
drift_link_removed() { in_machine rm "/home/$CI/.local/share/docker"; }
drift_link_repointed() { in_machine ln -sfn /var/lib/docker "/home/$CI/.local/share/docker"; }
drift_storage_open() { in_machine chmod 0755 "/srv/rootless-ci/$CI/docker"; }
drift_subuid_deleted() { in_machine sed -i "/^$CI:/d" /etc/subuid; }
# The user's subordinate ranges moved ten blocks up (valid, so the user step
# keeps them) while its daemon runs with the old ones: invariant I2 broken.
drift_subids_moved() {
	local f start
	for f in /etc/subuid /etc/subgid; do
		start=$(in_machine sed -n "s/^$CI:\([0-9]*\):.*/\1/p" "$f")
		in_machine sed -i "s/^$CI:$start:/$CI:$((start + 655360)):/" "$f"
	done
}
drift_agent_dropin() { in_machine rm /etc/systemd/system/buildkite-agent.service.d/zz-rootless-ci.conf; }
drift_agent_chown() { in_machine chown -R "$CI" /etc/buildkite-agent; }

repair unit-deleted daemon.unit drift_unit_deleted
repair unit-edited daemon.unit drift_unit_edited
repair linger-off daemon.linger drift_linger_off
repair daemon-stopped daemon.service drift_daemon_stopped
repair start-limit-hit daemon.service drift_start_limit
assert_contains "$(jq -r '.items[] | select(.id == "daemon.service") | .message' "$TEST_TMP/start-limit-hit-check.json")" \
	"start-limit-hit" "start-limit-hit: check says why the daemon is down"
repair docker-group user.groups drift_docker_group
repair root-socket-enabled daemon.root-docker.socket drift_root_socket
repair root-service-enabled daemon.root-docker.service drift_root_service
repair unmounted disk.mount drift_unmounted
# systemd's reloads so far ("Reloading." from PID 1 in the journal).
reloads() { in_machine journalctl -b _PID=1 -o cat | grep -cx 'Reloading\.' || true; }
# An fstab repair owes systemd a reload: it is made once, by the first step
# that would reload anyway or by the engine at the end (plan, check and the
# second apply of repair() make none).
r0=$(reloads)
repair fstab-deleted disk.fstab drift_fstab_deleted
assert_eq 1 "$(($(reloads) - r0))" "fstab-deleted: one daemon-reload in all"
r0=$(reloads)
repair fstab-edited disk.fstab drift_fstab_edited
assert_eq 1 "$(($(reloads) - r0))" "fstab-edited: one daemon-reload in all"
repair link-removed storage.home-link drift_link_removed
repair link-repointed storage.home-link drift_link_repointed
repair storage-0755 storage.docker drift_storage_open
repair subuid-deleted user.subuid drift_subuid_deleted
repair subids-moved daemon.userns drift_subids_moved
repair agent-dropin-deleted agent.dropin drift_agent_dropin
repair agent-config-chowned agent.config:/etc/buildkite-agent drift_agent_chown

assert_eq hello "$(as_ci sh -c 'docker import /var/lib/rootless-ci-test/busybox.tar rci-bb >/dev/null &&
	docker run --rm rci-bb echo hello')" "after every repair the CI user's Docker runs containers"

# ---------------------------------------------------------------- a second tenant
PR=$PR_USER
# Each tenant's agent configuration in a file of its own (the package's own
# buildkite-agent.cfg is no tenant's); main keeps its agent unit.
for t in "$MAIN_TENANT" "$PR_TENANT"; do
	printf 'token="%s"\n' "$t" | in_machine install -m 0644 /dev/stdin "/etc/buildkite-agent/$t.cfg"
done
machine_two_tenants AgentUnit=buildkite-agent.service
main_pid=$(user_docker_pid "$CI")
run_json tenants-apply apply
[[ $rc -eq 0 ]] || { show_err tenants-apply; jq -c '.items[] | select(.status == "fail")' "$TEST_TMP/tenants-apply.json"; }
assert_eq 0 "$rc" "two tenants: apply adds tenant $PR_TENANT ($PR) to the converged host"
# main's agent now reads its own file (its drop-in and that file change);
# its user, storage and daemon must not.
unexpected=$(jq -r '[.items[] | select(.changed and .tenant == "main" and .step != "agent") | .id] | join(" ")' \
	"$TEST_TMP/tenants-apply.json")
[[ -z $unexpected ]] || jq -c '.items[] | select(.changed)' "$TEST_TMP/tenants-apply.json"
assert_eq "" "$unexpected" "two tenants: adding $PR_TENANT changed nothing of main's user, storage or daemon"
run_json tenants-check check
[[ $rc -eq 0 ]] || jq -c '.items[] | select(.status == "fail")' "$TEST_TMP/tenants-check.json"
assert_eq 0 "$rc" "two tenants: check passes"
run_json tenants-again apply
assert_eq "0 false" "$rc $(jq -r .changed "$TEST_TMP/tenants-again.json")" "two tenants: a second apply changes nothing"
pr_docker() { in_machine systemctl --user -M "$PR@" "$@"; }
drift_pr_linger_off() { in_machine loginctl disable-linger "$PR"; }
drift_pr_daemon_stopped() { pr_docker stop docker.service; }
drift_pr_docker_group() { in_machine usermod -aG docker "$PR"; }
drift_pr_link_removed() { in_machine rm "/home/$PR/.local/share/docker"; }
drift_pr_storage_open() { in_machine chmod 0755 "/srv/rootless-ci/$PR/docker"; }
drift_pr_subuid_deleted() { in_machine sed -i "/^$PR:/d" /etc/subuid; }
# Past every range in the file (ten blocks up could land on main's, which
# subids-moved above moved there: overlapping ranges are another refusal).
drift_pr_subids_moved() {
	local f start top
	for f in /etc/subuid /etc/subgid; do
		start=$(in_machine sed -n "s/^$PR:\([0-9]*\):.*/\1/p" "$f")
		# shellcheck disable=SC2016 # awk's fields
		top=$(in_machine awk -F: '{e = $2 + $3; if (e > m) m = e} END {print m}' "$f")
		in_machine sed -i "s/^$PR:$start:/$PR:$((top + 655360)):/" "$f"
	done
}
drift_pr_agent_dropin() { in_machine rm "/etc/systemd/system/buildkite-agent@$PR_TENANT.service.d/zz-rootless-ci.conf"; }
drift_pr_agent_config() { in_machine chown "$PR" "/etc/buildkite-agent/$PR_TENANT.cfg"; }
repair pr-linger-off "daemon.linger:$PR_TENANT" drift_pr_linger_off
repair pr-daemon-stopped "daemon.service:$PR_TENANT" drift_pr_daemon_stopped
repair pr-docker-group "user.groups:$PR_TENANT" drift_pr_docker_group
repair pr-link-removed "storage.home-link:$PR_TENANT" drift_pr_link_removed
repair pr-storage-0755 "storage.docker:$PR_TENANT" drift_pr_storage_open
repair pr-subuid-deleted "user.subuid:$PR_TENANT" drift_pr_subuid_deleted
repair pr-subids-moved "daemon.userns:$PR_TENANT" drift_pr_subids_moved
repair pr-agent-dropin-deleted "agent.dropin:$PR_TENANT" drift_pr_agent_dropin
repair pr-agent-config-chowned "agent.config-file:$PR_TENANT" drift_pr_agent_config
assert_eq "$main_pid" "$(user_docker_pid "$CI")" "two tenants: main's daemon ran through the new tenant and all its repairs (MainPID $main_pid)"
for u in "$CI" "$PR"; do
	assert_eq hello "$(as_user "$u" sh -c 'docker image inspect rci-bb >/dev/null 2>&1 ||
		docker import /var/lib/rootless-ci-test/busybox.tar rci-bb >/dev/null && docker run --rm rci-bb echo hello')" \
		"two tenants: $u's Docker runs containers"
done

echo "PASS: $TEST_NAME"
