#!/bin/bash
# reclaim: `rootless-ci reclaim PATH`, run by the real CI user after apply,
# gives a job checkout that containers wrote as non-root users back to it,
# so the next job can remove it (issue 14).
#
# The checkout holds what containers leave: files and directories of
# subordinate IDs of TWO ranges (the user's first, and a second one added
# to /etc/subuid and /etc/subgid as an operator may), a read-only and a
# closed directory, a fifo, a planted symlink to a subordinate-owned
# directory outside the checkout, a file hard-linked to a name outside it
# (left) and one with both names inside (given back),
# and three mounts below it (a tmpfs, a bind mount from the root
# filesystem, a bind mount from the data disk itself: same device, another
# mount). Bad input first — as root, a PATH outside the builds dir, a
# symlink PATH, a symlink component, a mount point as PATH: exit 2 and
# nothing changed. Then reclaim as the user: everything but the mounts'
# contents and the hard-linked file is the user's, every directory open to
# it, the symlink's target untouched; and `rm -rf` as the user succeeds.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

machine_begin
machine_data_disk

set +e
in_machine rootless-ci apply >"$TEST_TMP/apply.txt" 2>&1
rc=$?
set -e
sed 's/^/# apply: /' "$TEST_TMP/apply.txt"
assert_eq 0 "$rc" "apply converges"

B=/srv/rootless-ci/buildkite/builds
C=$B/agent-1/org/pipeline
IFS=: read -r _ first_start _ < <(in_machine grep '^buildkite:' /etc/subuid)
second_start=500000000
in_machine sh -c "echo buildkite:$second_start:65536 >>/etc/subuid && echo buildkite:$second_start:65536 >>/etc/subgid"
A=$((first_start + 999))    # container UID 1000: the first range
S=$((second_start + 41))    # an ID of the second range
ok "buildkite has a second subordinate range, $second_start:65536"

in_machine bash -s "$B" "$C" "$A" "$S" <<'EOF'
set -euo pipefail
B=$1 C=$2 A=$3 S=$4
mkdir -p "$C"/src/deep/a/b/c "$C"/out/ro "$C"/mixed "$B"/agent-1/org/other/bind-src /var/tmp/target/inner
mkdir -p "$C"/mnt-tmpfs "$C"/mnt-rootfs "$C"/mnt-samefs /var/tmp/bind-src
chown -R buildkite:buildkite "$B"/agent-1
for f in src/deep/a/b/c/file src/one out/ro/result mixed/file; do echo data >"$C/$f"; done
mkfifo "$C"/src/fifo
ln -s /var/tmp/target "$C"/src/escape
ln -s "$(printf '../%.0s' $(seq 20))var/tmp/target/inner" "$C"/src/deep/relative-escape
echo linked >"$B"/agent-1/org/other/hard
ln "$B"/agent-1/org/other/hard "$C"/src/hard
ln "$C"/src/one "$C"/src/deep/one-again
chown -R "$A:$A" "$C"/src
chown -h "$A:$A" "$C"/src/escape "$C"/src/deep/relative-escape
chown -R "$S:$S" "$C"/out
chown buildkite:"$S" "$C"/mixed
chown "$A:$S" "$C"/mixed/file
chmod 0555 "$C"/out/ro
chmod 0500 "$C"/src/deep/a
chmod 0000 "$C"/src/deep/a/b/c
echo secret >/var/tmp/target/inner/keep
chown -R "$A:$A" /var/tmp/target
chmod 0500 /var/tmp/target /var/tmp/target/inner
mount -t tmpfs -o mode=0500,uid="$A",gid="$A" rci-reclaim "$C"/mnt-tmpfs
echo m >/var/tmp/bind-src/f
chown -R "$S:$S" /var/tmp/bind-src
mount --bind /var/tmp/bind-src "$C"/mnt-rootfs
echo m >"$B"/agent-1/org/other/bind-src/f
chown -R "$A:$A" "$B"/agent-1/org/other/bind-src
chmod 0500 "$B"/agent-1/org/other/bind-src
mount --bind "$B"/agent-1/org/other/bind-src "$C"/mnt-samefs
ln -s "$C" "$B"/agent-1/org/pipeline-link
ln -s agent-1 "$B"/agent-link
EOF
ok "a checkout as containers of both ranges leave it, with a planted symlink, a hard link and three mounts below"

