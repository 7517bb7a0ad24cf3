#!/bin/bash
# SPDX-License-Identifier: MIT
# --wipe destroys someone else's disk, says what it destroyed, and makes it
# ours; it never remakes a disk that is already ours as configured; it
# remakes ours when another FileSystem= is asked for; it never touches a
# disk in use.
# ok() always succeeds, so "test && ok ... || fail ..." is an if-then-else here.
# shellcheck disable=SC2015
# shellcheck source=tests/host/lib.sh
. "$(dirname "$0")/lib.sh"
need mkfs.ext4 mkfs.xfs sfdisk partx cryptsetup wipefs blkid

# MBR, a partition with ext4 in it, and the kernel knowing the partition.
L=$(new_loop foreign)
printf 'label: dos\nstart=2048, size=409600, type=83\n' | sfdisk -q "$L" 2>/dev/null || true
partx -a "$L" 2>/dev/null || true
mkfs.ext4 -q -F -L photos "${L}p1"
rci --disk="$L" --wipe plan
expect_rc 0 "plan --wipe on a foreign disk"
expect_out "^- +disk.wipe: wipe every signature on $L: .*dos partition table.*ext4 filesystem, label \"photos\"" "plan lists what --wipe destroys"
expect_out "^\+ +disk.partition-table: create GPT on $L \(512 MiB, after wiping\)" "plan then creates the GPT"
[ "$(blkid -p -o value -s LABEL "${L}p1")" = photos ] && ok "plan destroyed nothing" || fail "plan changed the disk"

rci --disk="$L" --wipe apply
expect_rc 0 "apply --wipe on a foreign disk"
expect_out "^- +disk.wipe: wiped $L \([0-9]+ signatures erased\); destroyed: .*dos partition table" "apply says it destroyed the MBR"
expect_out "^- +disk.wipe: wiped $L .*ext4 filesystem, label \"photos\"" "apply says it destroyed the filesystem"
is_mounted_at "${L}p1" /srv/rootless-ci && ok "mounted" || fail "not mounted"
[ "$(blkid -p -o value -s LABEL "${L}p1")" = rootless-ci ] && ok "our filesystem now" || fail "not our filesystem"
[ "$(blkid -p -o value -s PTTYPE "$L")" = gpt ] && ok "GPT now" || fail "no GPT"
uuid=$(fs_uuid "${L}p1")

# --wipe on a disk that is already ours as configured: nothing happens.
rci --disk="$L" --wipe apply
expect_rc 0 "apply --wipe on our own disk"
expect_out "^Nothing changed" "--wipe does not remake our own disk"
[ "$(fs_uuid "${L}p1")" = "$uuid" ] && ok "same filesystem" || fail "filesystem remade"

# Ours, but FileSystem=xfs now: refused without --wipe, and while mounted.
before_fstab=$(sha /etc/fstab)
rci --disk="$L" --filesystem=xfs apply
expect_rc 3 "ours as ext4, xfs configured: refused"
expect_out "holds rootless-ci's ext4 filesystem .* but FileSystem=xfs is configured" "the message says so"
rci --disk="$L" --filesystem=xfs --wipe apply
expect_rc 3 "… and with --wipe while it is mounted"
expect_out "${L}p1 is mounted on /srv/rootless-ci" "the message names the mount"
[ "$(fs_uuid "${L}p1")" = "$uuid" ] && [ "$(sha /etc/fstab)" = "$before_fstab" ] && ok "nothing changed" || fail "something changed"
umount /srv/rootless-ci
rci --disk="$L" --filesystem=xfs --wipe apply
expect_rc 0 "unmounted, --wipe, xfs"
[ "$(blkid -p -o value -s TYPE "${L}p1")" = xfs ] && ok "remade as xfs" || fail "not xfs"
[ "$(grep -c x-rootless-ci /etc/fstab)" = 1 ] && grep -q "^UUID=$(fs_uuid "${L}p1") /srv/rootless-ci xfs " /etc/fstab &&
        ok "fstab line replaced, still one" || fail "fstab: $(cat /etc/fstab)"
is_mounted_at "${L}p1" /srv/rootless-ci && ok "mounted" || fail "not mounted"
umount /srv/rootless-ci

# LUKS keeps a second header at 16 KiB: both go.
L=$(new_loop luks)
printf 'pw' >"$WORK/key"
cryptsetup luksFormat -q --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$WORK/key" "$L"
rci --disk="$L" --wipe apply
expect_rc 0 "apply --wipe on LUKS"
[ "$(grep -o 'crypto_LUKS' "$WORK/out" | wc -l)" -ge 2 ] && ok "both LUKS headers reported destroyed" || fail "LUKS headers not both reported"
wipefs -n "$L" | grep -q crypto_LUKS && fail "a LUKS header survived" || ok "no LUKS header left"
umount /srv/rootless-ci

# Wipe=yes is never remembered: a later run without it refuses a foreign disk again.
L=$(new_loop again)
mkfs.ext4 -q -F -L other "$L"
rci --disk="$L" apply
expect_rc 3 "without --wipe, refused again"

finish
