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
# 4. The same with two tenants (main trusted, pr untrusted): a reference
#    two-tenant apply lists the points (each per-tenant point passed once
#    per tenant), then a chain on a fresh two-tenant machine kills every
#    point that the second tenant's run passes (each point's second and
#    later passes in the list: the first tenant's are the single-tenant
#    chain's states). A pass is named NAME:N with N counted from the
#    previous kill, not from the start: what is already done is not passed
#    again (after a kill at pr's useradd, main's useradd is done, so pr's
#    write of /etc/subuid is that run's first). Then an uninterrupted apply
#    converges both tenants to the two-tenant reference's state.
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

# next_machine: stop this test's machine (if any) and boot a fresh one
# (with the two tenants when TENANTS is true).
TENANTS=false
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
	if $TENANTS; then
		machine_two_tenants >/dev/null || fail "cannot configure two tenants in $RCI_MACHINE"
	fi
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
	if $TENANTS; then
		v=$(as_user "$PR_USER" docker version --format '{{.Server.Version}}' 2>&1) || fail "$name: $PR_USER's Docker does not answer: $v"
		ok "$name: $PR_USER's Docker answers (server $v)"
	fi
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

# The pass's names: P before every message, F before every scratch file and
# snapshot name (empty for the single tenant, whose lines are as they were).
P=''
F=''

