#!/bin/bash
# daemon-apply: one apply on a fresh machine gives the CI user a working
# rootless Docker run by its own systemd manager, takes the root daemon out
# of reach, and a second apply changes nothing and does not restart it.
# check's daemon.userns (invariant I2) matches what the kernel shows of
# dockerd's user namespace; when the subordinate ranges move under a
# running daemon, check fails on it and apply restarts the daemon; a second
# range of the user's own, which newuidmap maps too, passes.
#
# Every step is the real one, the disk step included: a blank loop disk is
# configured as Device= (the machine's own root is an overlayfs, on which
# overlay2 cannot stack, which is the very reason for a data disk).

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

machine_begin
machine_data_disk

in_machine systemctl is-enabled docker.service >/dev/null 2>&1 && root_daemon_was=enabled || root_daemon_was=disabled
echo "# the root daemon before apply: $root_daemon_was, $(in_machine systemctl is-active docker.service || true)"

run_json apply1 apply
sed 's/^/# stderr: /' "$TEST_TMP/apply1.err"
assert_eq 0 "$rc" "first apply exits 0"
echo "# first apply took $ms ms"
jq -r '.items[] | "#   \(.status) \(.id): \(.message)"' "$TEST_TMP/apply1.json"
assert_eq true "$(jq -r .changed "$TEST_TMP/apply1.json")" "first apply reports changes"
# /var/run is /run: the root daemon's socket is one file with two names, removed once, reported once.
assert_eq 1 "$(jq '[.items[] | select(.changed and (.id | startswith("daemon.root-socket:")))] | length' "$TEST_TMP/apply1.json")" \
	"the root daemon's socket is removed and reported once"
# It says what it did: docker.service went down with docker.socket, stopped the change before.
assert_eq "disabled, masked, the root daemon's docker.service" \
	"$(jq -r '.items[] | select(.id == "daemon.root-docker.service" and .changed) | .message' "$TEST_TMP/apply1.json")" \
	"the root daemon's docker.service is reported as the socket's stop left it"
uid=$(ci_uid)

# The unit, where and as what.
assert_eq "root 644" "$(in_machine stat -c '%U %a' /etc/systemd/user/docker.service)" \
	"the user unit is root-owned and not writable by anyone else"
in_machine test ! -e "/home/$CI_USER/.config/systemd" || fail "apply wrote into the CI user's home"
ok "nothing was written under the CI user's ~/.config/systemd"
assert_eq "enabled" "$(as_ci systemctl --user is-enabled docker.service)" "the user's manager sees docker.service enabled"
assert_eq "active" "$(as_ci systemctl --user is-active docker.service)" "the user's docker.service is active"
in_machine test -e "/var/lib/systemd/linger/$CI_USER" || fail "no linger for $CI_USER"
ok "linger is on for $CI_USER"
assert_contains "$(in_machine systemctl show -p RequiresMountsFor "user@$uid.service")" "/srv/rootless-ci" \
	"user@$uid.service requires the mount point"
assert_contains "$(in_machine systemctl show -p DelegateControllers "user@$uid.service")" "memory" \
	"user managers get cgroup controllers delegated"

# The root daemon.
assert_eq masked "$(in_machine systemctl is-enabled docker.service || true)" "the root docker.service is masked"
assert_eq masked "$(in_machine systemctl is-enabled docker.socket || true)" "the root docker.socket is masked"
assert_eq inactive "$(in_machine systemctl is-active docker.service || true)" "the root docker.service is stopped"
in_machine test ! -S /run/docker.sock || fail "/run/docker.sock is still there"
ok "no /run/docker.sock"

