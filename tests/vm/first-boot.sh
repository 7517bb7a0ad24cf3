#!/bin/bash
# First boot through cloud-init NoCloud with conf/cloud-init.yaml as
# user-data — its commented two-tenant configuration in use, as its header
# tells an operator to do (main: buildkite, trusted; pr: buildkite-pr,
# untrusted) — on a VM with its own kernel, udev and a virtio data disk;
# then a reboot of the guest. Proves that cloud-init wrote the
# configuration and ran rootless-ci apply, that the preflight passes on a
# real machine, that the machine comes back after a reboot without
# cloud-init running rootless-ci again, and that the data disk, both
# tenants' rootless Docker daemons and their agent instances are set up and
# come back by themselves after the reboot.
# shellcheck source=tests/vm/lib.sh
source "$(dirname "$0")/lib.sh"

CONF_USER_DATA=$RCI_SOURCE_DIR/conf/cloud-init.yaml

vm_begin
USER_DATA=$(mktemp "/tmp/rci-$TEST_NAME.XXXXXX.yaml")
# (vm_cleanup reads the test's exit status from $?: given back after the rm.)
trap 'rc=$?; rm -f "$USER_DATA"; (exit "$rc"); vm_cleanup' EXIT
two_tenant_user_data "$CONF_USER_DATA" >"$USER_DATA"
# The edit the file's header describes: [User] and [Agent] out, the two
# [Tenant] sections, the agents' files and the command that starts them in.
check_eq "2 0 0" "$(grep -cx ' *\[Tenant\]' "$USER_DATA") $(grep -cx ' *\[User\]' "$USER_DATA") $(grep -cx ' *\[Agent\]' "$USER_DATA")" \
	"the user-data has the two [Tenant] sections and neither [User] nor [Agent]"
check_eq "2 1 1" "$(grep -cx ' *#\[Tenant\]' "$CONF_USER_DATA") $(grep -cx ' *\[User\]' "$CONF_USER_DATA") $(grep -cx ' *\[Agent\]' "$CONF_USER_DATA")" \
	"conf/cloud-init.yaml as shipped stays one tenant, the two [Tenant] sections commented"
vm_boot --user-data="$USER_DATA" --guest="$RCI_SOURCE_DIR/tests/vm/first-boot.guest"

# rootless-ci's progress (one summary line per step on stderr), from
# cloud-init's runcmd, reaches the console.
wait_console 'preflight: [0-9]+ ' 900 >/dev/null ||
	bail "rootless-ci's report from cloud-init's runcmd on the console"
echo "# power-on to rootless-ci's report from runcmd: $((SECONDS - BOOT_T0)) s"
# Boot 1's script ends by asking for the reboot: its last line is
# "rebooting" (the "guest-exit" after it can lose the race with the
# shutdown, and did once in CI).
wait_fact 1 rebooting 600 || bail "boot 1: the guest script ran to its end"
echo "# power-on to the end of boot 1's checks: $((SECONDS - BOOT_T0)) s"

check_eq "$(sha256sum <"$USER_DATA" | cut -d' ' -f1)" "$(fact 1 user-data-sha256)" \
	"the VM's user-data is conf/cloud-init.yaml with its two tenants, byte for byte"
check_eq 0 "$(fact 1 cloud-init-schema-exit)" "cloud-init schema --system accepts the user-data in the guest"
check_eq True "$(fact 1 conf-as-written)" "/etc/rootless-ci.conf is what the user-data's write_files says"
check_eq "root:root:644" "$(fact 1 conf-owner-mode)" "/etc/rootless-ci.conf is root's, mode 0644"
check_eq 1 "$(fact 1 apply-runs)" "cloud-init's runcmd ran rootless-ci apply once"
check_eq active "$(fact 1 udev)" "udev runs"
check_eq 666 "$(fact 1 tun-mode)" "/dev/net/tun is 0666 (udev and systemd's static nodes, not a harness)"
check_eq /dev/vdb "$(fact 1 data-disk)" "udev names the data disk /dev/disk/by-id/virtio-ci-data"
check_eq /dev/vda "$(fact 1 root-source)" "/ is on /dev/vda"
check_preflight 1

