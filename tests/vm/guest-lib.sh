# shellcheck shell=bash
# tests/vm/guest-lib.sh — runs inside the VM. scripts/vm puts it in the guest
# with the test's guest script, and the image's rci-test-guest.service
# sources both as root at the end of every boot, once cloud-init is done.
# RCI_BOOT is the boot's number (1, 2, …).
#
# The serial console is the only way back to the host, in whole lines:
#   RCI-RESULT boot=N key=value    one fact; the value has no spaces
#   RCI-JSON boot=N key {...}      one JSON document, on one line
#   RCI-LOG boot=N key: text       a line of a command's output, for the reader
# The guest only reports facts; the host-side test decides what they prove
# (tests/vm/lib.sh).

CI_USER=buildkite
DATA_DISK=/dev/disk/by-id/virtio-ci-data
MOUNT_POINT=/srv/rootless-ci

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8

# result KEY VALUE
result() {
	local v=${2//[[:space:]]/_}
	printf 'RCI-RESULT boot=%s %s=%s\n' "$RCI_BOOT" "$1" "${v:-none}"
}

# json KEY TEXT: TEXT if it is JSON, compacted to one line; else null.
json() {
	printf 'RCI-JSON boot=%s %s %s\n' "$RCI_BOOT" "$1" "$(jq -c . <<<"$2" 2>/dev/null || echo null)"
}

# run_logged KEY CMD...: run CMD, its output as RCI-LOG lines; KEY-exit is
# the exit status.
run_logged() {
	local key=$1 rc=0 out
	shift
	out=$("$@" 2>&1) || rc=$?
	local line
	[[ -z $out ]] || while IFS= read -r line; do
		printf 'RCI-LOG boot=%s %s: %s\n' "$RCI_BOOT" "$key" "$line"
	done <<<"$out"
	result "$key-exit" "$rc"
}

# The facts every vm test may look at, cheap to gather: the machine, what
# cloud-init did, and what rootless-ci set up (or not yet).
report_system() {
	result system-state "$(systemctl is-system-running 2>/dev/null)"
	result kernel "$(uname -r)"
	result startup "$(systemd-analyze time 2>/dev/null | sed -n 's/^Startup finished in //p' | head -n1)"
	result udev "$(systemctl is-active systemd-udevd.service 2>/dev/null)"
	result tun-mode "$(stat -c %a /dev/net/tun 2>/dev/null)"
	result data-disk "$([[ -e $DATA_DISK ]] && readlink -f "$DATA_DISK" || echo missing)"
	result root-source "$(findmnt -n -o SOURCE /)"
	result failed-units "$(systemctl --failed --no-legend --plain 2>/dev/null | awk '{print $1}' | paste -sd, -)"
	# Where the boot's time went, for the reader.
	run_logged blame bash -c 'systemd-analyze blame 2>&1 | head -n 12'
}

report_cloud_init() {
	# rci-test-guest.service runs after cloud-final, so this does not wait.
	result cloud-init-status "$(cloud-init status 2>/dev/null | awk '/^status:/ {print $2}')"
	json cloud-init-result "$(cat /run/cloud-init/result.json 2>/dev/null)"
	result user-data-sha256 "$(sha256sum </var/lib/cloud/instance/user-data.txt 2>/dev/null | cut -d' ' -f1)"
	result cloud-init-schema-exit "$(cloud-init schema --system >/dev/null 2>&1 && echo 0 || echo $?)"
	# The configuration as write_files wrote it, compared with the user-data
	# by cloud-init's own YAML parser.
	result conf-as-written "$(python3 -c '
import sys, yaml
d = yaml.safe_load(open("/var/lib/cloud/instance/user-data.txt"))
want = [f["content"] for f in d.get("write_files", []) if f["path"] == "/etc/rootless-ci.conf"]
print(bool(want) and open("/etc/rootless-ci.conf").read() == want[0])' 2>&1 | tail -n1)"
	result conf-owner-mode "$(stat -c %U:%G:%a /etc/rootless-ci.conf 2>/dev/null)"
	# When the runcmd script fails (its status is its last command's),
	# cloud-init logs the error with "Command: [...runcmd']" and then
	# "Exit code: N". None means it succeeded.
	result runcmd-failed "$(grep -A1 -F "Command: ['/var/lib/cloud/instance/scripts/runcmd']" /var/log/cloud-init.log 2>/dev/null |
		sed -n 's/^Exit code: //p' | tail -n1)"
	# How often rootless-ci ran from cloud-init, over all boots: every run
	# logs one summary line for its first step, the preflight.
	result apply-runs "$(grep -cE '^preflight: [0-9]+ ' /var/log/cloud-init-output.log 2>/dev/null)"
}

report_rootless_ci() {
	json plan "$(rootless-ci --json plan 2>/dev/null)"
	json check "$(rootless-ci --json check 2>/dev/null)"
}

