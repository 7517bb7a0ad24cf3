#!/bin/bash
# SPDX-License-Identifier: MIT
# Two applies started together on one blank disk: the second waits for the
# first's lock and says whose it is, then finds the work done. Both exit 0,
# and the result is one partition, one filesystem, one fstab line, one mount.
# The first run stops itself (the test hook RCI_STOP_AT) right after writing
# the partition table, holding the lock, so the second always arrives while
# the first is mid-way, whatever the machine's speed. (Freezing it from
# outside once its PID was in the lock file raced with a fast machine: the
# first run could finish between two polls.)
# ok() always succeeds, so "test && ok ... || fail ..." is an if-then-else here.
# shellcheck disable=SC2015
# shellcheck source=tests/host/lib.sh
. "$(dirname "$0")/lib.sh"
need mkfs.ext4 findmnt blkid sfdisk

L=$(new_loop concurrent 1G)
P=${L}p1
MP=/srv/rci-concurrent

# wait_for SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
        local deadline=$((SECONDS + $1))
        shift
        until "$@"; do
                [ $SECONDS -lt $deadline ] || return 1
                sleep 0.05
        done
}

# shellcheck disable=SC2317 # called through wait_for
lock_holder_is() {
        [ "$(tr -d ' \n' </run/rootless-ci.lock 2>/dev/null)" = "$1" ]
}

# shellcheck disable=SC2317 # called through wait_for
stopped() {
        [ "$(cut -d ' ' -f 3 "/proc/$1/stat" 2>/dev/null)" = T ]
}

RCI_STOP_AT=disk-gpt-written RCI_ONLY_STEPS=disk "$RCI" --disk="$L" --mount-point="$MP" apply >"$WORK/a.out" 2>&1 &
A=$!
if wait_for 30 stopped "$A" && lock_holder_is "$A"; then
        ok "the first run holds the lock (PID $A); stopped at disk-gpt-written"
else
        fail "the first run (PID $A) never took the lock; it said: $(cat "$WORK/a.out")"
fi

RCI_ONLY_STEPS=disk "$RCI" --disk="$L" --mount-point="$MP" apply >"$WORK/b.out" 2>&1 &
B=$!
wait_for 30 grep -q "for the lock held by PID $A (rootless-ci)" "$WORK/b.out" &&
        ok "the second run says it waits for the lock held by PID $A" ||
        fail "the second run does not say it waits for PID $A: $(cat "$WORK/b.out")"
kill -0 "$B" 2>/dev/null && ok "the second run is still waiting" || fail "the second run did not wait"

kill -CONT "$A"
set +e
wait "$A"; RC_A=$?
wait "$B"; RC_B=$?
set -e

cp "$WORK/a.out" "$WORK/out"
RC=$RC_A
expect_rc 0 "the first run"
expect_out "created GPT on $L" "the first run made the partition table"
cp "$WORK/b.out" "$WORK/out"
RC=$RC_B
expect_rc 0 "the second run"
expect_no_out "created GPT|made ext4" "the second run found the work done"

is_mounted_at "$P" "$MP" && ok "$P is mounted at $MP" || fail "$P is not mounted at $MP"
[ "$(findmnt -rn -o SOURCE --mountpoint "$MP" | wc -l)" = 1 ] && ok "mounted once" ||
        fail "mounted $(findmnt -rn -o SOURCE --mountpoint "$MP" | wc -l) times"
[ "$(sfdisk -l "$L" | grep -c "^$P")" = 1 ] && ok "exactly one partition" || fail "not one partition"
uuid=$(fs_uuid "$P")
[ "$(grep -c x-rootless-ci /etc/fstab)" = 1 ] && grep -q "^UUID=$uuid $MP ext4 " /etc/fstab &&
        ok "one fstab line, for the filesystem there" || fail "fstab: $(cat /etc/fstab)"

rci --disk="$L" --mount-point="$MP" check
expect_rc 0 "check holds afterwards"

finish