# Docker as the CI user.
info=$(as_ci docker info --format '{{json .SecurityOptions}} driver={{.Driver}} root={{.DockerRootDir}}')
echo "# docker info: $info"
assert_contains "$info" "name=rootless" "docker info says rootless"
[[ $info != *"driver=vfs"* ]] || fail "the storage driver is vfs"
assert_contains "$info" "driver=overlay2" "the storage driver is overlay2 (this kernel is >= 5.11)"
root_dir=${info##*root=}
assert_eq "/srv/rootless-ci/$CI_USER/docker" "$(in_machine realpath "$root_dir")" "the data root resolves onto the mount point"
assert_eq "${DATA_DISK}p1" "$(in_machine findmnt -n -o SOURCE --target "$root_dir")" \
	"the data root's filesystem is the data disk's partition, which apply made and mounted"

as_ci docker import /var/lib/rootless-ci-test/busybox.tar rci-busybox >/dev/null
ok "docker import of the offline busybox image"
# shellcheck disable=SC2016 # expanded inside the container
out=$(as_ci docker run --rm rci-busybox sh -c 'echo hello from $(id -u)')
assert_eq "hello from 0" "$out" "docker run works; container root is uid 0 inside"
# shellcheck disable=SC2016 # expanded by the CI user's shell
owner=$(as_ci sh -c 'mkdir -p $HOME/bind && docker run --rm -v $HOME/bind:/b rci-busybox touch /b/f && stat -c %u $HOME/bind/f')
assert_eq "$uid" "$owner" "a file container root writes to a bind mount belongs to the CI user on the host"

# The unit is read by every user's manager: only the CI user's runs it.
in_machine useradd --create-home --shell /bin/bash rci-other
other=$(in_machine id -u rci-other)
in_machine loginctl enable-linger rci-other
for _ in $(seq 100); do
	[[ $(in_machine systemctl is-active "user@$other.service" || true) == active ]] && break
	sleep 0.1
done
other_state=$(in_machine setpriv --reuid="$other" --regid="$other" --init-groups env XDG_RUNTIME_DIR="/run/user/$other" \
	systemctl --user show --property=ActiveState,ConditionResult docker.service | tr '\n' ' ')
assert_eq "ActiveState=inactive ConditionResult=no " "$other_state" "another user's manager skips docker.service (ConditionUser)"
in_machine test ! -e "/run/user/$other/docker.sock" || fail "another user got a Docker daemon"
ok "no Docker socket for the other user"
in_machine loginctl disable-linger rci-other

# A second apply: nothing to do, the daemon keeps running untouched.
pid1=$(ci_docker_pid)
mtime1=$(in_machine stat -c %Y.%i /etc/systemd/user/docker.service)
run_json apply2 apply
sed 's/^/# stderr: /' "$TEST_TMP/apply2.err"
assert_eq 0 "$rc" "second apply exits 0"
echo "# second apply took $ms ms"
assert_eq false "$(jq -r .changed "$TEST_TMP/apply2.json")" "second apply changes nothing"
assert_eq 0 "$(jq '[.items[] | select(.changed)] | length' "$TEST_TMP/apply2.json")" "no item is marked changed"
assert_eq "$pid1" "$(ci_docker_pid)" "the daemon was not restarted (MainPID $pid1)"
assert_eq "$mtime1" "$(in_machine stat -c %Y.%i /etc/systemd/user/docker.service)" "the unit file was not rewritten"

run_json check check
jq -r '.items[] | select(.step == "daemon") | "#   \(.status) \(.id): \(.message)"' "$TEST_TMP/check.json"
assert_eq 0 "$rc" "check passes after apply"
assert_eq pass "$(jq -r '.items[] | select(.id == "daemon.root-sockets-unreachable") | .status' "$TEST_TMP/check.json")" \
	"check finds no root-owned Docker/containerd socket the CI user can reach"

# Invariant I2, as check sees it, against what the kernel says about the daemon.
IFS=: read -r _ substart subcount <<<"$(in_machine grep "^$CI_USER:" /etc/subuid)"
IFS=: read -r _ subgstart subgcount <<<"$(in_machine grep "^$CI_USER:" /etc/subgid)"
dockerd=$(in_machine pgrep -u "$uid" -x dockerd)
echo "# dockerd $dockerd: $(in_machine grep -E '^(Uid|Gid):' "/proc/$dockerd/status" | tr '\n\t' '  ')"
echo "# uid_map: $(in_machine cat "/proc/$dockerd/uid_map" | tr -s ' \n' ' ')"
echo "# gid_map: $(in_machine cat "/proc/$dockerd/gid_map" | tr -s ' \n' ' ')"
assert_eq "0 $uid 1 1 $substart $subcount " "$(in_machine cat "/proc/$dockerd/uid_map" | tr -s ' \n' ' ' | sed 's/^ //')" \
	"dockerd's uid_map: container root is $CI_USER, 1.. its subordinate range (the kernel's own view)"
userns=$(jq -c '.items[] | select(.id == "daemon.userns")' "$TEST_TMP/check.json")
echo "# $userns"
assert_eq pass "$(jq -r .status <<<"$userns")" "check: daemon.userns passes"
[[ $subgstart == "$substart" && $subgcount == "$subcount" ]] || fail "subuid and subgid ranges differ ($substart:$subcount, $subgstart:$subgcount)"
assert_eq "$CI_USER's dockerd (PID $dockerd) runs in a user namespace: 0 → $uid, 1..$subcount → $substart..$((substart + subcount - 1)) (UIDs and GIDs alike)" \
	"$(jq -r .message <<<"$userns")" "check: daemon.userns names dockerd's PID and its mapping"
assert_eq ok "$(jq -r '.items[] | select(.id == "daemon.userns") | .status' "$TEST_TMP/apply2.json")" \
	"a converged apply reports daemon.userns in place"

# Drift: a changed unit is rewritten and the daemon restarted, once.
in_machine sed -i 's/^RestartSec=.*/RestartSec=9s/' /etc/systemd/user/docker.service
run_json apply3 apply
sed 's/^/# stderr: /' "$TEST_TMP/apply3.err"
assert_eq 0 "$rc" "apply after drift exits 0"
assert_eq change "$(jq -r '.items[] | select(.id == "daemon.unit") | .status' "$TEST_TMP/apply3.json")" \
	"the drifted unit is rewritten"
pid2=$(ci_docker_pid)
[[ $pid2 != "$pid1" && $pid2 != 0 ]] || fail "the daemon was not restarted after its unit changed ($pid1 → $pid2)"
ok "the daemon was restarted after its unit changed ($pid1 → $pid2)"
assert_eq "hello" "$(as_ci docker run --rm rci-busybox echo hello)" "docker run works after the restart"

# Drift: the subordinate ranges moved (an operator's edit) while the daemon
# kept the old ones. check fails naming the range; apply restarts the
# daemon, which maps the new ones; check passes again.
newstart=$((substart + 10 * 65536))
dockerd=$(in_machine pgrep -u "$uid" -x dockerd)
in_machine sed -i "s/^$CI_USER:.*/$CI_USER:$newstart:$subcount/" /etc/subuid /etc/subgid
run_json check-moved check
jq -r '.items[] | select(.status == "fail") | "#   FAIL \(.id): \(.message) [fix: \(.fix)]"' "$TEST_TMP/check-moved.json"
assert_eq 1 "$rc" "moved ranges: check exits 1"
assert_eq "daemon.userns" "$(jq -r '[.items[] | select(.status == "fail") | .id] | join(" ")' "$TEST_TMP/check-moved.json")" \
	"moved ranges: daemon.userns is the one failure"
assert_contains "$(jq -r '.items[] | select(.id == "daemon.userns") | .message' "$TEST_TMP/check-moved.json")" \
	"maps container UID 1..$subcount to host UID $substart..$((substart + subcount - 1)), outside $CI_USER's subordinate UID range $newstart..$((newstart + subcount - 1)) (/etc/subuid)" \
	"moved ranges: check says which container IDs land outside which range"
assert_contains "$(jq -r '.items[] | select(.id == "daemon.userns") | .fix' "$TEST_TMP/check-moved.json")" "rootless-ci apply" \
	"moved ranges: the fix is apply"
run_json apply-moved apply
sed 's/^/# stderr: /' "$TEST_TMP/apply-moved.err"
assert_eq 0 "$rc" "moved ranges: apply exits 0"
assert_eq "change true" "$(jq -r '.items[] | select(.id == "daemon.service") | "\(.status) \(.changed)"' "$TEST_TMP/apply-moved.json")" \
	"moved ranges: apply restarts the daemon"
dockerd2=$(in_machine pgrep -u "$uid" -x dockerd)
[[ $dockerd2 != "$dockerd" ]] || fail "dockerd is still PID $dockerd"
assert_eq "0 $uid 1 1 $newstart $subcount " "$(in_machine cat "/proc/$dockerd2/uid_map" | tr -s ' \n' ' ' | sed 's/^ //')" \
	"moved ranges: the new dockerd maps the new range"
assert_contains "$(jq -r '.items[] | select(.id == "daemon.userns") | "\(.status): \(.message)"' "$TEST_TMP/apply-moved.json")" \
	"ok: $CI_USER's dockerd (PID $dockerd2) runs in a user namespace: 0 → $uid, 1..$subcount → $newstart.." \
	"moved ranges: apply verifies the restarted daemon"
run_json check-moved2 check
assert_eq "0 pass" "$rc $(jq -r '.items[] | select(.id == "daemon.userns") | .status' "$TEST_TMP/check-moved2.json")" \
	"moved ranges: check passes after the repair"

# A second line for the user in each file: newuidmap maps both, one after
# the other, and both are the user's own. check passes, apply keeps the
# daemon as it is.
second=$((newstart + 2 * 65536))
in_machine sh -c "echo $CI_USER:$second:$subcount >>/etc/subuid && echo $CI_USER:$second:$subcount >>/etc/subgid"
in_machine systemctl --user -M "$CI_USER@" restart docker.service
in_machine rootless-ci wait >/dev/null 2>&1 || fail "the daemon did not come back after its restart"
dockerd3=$(in_machine pgrep -u "$uid" -x dockerd)
assert_eq "0 $uid 1 1 $newstart $subcount $((subcount + 1)) $second $subcount " \
	"$(in_machine cat "/proc/$dockerd3/uid_map" | tr -s ' \n' ' ' | sed 's/^ //')" \
	"two ranges: dockerd maps both, one after the other"
run_json check-two check
jq -r '.items[] | select(.id == "daemon.userns" or .status == "fail") | "#   \(.status) \(.id): \(.message)"' "$TEST_TMP/check-two.json"
assert_eq "0 pass" "$rc $(jq -r '.items[] | select(.id == "daemon.userns") | .status' "$TEST_TMP/check-two.json")" \
	"two ranges: check passes"
run_json apply-two apply
[[ $rc -eq 0 ]] || { sed 's/^/# /' "$TEST_TMP/apply-two.err"; fail "two ranges: apply failed"; }
assert_eq "false $dockerd3" "$(jq -r .changed "$TEST_TMP/apply-two.json") $(in_machine pgrep -u "$uid" -x dockerd)" \
	"two ranges: apply changes nothing and keeps the daemon"

echo "PASS: $TEST_NAME"