# What the disk, user, daemon and agent steps set up, looked at from
# outside rootless-ci; empty facts where a step has not run.
report_provisioning() {
	local uid
	result data-mount "$(findmnt -n -o SOURCE,FSTYPE --target "$MOUNT_POINT" 2>/dev/null | awk -v m="$MOUNT_POINT" 'NR == 1 {print $1 ":" $2}')"
	result data-mount-target "$(findmnt -n -o TARGET --target "$MOUNT_POINT" 2>/dev/null)"
	result data-disk-pttype "$(blkid -p -o value -s PTTYPE "$DATA_DISK" 2>/dev/null)"
	result fstab-data "$(awk -v m="$MOUNT_POINT" '$2 == m {print $1 "," $4}' /etc/fstab)"
	# Entries under the mount point that are on the root filesystem.
	result srv-entries "$(find "$MOUNT_POINT" -xdev -mindepth 1 2>/dev/null | wc -l)"
	uid=$(id -u "$CI_USER" 2>/dev/null) || uid=
	result ci-uid "$uid"
	[[ -n $uid ]] || return 0
	result storage-link "$(readlink "/home/$CI_USER/.local/share/docker" 2>/dev/null)"
	result storage-dir "$(stat -c %U "$MOUNT_POINT/$CI_USER/docker" 2>/dev/null):$(findmnt -n -o SOURCE --target "$MOUNT_POINT/$CI_USER/docker" 2>/dev/null)"
	result linger "$([[ -e /var/lib/systemd/linger/$CI_USER ]] && echo yes || echo no)"
	result user-manager "$(systemctl is-active "user@$uid.service" 2>/dev/null)"
	result user-docker "$(as_ci systemctl --user is-active docker.service 2>/dev/null)"
	result docker-root "$(as_ci docker info --format '{{.DockerRootDir}}' 2>/dev/null | xargs -r realpath 2>/dev/null)"
	if as_ci docker image inspect rci-busybox >/dev/null 2>&1 ||
		as_ci docker import /var/lib/rootless-ci-test/busybox.tar rci-busybox >/dev/null 2>&1; then
		# shellcheck disable=SC2016 # expanded in the container
		result docker-run "$(as_ci docker run --rm rci-busybox sh -c 'echo hello-from-$(id -u)' 2>/dev/null)"
	else
		result docker-run import-failed
	fi
	result agent "$(systemctl is-active buildkite-agent.service 2>/dev/null)"
	result agent-user "$(systemctl show -p User --value buildkite-agent.service 2>/dev/null)"
	result agent-docker-host "$(systemctl show -p Environment --value buildkite-agent.service 2>/dev/null | tr ' ' '\n' | sed -n 's/^DOCKER_HOST=//p')"
}

# as_ci CMD...: CMD as the CI user, with what a build would have.
as_ci() {
	local uid
	uid=$(id -u "$CI_USER")
	setpriv --reuid="$uid" --regid="$uid" --init-groups \
		env HOME="/home/$CI_USER" USER="$CI_USER" XDG_RUNTIME_DIR="/run/user/$uid" \
		DOCKER_HOST="unix:///run/user/$uid/docker.sock" "$@"
}

# report_disk_fingerprint KEY DEV: what must not change when rootless-ci
# refuses DEV, as KEY-* facts. DEV may be the mounted root disk, whose
# filesystem writes all the time (journal, superblock counters), so a raw
# checksum of it cannot be compared; each fact instead covers something a
# partitioner, mkfs or wipe would change and a running ext4 does not:
#   head      the first 1 KiB: MBR / protective MBR and the GPT header
#             (ext4 never writes before its superblock at 1 KiB)
#   probe     every signature libblkid finds (filesystem, partition table)
#   fs        the filesystem's UUID and creation time (not made again)
#   parts     the kernel's partitions of DEV (none added)
#   fstab     /etc/fstab, byte for byte
#   mounts    which block devices are mounted where
report_disk_fingerprint() {
	local key=$1 dev=$2
	result "$key-head" "$(dd if="$dev" bs=1024 count=1 status=none iflag=direct | sha256sum | cut -c1-16)"
	result "$key-probe" "$(blkid -p -o export "$dev" 2>&1 | sort | sha256sum | cut -c1-16)"
	result "$key-fs" "$(dumpe2fs -h "$dev" 2>/dev/null | grep -E '^(Filesystem UUID|Filesystem created):' | sha256sum | cut -c1-16)"
	result "$key-parts" "$(awk -v d="${dev##*/}" '$4 ~ "^" d {print $4, $3}' /proc/partitions | sha256sum | cut -c1-16)"
	result "$key-fstab" "$(sha256sum </etc/fstab | cut -c1-16)"
	result "$key-mounts" "$(findmnt -rn -o TARGET,SOURCE,FSTYPE | awk '$2 ~ "^/dev/"' | sort | sha256sum | cut -c1-16)"
}

# reboot_now: reboot the guest; this script is done for this boot.
reboot_now() {
	echo "RCI-RESULT boot=$RCI_BOOT rebooting=yes"
	systemctl reboot --no-block
}

poweroff_now() {
	echo "RCI-RESULT boot=$RCI_BOOT powering-off=yes"
	systemctl poweroff --no-block
}
