#!/bin/bash
# user-create: on a fresh machine, plan describes the CI user and its
# storage and changes nothing; apply creates the user (regular UID, own
# group, private home, bash), gives it subordinate ranges that the setuid
# newuidmap/newgidmap accept, lays out its storage with the right owners and
# modes; a second apply changes nothing and check passes.
#
# apply is the whole of it, every step: the data disk is a blank loop disk
# configured as Device=, so the storage lands on it and the CI user's
# rootless Docker can start there.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

need_test_hooks
machine_begin
machine_data_disk

if in_machine getent passwd buildkite >/dev/null; then
	fail "the image already has a user buildkite"
fi
subuid_before=$(in_machine cat /etc/subuid)
subgid_before=$(in_machine cat /etc/subgid)

# ---- plan: every item described, nothing changed
machine_snapshot "$TEST_TMP/before"
set +e
in_machine rootless-ci plan >"$TEST_TMP/plan.txt" 2>&1
rc=$?
set -e
sed 's/^/# plan: /' "$TEST_TMP/plan.txt"
assert_eq 0 "$rc" "plan exits 0"
plan=$(cat "$TEST_TMP/plan.txt")
assert_contains "$plan" "+    user.account: create user buildkite (its own group, home /home/buildkite, shell /bin/bash)" \
	"plan: + create user buildkite"
assert_contains "$plan" "user.subuid: /etc/subuid: add buildkite:" "plan: + subuid range"
assert_contains "$plan" "user.subgid: /etc/subgid: add buildkite:" "plan: + subgid range"
assert_contains "$plan" "+    storage.docker: mkdir /srv/rootless-ci/buildkite/docker (0700, owner buildkite)" \
	"plan: + docker directory"
assert_contains "$plan" "+    storage.home-link: symlink /home/buildkite/.local/share/docker -> /srv/rootless-ci/buildkite/docker" \
	"plan: + the home symlink"
machine_snapshot "$TEST_TMP/after-plan"
assert_same_snapshot "$TEST_TMP/before" "$TEST_TMP/after-plan" "plan changed nothing"

# ---- apply
# Stopped once between the storage and the daemon step, to see the docker
# directory as the storage step leaves it: dockerd changes its mode at start.
rci_stop_at daemon-unit-written "$TEST_TMP/apply.txt" apply
assert_eq "buildkite buildkite 700" "$(in_machine stat -c '%U %G %a' /srv/rootless-ci/buildkite/docker)" \
	"docker dir buildkite 0700, as the storage step makes it"
set +e
rci_continue
rc=$?
set -e
sed 's/^/# apply: /' "$TEST_TMP/apply.txt"
assert_eq 0 "$rc" "apply exits 0"

IFS=: read -r _ _ uid gid _ home shell < <(in_machine getent passwd buildkite)
[[ $uid -ge 1000 && $uid -lt 60000 ]] || fail "buildkite's UID $uid is not a regular one"
ok "buildkite has the regular UID $uid"
assert_eq buildkite "$(in_machine getent group "$gid" | cut -d: -f1)" "its primary group is its own"
assert_eq /home/buildkite "$home" "home /home/buildkite"
assert_eq /bin/bash "$shell" "shell /bin/bash"
assert_eq "buildkite buildkite 700" "$(in_machine stat -c '%U %G %a' /home/buildkite)" "the home is private"
assert_eq "$(in_machine id -G buildkite)" "$gid" "buildkite is in no other group"

# Ranges: one line each, appended; every earlier line untouched.
subuid=$(in_machine cat /etc/subuid)
subgid=$(in_machine cat /etc/subgid)
line=$(grep '^buildkite:' <<<"$subuid")
assert_eq 1 "$(grep -c '^buildkite:' <<<"$subuid")" "one subuid line for buildkite"
IFS=: read -r _ sstart scount <<<"$line"
[[ $scount -ge 65536 && $sstart -ge 100000 ]] || fail "subuid range $sstart:$scount"
ok "subuid range $sstart:$scount"
assert_eq "$subuid_before" "$(grep -v '^buildkite:' <<<"$subuid" || true)" "the other subuid lines are untouched"
assert_eq "$line" "$(grep '^buildkite:' <<<"$subgid")" "subgid range matches subuid's"
assert_eq "$subgid_before" "$(grep -v '^buildkite:' <<<"$subgid" || true)" "the other subgid lines are untouched"

