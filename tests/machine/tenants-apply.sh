#!/bin/bash
# tenants-apply: one apply on a fresh machine with two [Tenant] sections
# (issue 16) gives each tenant's user its own subordinate ranges, disjoint
# from the other's, its own storage subtree and home closed to the other, and
# its own rootless Docker run by its own manager from the one unit, its
# socket its own; the host's items are reported once, each tenant's with
# its name. A second apply changes nothing and restarts no daemon, and check
# passes. The cross-tenant escape proofs are tenants-escapes.sh's (t-proofs).
#
# The user, storage and daemon steps are what this test is about: it runs
# those (and preflight and disk before them) with the test hook
# RCI_ONLY_STEPS, so that the agent's steps, with tenants another branch's
# work, neither add to nor hide what it proves.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

STEPS=preflight,disk,user,storage,daemon
MAIN=buildkite
PR=buildkite-pr

need_test_hooks
machine_begin
machine_data_disk
in_machine sh -c "cat >>/etc/rootless-ci.conf" <<EOF

[Tenant]
Name=main
User=$MAIN
Trust=trusted

[Tenant]
Name=pr
User=$PR
EOF

# This build must know [Tenant] (the parser is its own branch of the work).
set +e
out=$(in_machine rootless-ci plan 2>&1)
rc=$?
set -e
if [[ $rc -eq 2 && $out == *Tenant* ]]; then
	skip "this build does not parse [Tenant] sections yet: $(head -n1 <<<"$out")"
fi

docker_pid() {
	as_user "$1" systemctl --user show --property=MainPID --value docker.service
}

# ---- the first apply
set +e
in_machine env RCI_ONLY_STEPS=$STEPS rootless-ci --json apply >"$TEST_TMP/apply1.json" 2>"$TEST_TMP/apply1.err"
rc=$?
set -e
jq -r '.items[] | "#   \(.status) \(.id): \(.message)"' "$TEST_TMP/apply1.json" || sed 's/^/# /' "$TEST_TMP/apply1.json"
[[ $rc -eq 0 ]] || sed 's/^/# stderr: /' "$TEST_TMP/apply1.err"
assert_eq 0 "$rc" "the first apply with two tenants exits 0"

# Ids: the host's once without a tenant, each tenant's with its name.
for id in daemon.unit daemon.delegate daemon.root-docker.service storage.mount-point; do
	status=$(item "$TEST_TMP/apply1.json" "$id" status)
	[[ $status != missing && $status != *items ]] || fail "$id: $status"
	ok "$id is reported once, for the host ($status)"
	assert_eq "missing missing" "$(item "$TEST_TMP/apply1.json" "$id:main" status) $(item "$TEST_TMP/apply1.json" "$id:pr" status)" \
		"$id is not reported for a tenant"
done
for t in main pr; do
	for id in user.account user.subuid daemon.linger daemon.service storage.docker storage.builds; do
		assert_eq true "$(item "$TEST_TMP/apply1.json" "$id:$t" changed)" "$id:$t is the tenant's own, and changed"
	done
	assert_eq "$t" "$(jq -r --arg id "daemon.service:$t" '.items[] | select(.id == $id) | .tenant' "$TEST_TMP/apply1.json")" \
		"the JSON item daemon.service:$t names its tenant"
done

# ---- subordinate ranges: one each, disjoint

