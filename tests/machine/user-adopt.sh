#!/bin/bash
# user-adopt: an existing regular user is adopted, its valid subordinate
# ranges are kept, it is taken out of every group that leads to root (and out
# of gshadow's administrator list) loudly, while another user's membership of
# the same groups and every other line of /etc/group stay as they were. A
# sudoers rule that reaches it through a remaining group fails check and
# apply with the file and line, and sudoers is never edited.
#
# apply is the whole of it, every step: the data disk is a blank loop disk
# configured as Device=, so the CI user's rootless Docker can start.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

machine_begin
machine_data_disk

in_machine bash -s <<'EOF'
set -euo pipefail
useradd --create-home --uid 1500 --shell /bin/bash alice
useradd --create-home --uid 1600 --shell /bin/sh buildkite
groupadd --gid 1700 ci
usermod -aG docker,sudo,adm,kvm,video,ci buildkite
usermod -aG docker,sudo alice
gpasswd -A buildkite docker >/dev/null
EOF

in_machine cat /etc/group >"$TEST_TMP/group.before"
in_machine cat /etc/gshadow >"$TEST_TMP/gshadow.before"
in_machine cat /etc/subuid >"$TEST_TMP/subuid.before"
in_machine cat /etc/subgid >"$TEST_TMP/subgid.before"
sed 's/^/# subuid before: /' "$TEST_TMP/subuid.before"
grep -q '^buildkite:' "$TEST_TMP/subuid.before" || fail "useradd gave buildkite no subuid range to adopt"
ok "useradd allocated buildkite a range, which must be kept"

# What /etc/group must become: buildkite out of docker, sudo, adm, kvm; nothing else changes.
awk -F: -v OFS=: '
	$1 == "docker" || $1 == "sudo" || $1 == "adm" || $1 == "kvm" {
		n = split($4, m, ","); out = ""
		for (i = 1; i <= n; i++) if (m[i] != "buildkite") out = out (out == "" ? "" : ",") m[i]
		$4 = out
	}
	{ print }' "$TEST_TMP/group.before" >"$TEST_TMP/group.expected"
awk -F: -v OFS=: '
	$1 == "docker" || $1 == "sudo" || $1 == "adm" || $1 == "kvm" {
		for (f = 3; f <= 4; f++) {
			n = split($f, m, ","); out = ""
			for (i = 1; i <= n; i++) if (m[i] != "buildkite") out = out (out == "" ? "" : ",") m[i]
			$f = out
		}
	}
	{ print }' "$TEST_TMP/gshadow.before" >"$TEST_TMP/gshadow.expected"

set +e
in_machine rootless-ci apply >"$TEST_TMP/apply.txt" 2>"$TEST_TMP/apply.err"
rc=$?
set -e
sed 's/^/# apply: /' "$TEST_TMP/apply.txt"
sed 's/^/# stderr: /' "$TEST_TMP/apply.err"
assert_eq 0 "$rc" "apply exits 0"

assert_eq "$(in_machine getent passwd buildkite | cut -d: -f3)" 1600 "buildkite keeps UID 1600"
run_json plan plan
assert_contains "$(jq -r '.items[] | select(.id == "user.account") | .message' "$TEST_TMP/plan.json")" \
	"exists (UID 1600, GID 1600, home /home/buildkite): adopted" "the user is adopted, and plan says so"

for g in docker sudo adm kvm; do
	assert_contains "$(cat "$TEST_TMP/apply.err")" "REMOVED buildkite from group $g:" "loud warning for $g"
	assert_contains "$(cat "$TEST_TMP/apply.txt")" "removed buildkite from group $g" "report line for $g"
done
if grep -q "group video\|group ci" "$TEST_TMP/apply.err"; then
	fail "a harmless group was touched"
fi
ok "video and ci memberships are left alone"

in_machine cat /etc/group >"$TEST_TMP/group.after"
in_machine cat /etc/gshadow >"$TEST_TMP/gshadow.after"
diff -u "$TEST_TMP/group.expected" "$TEST_TMP/group.after" | sed 's/^/#   /' || fail "/etc/group is not exactly as expected"
ok "/etc/group: only buildkite's privileged memberships are gone, every other byte kept"
diff -u "$TEST_TMP/gshadow.expected" "$TEST_TMP/gshadow.after" | sed 's/^/#   /' || fail "/etc/gshadow is not exactly as expected"
ok "/etc/gshadow: buildkite is neither member nor administrator of docker any more"
assert_contains "$(in_machine getent group docker)" "alice" "alice is still in docker"
assert_contains "$(in_machine getent group sudo)" "alice" "alice is still in sudo"
assert_eq "buildkite video ci" "$(in_machine id -Gn buildkite)" "buildkite keeps its harmless groups"
assert_eq "root shadow 640" "$(in_machine stat -c '%U %G %a' /etc/gshadow)" "gshadow keeps owner and mode"
assert_eq "$(cat "$TEST_TMP/subuid.before")" "$(in_machine cat /etc/subuid)" "the valid subuid range is kept as is"
assert_eq "$(cat "$TEST_TMP/subgid.before")" "$(in_machine cat /etc/subgid)" "the valid subgid range is kept as is"
for f in group.lock gshadow.lock subuid.lock subgid.lock; do
	if in_machine test -e "/etc/$f"; then fail "/etc/$f left behind"; fi
done
ok "no lock file left behind"

# ---- a sudoers rule through a remaining group
printf '# CI may restart its agent\n%%ci ALL=(root) NOPASSWD: /usr/bin/systemctl restart buildkite-agent\n' |
	in_machine install -m 0440 /dev/stdin /etc/sudoers.d/ci
in_machine visudo -c >/dev/null || fail "the test's sudoers rule is not valid sudoers"
machine_snapshot "$TEST_TMP/before-sudoers"
set +e
in_machine rootless-ci --json check >"$TEST_TMP/check.json" 2>/dev/null
rc_check=$?
in_machine rootless-ci apply >"$TEST_TMP/apply-sudo.txt" 2>&1
rc_apply=$?
set -e
sed 's/^/# apply: /' "$TEST_TMP/apply-sudo.txt"
assert_eq 1 "$rc_check" "check exits 1"
assert_eq fail "$(jq -r '.items[] | select(.id == "user.sudoers") | .status' "$TEST_TMP/check.json")" "check: user.sudoers fails"
assert_contains "$(jq -r '.items[] | select(.id == "user.sudoers") | .message' "$TEST_TMP/check.json")" \
	"/etc/sudoers.d/ci:2: a sudoers rule applies to buildkite (through \"%ci\")" "check names the file and line"
assert_contains "$(jq -r '.items[] | select(.id == "user.sudoers") | .fix' "$TEST_TMP/check.json")" "visudo -f /etc/sudoers.d/ci" \
	"check gives the fix"
assert_eq 1 "$rc_apply" "apply exits 1"
assert_contains "$(cat "$TEST_TMP/apply-sudo.txt")" "FAIL user.sudoers: /etc/sudoers.d/ci:2" "apply reports it too"
machine_snapshot "$TEST_TMP/after-sudoers"
assert_same_snapshot "$TEST_TMP/before-sudoers" "$TEST_TMP/after-sudoers" "apply worked around nothing (sudoers untouched, nothing changed)"

echo "PASS: $TEST_NAME"