# Everything reclaim may touch or must not: the checkout (mount contents too), the symlink's target, the hard link's other name.
manifest() {
	in_machine bash -s "$B" "$C" <<'EOF'
set -euo pipefail
export LC_ALL=C
find "$2" /var/tmp/target /var/tmp/bind-src "$1"/agent-1/org/other -printf '%p %y %U:%G %m %n %l\n' | sort
EOF
}
manifest >"$TEST_TMP/before"
sed 's/^/# before: /' "$TEST_TMP/before"
grep -q "^$C/out/ro d $S:$S 555 " "$TEST_TMP/before" || fail "the test tree is not as meant"
in_machine test -f "$C"/src/deep/relative-escape/keep || fail "the relative symlink does not reach outside"
in_machine test -f "$C"/src/escape/inner/keep || fail "the absolute symlink does not reach outside"

# Without reclaim the user cannot clean up: a file in the read-only directory of a subordinate ID.
if as_ci rm -f "$C"/out/ro/result 2>/dev/null; then fail "the CI user could delete below a read-only directory of a subordinate ID"; fi
ok "as made, the CI user cannot delete below it (the problem reclaim solves)"

# ---- bad input: exit 2, a clear message, nothing changed
bad() {
	local name=$1 want=$2 rc
	shift 2
	set +e
	"$@" >"$TEST_TMP/bad.txt" 2>&1
	rc=$?
	set -e
	sed 's/^/#   /' "$TEST_TMP/bad.txt"
	assert_eq 2 "$rc" "$name: exit 2"
	assert_contains "$(cat "$TEST_TMP/bad.txt")" "$want" "$name: says why"
	manifest >"$TEST_TMP/after-bad"
	diff -u "$TEST_TMP/before" "$TEST_TMP/after-bad" >/dev/null || fail "$name: something changed"
	ok "$name: nothing changed"
}
bad "as root" "reclaim is the CI user's own command" in_machine env BUILDKITE_BUILD_PATH="$B" rootless-ci reclaim "$C"
bad "a PATH outside the builds dir" "is not below the builds directory $B" \
	as_ci env BUILDKITE_BUILD_PATH="$B" rootless-ci reclaim /var/tmp/target
bad "the builds dir itself" "is not below the builds directory" as_ci rootless-ci reclaim --builds-dir="$B" "$B"
bad "a PATH with .." "without . or .. components" as_ci rootless-ci reclaim --builds-dir="$B" "$B/agent-1/../../../../../var/tmp/target"
bad "a symlink PATH" "$B/agent-1/org/pipeline-link is a symlink, and reclaim never follows one" \
	as_ci env BUILDKITE_BUILD_PATH="$B" rootless-ci reclaim "$B/agent-1/org/pipeline-link"
bad "a symlink component" "$B/agent-link is a symlink" \
	as_ci env BUILDKITE_BUILD_PATH="$B" rootless-ci reclaim "$B/agent-link/org/pipeline"
bad "a mount point as PATH" "it is on another mount than the builds directory" \
	as_ci env BUILDKITE_BUILD_PATH="$B" rootless-ci reclaim "$C/mnt-samefs"
bad "one bad PATH among good ones" "is a symlink" \
	as_ci env BUILDKITE_BUILD_PATH="$B" rootless-ci reclaim "$C" "$B/agent-1/org/pipeline-link"
bad "no builds dir" "No builds directory" as_ci env -u BUILDKITE_BUILD_PATH rootless-ci reclaim "$C"

