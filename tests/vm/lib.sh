# shellcheck shell=bash
# tests/vm/lib.sh — sourced by every test of the "vm" tier.
#
# A test calls vm_begin (a TAP skip, exit 0, where the tier cannot run), then
# vm_boot with the seed and its guest script (tests/vm/*.guest, run inside at
# the end of every boot with tests/vm/guest-lib.sh), waits for the facts the
# guest prints on the serial console, and asserts on them here. The VM is
# stopped however the test ends.
#
# Output is TAP (meson: protocol 'tap'): one line per assertion; the plan
# line comes last.
#
# From meson (tests/vm/meson.build): RCI_SOURCE_DIR, RCI_BUILD_DIR,
# RCI_PREFIX (must be /usr, as for the machine tier).

set -euo pipefail

: "${RCI_SOURCE_DIR:?set by meson: the source dir}"
: "${RCI_BUILD_DIR:?set by meson: the build dir}"

TEST_NAME=${TEST_NAME:-$(basename "$0" .sh)}
VM_TOOL=$RCI_SOURCE_DIR/scripts/vm
RCI_VM=
CONSOLE=
TAP_N=0
TAP_FAILED=0
# skip_all printed the plan.
SKIPPED_ALL=0
# Seconds since the VM was powered on, at vm_boot.
BOOT_T0=0

# ---------------------------------------------------------------- TAP

# A skip of the whole test (before any assertion): TAP's skip plan and
# exit 0 (a TAP test that exits 77 is an ERROR to meson).
skip_all() {
	echo "1..0 # SKIP $TEST_NAME: $*"
	SKIPPED_ALL=1
	exit 0
}

ok() {
	TAP_N=$((TAP_N + 1))
	echo "ok $TAP_N - $*"
}

not_ok() {
	TAP_N=$((TAP_N + 1))
	TAP_FAILED=$((TAP_FAILED + 1))
	echo "not ok $TAP_N - $*"
}

# bail REASON: the test cannot go on (the VM did not come up, …).
bail() {
	not_ok "$*"
	exit 1
}

# ---------------------------------------------------------------- the VM

vm_requirements() {
	local tool
	[[ $(id -u) -eq 0 ]] || skip_all "needs root (the image build)"
	for tool in qemu-system-x86_64 qemu-img genisoimage mkfs.ext4 mmdebstrap jq meson; do
		command -v "$tool" >/dev/null || skip_all "$tool is not installed (scripts/deps.sh VM_PACKAGES)"
	done
	[[ ${RCI_PREFIX:-} == /usr ]] ||
		skip_all "the build dir has prefix '${RCI_PREFIX:-?}'; configure it with --prefix=/usr (scripts/test does)"
}

# The plan line, the console's tail when something failed, and the VM
# stopped — in its own session, so meson's SIGTERM/SIGKILL on a timeout
# cannot cut the stop short.
vm_cleanup() {
	local rc=$? log
	trap - EXIT INT TERM
	if [[ -n $RCI_VM ]]; then
		if [[ $TAP_FAILED -ne 0 || $rc -ne 0 ]] && [[ -f $CONSOLE ]]; then
			echo "# console of $RCI_VM, last 60 lines:"
			tr -d '\r' <"$CONSOLE" | tail -n 60 | sed 's/^/#   /'
		fi
		log=$(mktemp)
		setsid "$VM_TOOL" stop "$RCI_VM" >"$log" 2>&1 </dev/null &
		wait $! || echo "# stopping VM $RCI_VM failed:"
		sed 's/^/# /' "$log"
		rm -f "$log"
	fi
	if [[ $SKIPPED_ALL -eq 0 ]]; then
		echo "1..$TAP_N"
		[[ $TAP_FAILED -eq 0 ]] || rc=1
	fi
	exit "$rc"
}