# cloud-init's runcmd provisions the whole host: apply exits 0, nothing in
# cloud-init fails, and systemd is running without a failed unit.
check_eq none "$(fact 1 runcmd-failed)" "rootless-ci apply exited 0 in runcmd"
check_eq "done" "$(fact 1 cloud-init-status)" "cloud-init finished without errors"
check_eq running "$(fact 1 system-state)" "boot 1: systemd says running (failed units: $(fact 1 failed-units))"
check_eq gpt "$(fact 1 data-disk-pttype)" "boot 1: the data disk has a GPT"
check_match '^UUID=[^,]+,.*nofail' "$(fact 1 fstab-data)" "boot 1: fstab mounts the data disk by UUID with nofail"
check_match '^/dev/vdb1:(ext4|xfs)$' "$(fact 1 data-mount)" "boot 1: /srv/rootless-ci is mounted from /dev/vdb1"
check_match '^[0-9]+$' "$(fact 1 ci-uid)" "boot 1: the CI user exists"
check_eq /srv/rootless-ci/buildkite/docker "$(fact 1 storage-link)" "boot 1: ~buildkite/.local/share/docker points to the data disk"
check_eq "buildkite:/dev/vdb1" "$(fact 1 storage-dir)" "boot 1: the storage dir is the CI user's, on the data disk"
check_eq yes "$(fact 1 linger)" "boot 1: linger is on for the CI user"
check_eq active "$(fact 1 user-docker)" "boot 1: the CI user's docker.service is active"
check_eq hello-from-0 "$(fact 1 docker-run)" "boot 1: docker run works as the CI user; root inside is uid 0"
check_eq /srv/rootless-ci/buildkite/docker "$(fact 1 docker-root)" "boot 1: Docker's data root is on the data disk"
check_eq 0 "$(json_fact 1 check | jq -r .exit)" "boot 1: rootless-ci check finds both tenants converged"
for t in main pr; do
	check_ne 0 "$(json_fact 1 check | jq --arg t "$t" '[.items[] | select(.tenant == $t)] | length')" \
		"boot 1: check reports items of tenant $t"
done
check_match '^[0-9]+$' "$(fact 1 pr-uid)" "boot 1: the untrusted tenant's user buildkite-pr exists"
check_ne "$(fact 1 ci-uid)" "$(fact 1 pr-uid)" "boot 1: the tenants' users differ"
check_eq /srv/rootless-ci/buildkite-pr/docker "$(fact 1 pr-storage-link)" "boot 1: ~buildkite-pr/.local/share/docker points to its own storage"
check_eq /srv/rootless-ci/buildkite-pr/docker "$(fact 1 pr-docker-root)" "boot 1: pr's Docker data root is its own, on the data disk"
check_eq active "$(fact 1 pr-user-docker)" "boot 1: buildkite-pr's docker.service is active"
check_eq hello-from-0 "$(fact 1 pr-docker-run)" "boot 1: docker run works as buildkite-pr"
check_eq root:buildkite:640 "$(fact 1 main-cfg)" "boot 1: main's agent configuration is root:buildkite 0640"
check_eq root:buildkite-pr:640 "$(fact 1 pr-cfg)" "boot 1: pr's agent configuration is root:buildkite-pr 0640"

# cgroup v2: preflight says so, the controllers reach the CI user's manager,
# rootless-ci's check verifies that, and docker run's limits hold.
check_eq cgroup2fs "$(fact 1 cgroup-fs)" "boot 1: the guest's /sys/fs/cgroup is cgroup v2"
check_match 'cgroup v2' "$(json_fact 1 check | jq -r '.items[] | select(.id == "preflight.cgroup") | .message')" \
	"boot 1: preflight.cgroup reports cgroup v2"
