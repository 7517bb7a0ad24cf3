#!/bin/bash
# killed-anywhere: a first apply killed (SIGKILL) at ANY of its killpoints is
# completed by the next apply, to the same state as an uninterrupted run.
#
# 1. A reference machine (fresh, blank data disk) runs one uninterrupted
#    apply with RCI_KILL_AT=list: the list of points it passes is what this
#    test covers, so a new killpoint is covered without editing this file.
#    The list must hold at least the known points. Its end state (check
#    passes, Docker answers) is snapshotted and normalised.
# 2. A second fresh machine with a blank data disk goes through the list in
#    order: run k is killed at point k, so it starts from the state run k-1
#    was killed in — the state a first apply has at point k-1 — and must get
#    past it to point k. After every kill: the sentinel on the data disk
#    survives (once the disk is mounted), and the temp files the previous
#    kill left (.#NAME.XXXX beside a target) are gone. A run that fails is
#    a failure. A run that recovers by another path and finishes without
#    reaching its point (after a kill at write-after-rename@fstab, fstab is
#    already right, so disk-fstab-written is never passed) is checked as
#    converged (step 3's checks) and the chain goes on from a fresh
#    machine, where that point is killed with the reference's numbering.
# 3. An uninterrupted apply then converges: check passes, the CI user's
#    Docker answers, no temp files anywhere under /etc /home /srv (the
#    data disk included) /run/rootless-ci, the sentinel is there, and the
#    normalised snapshot equals the reference's.
#
# Why a chain and not a fresh machine per point: 55 points × (boot +
# first apply + second apply) is ~30 minutes on a loaded 2-core host; the
# chain is six boots (the reference, then one per path change) and ~60
# short runs: about 4 minutes. Each point is still killed exactly
# there (points carry the file, program or unit they work on:
# write-before-rename@subuid), and each kill is followed by a run that must
# recover from it. What the chain does not show on its own is that apply
# converges from every point's state *without* the runs in between; the
# final comparison and the per-kill checks are what it asserts.
#
# Every apply runs as a transient unit inside (systemd-run), the way a
# provisioning service runs it: when the main process is killed, systemd
# kills what it started too (mkfs, useradd half done), as a real stop would.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

# The points a first apply on a fresh machine with a data disk passes at least
# (names; each file write has three points per file). The list may grow, never
# lose one of these.
KNOWN_POINTS=(
	disk-gpt-written disk-partition-ready exec-spawned@mkfs.ext4 disk-mkfs-done
	write-before-fsync@fstab write-before-rename@fstab write-after-rename@fstab
	disk-fstab-written disk-mounted
	user-before-useradd exec-spawned@useradd user-after-useradd
	write-before-rename@subuid user-subuid-written write-before-rename@subgid user-subgid-written
	home-mkdir-before-chown@.local home-symlink-before-rename@docker
	write-before-rename@docker.service link-before-rename@docker.service daemon-unit-written
	write-before-rename@rootless-ci-delegate.conf write-before-rename@rootless-ci-mount.conf
	daemon-root-masked@docker.socket daemon-root-masked@docker.service daemon-linger
	daemon-waiting-for-manager daemon-before-start daemon-waiting-for-ping daemon-started
	agent-config-secured write-before-rename@zz-rootless-ci.conf agent-dropin-written
)
MIN_POINTS=55
SENTINEL=/srv/rootless-ci/.rci-sentinel-killed-anywhere
T_START=$SECONDS

# rci_unit OUT ERR [ENV=VAL...]: `rootless-ci apply` as a transient unit
# inside, with OUT and ERR its stdout and stderr (systemd-run's own summary
# at the end of ERR); its status. killed_by_sigkill ERR: did it die there?
rci_unit() {
	local out=$1 err=$2 e
	shift 2
	local envs=()
	for e in "$@"; do envs+=(-E "$e"); done
	in_machine systemd-run --wait --pipe --collect --service-type=exec \
		-p KillMode=control-group -p KillSignal=SIGKILL \
		"${envs[@]}" rootless-ci apply >"$out" 2>"$err"
}

killed_by_sigkill() {
	grep -q 'code=killed/status=KILL' "$1"
}