vm_begin() {
	vm_requirements
	"$VM_TOOL" gc
	RCI_VM=rci-$TEST_NAME-$$
	trap vm_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	local t0=$SECONDS
	# Built once and cached; said here because the first build takes minutes.
	"$VM_TOOL" image >/dev/null
	echo "# VM image ready in $((SECONDS - t0)) s"
}

# vm_boot ARGS...: scripts/vm boot this test's VM with the build installed.
vm_boot() {
	RCI_VM_OWNER=$$ "$VM_TOOL" boot "$RCI_VM" --install="$RCI_BUILD_DIR" "$@"
	CONSOLE=$("$VM_TOOL" console "$RCI_VM")
	# shellcheck disable=SC2034 # read by the tests
	BOOT_T0=$SECONDS
}

# wait_console REGEX SECONDS: the first console line matching REGEX.
wait_console() {
	"$VM_TOOL" wait-for "$RCI_VM" "$1" "$2"
}

# wait_fact BOOT KEY SECONDS: wait until the guest reported KEY in boot BOOT.
wait_fact() {
	wait_console "^RCI-RESULT boot=$1 $2=" "$3" >/dev/null
}

# fact BOOT KEY: the value the guest reported for KEY in boot BOOT (the
# last one); empty if none.
fact() {
	tr -d '\r' <"$CONSOLE" | sed -n "s/^RCI-RESULT boot=$1 $2=//p" | tail -n1
}

# json_fact BOOT KEY: the JSON document the guest reported.
json_fact() {
	tr -d '\r' <"$CONSOLE" | sed -n "s/^RCI-JSON boot=$1 $2 //p" | tail -n1
}

# guest_log BOOT KEY: the output of a command the guest ran (run_logged).
guest_log() {
	tr -d '\r' <"$CONSOLE" | sed -n "s/^RCI-LOG boot=$1 $2: //p"
}

# ---------------------------------------------------------------- assertions

# check_eq EXPECTED ACTUAL DESCRIPTION
check_eq() {
	if [[ $1 == "$2" ]]; then
		ok "$3"
	else
		not_ok "$3"
		echo "#   expected '$1', got '$2'"
	fi
}

check_ne() {
	if [[ $1 != "$2" ]]; then
		ok "$3"
	else
		not_ok "$3"
		echo "#   expected anything but '$1'"
	fi
}

check_match() {
	if [[ $2 =~ $1 ]]; then
		ok "$3"
	else
		not_ok "$3"
		echo "#   '$2' does not match /$1/"
	fi
}

# check_preflight BOOT: rootless-ci's own preflight (`check --json` in the
# guest), on this real kernel with udev: every item passes, and the ones a
# container cannot show (the TUN device's mode from udev, systemd as PID 1,
# the kernel) are among them.
check_preflight() {
	local boot=$1 check id status
	check=$(json_fact "$boot" check)
	if [[ -z $check || $check == null ]]; then
		not_ok "boot $boot: rootless-ci --json check answered"
		return
	fi
	for id in preflight.tun preflight.systemd preflight.kernel preflight.userns; do
		check_eq 1 "$(jq --arg id "$id" '[.items[] | select(.id == $id)] | length' <<<"$check")" \
			"boot $boot: the preflight reports $id"
	done
	while read -r id status; do
		check_eq pass "$status" "boot $boot: $id passes"
	done < <(jq -r '.items[] | select(.step == "preflight") | "\(.id) \(.status)"' <<<"$check")
}

# two_tenant_user_data SRC: SRC (conf/cloud-init.yaml) with its commented
# two-tenant configuration in use, as its header tells an operator to do:
# [User] and [Agent] removed, one "#" taken from each line between
# "## two tenants" and "## end of two tenants". On stdout.
two_tenant_user_data() {
	sed -e '/^ *\[User\]$/,/^ *Unit=buildkite-agent\.service$/d' \
		-e '/^ *## two tenants/,/^ *## end of two tenants/ s/^\( *\)#\([^#]\|$\)/\1\2/' "$1"
}
