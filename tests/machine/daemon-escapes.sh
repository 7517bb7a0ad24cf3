#!/bin/bash
# daemon-escapes: after apply, the CI user's Docker gives a build nothing of
# root's. Each classic escape through a root daemon is tried as the CI user,
# and judged by its effect on the machine, not only by an exit status.
#
# Every step is the real one: the data disk is a blank loop disk configured
# as Device=, which apply partitions, formats and mounts.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

machine_begin
machine_data_disk
disk=$DATA_DISK

in_machine rootless-ci apply >"$TEST_TMP/apply.out" 2>"$TEST_TMP/apply.err" ||
	{ sed 's/^/# /' "$TEST_TMP/apply.err"; fail "apply failed"; }
ok "apply"
as_ci docker import /var/lib/rootless-ci-test/busybox.tar rci-busybox >/dev/null
ok "busybox imported as $CI_USER"

# 1. Append a root account to the machine's /etc/passwd through a bind mount.
before=$(in_machine sha256sum /etc/passwd)
as_ci docker run --rm --privileged -v /etc:/x rci-busybox \
	sh -c 'echo "pwned:x:0:0::/root:/bin/sh" >>/x/passwd' >/dev/null 2>&1 || true
assert_eq "$before" "$(in_machine sha256sum /etc/passwd)" "/etc/passwd is unchanged after --privileged -v /etc:/x"
in_machine grep -q '^pwned:' /etc/passwd && fail "a pwned account exists"
ok "no account was added"

# 2. Read /etc/shadow and /root through bind mounts.
in_machine sh -c 'echo RCI-ROOT-SECRET >/root/secret && chmod 0600 /root/secret'
out=$(as_ci docker run --rm --privileged -v /etc/shadow:/s rci-busybox cat /s 2>&1 || true)
[[ $out != *"root:"* ]] || fail "/etc/shadow was read from a container"
ok "/etc/shadow cannot be read from a container ($(head -c 80 <<<"$out"))"
out=$(as_ci docker run --rm --privileged -v /root:/r rci-busybox sh -c 'cat /r/secret; ls -1 /r' 2>&1 || true)
# Neither the file's content nor a directory listing naming it.
if [[ $out == *RCI-ROOT-SECRET* ]] || grep -qx secret <<<"$out"; then
	fail "/root was read from a container: $out"
fi
ok "/root cannot be read or listed from a container ($(tr '\n' ' ' <<<"$out" | head -c 100))"

# 3. Read a host block device from a --privileged container: the raw data
# disk would bypass every file permission on it. Judged by the bytes read.
assert_eq 4096 "$(in_machine sh -c "dd if=$disk bs=4096 count=1 status=none | wc -c")" \
	"root in the machine reads the data disk's first 4 KiB (the control)"
out=$(as_ci docker run --rm --privileged -v "$disk:/disk" rci-busybox \
	sh -c 'dd if=/disk bs=4096 count=1 2>/dev/null | wc -c' 2>&1 || true)
assert_eq 0 "$(tail -n 1 <<<"$out" | tr -d ' ')" "a --privileged container bind-mounting the disk reads 0 bytes of it"
out=$(as_ci docker run --rm --privileged rci-busybox \
	sh -c "dd if=/dev/$(basename "$disk") bs=4096 count=1 2>/dev/null | wc -c" 2>&1 || true)
assert_eq 0 "$(tail -n 1 <<<"$out" | tr -d ' ')" "a --privileged container reads 0 bytes of /dev/$(basename "$disk")"

# 4. Reach the root daemon's socket.
in_machine test ! -e /run/docker.sock || fail "/run/docker.sock exists"
out=$(as_ci docker -H unix:///run/docker.sock info 2>&1 || true)
[[ $out != *"Server Version"* ]] || fail "the root daemon answered"
ok "the root daemon's socket is gone and does not answer"
# The root daemon's units cannot come back by socket activation or dependency.
in_machine systemctl start docker.service >/dev/null 2>&1 && fail "the root docker.service could be started again"
ok "the root docker.service is masked (cannot be started)"

# 5. sudo.
as_ci sudo -n touch /root/pwned-by-sudo >/dev/null 2>&1 || true
in_machine test ! -e /root/pwned-by-sudo || fail "sudo worked for $CI_USER"
ok "sudo gives $CI_USER nothing"

# And the root-owned containerd socket the root daemon left (containerd
# keeps running) is not connectable by the CI user: check proves it.
in_machine rootless-ci --json check >"$TEST_TMP/check.json" 2>/dev/null || true
assert_eq pass "$(jq -r '.items[] | select(.id == "daemon.root-sockets-unreachable") | .status' "$TEST_TMP/check.json")" \
	"check: no root-owned Docker/containerd socket reachable"

echo "PASS: $TEST_NAME"
