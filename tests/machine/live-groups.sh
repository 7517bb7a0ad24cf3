#!/bin/bash
# live-groups: a group taken out of /etc/group lives on in the processes
# that had it (invariant I1 in live credentials). On a converged machine the
# CI user is put in disk, and in disk2, a second line with disk's GID; its
# user manager is restarted so it holds GID 6, and a leftover process of
# the user's (setpriv --init-groups, outside anything rootless-ci runs)
# holds it too. check fails naming both. apply takes the user out of both
# groups (disk2 by its GID), restarts user@UID itself, and fails naming
# the leftover PID alone; check says the same; once the leftover is gone,
# check passes. An agent (the stand-in) restarted while the user was in
# disk is restarted by apply, and nothing else. Then one source of account
# data: a membership NSS reports (libnss-extrausers, a second source as
# LDAP or SSSD would be) and the files do not fails check and apply, and
# apply changes nothing.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=tests/machine/agent-standin.sh
source "$(dirname "$0")/agent-standin.sh"

machine_begin
machine_data_disk

# rci OUT ARGS...: rootless-ci ARGS inside, its stdout into OUT and stderr into OUT.err; sets rc.
rc=0
rci() {
	local out=$1
	shift
	rc=0
	in_machine rootless-ci "$@" >"$out" 2>"$out.err" || rc=$?
}

in_machine useradd --create-home --shell /bin/bash "$CI_USER"
rci "$TEST_TMP/apply-1.txt" apply
[[ $rc == 0 ]] || sed 's/^/# apply: /' "$TEST_TMP/apply-1.txt" "$TEST_TMP/apply-1.txt.err"
assert_eq 0 "$rc" "the first apply converges the machine"
uid=$(ci_uid)

# holds_gid6 PID: does the process hold GID 6 (its Groups: line)?
holds_gid6() {
	in_machine grep -q '^Groups:.*\b6\b' "/proc/$1/status"
}
manager_pid() {
	in_machine systemctl show --property=MainPID --value "user@$uid.service"
}
# item VERB-JSON ID FIELD
item() {
	jq -r --arg id "$2" ".items[] | select(.id == \$id) | .$3" "$1"
}

# ---- the user back in disk, and in disk2 (GID 6 under another name); processes that keep it
in_machine groupadd --non-unique --gid 6 disk2
in_machine usermod -aG disk,disk2 "$CI_USER"
in_machine systemctl restart "user@$uid.service"
old_manager=$(manager_pid)
holds_gid6 "$old_manager" || fail "the restarted user manager does not hold GID 6"
in_machine systemd-run --quiet --unit=rci-leftover \
	setpriv --reuid="$uid" --regid="$uid" --init-groups sleep infinity
leftover=$(in_machine systemctl show --property=MainPID --value rci-leftover.service)
[[ $leftover != 0 ]] || fail "the leftover process did not start"
holds_gid6 "$leftover" || fail "the leftover process does not hold GID 6"
ok "user@$uid (PID $old_manager) and a leftover (PID $leftover) hold GID 6"

rci "$TEST_TMP/check-1.json" --json check
assert_eq 1 "$rc" "check exits 1 while the user is in disk"
msg=$(item "$TEST_TMP/check-1.json" credentials.groups message)
assert_contains "$msg" "PID $leftover (sleep, GID 6)" "check names the leftover process"
assert_contains "$msg" "PID $old_manager (systemd, GID 6)" "check names the user manager"
assert_eq fail "$(item "$TEST_TMP/check-1.json" credentials.groups status)" "credentials.groups fails"

# ---- apply: out of both groups, user@UID restarted, the leftover named
rci "$TEST_TMP/apply-2.txt" apply
sed 's/^/# apply: /' "$TEST_TMP/apply-2.txt"
sed 's/^/# stderr: /' "$TEST_TMP/apply-2.txt.err"
assert_eq 1 "$rc" "apply exits 1 while a process it does not run holds the group"
out=$(cat "$TEST_TMP/apply-2.txt")
assert_contains "$out" "removed $CI_USER from group disk (" "apply removes disk"
assert_contains "$out" "removed $CI_USER from group disk2 (GID 6, the GID of disk:" "apply removes disk2, by its GID"
assert_contains "$out" "restarted user@$uid.service so it and what it runs drop GID 6" "apply restarts user@$uid for it"
assert_contains "$out" "FAIL credentials.groups: 1 process of $CI_USER still holds" "apply fails on what is left"
assert_contains "$out" "PID $leftover (sleep, GID 6)" "apply names the leftover PID"
in_machine id -Gn "$CI_USER" | grep -qw 'disk\|disk2' && fail "$CI_USER is still in disk or disk2"
ok "/etc/group: $CI_USER is in neither disk nor disk2"
new_manager=$(manager_pid)
[[ $new_manager != "$old_manager" && $new_manager != 0 ]] || fail "user@$uid was not restarted ($old_manager → $new_manager)"
if holds_gid6 "$new_manager"; then fail "the new user manager still holds GID 6"; fi
ok "the new user manager (PID $new_manager) does not hold GID 6"
as_ci docker info >/dev/null || fail "the CI user's Docker does not answer after the restart"
ok "the CI user's Docker answers after the restart"

