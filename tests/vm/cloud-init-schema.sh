#!/bin/bash
# conf/cloud-init.yaml is valid cloud-config for the cloud-init of Debian 12
# (22.4), as `cloud-init schema` judges it — run in the vm tier's image tree,
# not booted. A copy with a type error must be rejected, so the check can
# fail. Its commented two-tenant configuration, in use, too.
# shellcheck source=tests/vm/lib.sh
source "$(dirname "$0")/lib.sh"

USER_DATA=$RCI_SOURCE_DIR/conf/cloud-init.yaml

[[ $(id -u) -eq 0 ]] || skip_all "needs root (the image build, chroot)"
command -v mmdebstrap >/dev/null || skip_all "mmdebstrap is not installed (scripts/deps.sh)"
tree=$("$RCI_SOURCE_DIR/scripts/machine" image --flavour=vm)
trap 'echo "1..$TAP_N"; [[ $TAP_FAILED -eq 0 ]]' EXIT

# schema FILE: cloud-init schema on FILE inside the image tree. The tree is
# shared and stays untouched: FILE goes to a tmpfs over its /tmp, with /proc,
# in a private mount namespace that vanishes with the command.
schema() {
	# shellcheck disable=SC2016 # expanded by the inner bash
	unshare -m --propagation private bash -euc '
		mount -t tmpfs -o mode=0755 rci-schema "$1/tmp"
		mount -t proc proc "$1/proc"
		cp "$2" "$1/tmp/user-data"
		chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
			cloud-init schema --config-file /tmp/user-data
	' schema "$tree" "$1" 2>&1
}

out=$(schema "$USER_DATA") && rc=0 || rc=$?
printf '#   %s\n' "${out//$'\n'/$'\n'#   }"
check_eq 0 "$rc" "cloud-init schema accepts conf/cloud-init.yaml"
check_match 'Valid cloud-config' "$out" "cloud-init schema says it is valid cloud-config"
check_eq '#cloud-config' "$(head -n1 "$USER_DATA")" "conf/cloud-init.yaml starts with #cloud-config"

# Its commented two-tenant configuration, in use as its header says, is valid too.
two=$(mktemp)
two_tenant_user_data "$USER_DATA" >"$two"
out=$(schema "$two") && rc=0 || rc=$?
rm -f "$two"
printf '#   %s\n' "${out//$'\n'/$'\n'#   }"
check_eq 0 "$rc" "cloud-init schema accepts conf/cloud-init.yaml with its two tenants in use"

bad=$(mktemp)
trap 'rm -f "$bad"; echo "1..$TAP_N"; [[ $TAP_FAILED -eq 0 ]]' EXIT
sed 's/^runcmd:$/runcmd: 42\nunused:/' "$USER_DATA" >"$bad"
out=$(schema "$bad") && rc=0 || rc=$?
printf '#   %s\n' "${out//$'\n'/$'\n'#   }"
check_ne 0 "$rc" "cloud-init schema rejects a copy whose runcmd is not a list"
check_match "runcmd: 42 is not of type 'array'" "$out" "cloud-init schema names the error"