# range FILE USER: USER's start:count in FILE.
range() {
	# shellcheck disable=SC2016 # awk's fields
	in_machine awk -F: -v u="$2" '$1 == u { print $2 ":" $3 }' "$1"
}
main_range=$(range /etc/subuid "$MAIN")
pr_range=$(range /etc/subuid "$PR")
echo "# /etc/subuid: $MAIN $main_range, $PR $pr_range"
[[ -n $main_range && -n $pr_range ]] || fail "a tenant has no subordinate UIDs"
((${main_range%%:*} + ${main_range##*:} <= ${pr_range%%:*} || ${pr_range%%:*} + ${pr_range##*:} <= ${main_range%%:*})) ||
	fail "the tenants' subordinate UID ranges overlap: $main_range and $pr_range"
ok "the tenants' subordinate UID ranges are disjoint"
assert_eq "$(range /etc/subgid "$PR")" "$pr_range" \
	"$PR's subordinate GIDs start where its UIDs do"

# ---- storage and homes: each tenant's, closed to the other
for u in "$MAIN" "$PR"; do
	assert_eq "root 755" "$(in_machine stat -c '%U %a' "/srv/rootless-ci/$u")" "/srv/rootless-ci/$u is root's, 0755"
	assert_eq "$u 700" "$(in_machine stat -c '%U %a' "/srv/rootless-ci/$u/builds")" "$u's builds directory is its own, 0700"
	perm=$(in_machine stat -c '%U %G %a' "/srv/rootless-ci/$u/docker")
	[[ $perm == "$u $u 700" || $perm == "$u $u 710" ]] || fail "$u's docker directory is '$perm'"
	ok "$u's Docker data is its own ($perm)"
	assert_eq "$u 700" "$(in_machine stat -c '%U %a' "/home/$u")" "$u's home is its own, 0700"
done
in_machine findmnt -n -o SOURCE --target "/srv/rootless-ci/$PR/docker" | grep -qx "${DATA_DISK}p1" ||
	fail "$PR's Docker data is not on the data disk"
ok "$PR's Docker data is on the data disk"

# ---- a daemon each, from the one unit, its socket its own
assert_contains "$(in_machine cat /etc/systemd/user/docker.service)" "ConditionUser=|$MAIN"$'\n'"ConditionUser=|$PR" \
	"the one unit names each tenant's user"
for u in "$MAIN" "$PR"; do
	assert_eq active "$(as_user "$u" systemctl --user is-active docker.service)" "$u's docker.service is active"
	info=$(as_user "$u" docker info --format '{{json .SecurityOptions}} root={{.DockerRootDir}}')
	assert_contains "$info" "name=rootless" "$u's Docker is rootless"
	assert_eq "/srv/rootless-ci/$u/docker" "$(in_machine realpath "${info##*root=}")" "$u's Docker keeps its data in its own subtree"
	in_machine test -e "/var/lib/systemd/linger/$u" || fail "no linger for $u"
done
main_uid=$(in_machine id -u "$MAIN")
set +e
out=$(as_user "$PR" docker -H "unix:///run/user/$main_uid/docker.sock" version 2>&1)
rc=$?
set -e
[[ $rc -ne 0 ]] || fail "$PR reached $MAIN's Docker socket: $out"
ok "$PR cannot use $MAIN's Docker socket ($(tail -n1 <<<"$out"))"
assert_eq 0 "$(in_machine rootless-ci wait --user="$PR" --ready-timeout=30 >/dev/null 2>&1; echo $?)" \
	"rootless-ci wait --user=$PR answers for pr's daemon"

# ---- a second apply changes nothing, restarts nothing; check passes
pids_before="$(docker_pid "$MAIN") $(docker_pid "$PR")"
machine_snapshot "$TEST_TMP/before"
set +e
in_machine env RCI_ONLY_STEPS=$STEPS rootless-ci --json apply >"$TEST_TMP/apply2.json" 2>"$TEST_TMP/apply2.err"
rc=$?
set -e
assert_eq 0 "$rc" "the second apply exits 0"
changed=$(jq -r '[.items[] | select(.changed) | .id] | join(" ")' "$TEST_TMP/apply2.json")
assert_eq "" "$changed" "the second apply changes no item"
assert_eq false "$(jq -r .changed "$TEST_TMP/apply2.json")" "the second apply reports nothing changed"
machine_snapshot "$TEST_TMP/after"
assert_same_snapshot "$TEST_TMP/before" "$TEST_TMP/after" "the second apply leaves the machine as it was"
assert_eq "$pids_before" "$(docker_pid "$MAIN") $(docker_pid "$PR")" "neither tenant's daemon was restarted"
set +e
in_machine env RCI_ONLY_STEPS=$STEPS rootless-ci --json check >"$TEST_TMP/check.json" 2>/dev/null
rc=$?
set -e
jq -r '.items[] | select(.status == "fail") | "#   FAIL \(.id): \(.message)"' "$TEST_TMP/check.json"
assert_eq 0 "$rc" "check passes on both tenants"
assert_eq pass "$(item "$TEST_TMP/check.json" daemon.service:pr status)" "check: pr's daemon answers"
assert_eq pass "$(item "$TEST_TMP/check.json" daemon.userns:main status)" "check: main's daemon runs in its user namespace"

# ---- the one unit drifts: apply rewrites it once and restarts every tenant's daemon from it
in_machine sed -i 's/^TimeoutStopSec=.*/TimeoutStopSec=119s/' /etc/systemd/user/docker.service
set +e
in_machine env RCI_ONLY_STEPS=$STEPS rootless-ci --json apply >"$TEST_TMP/apply3.json" 2>"$TEST_TMP/apply3.err"
rc=$?
set -e
[[ $rc -eq 0 ]] || sed 's/^/# stderr: /' "$TEST_TMP/apply3.err"
assert_eq 0 "$rc" "apply after the unit drifted exits 0"
assert_eq "change" "$(item "$TEST_TMP/apply3.json" daemon.unit status)" "the unit is rewritten, once"
for t in main pr; do
	assert_eq true "$(item "$TEST_TMP/apply3.json" "daemon.service:$t" changed)" "$t's daemon is restarted for the new unit"
done
pids_after="$(docker_pid "$MAIN") $(docker_pid "$PR")"
echo "# daemon PIDs before: $pids_before, after: $pids_after"
[[ ${pids_after%% *} != "${pids_before%% *}" && ${pids_after##* } != "${pids_before##* }" ]] ||
	fail "not every tenant's daemon runs anew: $pids_before -> $pids_after"
ok "each tenant's daemon runs from the rewritten unit (new PIDs)"
assert_eq "" "$(in_machine sh -c 'ls /run/rootless-ci/ 2>/dev/null | grep restart || true')" "no restart marker is left"
assert_eq false "$(in_machine env RCI_ONLY_STEPS=$STEPS rootless-ci --json apply 2>/dev/null | jq -r .changed)" \
	"the next apply changes nothing"

# ---- a third tenant added: its own daemon; the others' running daemons are not restarted for it
pids_before="$(docker_pid "$MAIN") $(docker_pid "$PR")"
in_machine sh -c "printf '\n[Tenant]\nName=extra\nUser=buildkite-extra\n' >>/etc/rootless-ci.conf"
set +e
in_machine env RCI_ONLY_STEPS=$STEPS rootless-ci --json apply >"$TEST_TMP/apply4.json" 2>"$TEST_TMP/apply4.err"
rc=$?
set -e
[[ $rc -eq 0 ]] || sed 's/^/# stderr: /' "$TEST_TMP/apply4.err"
assert_eq 0 "$rc" "apply with a third tenant exits 0"
assert_eq "change" "$(item "$TEST_TMP/apply4.json" daemon.unit status)" "the unit gains the third tenant's user"
assert_eq active "$(as_user buildkite-extra systemctl --user is-active docker.service)" "the third tenant's daemon runs"
assert_eq "$pids_before" "$(docker_pid "$MAIN") $(docker_pid "$PR")" \
	"the other tenants' daemons are not restarted for a tenant added (only ConditionUser= changed)"
extra_range=$(range /etc/subuid buildkite-extra)
for r in "$main_range" "$pr_range"; do
	((${extra_range%%:*} + ${extra_range##*:} <= ${r%%:*} || ${r%%:*} + ${r##*:} <= ${extra_range%%:*})) ||
		fail "the third tenant's range $extra_range overlaps $r"
done
ok "the third tenant's subordinate range ($extra_range) is its own"

# ---- pr in main's group, its manager started while it was: apply takes pr out of the group, and its
# manager and daemon, which would keep the group (main's Docker data 0710, main's agent token 0640), restart
main_gid=$(in_machine id -g "$MAIN")
pr_uid=$(in_machine id -u "$PR")
in_machine usermod -aG "$MAIN" "$PR"
in_machine systemctl restart "user@$pr_uid.service"
groups_of() { # the supplementary groups of PID $1 in the machine
	# shellcheck disable=SC2016 # awk's fields
	in_machine awk '/^Groups:/ { $1 = ""; print }' "/proc/$1/status"
}
mgr_pid=$(in_machine systemctl show -p MainPID --value "user@$pr_uid.service")
[[ " $(groups_of "$mgr_pid") " == *" $main_gid "* ]] || fail "pr's manager does not hold main's group before apply"
ok "pr's manager holds main's group ($main_gid) before apply"
set +e
in_machine env RCI_ONLY_STEPS=$STEPS rootless-ci --json apply >"$TEST_TMP/apply5.json" 2>"$TEST_TMP/apply5.err"
rc=$?
set -e
[[ $rc -eq 0 ]] || sed 's/^/# stderr: /' "$TEST_TMP/apply5.err"
assert_eq 0 "$rc" "apply with pr in main's group exits 0"
assert_contains "$(item "$TEST_TMP/apply5.json" user.groups:pr message)" "removed $PR from group $MAIN" \
	"apply takes pr out of main's group"
assert_contains "$(item "$TEST_TMP/apply5.json" daemon.user-manager:pr message)" "the group of $MAIN (tenant main)" \
	"apply restarts pr's manager, which held main's group"
mgr_pid=$(in_machine systemctl show -p MainPID --value "user@$pr_uid.service")
[[ " $(groups_of "$mgr_pid") " != *" $main_gid "* ]] || fail "pr's manager still holds main's group"
ok "pr's manager no longer holds main's group"
assert_eq active "$(as_user "$PR" systemctl --user is-active docker.service)" "pr's daemon runs again"
[[ " $(groups_of "$(docker_pid "$PR")") " != *" $main_gid "* ]] || fail "pr's daemon holds main's group"
ok "pr's daemon does not hold main's group"
