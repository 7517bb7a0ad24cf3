#!/bin/bash
# converged-fast: on a converged machine, apply changes nothing, starts no
# process and only reads from D-Bus (traced with strace); its events reach
# the journal with structured fields; --json keeps stdout to JSON while
# stderr carries the per-step lines; and plan changes nothing on a drifted
# machine while naming each drift on a line of its own.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

machine_begin

CI=$CI_USER
machine_data_disk

in_machine rootless-ci -v apply >"$TEST_TMP/apply1.out" 2>&1 || { cat "$TEST_TMP/apply1.out"; fail "first apply"; }
ok "first apply converges the machine"
# The fstab line, the root daemon's masks and the user manager's drop-ins are
# read in one reload before user@UID starts; the agent's drop-in, written
# after the daemon is up, needs the second.
assert_eq 2 "$(grep -c 'Timing: daemon-reload (systemd)' "$TEST_TMP/apply1.out")" \
	"a first apply reloads systemd twice, not once per step that changed its files"
assert_contains "$(cat "$TEST_TMP/apply1.out")" "Timing: run " "-v ends with the run's account of its time"

# ---- the journal: every item of the daemon step, with step, object and change
in_machine journalctl -o json RCI_STEP=daemon >"$TEST_TMP/journal.json"
assert_eq "create" "$(jq -r 'select(.RCI_OBJECT == "daemon.unit") | .RCI_CHANGE' "$TEST_TMP/journal.json" | head -n1)" \
	"the journal has the daemon step's unit as RCI_OBJECT=daemon.unit RCI_CHANGE=create"
assert_eq "create" "$(jq -r 'select(.RCI_OBJECT == "daemon.service") | .RCI_CHANGE' "$TEST_TMP/journal.json" | head -n1)" \
	"the journal has the daemon's start as RCI_OBJECT=daemon.service RCI_CHANGE=create"
assert_contains "$(jq -r 'select(.RCI_OBJECT == null) | .MESSAGE' "$TEST_TMP/journal.json")" "changed (" \
	"the step's summary line (verdict and duration) is in the journal too"

# ---- a converged apply: no process, D-Bus reads only, nothing written
set +e
in_machine strace -f -qq -e trace=execve,execveat,fork,vfork,clone,clone3 -o /tmp/procs.trace rootless-ci apply \
	>"$TEST_TMP/noop.out" 2>"$TEST_TMP/noop.err"
rc=$?
set -e
sed 's/^/#   /' "$TEST_TMP/noop.err"
assert_eq 0 "$rc" "a converged apply exits 0"
assert_contains "$(cat "$TEST_TMP/noop.out")" "Nothing changed" "it says nothing changed"
procs=$(in_machine cat /tmp/procs.trace | grep -v -e 'execve("/usr/sbin/rootless-ci"' -e '^[0-9]* +++' || true)
[[ -z $procs ]] || printf '#   %s\n' "$procs"
assert_eq "" "$procs" "a converged apply starts no process (no fork, clone or exec after its own)"

# The caller's PATH chooses nothing: a dockerd-rootless.sh and a rootlesskit
# first on root's PATH are not what the CI user's unit runs.
# shellcheck disable=SC2016 # expanded by the machine's shell
in_machine sh -c 'mkdir -p /opt/evil && for f in dockerd-rootless.sh rootlesskit; do printf "#!/bin/sh\n" >/opt/evil/$f; chmod 0755 /opt/evil/$f; done'
assert_contains "$(in_machine env PATH=/opt/evil:/usr/sbin:/usr/bin:/sbin:/bin rootless-ci apply 2>&1)" "Nothing changed" \
	"an apply with other programs first on its PATH changes nothing (the unit does not follow the caller's PATH)"
in_machine rm -r /opt/evil

# Every D-Bus message it sends: method names only from the read-only set.
in_machine strace -f -qq -s 2048 -e trace=sendmsg,write -o /tmp/bus.trace rootless-ci apply >/dev/null 2>&1
writes=$(in_machine cat /tmp/bus.trace | grep -o -E 'Start(Unit|TransientUnit)|RestartUnit|StopUnit|ReloadOrRestartUnit|ResetFailedUnit|MaskUnitFiles|DisableUnitFiles|EnableUnitFiles|SetUserLinger|"Reload"|Reexecute|KillUnit' | sort -u | tr '\n' ' ' || true)
assert_eq "" "$writes" "a converged apply calls no D-Bus method that changes anything"
assert_contains "$(in_machine cat /tmp/bus.trace)" "Get" "it reads unit properties over D-Bus (Properties.Get)"
fsyncs=$(in_machine strace -f -qq -c -e trace=fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat,symlinkat,fchown,fchownat,fchmod,fchmodat \
	rootless-ci apply 2>&1 >/dev/null | awk '$NF ~ /^(fsync|fdatasync|rename|renameat|renameat2|unlinkat|mkdirat|symlinkat|fchownat|fchmodat|fchown|fchmod)$/ {print $NF}' | sort -u | tr '\n' ' ')
assert_eq "" "$fsyncs" "a converged apply renames, unlinks, syncs, chowns and chmods nothing"

# Median of 20 runs, for the log (the bench compares; a loaded CI machine is no place for a limit).
# shellcheck disable=SC2016 # expanded inside the machine
times=$(in_machine bash -c 'for i in $(seq 20); do s=$(date +%s%N); rootless-ci apply >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000 )); done' | sort -n)
echo "# converged apply, median of 20: $(sed -n 10p <<<"$times") µs (fastest $(head -n1 <<<"$times") µs)"

# ---- --json: stdout is one JSON document; the per-step lines stay on stderr
in_machine rootless-ci --json check >"$TEST_TMP/check.json" 2>"$TEST_TMP/check.err"
jq -e . "$TEST_TMP/check.json" >/dev/null || fail "check --json printed something besides JSON on stdout"
ok "--json: stdout is JSON alone"
assert_eq 7 "$(grep -c -E '^(preflight|disk|user|storage|daemon|agent|credentials): .*\([0-9.]+ ms\)$' "$TEST_TMP/check.err")" \
	"--json: stderr still has one verdict line with its duration per step"

# ---- plan on a drifted machine: one line per change, and nothing changes
in_machine sed -i 's/^RestartSec=.*/RestartSec=30s/' /etc/systemd/user/docker.service
in_machine sed -i '/x-rootless-ci/d' /etc/fstab
in_machine ln -sfn /var/lib/docker "/home/$CI/.local/share/docker"
in_machine chmod 0755 "/srv/rootless-ci/$CI/builds"
machine_snapshot "$TEST_TMP/before"
set +e
in_machine rootless-ci plan >"$TEST_TMP/plan.out" 2>"$TEST_TMP/plan.err"
rc=$?
set -e
sed 's/^/#   /' "$TEST_TMP/plan.out"
assert_eq 0 "$rc" "plan exits 0 on a drifted machine"
machine_snapshot "$TEST_TMP/after"
assert_same_snapshot "$TEST_TMP/before" "$TEST_TMP/after" "plan changed nothing on the drifted machine"
for want in "~    daemon.unit:" "+    disk.fstab:" "~    storage.home-link:" "~    storage.builds:"; do
	assert_contains "$(cat "$TEST_TMP/plan.out")" "$want" "plan names the drift: $want"
done
assert_eq 0 "$(grep -c -v -E '^(PASS|FAIL|WARN|SKIP|=   |\+   |~   |-   |     fix:)' "$TEST_TMP/plan.out" || true)" \
	"every plan line is one item with its symbol"

echo "PASS: $TEST_NAME"
