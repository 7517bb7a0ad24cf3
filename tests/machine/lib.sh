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
