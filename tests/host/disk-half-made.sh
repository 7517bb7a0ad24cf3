#!/bin/bash
# SPDX-License-Identifier: MIT
# A disk of ours left half made is completed where it stopped, never made
# again: apply killed (SIGKILL) at each point of the way, then run again;
# and the states a reboot leaves (not mounted; the kernel not knowing the
# partition, as on kernels that do not scan partition tables).
# ok() always succeeds, so "test && ok ... || fail ..." is an if-then-else here.
# shellcheck disable=SC2015
# shellcheck source=tests/host/lib.sh
. "$(dirname "$0")/lib.sh"
need mkfs.ext4 blkid findmnt partx

MP=/srv/rci-data

ptuuid() { blkid -p -o value -s PTUUID "$1"; }

converged() {
        # $1 what, $2 loop
        rci --disk="$2" --mount-point="$MP" check
        expect_rc 0 "$1: check passes afterwards"
        is_mounted_at "${2}p1" "$MP" && ok "$1: mounted" || fail "$1: not mounted"
        [ "$(grep -c x-rootless-ci /etc/fstab)" = 1 ] && ok "$1: one fstab line" || fail "$1: $(grep -c x-rootless-ci /etc/fstab) fstab lines"
}

# Every killpoint apply passes on a blank disk.
printf '# fstab of a rootless-ci host test\n' >/etc/fstab
L=$(new_loop list)
RCI_KILL_AT=list RCI_ONLY_STEPS=disk "$RCI" --disk="$L" --mount-point="$MP" apply >"$WORK/out" 2>&1 || true
points=$(sed -n 's/^killpoint: //p' "$WORK/out")
for p in disk-gpt-written disk-partition-ready exec-spawned@mkfs.ext4 disk-mkfs-done write-before-rename@fstab disk-fstab-written disk-mounted; do
        grep -qx "$p" <<<"$points" && ok "apply passes killpoint $p" || fail "killpoint $p not passed (got: $points)"
done
umount "$MP"

for p in $points; do
        printf '# fstab of a rootless-ci host test\n' >/etc/fstab
        L=$(new_loop "kill-$p")
        rci_killed_at "$p" --disk="$L" --mount-point="$MP" apply
        expect_rc 137 "killed at $p"
        pt=$(ptuuid "$L" || true)
        uuid=$( [ -b "${L}p1" ] && fs_uuid "${L}p1" || true)
        fstab=$(sha /etc/fstab)

        rci --disk="$L" --mount-point="$MP" apply
        expect_rc 0 "after $p: apply completes"
        [ -z "$pt" ] || { [ "$(ptuuid "$L")" = "$pt" ] && ok "after $p: GPT not rewritten" || fail "after $p: GPT rewritten"; }
        [ -z "$uuid" ] || { [ "$(fs_uuid "${L}p1")" = "$uuid" ] && ok "after $p: filesystem not made again" || fail "after $p: filesystem made again"; }
        if [ "$p" = disk-fstab-written ] || [ "$p" = disk-mounted ]; then
                [ "$(sha /etc/fstab)" = "$fstab" ] && ok "after $p: fstab left as it was" || fail "after $p: fstab rewritten"
        fi
        converged "after $p" "$L"
        leftovers=$(find /etc -maxdepth 1 -name '.#fstab.*' | wc -l)
        [ "$leftovers" = 0 ] || echo "note: after $p, $leftovers temporary fstab file(s) left in /etc by the killed run"
        find /etc -maxdepth 1 -name '.#fstab.*' -delete
        umount "$MP"
done

# GPT only, and the kernel forgot the partition (a reboot without partition scanning).
printf '# fstab of a rootless-ci host test\n' >/etc/fstab
L=$(new_loop gpt-only-no-node)
rci_killed_at disk-gpt-written --disk="$L" --mount-point="$MP" apply
pt=$(ptuuid "$L")
# Killed before it told the kernel, the kernel may not know the partition yet: forget it if it does.
partx -d "$L" 2>/dev/null || true
[ ! -b "${L}p1" ] && ok "the kernel has forgotten ${L}p1" || fail "${L}p1 still there"
rci --disk="$L" --mount-point="$MP" plan
expect_rc 0 "plan on GPT only, no node"
expect_out "^= +disk.partition-table: GPT on $L with partition 1" "plan recognises our GPT"
expect_out "^~ +disk.partition-node: tell the kernel about ${L}p1" "plan says it tells the kernel"
expect_out "^\+ +disk.filesystem: mkfs.ext4 ${L}p1" "plan says it makes the filesystem"
rci --disk="$L" --mount-point="$MP" apply
expect_rc 0 "apply on GPT only, no node"
[ "$(ptuuid "$L")" = "$pt" ] && ok "GPT not rewritten" || fail "GPT rewritten"
converged "GPT only, no node" "$L"

# A converged disk after a reboot: not mounted, partition unknown to the kernel.
uuid=$(fs_uuid "${L}p1")
fstab=$(sha /etc/fstab)
echo keep >"$MP/sentinel"
umount "$MP"
partx -d "$L"
rci --disk="$L" --mount-point="$MP" check
expect_rc 1 "check after the reboot finds the problem"
expect_out "^FAIL disk.mount" "check names the missing mount"
rci --disk="$L" --mount-point="$MP" apply
expect_rc 0 "apply after the reboot"
expect_out "told the kernel about ${L}p1" "apply re-adds the partition"
expect_out "mounted ${L}p1" "apply mounts"
[ "$(fs_uuid "${L}p1")" = "$uuid" ] && ok "same filesystem" || fail "filesystem changed"
[ "$(sha /etc/fstab)" = "$fstab" ] && ok "fstab unchanged" || fail "fstab changed"
[ "$(cat "$MP/sentinel")" = keep ] && ok "data intact" || fail "data lost"
converged "after the reboot" "$L"

# Filesystem and fstab line there, only the mount missing.
umount "$MP"
rci --disk="$L" --mount-point="$MP" plan
expect_out "^\+ +disk.mount: mount ${L}p1 on $MP$" "plan: only the mount is missing"
expect_no_out "^[+~-] +disk\.(partition|filesystem|fstab)" "plan: nothing else to do"
rci --disk="$L" --mount-point="$MP" apply
expect_rc 0 "apply mounts it again"
[ "$(sha /etc/fstab)" = "$fstab" ] && ok "fstab unchanged" || fail "fstab changed"
converged "remount" "$L"

# A stale partition the kernel kept from an earlier user of the loop device, blank: not in the way.
umount "$MP"
printf '# fstab of a rootless-ci host test\n' >/etc/fstab
L=$(new_loop stale-blank 1G)
printf 'label: dos\nstart=4096, size=8192, type=83\n' | sfdisk -q "$L" 2>/dev/null || true
partx -a "$L" 2>/dev/null || true
dd if=/dev/zero of="$L" bs=512 count=1 conv=notrunc,fsync status=none
[ -b "${L}p1" ] && ok "a stale blank ${L}p1 exists" || fail "could not make a stale partition"
rci --disk="$L" --mount-point="$MP" apply
expect_rc 0 "apply with a stale blank kernel partition"
[ "$(cat "/sys/block/$(basename "$L")/$(basename "$L")p1/start")" = 2048 ] && ok "the kernel now has our partition" || fail "kernel partition not ours"
converged "stale blank partition" "$L"

finish
