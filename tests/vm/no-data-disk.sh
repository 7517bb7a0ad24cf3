#!/bin/bash
# A VM booted through cloud-init with conf/cloud-init.yaml but without its
# data disk. Proves that rootless-ci refuses the disk holding / — with and
# without --wipe — and leaves it as it was (its partition area, signatures,
# filesystem, fstab and mounts), and — once the steps exist — that apply and
# check explain that the configured disk is missing and that the CI user's
# Docker does not start writing to the root disk.
# shellcheck source=tests/vm/lib.sh
source "$(dirname "$0")/lib.sh"

vm_begin
vm_boot --user-data="$RCI_SOURCE_DIR/conf/cloud-init.yaml" --no-data-disk \
	--guest="$RCI_SOURCE_DIR/tests/vm/no-data-disk.guest"
wait_fact 1 "done" 900 || bail "the guest script ran to its end"
echo "# power-on to the end of the checks: $((SECONDS - BOOT_T0)) s"

check_eq missing "$(fact 1 data-disk)" "the VM has no /dev/disk/by-id/virtio-ci-data"
check_eq /dev/vda "$(fact 1 root-disk)" "/ is on /dev/vda"

for run in refuse refuse-wipe; do
	case $run in
	refuse) what="apply --disk=/dev/vda" after=after ;;
	refuse-wipe) what="apply --disk=/dev/vda --wipe" after=after-wipe ;;
	esac
	guest_log 1 "$run" | while IFS= read -r line; do echo "#   $what: $line"; done
	check_eq 3 "$(fact 1 "$run-exit")" "$what is refused with exit 3"
	for part in head probe fs parts fstab mounts; do
		check_eq "$(fact 1 "before-$part")" "$(fact 1 "$after-$part")" \
			"$what leaves the root disk's $part as it was"
	done
done

check_ne none "$(fact 1 runcmd-failed)" "apply from runcmd fails without the data disk"
check_match 'virtio-ci-data' "$(json_fact 1 check | jq -r '[.items[] | select(.step == "disk" and .status == "fail") | .message] | join(" ")')" \
	"check names the missing data disk"
check_ne active "$(fact 1 user-docker)" "the CI user's docker.service is not running without its disk"
check_eq 0 "$(fact 1 srv-entries)" "nothing was written under /srv/rootless-ci on the root disk"
echo "# whole test: $SECONDS s"
