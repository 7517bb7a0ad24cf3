#!/bin/bash
# user-offline: image baking. `rootless-ci apply --root=TREE` creates the CI
# user inside TREE (shadow's useradd --root chroots there and uses TREE's
# login.defs and skeleton), gives it ranges in TREE's /etc/subuid, lays out
# TREE's storage and the home symlink, and touches nothing of the machine it
# runs on. With a data disk configured, the directories on the disk are left
# to the first boot and said so. A second apply changes nothing.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

machine_begin

# A tree that is a copy of the machine's /etc with its /usr bound read-only
# (Debian's merged /usr: /bin, /sbin, /lib* are links into it).
in_machine bash -s <<'EOF'
set -euo pipefail
t=/var/tmp/tree
mkdir -p $t/home $t/root $t/srv $t/var $t/run $t/usr
cp -a /etc $t/etc
echo "# from the tree's skeleton" >$t/etc/skel/.tree-marker
for l in bin sbin lib lib64; do ln -s usr/$l $t/$l; done
mount --bind /usr $t/usr
mount -o remount,bind,ro $t/usr
EOF

machine_snapshot "$TEST_TMP/before"
set +e
in_machine rootless-ci --root=/var/tmp/tree apply >"$TEST_TMP/apply.txt" 2>&1
rc=$?
set -e
sed 's/^/# apply: /' "$TEST_TMP/apply.txt"
assert_eq 0 "$rc" "apply --root exits 0"
machine_snapshot "$TEST_TMP/after"
assert_same_snapshot "$TEST_TMP/before" "$TEST_TMP/after" "the machine itself is untouched"
if in_machine getent passwd buildkite >/dev/null; then fail "buildkite was created in the machine"; fi
ok "no buildkite in the machine's own passwd"

t=/var/tmp/tree
IFS=: read -r _ _ uid gid _ home shell < <(in_machine grep '^buildkite:' $t/etc/passwd)
[[ $uid -ge 1000 ]] || fail "buildkite's UID in the tree is $uid"
ok "buildkite in the tree's passwd, UID $uid"
assert_eq /home/buildkite "$home" "home /home/buildkite"
assert_eq /bin/bash "$shell" "shell /bin/bash"
assert_eq "buildkite:x:$gid:" "$(in_machine grep '^buildkite:' $t/etc/group)" "its own group in the tree's group file"
assert_eq "$uid $gid 700" "$(in_machine stat -c '%u %g %a' $t/home/buildkite)" "home in the tree, private"
in_machine test -f $t/home/buildkite/.tree-marker || fail "the home was not filled from the tree's skeleton"
ok "the home was filled from the tree's own skeleton"
assert_eq "buildkite:100000:65536" "$(in_machine grep '^buildkite:' $t/etc/subuid)" "subuid range in the tree"
assert_eq "buildkite:100000:65536" "$(in_machine grep '^buildkite:' $t/etc/subgid)" "subgid range in the tree"
assert_eq "$uid $gid 700" "$(in_machine stat -c '%u %g %a' $t/srv/rootless-ci/buildkite/docker)" "docker dir in the tree"
assert_eq "0 0 755" "$(in_machine stat -c '%u %g %a' $t/srv/rootless-ci/buildkite)" "storage parent in the tree, root's"
assert_eq /srv/rootless-ci/buildkite/docker "$(in_machine readlink $t/home/buildkite/.local/share/docker)" \
	"the symlink names the path as the booted image will see it"

set +e
in_machine rootless-ci --root=/var/tmp/tree apply >"$TEST_TMP/apply2.txt" 2>&1
rc=$?
set -e
assert_eq 0 "$rc" "second apply --root exits 0"
assert_contains "$(cat "$TEST_TMP/apply2.txt")" "Nothing changed" "second apply --root changes nothing"

# With a data disk configured, the disk's directories wait for the first boot.
in_machine bash -c 'rm -rf /var/tmp/tree/srv/rootless-ci /var/tmp/tree/home/buildkite/.local'
set +e
in_machine rootless-ci --root=/var/tmp/tree --disk=/dev/disk/by-id/virtio-data plan >"$TEST_TMP/plan-disk.txt" 2>&1
in_machine rootless-ci --root=/var/tmp/tree --disk=/dev/disk/by-id/virtio-data apply >"$TEST_TMP/apply-disk.txt" 2>&1
rc=$?
set -e
sed 's/^/# apply --disk: /' "$TEST_TMP/apply-disk.txt"
assert_contains "$(cat "$TEST_TMP/plan-disk.txt")" \
	"SKIP storage.dirs: /srv/rootless-ci/buildkite/{docker,builds} are made on the data disk at first boot" \
	"plan --disk says the disk's directories wait for the first boot"
assert_eq 0 "$rc" "apply --root --disk exits 0"
if in_machine test -e /var/tmp/tree/srv/rootless-ci; then fail "directories were made on the image's root filesystem"; fi
ok "nothing made on the image's root filesystem where the disk will be mounted"
assert_eq /srv/rootless-ci/buildkite/docker "$(in_machine readlink $t/home/buildkite/.local/share/docker)" \
	"the home symlink is made all the same"

in_machine umount /var/tmp/tree/usr
echo "PASS: $TEST_NAME"