for c in cpu cpuset io memory pids; do
	check_match "(^|_)$c(_|$)" "$(fact 1 user-manager-controllers)" "boot 1: user@UID.service has the $c controller delegated"
done
for t in main pr; do
	check_eq pass "$(json_fact 1 check | jq -r --arg id "daemon.delegation:$t" '.items[] | select(.id == $id) | .status')" \
		"boot 1: rootless-ci check verifies the delegation to $t's manager (daemon.delegation:$t passes)"
done
check_eq 67108864 "$(fact 1 docker-memory-max)" "boot 1: docker run --memory 64m as the CI user sets memory.max"
check_eq 42 "$(fact 1 docker-pids-max)" "boot 1: docker run --pids-limit 42 as the CI user sets pids.max"

# The guest reboots itself; the machine must come back on its own.
t0=$SECONDS
wait_fact 2 guest-exit 900 || bail "the machine came back after a reboot and ran boot 2's checks"
ok "the machine comes back after a reboot"
echo "# reboot to the end of boot 2's checks: $((SECONDS - t0)) s"
check_eq 1 "$(fact 2 apply-runs)" "boot 2: cloud-init did not run rootless-ci again"
check_preflight 2
check_eq running "$(fact 2 system-state)" "boot 2: systemd says running (failed units: $(fact 2 failed-units))"
check_eq 0 "$(json_fact 2 check | jq -r .exit)" "boot 2: rootless-ci check finds the host converged"
for t in main pr; do
	check_eq pass "$(json_fact 2 check | jq -r --arg id "daemon.delegation:$t" '.items[] | select(.id == $id) | .status')" \
		"boot 2: the delegation to $t's manager holds after the reboot (daemon.delegation:$t passes)"
done
check_eq "$(fact 1 data-mount)" "$(fact 2 data-mount)" "boot 2: /srv/rootless-ci is mounted from the same disk"
check_eq yes "$(fact 2 linger)" "boot 2: linger is still on"
check_eq active "$(fact 2 user-docker)" "boot 2: the CI user's docker.service came back"
check_eq hello-from-0 "$(fact 2 docker-run)" "boot 2: docker run works as the CI user"
check_eq active "$(fact 2 pr-user-docker)" "boot 2: buildkite-pr's docker.service came back"
check_eq hello-from-0 "$(fact 2 pr-docker-run)" "boot 2: docker run works as buildkite-pr"
check_eq yes "$(fact 2 pr-linger)" "boot 2: linger is still on for buildkite-pr"
check_eq inactive "$(fact 2 package-agent)" "boot 2: the package's own buildkite-agent.service stays stopped"
for t in main:buildkite pr:buildkite-pr; do
	check_eq active "$(fact 2 "${t%%:*}-agent")" "boot 2: buildkite-agent@${t%%:*}.service is active"
	check_eq "${t#*:}" "$(fact 2 "${t%%:*}-agent-user")" "boot 2: the ${t%%:*} agent runs as ${t#*:}"
	check_eq "unix:///run/user/$(fact 2 "${t%%:*}-uid")/docker.sock" "$(fact 2 "${t%%:*}-agent-docker-host")" \
		"boot 2: the ${t%%:*} agent's DOCKER_HOST is ${t#*:}'s own socket"
done
check_eq 1 "$(fact 2 mount-required-by-manager)" \
	"boot 2: user@UID.service requires the data disk's mount (RequiresMountsFor=)"
check_eq inactive "$(fact 2 manager-after-mount-stop)" \
	"boot 2: stopping the data disk's mount stops the CI user's manager first"
check_eq active "$(fact 2 mount-after-manager-start)" \
	"boot 2: starting the CI user's manager mounts the data disk first"
echo "# whole test: $SECONDS s"