# next_machine: stop this test's machine (if any) and boot a fresh one.
n_machine=0
next_machine() {
	if [[ -n $RCI_MACHINE ]]; then
		"$MACHINE" stop "$RCI_MACHINE" >/dev/null 2>&1 || true
		RCI_MACHINE=
	fi
	n_machine=$((n_machine + 1))
	RCI_MACHINE=rci-killed-anywhere-$$-$n_machine
	RCI_MACHINE_OWNER=$$ "$MACHINE" start "$RCI_MACHINE" >/dev/null ||
		fail "machine $RCI_MACHINE did not start"
	"$MACHINE" install "$RCI_MACHINE" "$RCI_BUILD_DIR" >/dev/null || fail "cannot install into $RCI_MACHINE"
	machine_data_disk >/dev/null || fail "cannot give $RCI_MACHINE a data disk"
}

# temp_files: our atomic-write temp files anywhere they could be left.
# -xdev keeps find on each starting point's own filesystem, so the data
# disk, mounted at /srv/rootless-ci, is a starting point of its own (before
# the mount, the same directory on the root filesystem).
temp_files() {
	in_machine sh -c 'find /etc /home /srv /srv/rootless-ci /run/rootless-ci -xdev -name ".#*" 2>/dev/null | sort' || true
}

# normalised FILE: the snapshot with what differs between two machines made
# the same way taken out: machine names, loop devices, UUIDs, keys and IDs
# generated at random, the data root's own databases, units that are
# listed only while loaded, and of the mounts and running units only what
# apply deals in (the rest is how each boot went: systemd-sysusers and
# utmp units fail or not). fstab and the config are compared by content.
normalised() {
	{
		awk '/^## /{sec=$2} 
			sec == "mounts:" && !/^## / && !/^\/(srv|home|run\/user)/ {next}
			sec == "units:" && !/^## / && !/docker|containerd|user@|user-runtime|buildkite|srv-rootless|rootless-ci/ {next}
			{print}' "$1" |
		sed -E \
			-e 's/rci-killed-anywhere-[0-9]+-[0-9]+/MACHINE/g' \
			-e 's/loop[0-9]+/LOOP/g' \
			-e '/^\/(etc\/machine-id|etc\/fstab|etc\/rootless-ci\.conf|etc\/docker\/key\.json|home\/[^\t]*\/key\.json)\t/s/\t[0-9a-f]{64}$//' \
			-e '/^\/srv\/rootless-ci\/[^\t]*\/docker\//s/\t[0-9a-f]{64}$//' \
			-e '/\.rci-sentinel-killed-anywhere/d' \
			-e '/ masked inactive dead$/d'
		echo "## fstab"
		in_machine cat /etc/fstab | sed -E 's/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/UUID/g'
	}
}

# converged NAME: check passes, Docker answers, no temp files, and the normalised snapshot into $TEST_TMP/NAME.snap.
converged() {
	local name=$1 v
	in_machine rootless-ci --json check >"$TEST_TMP/$name.check" 2>"$TEST_TMP/$name.check.err" ||
		{ jq -c '.items[] | select(.status == "fail")' "$TEST_TMP/$name.check" | sed 's/^/# /'; fail "$name: check fails"; }
	ok "$name: check passes"
	v=$(as_ci docker version --format '{{.Server.Version}}' 2>&1) || fail "$name: $CI_USER's Docker does not answer: $v"
	ok "$name: $CI_USER's Docker answers (server $v)"
	assert_eq "" "$(temp_files)" "$name: no temp files under /etc /home /srv (the data disk too) /run/rootless-ci"
	machine_snapshot "$TEST_TMP/$name.raw"
	normalised "$TEST_TMP/$name.raw" >"$TEST_TMP/$name.snap"
}

machine_requirements
need_test_hooks
"$MACHINE" gc
trap machine_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
TEST_TMP=$(mktemp -d "/tmp/rci-$TEST_NAME.XXXXXX")

# ---------------------------------------------------------------- 1. reference
next_machine
t0=$SECONDS
rci_unit "$TEST_TMP/ref.out" "$TEST_TMP/ref.err" RCI_KILL_AT=list ||
	{ sed 's/^/# /' "$TEST_TMP/ref.err"; fail "the uninterrupted apply failed"; }