rci "$TEST_TMP/check-2.json" --json check
assert_eq 1 "$rc" "check exits 1 while the leftover runs"
msg=$(item "$TEST_TMP/check-2.json" credentials.groups message)
assert_contains "$msg" "1 process of $CI_USER still holds" "check: one process left"
assert_contains "$msg" "PID $leftover (sleep, GID 6)" "check names the leftover PID"
assert_contains "$(item "$TEST_TMP/check-2.json" credentials.groups fix)" "kill $leftover" "check's fix names it"
assert_eq "" "$(jq -r '.items[] | select(.status == "fail" and .id != "credentials.groups") | .id' "$TEST_TMP/check-2.json")" \
	"nothing else fails"

in_machine systemctl stop rci-leftover.service
rci "$TEST_TMP/check-3.txt" check
[[ $rc == 0 ]] || sed 's/^/# check: /' "$TEST_TMP/check-3.txt" "$TEST_TMP/check-3.txt.err"
assert_eq 0 "$rc" "check passes once the leftover is gone"
assert_contains "$(cat "$TEST_TMP/check-3.txt")" "PASS credentials.groups: none of $CI_USER's" "check says why"

# ---- the agent: started while the user was in disk, restarted by apply alone
standin_install
in_machine systemctl daemon-reload
in_machine systemctl enable --now buildkite-agent.service >/dev/null 2>&1
rci "$TEST_TMP/apply-agent-1.txt" apply
[[ $rc == 0 ]] || sed 's/^/# apply: /' "$TEST_TMP/apply-agent-1.txt" "$TEST_TMP/apply-agent-1.txt.err"
assert_eq 0 "$rc" "apply takes the agent over"
in_machine usermod -aG disk "$CI_USER"
# The stand-in's unit has KillMode=process, as the real package's: a restart
# stops its main process alone, and children it had (the stand-in's docker
# run) would live on holding the group, for the credentials step to name.
# Restart it, and let it finish its report (it then runs sleep alone).
in_machine rm -f "/var/tmp/rci-standin/report.$uid"
in_machine systemctl restart buildkite-agent.service
standin_report "$uid" | sed 's/^/#   agent in disk: /'
old_agent=$(in_machine systemctl show --property=MainPID --value buildkite-agent.service)
manager=$(manager_pid)
holds_gid6 "$old_agent" || fail "the restarted agent does not hold GID 6"
if holds_gid6 "$manager"; then fail "the user manager holds GID 6 too"; fi
ok "the agent (PID $old_agent) holds GID 6, the user manager does not"
rci "$TEST_TMP/apply-agent-2.txt" apply
sed 's/^/# apply: /' "$TEST_TMP/apply-agent-2.txt" "$TEST_TMP/apply-agent-2.txt.err"
assert_eq 0 "$rc" "apply exits 0: it restarts the agent, and nothing else holds the group"
assert_contains "$(cat "$TEST_TMP/apply-agent-2.txt")" 	"restarted buildkite-agent.service: it runs as $CI_USER, without the group that led to root" "apply says why"
new_agent=$(in_machine systemctl show --property=MainPID --value buildkite-agent.service)
[[ $new_agent != "$old_agent" && $new_agent != 0 ]] || fail "the agent was not restarted ($old_agent → $new_agent)"
if holds_gid6 "$new_agent"; then fail "the new agent still holds GID 6"; fi
ok "the new agent (PID $new_agent) does not hold GID 6"
assert_eq "$manager" "$(manager_pid)" "the user manager, which held nothing, was not restarted"

# ---- one source of account data: a membership only NSS knows
in_machine bash -s <<'EOF'
set -euo pipefail
mkdir -p /var/lib/extrausers
printf 'ldapci:x:4000:buildkite\n' >/var/lib/extrausers/group
: >/var/lib/extrausers/passwd
cp /etc/nsswitch.conf /etc/nsswitch.conf.rci
sed -i 's/^group:.*/group:          files extrausers/' /etc/nsswitch.conf
EOF
assert_contains "$(in_machine id -Gn "$CI_USER")" "ldapci" "NSS (extrausers) puts $CI_USER in ldapci"
rci "$TEST_TMP/check-4.json" --json check
assert_eq 1 "$rc" "check exits 1"
assert_eq fail "$(item "$TEST_TMP/check-4.json" user.nss status)" "user.nss fails"
assert_contains "$(item "$TEST_TMP/check-4.json" user.nss message)" \
	"NSS puts $CI_USER in group ldapci (GID 4000), /etc/group does not" "check names the group only NSS knows"
machine_snapshot "$TEST_TMP/before-nss"
rci "$TEST_TMP/apply-3.txt" apply
sed 's/^/# apply: /' "$TEST_TMP/apply-3.txt"
assert_eq 1 "$rc" "apply exits 1"
assert_contains "$(cat "$TEST_TMP/apply-3.txt")" "FAIL user.nss: NSS puts $CI_USER in group ldapci" "apply says why"
machine_snapshot "$TEST_TMP/after-nss"
assert_same_snapshot "$TEST_TMP/before-nss" "$TEST_TMP/after-nss" "apply changed nothing"
in_machine mv /etc/nsswitch.conf.rci /etc/nsswitch.conf
in_machine rootless-ci check >/dev/null 2>&1 || fail "check does not pass again with NSS and the files agreeing"
ok "check passes again once NSS and the files agree"

echo "PASS: $TEST_NAME"
