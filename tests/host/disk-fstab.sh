#!/bin/bash
# SPDX-License-Identifier: MIT
# /etc/fstab: our one line is added, replaced or left alone; every other
# byte stays as it was (comments, tabs, odd spacing, a line libmount cannot
# parse, no newline at the end); a line that is not ours at our mount point
# stops apply before the disk is touched.
# ok() always succeeds, so "test && ok ... || fail ..." is an if-then-else here.
# shellcheck disable=SC2015
# shellcheck source=tests/host/lib.sh
. "$(dirname "$0")/lib.sh"
need mkfs.ext4 blkid findmnt cmp

# Everything an operator's fstab may hold, on purpose.
printf '# /etc/fstab: static file system information.\n#\n# <file system> <mount point>   <type>  <options>       <dump>  <pass>\nUUID=1234-ABCD\t/boot/efi\tvfat\tumask=0077\t0\t1\n   proc    /proc     proc    defaults   0   0   \n\n\t# an indented comment\ntmpfs /var/tmp tmpfs defaults,size=1G 0 0 # trailing words\nthis line is not an fstab entry at all!\nLABEL=swap none swap sw 0 0' >/etc/fstab
chmod 0640 /etc/fstab
cp /etc/fstab "$WORK/fstab.orig"

L=$(new_loop data)
rci --disk="$L" --mount-point=/srv/ci apply
expect_rc 0 "apply with a messy fstab"
expect_out "^WARN disk.fstab-unparsable:9: /etc/fstab:9: libmount cannot parse this line" "the unparsable line is reported by number"
uuid=$(fs_uuid "${L}p1")
{ cat "$WORK/fstab.orig"; printf '\nUUID=%s /srv/ci ext4 defaults,nofail,x-rootless-ci 0 2\n' "$uuid"; } >"$WORK/fstab.want"
cmp -s /etc/fstab "$WORK/fstab.want" && ok "every other byte kept; our line appended" || { fail "fstab differs"; diff "$WORK/fstab.want" /etc/fstab || true; }
[ "$(stat -c '%a %U' /etc/fstab)" = "640 root" ] && ok "fstab mode kept" || fail "fstab mode is $(stat -c '%a %U' /etc/fstab)"
[ -z "$(find /etc -maxdepth 1 -name '.#fstab*')" ] && ok "no temporary file left" || fail "temporary file left"

rci --disk="$L" --mount-point=/srv/ci apply
expect_rc 0 "second apply"
cmp -s /etc/fstab "$WORK/fstab.want" && ok "second apply leaves fstab alone" || fail "second apply changed fstab"

# A new mount point replaces our line where it is.
rci --disk="$L" --mount-point="/srv/ci two" plan
expect_out "^~ +disk.fstab: replace /etc/fstab:11 " "plan: replace our line"
rci --disk="$L" --mount-point="/srv/ci two" apply
expect_rc 0 "apply with a new mount point"
{ cat "$WORK/fstab.orig"; printf '\nUUID=%s /srv/ci\\040two ext4 defaults,nofail,x-rootless-ci 0 2\n' "$uuid"; } >"$WORK/fstab.want2"
cmp -s /etc/fstab "$WORK/fstab.want2" && ok "our line replaced in place, the rest kept" || { fail "fstab differs"; diff "$WORK/fstab.want2" /etc/fstab || true; }
is_mounted_at "${L}p1" "/srv/ci two" && ok "mounted at the new mount point" || fail "not mounted at the new mount point"
expect_out "^WARN disk.mount-elsewhere:/srv/ci: ${L}p1 is also mounted at /srv/ci" "the old mount is left, with a warning"
umount "/srv/ci two" /srv/ci

# Someone else's line at our mount point: refused before anything is written.
printf '# theirs\n/dev/sdz1 /srv/rootless-ci ext4 defaults 0 2\n' >/etc/fstab
cp /etc/fstab "$WORK/fstab.theirs"
B=$(new_loop blank)
before=$(sha "$B")
rci --disk="$B" apply
expect_rc 3 "a foreign fstab line at our mount point"
expect_out "/etc/fstab:2 already mounts /dev/sdz1 at /srv/rootless-ci" "the message names file:line"
[ "$(sha "$B")" = "$before" ] && ok "the blank disk was not touched" || fail "the disk changed"
cmp -s /etc/fstab "$WORK/fstab.theirs" && ok "fstab unchanged" || fail "fstab changed"

# A symlink as /etc/fstab: not replaced, nothing done.
ln -sf fstab.theirs-real /etc/fstab && cp "$WORK/fstab.theirs" /etc/fstab.theirs-real
rci --disk="$B" --mount-point=/srv/elsewhere apply
expect_rc 1 "a symlinked fstab"
expect_out "/etc/fstab is not a regular file" "the message says why"
[ "$(sha "$B")" = "$before" ] && ok "the blank disk was not touched" || fail "the disk changed"
[ -L /etc/fstab ] && ok "the symlink is kept" || fail "the symlink was replaced"

# No fstab at all: made, 0644.
rm -f /etc/fstab /etc/fstab.theirs-real
rci --disk="$B" apply
expect_rc 0 "no fstab"
[ "$(stat -c '%a' /etc/fstab)" = 644 ] && ok "fstab created 0644" || fail "fstab mode $(stat -c '%a' /etc/fstab)"
[ "$(wc -l </etc/fstab)" = 1 ] && grep -q "^UUID=$(fs_uuid "${B}p1") /srv/rootless-ci ext4 defaults,nofail,x-rootless-ci 0 2$" /etc/fstab &&
        ok "fstab holds our line only" || fail "fstab: $(cat /etc/fstab)"

finish
