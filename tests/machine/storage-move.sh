#!/bin/bash
# storage-move: Docker data already in ~/.local/share/docker is moved onto
# the data disk (a blank loop disk configured as Device=, which apply makes
# and mounts: a different filesystem from the home): refused with exit 3 and
# no change while the
# user's daemon runs; refused without loss when the data holds a file the
# user does not own (a hard link to /etc/shadow); else copied with the
# user's powers only, ownership by subordinate IDs (of two ranges), modes,
# hard links and symlinks kept, the original kept beside it, the symlink put in its place.
#
# apply is the whole of it, every step. The copy is compared with the
# original while that apply is stopped between the storage and the daemon
# step (RCI_STOP_AT): once the CI user's dockerd starts on it, it is
# dockerd's to change.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

need_test_hooks
machine_begin

machine_data_disk

set +e
in_machine rootless-ci apply >"$TEST_TMP/apply1.txt" 2>&1
rc=$?
set -e
sed 's/^/# apply: /' "$TEST_TMP/apply1.txt"
assert_eq 0 "$rc" "first apply converges"
assert_eq "${DATA_DISK}p1" "$(in_machine findmnt -n -o SOURCE --mountpoint /srv/rootless-ci)" \
	"the data disk is mounted at /srv/rootless-ci"
IFS=: read -r _ sstart _ < <(in_machine grep '^buildkite:' /etc/subuid)
# A second subordinate range, as an operator may add one: apply keeps it, the
# daemon maps it after the first, and the copy must map it too (issue 13 item 13).
second=500000000
in_machine sh -c "echo buildkite:$second:65536 >>/etc/subuid && echo buildkite:$second:65536 >>/etc/subgid"

# That apply started the CI user's daemon, which made its data on the disk.
# The user stops it (as it may), and that data goes: rootless-ci moves data
# only while the daemon is stopped, and only onto an empty directory.
as_ci systemctl --user stop docker.service
in_machine find /srv/rootless-ci/buildkite/docker -mindepth 1 -delete
ok "the CI user's daemon is stopped and its directory on the disk is empty"

# Docker data as a rootless daemon leaves it: files of container root (the
# user), of container UID 1000 (a subordinate ID), a private directory, a
# hard link pair, a symlink.
in_machine bash -s <<'EOF'
set -euo pipefail
rm /home/buildkite/.local/share/docker
runuser -u buildkite -- unshare --map-auto --map-root-user sh -eu -c '
	d=/home/buildkite/.local/share/docker
	mkdir -p $d/overlay2/l $d/volumes/app/_data
	echo layer > $d/overlay2/l/file
	ln $d/overlay2/l/file $d/overlay2/l/hardlink
	ln -s ../l/file $d/overlay2/l/symlink
	echo app > $d/volumes/app/_data/data
	chown -R 1000:1000 $d/volumes/app
	chmod 0700 $d/volumes/app/_data
	chmod 0600 $d/volumes/app/_data/data
	chmod 0710 $d
'
EOF
# A container ID of the second range: 65537 and above (the root of the machine makes it, as that daemon would).
in_machine bash -s "$second" <<'EOF'
set -euo pipefail
d=/home/buildkite/.local/share/docker/volumes/second/_data
mkdir -p "$d"
echo second >"$d/data"
chown -R "$(($1 + 41)):$(($1 + 41))" /home/buildkite/.local/share/docker/volumes/second
chmod 0700 "$d"
EOF
manifest() {
	in_machine bash -s "$1" <<'EOF'
set -euo pipefail
export LC_ALL=C
cd "$1"
# Directory sizes and link counts differ between filesystems; files' do not.
find . -printf '%P %y %U:%G %m %l\n' | sort
find . -type f -printf '%P links=%n size=%s\n' | sort
find . -type f -print0 | xargs -0 -r sha256sum | sort
EOF
}
manifest /home/buildkite/.local/share/docker >"$TEST_TMP/data.manifest"
sed 's/^/# data: /' "$TEST_TMP/data.manifest"
grep -q "volumes/app/_data/data f $((sstart + 999)):$((sstart + 999)) 600" "$TEST_TMP/data.manifest" ||
	fail "the test data is not owned by the subordinate ID $((sstart + 999))"
grep -q "volumes/second/_data/data f $((second + 41)):$((second + 41)) 644" "$TEST_TMP/data.manifest" ||
	fail "the test data is not owned by the second range's ID $((second + 41))"
ok "test data owned by the user and by its subordinate IDs of both ranges"

