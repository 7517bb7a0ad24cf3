# shellcheck shell=bash
# tests/machine/lib.sh — sourced by every test of the "machine" tier.
#
# A test calls machine_begin, which skips (exit 77) where the tier cannot
# run, boots one disposable machine with a unique name, installs the build
# into it and makes sure the machine is stopped however the test ends.
# Then it uses in_machine and the assertions below. Exit status: 0 pass,
# 1 fail, 77 skip. Output is simple "ok - …" / "not ok - …" lines.
#
# From meson (tests/machine/meson.build): RCI_SOURCE_DIR, RCI_BUILD_DIR,
# RCI_PREFIX. The build dir must be configured with --prefix=/usr, so the
# program lands where a Debian package puts it (/usr/sbin, /usr/share, /etc).

set -euo pipefail

: "${RCI_SOURCE_DIR:?set by meson: the source dir}"
: "${RCI_BUILD_DIR:?set by meson: the build dir}"

TEST_NAME=${TEST_NAME:-$(basename "$0" .sh)}
MACHINE=$RCI_SOURCE_DIR/scripts/machine
RCI_MACHINE=
# A scratch dir on the host for this test (snapshots, JSON), removed at the end.
TEST_TMP=

# ---------------------------------------------------------------- verdicts

skip() {
	echo "SKIP: $TEST_NAME: $*"
	exit 77
}

fail() {
	echo "not ok - $*"
	exit 1
}

ok() {
	echo "ok - $*"
}

# assert_eq EXPECTED ACTUAL MESSAGE
assert_eq() {
	if [[ $1 == "$2" ]]; then
		ok "$3"
	else
		fail "$3: expected '$1', got '$2'"
	fi
}

# assert_contains HAYSTACK NEEDLE MESSAGE
assert_contains() {
	if [[ $1 == *"$2"* ]]; then
		ok "$3"
	else
		fail "$3: '$2' not found in: $1"
	fi
}

# ---------------------------------------------------------------- machine

# Everything the tier needs, checked before anything is started; what is
# missing makes the test a skip with the reason, never a pass.
machine_requirements() {
	local tool
	[[ $(id -u) -eq 0 ]] || skip "needs root (systemd-nspawn, mounts, loop devices)"
	for tool in systemd-nspawn mmdebstrap nsenter losetup jq meson; do
		command -v "$tool" >/dev/null || skip "$tool is not installed"
	done
	[[ -c /dev/loop-control ]] || skip "no /dev/loop-control"
	losetup --find >/dev/null 2>&1 || skip "no free loop device"
	[[ ${RCI_PREFIX:-} == /usr ]] ||
		skip "the build dir has prefix '${RCI_PREFIX:-?}'; the machine tier installs" \
			"the build as a package would, so configure it with --prefix=/usr" \
			"(scripts/test does)"
}

# need_test_hooks: a test that steers rootless-ci through its test hooks
# (RCI_KILL_AT, RCI_STOP_AT) skips, saying so, with a build that has none
# (-Dtest_hooks=false, the default; scripts/test turns them on). Call it
# before machine_begin.
need_test_hooks() {
	"$RCI_BUILD_DIR/src/rootless-ci" version 2>/dev/null | grep -q "test build" ||
		skip "needs a build with -Dtest_hooks=true (RCI_KILL_AT, RCI_STOP_AT; scripts/test sets it)"
}

# Stop the machine whatever the test's fate. The stop runs in its own
# session with its output in a file: meson answers a timeout with SIGTERM to
# the test's process group and SIGKILL half a second later, and the stop
# must outlive both (and not die writing to a closed pipe).
machine_cleanup() {
	local rc=$? log
	trap - EXIT INT TERM
	if [[ -n $RCI_MACHINE ]]; then
		# A failure (not an interruption: then every millisecond counts)
		# shows the end of the machine's journal.
		if [[ $rc -ne 0 && $rc -ne 77 && $rc -ne 130 && $rc -ne 143 ]]; then
			echo "# machine journal, last 40 lines:"
			"$MACHINE" run "$RCI_MACHINE" journalctl --no-pager -n 40 2>&1 |
				sed 's/^/#   /' || true
		fi
		log=$(mktemp)
		setsid "$MACHINE" stop "$RCI_MACHINE" >"$log" 2>&1 </dev/null &
		wait $! || echo "# stopping machine $RCI_MACHINE failed:"
		sed 's/^/# /' "$log"
		rm -f "$log"
	fi
	[[ -z $TEST_TMP ]] || rm -rf "$TEST_TMP"
	exit "$rc"
}

