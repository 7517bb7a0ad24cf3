#!/bin/bash
# plan-fresh: on a fresh machine with everything installed, `rootless-ci
# plan` reports preflight verdicts that match what the machine really has
# (worked out here independently, by looking and by trying) and changes
# nothing at all: not the machine (snapshot), not a byte of its blank data
# disk (sha256 of the whole device).

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

machine_begin

# What the machine really has, one "id verdict" line per preflight check,
# found without rootless-ci: by package state, file modes and by actually
# doing as an unprivileged user what rootless Docker will do.
expected=$(in_machine bash -s <<'EOF'
set -u
verdict() { if eval "$2" >/dev/null 2>&1; then echo "$1 pass"; else echo "$1 fail"; fi; }
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
# A setuid-root binary, or one with the file capability it needs.
privileged() { p=$(command -v "$1") && { { [ -u "$p" ] && [ "$(stat -c %u "$p")" = 0 ]; } ||
	getfattr -n security.capability "$p" >/dev/null 2>&1; }; }
verdict preflight.dockerd-rootless 'command -v dockerd-rootless.sh || [ -x /usr/bin/dockerd-rootless.sh ] || [ -x /usr/share/docker.io/contrib/dockerd-rootless.sh ]'
verdict preflight.rootlesskit 'command -v rootlesskit'
verdict preflight.newuidmap 'privileged newuidmap'
verdict preflight.newgidmap 'privileged newgidmap'
verdict preflight.network 'command -v slirp4netns || command -v pasta'
verdict preflight.iptables 'command -v iptables'
verdict preflight.tun '[ -c /dev/net/tun ] && as_nobody sh -c "exec 3<>/dev/net/tun"'
verdict preflight.userns 'as_nobody unshare --user true'
verdict preflight.dbus-user-session 'dpkg-query -W -f="\${Status}" dbus-user-session | grep -qx "install ok installed"'
verdict preflight.systemd '[ -d /run/systemd/system ] && [ "$(ps -p 1 -o comm=)" = systemd ]'
# overlay2 in a user namespace from 5.11 on; before that fuse-overlayfs.
verdict preflight.kernel '[ "$(printf "%s\n" 5.11 "$(uname -r)" | sort -V | head -n1)" = 5.11 ] || command -v fuse-overlayfs'
# Ubuntu's restriction: absent or off means nothing to do.
verdict preflight.apparmor '[ ! -e /proc/sys/kernel/apparmor_restrict_unprivileged_userns ] || [ "$(cat /proc/sys/kernel/apparmor_restrict_unprivileged_userns)" = 0 ]'
EOF
)
echo "# the machine really has:"
while read -r line; do echo "#   $line"; done <<<"$expected"
# The image is built to have everything: every check must really pass.
if grep -q ' fail$' <<<"$expected"; then
	fail "the image lacks something preflight needs: $(grep ' fail$' <<<"$expected" | tr '\n' ' ')"
fi
ok "the machine has everything preflight checks for"

machine_data_disk 1G
disk_before=$(sha256sum <"$DATA_DISK" | cut -d' ' -f1)
machine_snapshot "$TEST_TMP/before"

run_json plan plan
set +e
in_machine rootless-ci plan >"$TEST_TMP/plan.txt" 2>&1
rc_text=$?
set -e
sed 's/^/# stderr: /' "$TEST_TMP/plan.err"

assert_eq 0 "$rc" "plan exits 0 on a machine that has everything"
assert_eq 0 "$rc_text" "plan without --json exits 0 too"
jq -e . "$TEST_TMP/plan.json" >/dev/null || fail "plan --json did not print one JSON object"
ok "plan --json prints JSON"
assert_eq plan "$(jq -r .verb "$TEST_TMP/plan.json")" "JSON names the verb"
assert_eq 0 "$(jq -r .exit "$TEST_TMP/plan.json")" "JSON exit matches the exit status"
assert_eq 0 "$(jq '[.items[] | select(.changed != false)] | length' "$TEST_TMP/plan.json")" \
	"plan marks no item as changed"

while read -r id want; do
	got=$(jq -r --arg id "$id" '[.items[] | select(.id == $id)] |
		if length == 1 then .[0].status else "\(length) items" end' "$TEST_TMP/plan.json")
	assert_eq "$want" "$got" "$id"
	fix=$(jq -r --arg id "$id" '.items[] | select(.id == $id) | .fix' "$TEST_TMP/plan.json")
	assert_eq null "$fix" "$id has no fix to offer"
done <<<"$expected"

assert_eq 0 "$(jq '[.items[] | select(.step == "preflight" and .status == "fail")] | length' "$TEST_TMP/plan.json")" \
	"no preflight item fails"

assert_contains "$(jq -r '.items[] | select(.step == "disk") | .status' "$TEST_TMP/plan.json")" "create" \
	"plan says what apply would create on the blank data disk"
assert_eq "$disk_before" "$(sha256sum <"$DATA_DISK" | cut -d' ' -f1)" "plan wrote nothing to the data disk"
machine_snapshot "$TEST_TMP/after"
assert_same_snapshot "$TEST_TMP/before" "$TEST_TMP/after" "plan changed nothing in the machine"

echo "PASS: $TEST_NAME"
