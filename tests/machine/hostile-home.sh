#!/bin/bash
# hostile-home: every pull request runs code as the CI user, so its home is
# the attacker's. With rootless-ci's storage converged once, links planted
# at the paths the storage step works on (~/.local, ~/.local/share,
# ~/.local/share/docker, ~/.config, ~/.config/systemd, the home itself, a
# hard link to /etc/shadow, a symlink inside Docker data that gets moved)
# point at /etc, /root, /var/lib and another user's home. For each attack,
# apply runs as root, and the target is proven unchanged: owner, group,
# mode, link count, size, ctime (which any chown, chmod or write bumps) and
# the sha256 of every file below it.
#
# apply is the whole of it, every step: the data disk is a blank loop disk
# configured as Device=, and the CI user's rootless Docker runs between the
# attacks, as it would on a real host.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

machine_begin
machine_data_disk

in_machine bash -s <<'EOF'
set -euo pipefail
useradd --create-home --uid 1500 --shell /bin/bash alice
runuser -u alice -- mkdir -p /home/alice/.local/share
runuser -u alice -- sh -c 'echo "alice private" > /home/alice/.local/share/notes'
install -d -m 0700 /root/secrets
echo 'root private' >/root/secrets/key
install -d -m 0755 /var/lib/rci-decoy
echo 'root daemon state' >/var/lib/rci-decoy/state
EOF

set +e
in_machine rootless-ci apply >"$TEST_TMP/baseline.txt" 2>&1
rc=$?
set -e
sed 's/^/# baseline: /' "$TEST_TMP/baseline.txt"
assert_eq 0 "$rc" "baseline apply converges"

# snap PATH: everything below PATH, never following a symlink.
snap() {
	in_machine bash -s "$1" <<'EOF'
set -euo pipefail
export LC_ALL=C
find -P "$1" -printf '%p %y %U:%G %m %n %s %C@\n' | sort
find -P "$1" -type f -print0 | xargs -0 -r sha256sum | sort
EOF
}

# Between attacks: the home without .local and .config (rm never follows a
# symlink); each plant makes what it needs.
reset_home() {
	in_machine bash -s <<'EOF'
set -euo pipefail
if [ -L /home/buildkite ]; then rm /home/buildkite; mv /home/buildkite.real /home/buildkite; fi
rm -rf /home/buildkite/.local /home/buildkite/.config
EOF
}

# attack NAME TARGET EXPECTED-EXIT EXPECTED-OUTPUT PLANT-SCRIPT
attack() {
	local name=$1 target=$2 want_rc=$3 want_out=$4 plant=$5 rc
	reset_home
	in_machine bash -c "set -euo pipefail; $plant"
	snap "$target" >"$TEST_TMP/$name.before"
	set +e
	in_machine rootless-ci apply >"$TEST_TMP/$name.out" 2>&1
	rc=$?
	set -e
	sed "s/^/# $name: /" "$TEST_TMP/$name.out"
	assert_eq "$want_rc" "$rc" "$name: apply exits $want_rc"
	assert_contains "$(cat "$TEST_TMP/$name.out")" "$want_out" "$name: apply says so"
	snap "$target" >"$TEST_TMP/$name.after"
	if ! diff -u "$TEST_TMP/$name.before" "$TEST_TMP/$name.after" >"$TEST_TMP/$name.diff"; then
		sed 's/^/#   /' "$TEST_TMP/$name.diff" | head -n 40
		fail "$name: $target changed"
	fi
	ok "$name: $target unchanged (owner, mode, links, size, ctime, content)"
}

as_ci='runuser -u buildkite --'

attack local-to-etc /etc 1 \
	"FAIL storage.home-local: /home/buildkite/.local is a symlink to /etc: rootless-ci never follows a symlink" \
	"$as_ci ln -s /etc /home/buildkite/.local"

attack share-to-root /root 1 \
	"FAIL storage.home-local-share: /home/buildkite/.local/share is a symlink to /root" \
	"$as_ci mkdir /home/buildkite/.local && $as_ci ln -s /root /home/buildkite/.local/share"

attack docker-to-var-lib /var/lib/rci-decoy 0 \
	"storage.home-link: replaced the symlink /home/buildkite/.local/share/docker -> /var/lib with -> /srv/rootless-ci/buildkite/docker" \
	"$as_ci mkdir -p /home/buildkite/.local/share && $as_ci ln -s /var/lib /home/buildkite/.local/share/docker"
assert_eq "root root 755" "$(in_machine stat -c '%U %G %a' /var/lib)" "docker-to-var-lib: /var/lib itself still root's, 0755"
assert_eq /srv/rootless-ci/buildkite/docker "$(in_machine readlink /home/buildkite/.local/share/docker)" \
	"docker-to-var-lib: the link points at the disk again"

attack docker-to-other-home /home/alice 0 \
	"replaced the symlink /home/buildkite/.local/share/docker -> /home/alice/.local/share with" \
	"$as_ci mkdir -p /home/buildkite/.local/share && $as_ci ln -s /home/alice/.local/share /home/buildkite/.local/share/docker"

attack config-to-etc /etc 0 "" \
	"$as_ci ln -s /etc /home/buildkite/.config"

attack config-systemd-to-etc-systemd /etc/systemd 0 "" \
	"$as_ci mkdir /home/buildkite/.config && $as_ci ln -s /etc/systemd /home/buildkite/.config/systemd"

# A user cannot make this link itself where fs.protected_hardlinks=1; root
# plants it to prove rootless-ci would not be the weak point either.
attack hardlink-to-shadow /etc/shadow 1 \
	"/home/buildkite/.local/share/docker is a regular file with other hard links, not a directory or symlink" \
	"$as_ci mkdir -p /home/buildkite/.local/share && ln /etc/shadow /home/buildkite/.local/share/docker"

attack home-to-other-home /home/alice 1 \
	"the home /home/buildkite of buildkite is a symlink; rootless-ci never follows one there" \
	"mv /home/buildkite /home/buildkite.real && ln -s /home/alice /home/buildkite"

# Docker data with a planted symlink is moved as it is: the link travels as a
# link. rootless-ci moves data only while the daemon is stopped, which the CI
# user may do, and only onto an empty directory: the data the daemon made on
# the disk since the baseline goes first. The home and the data disk are two
# filesystems, so the data is copied (with the user's powers), not renamed.
as_ci systemctl --user stop docker.service
in_machine find /srv/rootless-ci/buildkite/docker -mindepth 1 -delete
attack moved-data-link-to-etc /etc 0 \
	"copied the Docker data of /home/buildkite/.local/share/docker to /srv/rootless-ci/buildkite/docker" \
	"$as_ci mkdir -p /home/buildkite/.local/share/docker/volumes && $as_ci ln -s /etc /home/buildkite/.local/share/docker/volumes/evil && $as_ci sh -c 'echo data > /home/buildkite/.local/share/docker/volumes/file'"
assert_eq /etc "$(in_machine readlink /srv/rootless-ci/buildkite/docker/volumes/evil)" "moved-data-link-to-etc: the link moved as a link"
assert_eq data "$(in_machine cat /srv/rootless-ci/buildkite/docker/volumes/file)" "moved-data-link-to-etc: the data moved"

reset_home
set +e
in_machine rootless-ci apply >"$TEST_TMP/final.txt" 2>&1
rc=$?
in_machine rootless-ci check >"$TEST_TMP/check.txt" 2>&1
rc_check=$?
set -e
assert_eq 0 "$rc" "after the attacks, apply converges the home again"
assert_eq 0 "$rc_check" "and check passes"

echo "PASS: $TEST_NAME"
