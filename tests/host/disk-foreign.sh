#!/bin/bash
# SPDX-License-Identifier: MIT
# Someone else's disk, in every form we could make here, is refused with
# exit 3 by apply and by plan, left byte for byte as it was (sha256 of the
# whole device), with the host untouched (fstab, mounts), and a message
# naming what was found and that --wipe would destroy it.
# ok() always succeeds, so "test && ok ... || fail ..." is an if-then-else here;
# the make_* functions are called through the matrix.
# shellcheck disable=SC2015,SC2317
# shellcheck source=tests/host/lib.sh
. "$(dirname "$0")/lib.sh"
need mkfs.ext4 mkfs.xfs mkfs.btrfs mkfs.vfat mkswap pvcreate cryptsetup sfdisk genisoimage python3 wipefs


make_ext4()  { mkfs.ext4 -q -F -L photos "$1"; }
make_xfs()   { mkfs.xfs -q -f -L backup "$1"; }
make_btrfs() { mkfs.btrfs -q -f -L pool "$1"; }
make_vfat()  { mkfs.vfat -n USBSTICK "$1" >/dev/null; }
make_swap()  { mkswap -L swap0 "$1" >/dev/null; }
make_lvm()   { pvcreate -q --config "devices { filter=[\"a|^$1\$|\",\"r|.*|\"] obtain_device_list_from_udev=0 }" "$1" 2>&1 | grep -v "leaked on" || true; }
make_luks() {
        printf 'correct horse battery staple' >"$WORK/key"
        cryptsetup luksFormat -q --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
                --key-file "$WORK/key" "$1"
}
make_mbr()   { printf 'label: dos\nstart=2048, size=204800, type=83\n' | sfdisk -q "$1" 2>/dev/null || true; }
make_gpt()   { printf 'label: gpt\nstart=2048, size=204800, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="home"\n' | sfdisk -q "$1" 2>/dev/null || true; }
make_iso() {
        mkdir -p "$WORK/iso"
        echo hello >"$WORK/iso/README"
        genisoimage -quiet -V INSTALLER -o "$WORK/x.iso" "$WORK/iso"
        dd if="$WORK/x.iso" of="$1" conv=notrunc,fsync status=none
}
make_md()    { python3 "$(dirname "$0")/write-md-superblock.py" "$1"; }
# Our partition name and type, but someone else's filesystem in it.
make_lookalike() {
        printf 'label: gpt\nstart=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="rootless-ci-data"\n' | sfdisk -q "$1" 2>/dev/null || true
        mkfs.ext4 -q -F -L photos -E offset=1048576 "$1" 100M
}
# Our layout with two partitions.
make_two() {
        printf 'label: gpt\nstart=2048, size=204800, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="rootless-ci-data"\n,,L\n' | sfdisk -q "$1" 2>/dev/null || true
}
# A filesystem left where our partition would go, its partition table gone: invisible to a whole-disk probe.
make_leftover() { mkfs.ext4 -q -F -L oldroot -E offset=1048576 "$1" 100M; }
# Only the backup GPT header at the end survives.
make_backup_gpt() {
        make_gpt "$1"
        partx -d "$1" 2>/dev/null || true
        dd if=/dev/zero of="$1" bs=512 count=2 conv=notrunc,fsync status=none
}
# A partition the kernel still knows, with a filesystem, though the table is gone.
make_stale() {
        make_mbr "$1"
        partx -a "$1" 2>/dev/null || true
        mkfs.ext4 -q -F -L stale "${1}p1"
        dd if=/dev/zero of="$1" bs=512 count=1 conv=notrunc,fsync status=none
}

# kind, maker, what the message must name
matrix=(
        "ext4 on the whole disk|make_ext4|ext4 filesystem, label \"photos\""
        "xfs|make_xfs|xfs filesystem, label \"backup\""
        "btrfs|make_btrfs|btrfs filesystem, label \"pool\""
        "vfat|make_vfat|vfat filesystem, label \"USBSTICK\""
        "swap|make_swap|swap other, label \"swap0\""
        "LVM physical volume|make_lvm|LVM2_member raid"
        "LUKS|make_luks|crypto_LUKS crypto"
        "MBR with a partition|make_mbr|partition table is dos, not GPT"
        "GPT with a foreign partition|make_gpt|not number 1, named"
        "ISO9660|make_iso|iso9660 filesystem, label \"INSTALLER\""
        "md RAID member|make_md|linux_raid_member raid"
        "our partition, someone else's filesystem|make_lookalike|ext4 filesystem, label \"photos\""
        "our partition and one more|make_two|GPT has 2 partitions"
        "leftover filesystem where our partition would go|make_leftover|label \"oldroot\""
        "only the backup GPT header|make_backup_gpt|gpt partition table"
        "stale kernel partition with data|make_stale|label \"stale\""
)

fstab_before=$(sha /etc/fstab)
i=0
for entry in "${matrix[@]}"; do
        IFS='|' read -r kind maker expect <<<"$entry"
        i=$((i + 1))
        L=$(new_loop "foreign-$i")
        "$maker" "$L"
        sync
        before=$(sha "$L")

        rci --disk="$L" apply
        expect_rc 3 "$kind: apply refuses"
        expect_out "$expect" "$kind: the message names what was found"
        expect_out "--wipe would destroy" "$kind: the message says --wipe would destroy it"
        rci --disk="$L" plan
        expect_rc 3 "$kind: plan refuses too"
        rci --disk="$L" check
        expect_rc 1 "$kind: check fails"

        [ "$(sha "$L")" = "$before" ] && ok "$kind: device unchanged (sha256)" || fail "$kind: the device changed"
        [ "$(sha /etc/fstab)" = "$fstab_before" ] && ok "$kind: fstab unchanged" || fail "$kind: fstab changed"
        [ -z "$(ls -A /srv)" ] && ok "$kind: no mount point made" || fail "$kind: /srv has $(ls -A /srv)"
done

finish
