#!/bin/bash
# plan-missing-uidmap: without the uidmap package, plan names the package
# to install for newuidmap and newgidmap and exits 1, and apply refuses
# (exit 1) before changing anything: not the machine, not the data disk.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

machine_begin

# The machine has no network: purge the package as dpkg would on removal,
# leaving whatever depends on it (rootlesskit, docker.io) installed.
in_machine dpkg --purge --force-depends uidmap >/dev/null 2>&1 ||
	fail "could not purge uidmap"
in_machine sh -c '! command -v newuidmap && ! command -v newgidmap' >/dev/null ||
	fail "newuidmap or newgidmap still present after purging uidmap"
ok "uidmap purged: no newuidmap, no newgidmap"

disk=$("$MACHINE" attach-disk "$RCI_MACHINE" 512M)
ok "data disk $disk attached"
disk_hash() { in_machine sha256sum "$disk" | cut -d' ' -f1; }
disk_before=$(disk_hash)

machine_snapshot "$TEST_TMP/before"

# Every check that does not depend on uidmap still passes.
others_pass() {
	jq -r '.items[] | select(.step == "preflight" and .status == "fail" and
		(.id | IN("preflight.newuidmap", "preflight.newgidmap") | not)) | .id' "$1"
}

# ---- plan
run_json plan plan
sed 's/^/# stderr: /' "$TEST_TMP/plan.err"
assert_eq 1 "$rc" "plan exits 1: apply would fail"
jq -e . "$TEST_TMP/plan.json" >/dev/null || fail "plan --json did not print one JSON object"
assert_eq 1 "$(jq -r .exit "$TEST_TMP/plan.json")" "plan's JSON exit is 1"
for id in preflight.newuidmap preflight.newgidmap; do
	assert_eq fail "$(item "$TEST_TMP/plan.json" "$id" status)" "plan: $id fails"
	fix=$(item "$TEST_TMP/plan.json" "$id" fix)
	assert_contains "$fix" "apt-get install" "plan: $id fix is an apt-get install"
	[[ $fix =~ (^|[[:space:]])uidmap([[:space:]]|$) ]] ||
		fail "plan: $id fix does not name the package uidmap: $fix"
	ok "plan: $id fix names uidmap ($fix)"
done
assert_eq "" "$(others_pass "$TEST_TMP/plan.json")" "plan: every other preflight check passes"
assert_eq 0 "$(jq '[.items[] | select(.changed != false)] | length' "$TEST_TMP/plan.json")" \
	"plan marks no item as changed"

# The human report says the same.
set +e
in_machine rootless-ci plan >"$TEST_TMP/plan.txt" 2>&1
rc=$?
set -e
assert_eq 1 "$rc" "plan without --json exits 1 too"
assert_contains "$(cat "$TEST_TMP/plan.txt")" "apt-get install uidmap" "plan's report tells to apt-get install uidmap"

# ---- apply: refuses, before the disk or anything else is touched
run_json apply apply --disk="$disk"
sed 's/^/# stderr: /' "$TEST_TMP/apply.err"
assert_eq 1 "$rc" "apply refuses with exit 1"
jq -e . "$TEST_TMP/apply.json" >/dev/null || fail "apply --json did not print one JSON object"
assert_eq 1 "$(jq -r .exit "$TEST_TMP/apply.json")" "apply's JSON exit is 1"
assert_eq false "$(jq -r .changed "$TEST_TMP/apply.json")" "apply reports it changed nothing"
assert_eq 0 "$(jq '[.items[] | select(.changed != false)] | length' "$TEST_TMP/apply.json")" \
	"apply marks no item as changed"
for id in preflight.newuidmap preflight.newgidmap; do
	assert_eq fail "$(item "$TEST_TMP/apply.json" "$id" status)" "apply: $id fails"
done

machine_snapshot "$TEST_TMP/after"
assert_same_snapshot "$TEST_TMP/before" "$TEST_TMP/after" "plan and apply changed nothing in the machine"
assert_eq "$disk_before" "$(disk_hash)" "the data disk is byte for byte as it was"

echo "PASS: $TEST_NAME"