# machine_begin: boot this test's machine and install the build into it.
machine_begin() {
	machine_requirements
	# Machines left by tests that were killed outright.
	"$MACHINE" gc
	RCI_MACHINE=rci-$TEST_NAME-$$
	trap machine_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	TEST_TMP=$(mktemp -d "/tmp/rci-$TEST_NAME.XXXXXX")
	local t0=$SECONDS
	RCI_MACHINE_OWNER=$$ "$MACHINE" start "$RCI_MACHINE"
	"$MACHINE" install "$RCI_MACHINE" "$RCI_BUILD_DIR"
	echo "# machine $RCI_MACHINE up with the build installed in $((SECONDS - t0)) s"
}

# in_machine CMD...: run CMD as root inside this test's machine; stdin is
# passed through and the exit status is CMD's.
in_machine() {
	"$MACHINE" run "$RCI_MACHINE" "$@"
}

# machine_data_disk [SIZE]: give the machine a data disk the way an operator
# does: a blank loop disk of SIZE (default 4G, sparse) attached, and
# /etc/rootless-ci.conf inside naming it as [Disk] Device=. apply's own disk
# step then partitions, formats, adds the fstab line and mounts it on
# /srv/rootless-ci. Sets DATA_DISK to the whole disk (/dev/loopN).
DATA_DISK=
# shellcheck disable=SC2120 # SIZE is optional
machine_data_disk() {
	DATA_DISK=$("$MACHINE" attach-disk "$RCI_MACHINE" "${1:-4G}")
	printf '[Disk]\nDevice=%s\n' "$DATA_DISK" |
		in_machine install -m 0644 /dev/stdin /etc/rootless-ci.conf
	echo "# data disk $DATA_DISK configured in /etc/rootless-ci.conf"
}

# ---------------------------------------------------------------- the CI user

CI_USER=buildkite

# ci_uid: the CI user's UID (once apply has created it).
ci_uid() {
	in_machine id -u "$CI_USER"
}

# as_ci CMD...: run CMD inside as the CI user, with what a build has: its
# own groups, HOME, its runtime dir and its own Docker daemon's socket.
as_ci() {
	as_user "$CI_USER" "$@"
}

# as_user USER CMD...: the same as another user (a tenant's).
as_user() {
	local user=$1 uid
	shift
	uid=$(in_machine id -u "$user")
	in_machine setpriv --reuid="$uid" --regid="$uid" --init-groups \
		env HOME="/home/$user" USER="$user" XDG_RUNTIME_DIR="/run/user/$uid" \
		DOCKER_HOST="unix:///run/user/$uid/docker.sock" "$@"
}

# ---------------------------------------------------------------- two tenants

# The two-tenant configuration the tenant proofs use: main, trusted, as the
# CI user of the single-tenant tests; pr, untrusted, its own user.
MAIN_TENANT=main
MAIN_USER=$CI_USER
PR_TENANT="pr"
PR_USER=buildkite-pr

# machine_two_tenants [MAIN-EXTRA]: append the two [Tenant] sections to the
# machine's /etc/rootless-ci.conf (after machine_data_disk's [Disk]);
# MAIN-EXTRA, lines added to main's section (AgentUnit=..., AgentConfig=...).
# shellcheck disable=SC2120 # MAIN-EXTRA is optional
machine_two_tenants() {
	printf '\n[Tenant]\nName=%s\nUser=%s\nTrust=trusted\n%s\n[Tenant]\nName=%s\nUser=%s\nTrust=untrusted\n' \
		"$MAIN_TENANT" "$MAIN_USER" "${1:-}" "$PR_TENANT" "$PR_USER" |
		in_machine sh -c 'cat >>/etc/rootless-ci.conf'
	echo "# two tenants configured: $MAIN_TENANT ($MAIN_USER, trusted), $PR_TENANT ($PR_USER, untrusted)"
}

# user_docker_pid USER: USER's daemon's main PID (rootlesskit), as its manager knows it (0: none).
user_docker_pid() {
	in_machine systemctl --user -M "$1@" show --property=MainPID --value docker.service
}

# ci_docker_pid: the CI user's daemon's main PID, as its manager knows it (0: none).
ci_docker_pid() {
	as_ci systemctl --user show --property=MainPID --value docker.service
}