# The setuid helpers accept exactly these ranges, as rootlesskit will ask for
# them: map a fresh user namespace of buildkite's with newuidmap/newgidmap.
maps=$(in_machine runuser -u buildkite -- bash -s "$uid" "$gid" "$sstart" "$scount" <<'EOF'
set -eu
unshare --user sleep 60 &
pid=$!
while [ "$(readlink /proc/$pid/ns/user)" = "$(readlink /proc/self/ns/user)" ]; do sleep 0.05; done
if newuidmap $pid 0 "$1" 1 1 "$3" "$(($4 + 1))" 2>/dev/null; then echo "newuidmap took one ID too many"; fi
newuidmap $pid 0 "$1" 1 1 "$3" "$4"
newgidmap $pid 0 "$2" 1 1 "$3" "$4"
awk '{print $1, $2, $3}' /proc/$pid/uid_map /proc/$pid/gid_map
kill $pid
EOF
)
assert_eq "0 $uid 1
1 $sstart $scount
0 $gid 1
1 $sstart $scount" "$maps" "newuidmap/newgidmap map exactly the allocated ranges for buildkite"

# Storage layout.
assert_eq "${DATA_DISK}p1" "$(in_machine findmnt -n -o SOURCE --mountpoint /srv/rootless-ci)" \
	"/srv/rootless-ci is the data disk's partition, mounted by apply"
assert_eq "root root 755" "$(in_machine stat -c '%U %G %a' /srv/rootless-ci)" "/srv/rootless-ci root 0755"
assert_eq "root root 755" "$(in_machine stat -c '%U %G %a' /srv/rootless-ci/buildkite)" "/srv/rootless-ci/buildkite root 0755"
assert_eq "buildkite buildkite 710" "$(in_machine stat -c '%U %G %a' /srv/rootless-ci/buildkite/docker)" \
	"docker dir 0710 with buildkite's own group once its dockerd started (which the storage step accepts)"
assert_eq "buildkite buildkite 700" "$(in_machine stat -c '%U %G %a' /srv/rootless-ci/buildkite/builds)" "builds dir buildkite 0700"
assert_eq "buildkite buildkite 700" "$(in_machine stat -c '%U %G %a' /home/buildkite/.local/share)" "the home's .local/share is buildkite's, 0700"
assert_eq "/srv/rootless-ci/buildkite/docker" "$(in_machine readlink /home/buildkite/.local/share/docker)" \
	"the home's .local/share/docker points at the disk"
assert_eq buildkite "$(in_machine stat -c '%U' /home/buildkite/.local/share/docker)" "the symlink is buildkite's"
in_machine runuser -u buildkite -- touch /home/buildkite/.local/share/docker/probe /srv/rootless-ci/buildkite/builds/probe ||
	fail "buildkite cannot write its directories"
ok "buildkite writes through the symlink and into builds"
if in_machine setpriv --reuid=65534 --regid=65534 --clear-groups ls /srv/rootless-ci/buildkite/docker >/dev/null 2>&1; then
	fail "another user can list the docker directory"
fi
ok "another user cannot list the docker directory"
if in_machine setpriv --reuid=65534 --regid=65534 --clear-groups mkdir /srv/rootless-ci/buildkite/x 2>/dev/null; then
	fail "another user can write /srv/rootless-ci/buildkite"
fi
ok "another user cannot write /srv/rootless-ci/buildkite"
in_machine rm -f /home/buildkite/.local/share/docker/probe /srv/rootless-ci/buildkite/builds/probe

# ---- converged: apply changes nothing, check passes
machine_snapshot "$TEST_TMP/converged"
set +e
in_machine rootless-ci apply >"$TEST_TMP/apply2.txt" 2>&1
rc=$?
in_machine rootless-ci --json check >"$TEST_TMP/check.json" 2>"$TEST_TMP/check.err"
rc_check=$?
set -e
assert_eq 0 "$rc" "second apply exits 0"
assert_contains "$(cat "$TEST_TMP/apply2.txt")" "Nothing changed" "second apply says nothing changed"
machine_snapshot "$TEST_TMP/after-apply2"
assert_same_snapshot "$TEST_TMP/converged" "$TEST_TMP/after-apply2" "second apply changed nothing"
assert_eq 0 "$rc_check" "check exits 0"
assert_eq 0 "$(jq '[.items[] | select(.status == "fail")] | length' "$TEST_TMP/check.json")" "check reports no failure"
assert_eq pass "$(jq -r '.items[] | select(.id == "user.account") | .status' "$TEST_TMP/check.json")" "check: user.account passes"

echo "PASS: $TEST_NAME"
