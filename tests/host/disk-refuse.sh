#!/bin/bash
# SPDX-License-Identifier: MIT
# Devices that are not a usable disk (exit 2) and disks in use (exit 3,
# --wipe or not) are refused with a message naming the device and the
# reason, and nothing changes.
# ok() always succeeds, so "test && ok ... || fail ..." is an if-then-else here.
# shellcheck disable=SC2015
# shellcheck source=tests/host/lib.sh
. "$(dirname "$0")/lib.sh"
need mkfs.ext4 mkswap sfdisk partx

mount -t tmpfs rci-shm /dev/shm   # private: files and links under /dev for the tests
fstab_before=$(sha /etc/fstab)

unusable() {
        # $1 what, $2 device, $3 message pattern
        rci --disk="$2" apply
        expect_rc 2 "$1: not a usable disk"
        expect_out "$3" "$1: the message says why"
        rci --disk="$2" plan
        expect_rc 2 "$1: plan refuses too"
}

L=$(new_loop whole)
printf 'label: gpt\nstart=2048, size=204800, type=L\n' | sfdisk -q "$L" 2>/dev/null || true
partx -a "$L" 2>/dev/null || true
before=$(sha "$L")
unusable "a partition" "${L}p1" "${L}p1\) is partition 1 of $L, not a whole disk|${L}p1 is partition 1 of $L"
[ "$(sha "$L")" = "$before" ] && ok "a partition: disk unchanged" || fail "a partition: disk changed"

echo data >/dev/shm/disk.img
unusable "a regular file" /dev/shm/disk.img "is a regular file, not a block device"
[ "$(cat /dev/shm/disk.img)" = data ] && ok "a regular file: unchanged" || fail "a regular file: changed"
unusable "a character device" /dev/null "/dev/null is a character device, not a block device"
unusable "a directory" /dev/shm "/dev/shm is a directory, not a block device"
unusable "a missing path" /dev/disk/by-id/rci-no-such-disk "/dev/disk/by-id/rci-no-such-disk does not exist"
ln -s /dev/shm/nowhere /dev/shm/dangling
unusable "a dangling link" /dev/shm/dangling "/dev/shm/dangling does not exist"

L=$(new_loop small 100M)
unusable "a small disk" "$L" "is too small"

img="$WORK/ro.img"
truncate -s 512M "$img"
RO=$(losetup --find --show --read-only "$img")
unusable "a read-only disk" "$RO" "$RO is read-only"

# A mounted disk, also with --wipe.
L=$(new_loop mounted)
mkfs.ext4 -q -F -L busy "$L"
mkdir -p "$WORK/mnt"
mount "$L" "$WORK/mnt"
echo inside >"$WORK/mnt/file"
umount "$WORK/mnt"; mount -o ro "$L" "$WORK/mnt"   # read-only, so the hash below is stable
before=$(sha "$L")
rci --disk="$L" apply
expect_rc 3 "a mounted disk: refused"
rci --disk="$L" --wipe apply
expect_rc 3 "a mounted disk with --wipe: refused"
expect_out "$L is mounted on $WORK/mnt" "a mounted disk with --wipe: the message names the mount"
[ "$(sha "$L")" = "$before" ] && ok "a mounted disk: unchanged" || fail "a mounted disk: changed"
umount "$WORK/mnt"

# A disk in use as swap (swap is not per namespace: swapped off again on exit), also with --wipe.
L=$(new_loop swap)
mkswap -q "$L" 2>/dev/null || mkswap "$L" >/dev/null
if swapon "$L" 2>/dev/null; then
        rci --disk="$L" --wipe apply
        expect_rc 3 "a disk in use as swap with --wipe: refused"
        expect_out "$L is in use as swap" "the message says swap"
        swapoff "$L"
else
        echo "note: swapon on a loop device is not allowed here; swap-in-use not tested"
fi

# Held by another driver (LVM, dm, md): needs device-mapper or md in the kernel.
if [ -e /dev/mapper/control ] && command -v dmsetup >/dev/null &&
   L=$(new_loop held) && dmsetup --noudevsync create "rci-held-$$" --table "0 2048 linear $L 0" 2>/dev/null; then
        rci --disk="$L" --wipe apply
        expect_rc 3 "a disk held by device-mapper: refused"
        expect_out "is held by dm-" "the message names the holder"
        dmsetup --noudevsync remove "rci-held-$$"
else
        echo "note: no device-mapper in this kernel; holders are not tested here"
fi

[ "$(sha /etc/fstab)" = "$fstab_before" ] && ok "fstab unchanged by all refusals" || fail "fstab changed"
[ -z "$(ls -A /srv)" ] && ok "no mount point made" || fail "/srv has $(ls -A /srv)"

# A mount point that is a file or a symlink: refused before the disk is touched.
L=$(new_loop mp-file)
before=$(sha "$L")
echo not-a-dir >/srv/afile
rci --disk="$L" --mount-point=/srv/afile apply
expect_rc 1 "a mount point that is a file"
expect_out "the mount point /srv/afile exists and is something else, not a directory" "the message says why"
ln -s /tmp /srv/alink
rci --disk="$L" --mount-point=/srv/alink apply
expect_rc 2 "a mount point that is a symlink (a configuration error)"
expect_out "MountPoint=/srv/alink is the symlink /srv/alink \(to /tmp\)" "the message says why"
[ "$(sha "$L")" = "$before" ] && ok "the disk was not touched" || fail "the disk changed"
rm -f /srv/afile /srv/alink

# A mount point with something in it: mounted over, with a warning.
mkdir -p /srv/rootless-ci && echo old >/srv/rootless-ci/leftover
rci --disk="$L" apply
expect_rc 0 "a non-empty mount point"
expect_out "^WARN disk.mount: /srv/rootless-ci is not empty" "warned that its contents get hidden"
umount /srv/rootless-ci
[ "$(cat /srv/rootless-ci/leftover)" = old ] && ok "what was there is still there underneath" || fail "leftover gone"
rm -rf /srv/rootless-ci
printf '# fstab of a rootless-ci host test\n' >/etc/fstab

# Our own filesystem also mounted somewhere else: a warning, not a refusal.
L=$(new_loop ours)
rci --disk="$L" apply
expect_rc 0 "ours: apply"
mkdir -p "$WORK/other"
mount "${L}p1" "$WORK/other"
rci --disk="$L" apply
expect_rc 0 "ours, also mounted elsewhere: apply goes on"
expect_out "^WARN disk.mount-elsewhere:$WORK/other: ${L}p1 is also mounted at $WORK/other" "ours, also mounted elsewhere: warned"
umount "$WORK/other"

# No disk configured: Docker's data stays on the root disk, said plainly.
rci plan
expect_rc 0 "no Device=: plan"
expect_out "^SKIP disk.device: no Device= configured: Docker's data will stay on the root disk" "no Device=: said plainly"

# --root=DIR (image baking): the disk is left to first boot.
mkdir -p "$WORK/image/etc"
printf '# image fstab\n' >"$WORK/image/etc/fstab"
RCI_ONLY_STEPS=disk "$RCI" --root="$WORK/image" --disk="$L" plan >"$WORK/out" 2>&1 && RC=0 || RC=$?
expect_rc 0 "--root: plan"
expect_out "^SKIP disk.device: --root=$WORK/image: $L is set up on the live host" "--root: the disk is left to first boot"
expect_out "^SKIP disk.fstab: the fstab line for /srv/rootless-ci is added at first boot" "--root: the fstab line waits for the filesystem"

finish