# ---- the daemon is running: refused, nothing changes
# A stand-in named like the daemon, run as the user (setpriv execs it: $! is its PID).
daemon_pid=$(in_machine bash -c 'cp /usr/bin/sleep /tmp/dockerd && { setpriv --reuid=buildkite --regid=buildkite --init-groups /tmp/dockerd 600 >/dev/null 2>&1 & echo $!; }')
machine_snapshot "$TEST_TMP/before-running"
set +e
in_machine rootless-ci apply >"$TEST_TMP/apply-running.txt" 2>&1
rc=$?
set -e
sed 's/^/# apply: /' "$TEST_TMP/apply-running.txt"
assert_eq 3 "$rc" "apply exits 3 while the daemon runs"
assert_contains "$(cat "$TEST_TMP/apply-running.txt")" "buildkite's daemon is running (PID" "apply says the daemon runs"
machine_snapshot "$TEST_TMP/after-running"
assert_same_snapshot "$TEST_TMP/before-running" "$TEST_TMP/after-running" "nothing changed while the daemon runs"
in_machine kill "$daemon_pid" 2>/dev/null || true
for _ in $(seq 50); do in_machine kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done

# ---- a file the user does not own in the data: the copy fails, nothing is lost
in_machine ln /etc/shadow /home/buildkite/.local/share/docker/overlay2/shadow
shadow_before=$(in_machine stat -c '%U %G %a %h %Z' /etc/shadow; in_machine sha256sum /etc/shadow)
set +e
in_machine rootless-ci apply >"$TEST_TMP/apply-shadow.txt" 2>&1
rc=$?
set -e
sed 's/^/# apply: /' "$TEST_TMP/apply-shadow.txt"
assert_eq 1 "$rc" "apply exits 1 when the data holds a file the user cannot read"
assert_contains "$(cat "$TEST_TMP/apply-shadow.txt")" "the original is in place" "apply says the original is in place"
assert_eq "$shadow_before" "$(in_machine stat -c '%U %G %a %h %Z' /etc/shadow; in_machine sha256sum /etc/shadow)" \
	"/etc/shadow unchanged"
assert_eq "" "$(in_machine ls -A /srv/rootless-ci/buildkite/docker)" "the partial copy was removed from the disk"
if in_machine test -e /srv/rootless-ci/buildkite/docker/overlay2/shadow; then fail "the shadow file was copied"; fi
in_machine rm /home/buildkite/.local/share/docker/overlay2/shadow
manifest /home/buildkite/.local/share/docker >"$TEST_TMP/data.manifest2"
diff -u "$TEST_TMP/data.manifest" "$TEST_TMP/data.manifest2" >/dev/null || fail "the original data changed"
ok "the original data is intact"

# ---- stopped, nothing odd: copied with the user's powers
rci_stop_at daemon-unit-written "$TEST_TMP/apply-move.txt" apply
ok "apply stopped after the storage step, before the daemon step does anything"
manifest /srv/rootless-ci/buildkite/docker >"$TEST_TMP/copy.manifest"
set +e
rci_continue
rc=$?
set -e
sed 's/^/# apply: /' "$TEST_TMP/apply-move.txt"
assert_eq 0 "$rc" "apply exits 0"
assert_contains "$(cat "$TEST_TMP/apply-move.txt")" \
	"copied the Docker data of /home/buildkite/.local/share/docker to /srv/rootless-ci/buildkite/docker" "apply reports the copy"
assert_contains "$(cat "$TEST_TMP/apply-move.txt")" \
	"the original Docker data stays at /home/buildkite/.local/share/docker.rootless-ci-old" "apply says where the original is"
if ! diff -u "$TEST_TMP/data.manifest" "$TEST_TMP/copy.manifest" >"$TEST_TMP/copy.diff"; then
	sed 's/^/#   /' "$TEST_TMP/copy.diff"
	fail "the copy differs from the original"
fi
ok "the copy matches: owners (subordinate IDs too), modes, link counts, symlinks, content"
manifest /home/buildkite/.local/share/docker.rootless-ci-old >"$TEST_TMP/old.manifest"
diff -u "$TEST_TMP/data.manifest" "$TEST_TMP/old.manifest" >/dev/null || fail "the original was changed"
ok "the original is kept, unchanged"
assert_eq /srv/rootless-ci/buildkite/docker "$(in_machine readlink /home/buildkite/.local/share/docker)" "the symlink is in place"
if in_machine test -e /srv/rootless-ci/buildkite/.rootless-ci-move; then fail "the move marker was left behind"; fi
ok "no move marker left"
assert_eq active "$(as_ci systemctl --user is-active docker.service)" "the CI user's daemon runs again, from the moved data"

machine_snapshot "$TEST_TMP/converged"
set +e
in_machine rootless-ci apply >"$TEST_TMP/apply-again.txt" 2>&1
rc=$?
in_machine rootless-ci check >"$TEST_TMP/check.txt" 2>&1
rc_check=$?
set -e
assert_eq 0 "$rc" "apply again exits 0"
assert_contains "$(cat "$TEST_TMP/apply-again.txt")" "Nothing changed" "apply again changes nothing"
machine_snapshot "$TEST_TMP/after-again"
assert_same_snapshot "$TEST_TMP/converged" "$TEST_TMP/after-again" "the machine is as it was"
assert_eq 0 "$rc_check" "check passes"

echo "PASS: $TEST_NAME"