ref_secs=$((SECONDS - t0))
mapfile -t points < <(sed -n 's/^killpoint: //p' "$TEST_TMP/ref.err")
((${#points[@]} >= MIN_POINTS)) ||
	fail "the uninterrupted apply passed ${#points[@]} killpoints, fewer than the $MIN_POINTS known"
for p in "${KNOWN_POINTS[@]}"; do
	printf '%s\n' "${points[@]}" | grep -qxF -- "$p" ||
		{ echo "# passed: ${points[*]}"; fail "the uninterrupted apply never passed killpoint $p"; }
done
ok "uninterrupted apply in $ref_secs s passed ${#points[@]} killpoints, every known one among them"
converged reference

# ---------------------------------------------------------------- 2. the chain
next_machine
t0=$SECONDS
declare -A seen=()
prev_temps=''
sentinel_made=false
fresh=true
segment=0
n=0
for p in "${points[@]}"; do
	n=$((n + 1))
	seen[$p]=$((${seen[$p]:-0} + 1))
	spec=$p
	((${seen[$p]} == 1)) || spec=$p:${seen[$p]}
	rc=0
	rci_unit "$TEST_TMP/k$n.out" "$TEST_TMP/k$n.err" RCI_KILL_AT="$spec" || rc=$?
	if [[ $rc -eq 0 ]]; then
		# The run after the previous kill recovered by another path and
		# finished: that run converged (checked now), and point n is taken
		# from a fresh machine, where the numbering is the reference's.
		$fresh && fail "point $n $spec: a first apply on a fresh machine did not pass it"
		ok "the run after the kill at $((n - 1)) took another path and finished without passing $spec"
		segment=$((segment + 1))
		converged "segment$segment"
		assert_same_snapshot "$TEST_TMP/reference.snap" "$TEST_TMP/segment$segment.snap" \
			"segment $segment: its normalised state equals the uninterrupted run's"
		if $sentinel_made; then
			in_machine test -f "$SENTINEL" || fail "segment $segment: the sentinel on the data disk is gone"
		fi
		next_machine
		prev_temps=''
		sentinel_made=false
		fresh=true
		rci_unit "$TEST_TMP/k$n.out" "$TEST_TMP/k$n.err" RCI_KILL_AT="$spec" || rc=$?
		[[ $rc -ne 0 ]] || fail "point $n $spec: a first apply on a fresh machine did not pass it"
	fi
	fresh=false
	if ! killed_by_sigkill "$TEST_TMP/k$n.err"; then
		sed 's/^/# /' "$TEST_TMP/k$n.err" | tail -n 20
		fail "point $n $spec: apply ended with $rc, not by the kill (the run after the previous kill failed)"
	fi
	# The temp files the previous kill left are gone: this run wrote those
	# targets again on its way here.
	now=$(temp_files)
	if [[ -n $prev_temps ]]; then
		while read -r f; do
			grep -qxF -- "$f" <<<"$now" && fail "point $n $spec: $f, left by the previous kill, is still there"
		done <<<"$prev_temps"
	fi
	prev_temps=$now
	# The sentinel: made on the data disk as soon as it is mounted, then never lost.
	if $sentinel_made; then
		in_machine test -f "$SENTINEL" || fail "point $n $spec: the sentinel on the data disk is gone"
	elif in_machine mountpoint -q /srv/rootless-ci; then
		out=$(in_machine sh -c "echo sentinel >$SENTINEL && sync" 2>&1) ||
			fail "point $n $spec: cannot write the sentinel on the mounted data disk: $out"
		sentinel_made=true
	fi
	ok "killed at $n/${#points[@]} $spec${now:+ (left: $(tr '\n' ' ' <<<"$now"))}"
done
$sentinel_made || fail "the data disk was never mounted during the chain"
chain_secs=$((SECONDS - t0))

# ---------------------------------------------------------------- 3. converge
rci_unit "$TEST_TMP/final.out" "$TEST_TMP/final.err" ||
	{ sed 's/^/# /' "$TEST_TMP/final.err"; fail "the apply after the last kill failed"; }
ok "the apply after the last kill completes"
converged chain
in_machine test -f "$SENTINEL" || fail "the sentinel on the data disk is gone"
ok "the sentinel on the data disk survived every kill"
assert_same_snapshot "$TEST_TMP/reference.snap" "$TEST_TMP/chain.snap" \
	"the killed-and-resumed machine's normalised state equals the uninterrupted one's"
echo "# timing: reference apply $ref_secs s, chain of ${#points[@]} kills in $((segment + 1)) segment(s) $chain_secs s, whole test $((SECONDS - T_START)) s"
echo "PASS: $TEST_NAME"