# rci_stop_at POINT OUT ARGS...: start `rootless-ci ARGS...` inside in the
# background with RCI_STOP_AT=POINT (src/util/killpoint.h), its stdout and
# stderr into the host file OUT, and return once it is stopped at POINT,
# with RCI_STOPPED (its PID in the machine) and RCI_STOPPED_JOB (the job to
# wait for) set. rci_continue lets it go on and returns its exit status.
# The command runs under a bash inside: nsenter, were it the parent, would
# stop itself too and never resume.
RCI_STOPPED=
RCI_STOPPED_JOB=
rci_stop_at() {
	local point=$1 out=$2 pid state deadline=$((SECONDS + 300))
	shift 2
	# shellcheck disable=SC2016 # expanded by the bash inside
	in_machine bash -c 'RCI_STOP_AT=$0 rootless-ci "$@"; exit $?' "$point" "$@" >"$out" 2>&1 &
	RCI_STOPPED_JOB=$!
	while :; do
		pid=$(in_machine pgrep -xo rootless-ci || true)
		state=
		[[ -z $pid ]] || state=$(in_machine ps -o stat= -p "$pid" || true)
		[[ $state == T* ]] && break
		if ! kill -0 "$RCI_STOPPED_JOB" 2>/dev/null; then
			sed 's/^/# /' "$out"
			fail "rootless-ci $* ended without stopping at $point"
		fi
		((SECONDS < deadline)) || fail "rootless-ci $* did not stop at $point within 300 s"
		sleep 0.1
	done
	RCI_STOPPED=$pid
}

# rci_continue: resume what rci_stop_at stopped; return its exit status.
rci_continue() {
	local rc=0
	in_machine kill -CONT "$RCI_STOPPED"
	wait "$RCI_STOPPED_JOB" || rc=$?
	RCI_STOPPED=''
	RCI_STOPPED_JOB=''
	return "$rc"
}

# run_json NAME VERB [ARGS...]: `rootless-ci --json VERB ARGS...` inside,
# its report (stdout) into $TEST_TMP/NAME.json and its stderr into
# $TEST_TMP/NAME.err; sets rc to its exit status and ms to how long it took,
# in milliseconds. It never fails the test itself: the caller asserts on rc.
rc=
ms=
# shellcheck disable=SC2034 # ms is for the tests to read
run_json() {
	local name=$1 t0
	shift
	t0=$(date +%s%N)
	set +e
	in_machine rootless-ci --json "$@" >"$TEST_TMP/$name.json" 2>"$TEST_TMP/$name.err"
	rc=$?
	set -e
	ms=$((($(date +%s%N) - t0) / 1000000))
}

# item JSON ID FIELD: one field of the one item ID in a --json report
# (file JSON); "missing" when there is no such item, "N items" when there
# are several.
item() {
	jq -r --arg id "$2" --arg f "$3" '[.items[] | select(.id == $id)] |
		if length == 1 then (.[0][$f] | tostring) elif length == 0 then "missing"
		else "\(length) items" end' "$1"
}

# machine_snapshot FILE: the manifest of the machine's state (see
# scripts/machine snapshot) into FILE.
machine_snapshot() {
	"$MACHINE" snapshot "$RCI_MACHINE" >"$1"
}

# assert_same_snapshot BEFORE AFTER MESSAGE
assert_same_snapshot() {
	if diff -u "$1" "$2" >"$2.diff"; then
		ok "$3"
	else
		sed 's/^/#   /' "$2.diff" | head -n 60
		fail "$3: the machine changed"
	fi
}

# ---------------------------------------------------------------- ptrace

# trace_attempt_as RUNNER TARGET: as RUNNER's user (as_ci, or a function
# around as_user), strace attaches to TARGET (a PID, or "own": a sleep of
# that user's, strace's own child, so that Yama's ptrace_scope=1 would allow
# it too) and the target's TracerPid is sampled ten times over a second
# while strace runs. Prints "tracer=PID strace=attached|exited:STATUS
# error=…" (the highest TracerPid seen; how strace stood after the second;
# the first line of its stderr).
# shellcheck disable=SC2016 # expanded by the machine's shell
TRACE_ATTEMPT='t=$1 f=$(mktemp) e=$(mktemp)
if [ "$t" = own ]; then
	(sleep 60 & echo $! >"$f"; exec strace -p $! -e trace=none -o /dev/null 2>"$e") & s=$!
	while [ ! -s "$f" ]; do sleep 0.05; done
	t=$(cat "$f")
else
	strace -p "$t" -e trace=none -o /dev/null 2>"$e" & s=$!
fi
seen=0 i=0
while [ $i -lt 10 ]; do
	sleep 0.1
	tp=$(awk "/^TracerPid:/ {print \$2}" /proc/$t/status)
	[ "$tp" = 0 ] || seen=$tp
	i=$((i + 1))
done
if kill -0 $s 2>/dev/null; then st=attached; kill $s; wait $s; else wait $s; st=exited:$?; fi
[ "$1" != own ] || kill "$t"
echo "tracer=$seen strace=$st error=$(head -n 1 "$e")"
rm -f "$e" "$f"'
trace_attempt_as() {
	"$1" sh -c "$TRACE_ATTEMPT" sh "$2" 2>/dev/null # the shell's "Terminated" for the sleep and strace it ends
}
