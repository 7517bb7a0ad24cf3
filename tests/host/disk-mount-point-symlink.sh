#!/bin/bash
# SPDX-License-Identifier: MIT
# A mount point that is or goes through a symlink (/srv/link -> /etc,
# MountPoint=/srv/link or /srv/link/ci) is refused before the disk is
# touched: the kernel would mount on the link's target while fstab and
# RequiresMountsFor= name the literal path. A configuration error: exit 2
# for every verb, the symlink and its target named, the disk, fstab and
# /etc as they were.
# ok() always succeeds, so "test && ok ... || fail ..." is an if-then-else here.
# shellcheck disable=SC2015
# shellcheck source=tests/host/lib.sh
. "$(dirname "$0")/lib.sh"
need blkid

L=$(new_loop link-target 512M)
before=$(sha "$L")
fstab_before=$(sha /etc/fstab)
ln -s /etc /srv/link

for mp in /srv/link/ci /srv/link; do
        for verb in apply plan check; do
                rci --disk="$L" --mount-point="$mp" "$verb"
                expect_rc 2 "$verb, MountPoint=$mp"
                expect_out "^Configuration: MountPoint=$mp (goes through|is) the symlink /srv/link \(to /etc\)" \
                        "$verb, $mp: the symlink and its target are named"
                expect_out "Nothing was changed" "$verb, $mp: says nothing was changed"
        done
done
[ "$(sha "$L")" = "$before" ] && ok "the disk is byte for byte as it was" || fail "the disk changed"
[ "$(sha /etc/fstab)" = "$fstab_before" ] && ok "fstab unchanged" || fail "fstab changed: $(cat /etc/fstab)"
[ ! -e /etc/ci ] && ok "nothing made through the link" || fail "/etc/ci was made through the link"
findmnt -rn -S "${L}p1" >/dev/null 2>&1 && fail "something is mounted from $L" || ok "nothing mounted"

finish