# ---------------------------------------------------------------- 1. reference
# reference: the uninterrupted apply on a fresh machine; its points into
# the array points, its normalised state into ${F}reference.snap.
reference() {
	local t0 p
	next_machine
	t0=$SECONDS
	rci_unit "$TEST_TMP/${F}ref.out" "$TEST_TMP/${F}ref.err" RCI_KILL_AT=list ||
		{ sed 's/^/# /' "$TEST_TMP/${F}ref.err"; fail "${P}the uninterrupted apply failed"; }
	ref_secs=$((SECONDS - t0))
	mapfile -t points < <(sed -n 's/^killpoint: //p' "$TEST_TMP/${F}ref.err")
	((${#points[@]} >= MIN_POINTS)) ||
		fail "${P}the uninterrupted apply passed ${#points[@]} killpoints, fewer than the $MIN_POINTS known"
	for p in "${KNOWN_POINTS[@]}"; do
		printf '%s\n' "${points[@]}" | grep -qxF -- "$p" ||
			{ echo "# passed: ${points[*]}"; fail "${P}the uninterrupted apply never passed killpoint $p"; }
	done
	ok "${P}uninterrupted apply in $ref_secs s passed ${#points[@]} killpoints, every known one among them"
	converged "${F}reference"
}

# ---------------------------------------------------------------- 2. the chain
# chain: kill at each point of the array points (in the two-tenant pass,
# only at each point's second and later passes), one after the other.
chain() {
	local t0 p n spec rc now f from=0 i c
	local -A seen=()
	next_machine
	t0=$SECONDS
	prev_temps=''
	sentinel_made=false
	fresh=true
	segment=0
	n=0
	n_killed=0
	for p in "${points[@]}"; do
		n=$((n + 1))
		seen[$p]=$((${seen[$p]:-0} + 1))
		if $TENANTS; then
			# The first tenant's pass of a point is the single-tenant chain's state.
			((${seen[$p]} >= 2)) || continue
			# Counted from the previous kill: the passes of p since then.
			c=0
			for ((i = from; i < n; i++)); do [[ ${points[i]} != "$p" ]] || c=$((c + 1)); done
			spec=$p:$c
		else
			spec=$p
			((${seen[$p]} == 1)) || spec=$p:${seen[$p]}
		fi
		rc=0
		rci_unit "$TEST_TMP/${F}k$n.out" "$TEST_TMP/${F}k$n.err" RCI_KILL_AT="$spec" || rc=$?
		if [[ $rc -eq 0 ]]; then
			# The run after the previous kill recovered by another path and
			# finished: that run converged (checked now), and point n is taken
			# from a fresh machine, where the numbering is the reference's.
			$fresh && fail "${P}point $n $spec: a first apply on a fresh machine did not pass it"
			ok "${P}the run after the kill at $((n - 1)) took another path and finished without passing $spec"
			segment=$((segment + 1))
			converged "${F}segment$segment"
			assert_same_snapshot "$TEST_TMP/${F}reference.snap" "$TEST_TMP/${F}segment$segment.snap" \
				"${P}segment $segment: its normalised state equals the uninterrupted run's"
			if $sentinel_made; then
				in_machine test -f "$SENTINEL" || fail "${P}segment $segment: the sentinel on the data disk is gone"
			fi
			next_machine
			prev_temps=''
			sentinel_made=false
			fresh=true
			spec=$p
			((${seen[$p]} == 1)) || spec=$p:${seen[$p]}
			rci_unit "$TEST_TMP/${F}k$n.out" "$TEST_TMP/${F}k$n.err" RCI_KILL_AT="$spec" || rc=$?
			[[ $rc -ne 0 ]] || fail "${P}point $n $spec: a first apply on a fresh machine did not pass it"
		fi
		fresh=false
		from=$((n - 1))
		n_killed=$((n_killed + 1))
		if ! killed_by_sigkill "$TEST_TMP/${F}k$n.err"; then
			sed 's/^/# /' "$TEST_TMP/${F}k$n.err" | tail -n 20
			fail "${P}point $n $spec: apply ended with $rc, not by the kill (the run after the previous kill failed)"
		fi
		# The temp files the previous kill left are gone: this run wrote those
		# targets again on its way here.
		now=$(temp_files)
		if [[ -n $prev_temps ]]; then
			while read -r f; do
				grep -qxF -- "$f" <<<"$now" && fail "${P}point $n $spec: $f, left by the previous kill, is still there"
			done <<<"$prev_temps"
		fi
		prev_temps=$now
		# The sentinel: made on the data disk as soon as it is mounted, then never lost.
		if $sentinel_made; then
			in_machine test -f "$SENTINEL" || fail "${P}point $n $spec: the sentinel on the data disk is gone"
		elif in_machine mountpoint -q /srv/rootless-ci; then
			out=$(in_machine sh -c "echo sentinel >$SENTINEL && sync" 2>&1) ||
				fail "${P}point $n $spec: cannot write the sentinel on the mounted data disk: $out"
			sentinel_made=true
		fi
		ok "${P}killed at $n/${#points[@]} $spec${now:+ (left: $(tr '\n' ' ' <<<"$now"))}"
	done
	$sentinel_made || fail "${P}the data disk was never mounted during the chain"
	chain_secs=$((SECONDS - t0))
}

# ---------------------------------------------------------------- 3. converge
converge() {
	rci_unit "$TEST_TMP/${F}final.out" "$TEST_TMP/${F}final.err" ||
		{ sed 's/^/# /' "$TEST_TMP/${F}final.err"; fail "${P}the apply after the last kill failed"; }
	ok "${P}the apply after the last kill completes"
	converged "${F}chain"
	in_machine test -f "$SENTINEL" || fail "${P}the sentinel on the data disk is gone"
	ok "${P}the sentinel on the data disk survived every kill"
	assert_same_snapshot "$TEST_TMP/${F}reference.snap" "$TEST_TMP/${F}chain.snap" \
		"${P}the killed-and-resumed machine's normalised state equals the uninterrupted one's"
	echo "# ${P}timing: reference apply $ref_secs s, chain of $n_killed kills in $((segment + 1)) segment(s) $chain_secs s, whole test so far $((SECONDS - T_START)) s"
}

reference
chain
converge

# ---------------------------------------------------------------- 4. two tenants
TENANTS=true
P='two tenants: '
F=t2-
reference
# Each tenant's run passes every per-tenant point: the second tenant's too.
for p in user-before-useradd user-subuid-written daemon-started agent-dropin-written; do
	c=$(printf '%s\n' "${points[@]}" | grep -cxF -- "$p" || true)
	((c >= 2)) || fail "${P}killpoint $p passed $c times, not once per tenant"
done
ok "${P}the per-tenant points are passed once for each tenant"
chain
converge

echo "PASS: $TEST_NAME"
