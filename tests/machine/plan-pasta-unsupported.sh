#!/bin/bash
# plan-pasta-unsupported: with slirp4netns gone and pasta installed, Debian
# 12's rootlesskit (1.1.0: host, slirp4netns, vpnkit, lxc-user-nic) cannot
# drive pasta. preflight asks it (rootlesskit --help, as nobody) and fails,
# naming what it drives and the package to install; plan and apply exit 1
# and apply changes nothing, not the machine, not the data disk. Then a
# rootlesskit that lists pasta passes, its answer is recorded by an apply
# whose preflight passed, and a later run asks no more (no process) until
# the binary changes.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

machine_begin

# No network in the machine: purge slirp4netns as dpkg would, leaving
# rootlesskit and docker.io installed; pasta is a stand-in script (only its
# presence matters: preflight never runs it).
in_machine dpkg --purge --force-depends slirp4netns >/dev/null 2>&1 || fail "could not purge slirp4netns"
in_machine sh -c '! command -v slirp4netns' >/dev/null || fail "slirp4netns still present after purging it"
printf '#!/bin/sh\necho "pasta stand-in" >&2\nexit 1\n' | in_machine install -m 0755 /dev/stdin /usr/bin/pasta
ok "slirp4netns purged, a pasta stand-in in /usr/bin"
drivers=$(in_machine sh -c 'rootlesskit --help | sed -n "s/.*--net value.*network driver \[\([^]]*\)\].*/\1/p"')
echo "# this machine's rootlesskit --help lists --net drivers: $drivers"
[[ $drivers == *slirp4netns* && $drivers != *pasta* ]] || fail "rootlesskit here is expected to lack pasta: $drivers"

disk=$("$MACHINE" attach-disk "$RCI_MACHINE" 512M)
ok "data disk $disk attached"
disk_hash() { in_machine sha256sum "$disk" | cut -d' ' -f1; }
disk_before=$(disk_hash)
machine_snapshot "$TEST_TMP/before"


# ---- plan and apply: preflight fails on the network driver alone
for verb in plan apply; do
	args=("$verb")
	[[ $verb == apply ]] && args+=("--disk=$disk")
	run_json "$verb" "${args[@]}"
	sed 's/^/# stderr: /' "$TEST_TMP/$verb.err"
	assert_eq 1 "$rc" "$verb exits 1"
	jq -e . "$TEST_TMP/$verb.json" >/dev/null || fail "$verb --json did not print one JSON object"
	assert_eq fail "$(item "$TEST_TMP/$verb.json" preflight.network status)" "$verb: preflight.network fails"
	msg=$(item "$TEST_TMP/$verb.json" preflight.network message)
	echo "# $verb: $msg"
	assert_contains "$msg" "drives only host slirp4netns vpnkit lxc-user-nic" \
		"$verb: the failure names the drivers this rootlesskit has"
	assert_contains "$msg" "pasta (/usr/bin/pasta) cannot be used" "$verb: and that pasta cannot be used"
	assert_eq "apt-get install slirp4netns (this rootlesskit cannot drive pasta)" \
		"$(item "$TEST_TMP/$verb.json" preflight.network fix)" "$verb: the fix names the package to install"
	# (plan goes on past the preflight: its daemon.unit says the driver is unknown, for the same cause.)
	assert_eq "" "$(jq -r '.items[] | select(.status == "fail" and .id != "preflight.network" and
		(.id != "daemon.unit" or (.message | contains("network driver") | not))) | .id' "$TEST_TMP/$verb.json")" \
		"$verb: nothing else fails (but plan's daemon.unit, for want of a network driver)"
	assert_eq 0 "$(jq '[.items[] | select(.changed != false)] | length' "$TEST_TMP/$verb.json")" \
		"$verb marks no item as changed"
done
assert_eq missing "$(item "$TEST_TMP/apply.json" daemon.unit status)" "apply stopped before the daemon step (no NET=pasta unit)"
assert_eq no "$(in_machine sh -c 'test -e /run/rootless-ci/rootlesskit-net-drivers && echo yes || echo no')" \
	"a failed preflight records no answer"

machine_snapshot "$TEST_TMP/after"
assert_same_snapshot "$TEST_TMP/before" "$TEST_TMP/after" "plan and apply changed nothing in the machine"
assert_eq "$disk_before" "$(disk_hash)" "the data disk is byte for byte as it was"

# ---- a rootlesskit that drives pasta (2.x's --help line), asked once
in_machine mv /usr/bin/rootlesskit /usr/bin/rootlesskit.real
printf '%s\n' '#!/bin/sh' 'cat <<EOF' 'OPTIONS:' \
	'   --net value  network driver [host, pasta(experimental), slirp4netns, vpnkit, lxc-user-nic(experimental)] (default: "host")' \
	'EOF' | in_machine install -m 0755 /dev/stdin /usr/bin/rootlesskit
# asks CMD...: the programs CMD starts (execve), its own left out.
asks() {
	in_machine strace -f -qq -e trace=execve -o /tmp/asks.trace "$@" >/dev/null 2>&1 || true
	in_machine cat /tmp/asks.trace | grep -o 'execve("[^"]*"' | grep -v '"/usr/sbin/rootless-ci"' | sort -u | tr '\n' ' ' || true
}
run_json plan2 plan
assert_eq pass "$(item "$TEST_TMP/plan2.json" preflight.network status)" "plan: pasta passes with a rootlesskit that lists it"
assert_contains "$(item "$TEST_TMP/plan2.json" preflight.network message)" "drives host pasta slirp4netns" \
	"plan: the message names what rootlesskit drives"
assert_contains "$(asks rootless-ci plan)" 'execve("/usr/bin/rootlesskit"' "plan with no recorded answer asks rootlesskit"
# An apply whose preflight passes records the answer; a Device= that does
# not exist then stops it at the disk step, before it changes anything.
run_json apply2 apply --disk=/dev/rci-no-such-disk
assert_eq pass "$(item "$TEST_TMP/apply2.json" preflight.network status)" "apply: preflight.network passes"
assert_eq fail "$(item "$TEST_TMP/apply2.json" disk.device status)" "apply: then stops at the disk step (no such disk)"
assert_contains "$(in_machine cat /run/rootless-ci/rootlesskit-net-drivers)" "host pasta slirp4netns" \
	"apply recorded rootlesskit's answer in /run/rootless-ci"
assert_eq "" "$(asks rootless-ci plan)" "with the answer recorded, plan starts no process"
assert_eq pass "$(in_machine rootless-ci --json plan 2>/dev/null | jq -r '.items[] | select(.id == "preflight.network") | .status')" \
	"and preflight.network still passes from the record"
in_machine touch /usr/bin/rootlesskit
assert_contains "$(asks rootless-ci plan)" 'execve("/usr/bin/rootlesskit"' "a changed rootlesskit is asked again"

echo "PASS: $TEST_NAME"