# ---- reclaim as the CI user
set +e
as_ci env BUILDKITE_BUILD_PATH="$B" rootless-ci reclaim "$C" >"$TEST_TMP/reclaim.txt" 2>&1
rc=$?
set -e
sed 's/^/# reclaim: /' "$TEST_TMP/reclaim.txt"
assert_eq 0 "$rc" "reclaim exits 0"
assert_contains "$(cat "$TEST_TMP/reclaim.txt")" "reclaim: $C: re-owned" "one summary line"
assert_contains "$(cat "$TEST_TMP/reclaim.txt")" "Did not enter 3 mounts below" "it names the mounts it left"
assert_contains "$(cat "$TEST_TMP/reclaim.txt")" "Left 1 file of subordinate IDs with names outside what was walked" \
	"it names the hard-linked file it left"
manifest >"$TEST_TMP/after"
sed 's/^/# after: /' "$TEST_TMP/after"

# Below the checkout, outside the mounts: the user's, directories u+rwx; only the hard-linked file kept its owner.
uid=$(ci_uid)
in_machine find "$C" \( -path "$C/mnt-*" -prune \) -o \! -user buildkite -printf '%p %U:%G\n' >"$TEST_TMP/not-users"
assert_eq "$C/src/hard $A:$A" "$(cat "$TEST_TMP/not-users")" "every entry of both ranges is the user's now, but the hard-linked file"
in_machine find "$C" \( -path "$C/mnt-*" -prune \) -o \! -group buildkite -printf '%p %U:%G\n' >"$TEST_TMP/not-group"
assert_eq "$C/src/hard $A:$A" "$(cat "$TEST_TMP/not-group")" "and the user's group, the mixed ones too"
assert_eq "" "$(in_machine find "$C" \( -path "$C/mnt-*" -prune \) -o -type d \! -perm -0700 -print)" \
	"every directory is open to the user"
assert_eq "buildkite 2" "$(in_machine stat -c '%U %h' "$C"/src/deep/one-again)" \
	"a file whose two names are both in the checkout is given back"
assert_eq "l buildkite" "$(in_machine stat -c '%F %U' "$C"/src/escape | sed 's/^symbolic link/l/')" \
	"the planted symlink is the user's itself"
for p in /var/tmp/target /var/tmp/bind-src "$B"/agent-1/org/other "$C"/mnt-; do
	diff <(grep "^$p" "$TEST_TMP/before") <(grep "^$p" "$TEST_TMP/after") >/dev/null ||
		fail "$p changed: $(diff <(grep "^$p" "$TEST_TMP/before") <(grep "^$p" "$TEST_TMP/after") | head -5)"
done
ok "the symlinks' targets, the hard link's other name and the three mounts' contents are untouched"
assert_eq 0 "$(in_machine find "$C"/mnt-tmpfs "$C"/mnt-rootfs "$C"/mnt-samefs -maxdepth 0 -user buildkite | wc -l)" \
	"the mount points themselves were not chowned"

# Again, on a reclaimed tree: nothing to give back.
as_ci env BUILDKITE_BUILD_PATH="$B" rootless-ci reclaim "$C" >"$TEST_TMP/again.txt" 2>&1 || fail "the second reclaim failed"
assert_contains "$(cat "$TEST_TMP/again.txt")" "re-owned 0 of" "a second run re-owns nothing"
assert_contains "$(cat "$TEST_TMP/again.txt")" "opened 0 directories" "and opens nothing"

# The next job removes the checkout (the mounts are a root's matter: taken away first).
in_machine umount "$C"/mnt-tmpfs "$C"/mnt-rootfs "$C"/mnt-samefs
as_ci rm -rf "$C" || fail "rm -rf of the checkout as the CI user failed after reclaim"
assert_eq "" "$(in_machine find "$B/agent-1/org" -maxdepth 1 -name pipeline)" "rm -rf as the CI user removed the checkout"

as_ci env BUILDKITE_BUILD_PATH="$B" rootless-ci reclaim "$C" >"$TEST_TMP/missing.txt" 2>&1 || fail "reclaim of a missing checkout failed"
assert_contains "$(cat "$TEST_TMP/missing.txt")" "does not exist, nothing to do" "a missing checkout is nothing to do"

echo "PASS: $TEST_NAME"
