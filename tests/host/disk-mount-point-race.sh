#!/bin/bash
# SPDX-License-Identifier: MIT
# MountPoint= and the race between looking at it and mounting on it.
#
# 1. A MountPoint= with a directory on the way that someone other than root
#    owns or can write (its group, others, sticky /tmp too), or that is such
#    a directory itself, lets that user swap a component between the check
#    and the mount (and at every boot before systemd mounts the fstab line):
#    a configuration error, exit 2 for every verb, before any step; the
#    disk, fstab and the mount table as they were.
# 2. The mount goes through the directory fd rootless-ci opened and checked,
#    not the path: stopped (RCI_STOP_AT) right after the check, the checked
#    directory is moved away and another one put at the path. The disk lands
#    on the checked directory and the run fails saying so, or it fails
#    without mounting; it never lands on the swapped-in one (a mount by path
#    would). Once with the new mount API (move_mount), once with the
#    fallback (libmount on /proc/self/fd/N).
# ok() always succeeds, so "test && ok ... || fail ..." is an if-then-else here.
# shellcheck disable=SC2015
# shellcheck source=tests/host/lib.sh
source "$(dirname "$0")/lib.sh"
need blkid findmnt

L=$(new_loop race)
before=$(sha "$L")
fstab_before=$(sha /etc/fstab)

# --- 1. refused: exit 2, nothing changed --------------------------------------

install -d -m 0755 -o 1001 -g 1001 /srv/home-ci                # a user's directory on the way
install -d -m 0777 /srv/shared                                  # writable by everyone
install -d -m 1777 /srv/tmp                                     # sticky, like /tmp and /var/tmp
install -d -m 0775 -g 1001 /srv/group                           # writable by a group
install -d -m 0755 /srv/theirs && install -d -m 0755 -o 1001 /srv/theirs/ci  # the mount point itself
for c in "/srv/home-ci/data|/srv/home-ci is owned by UID 1001" \
        "/srv/shared/ci|/srv/shared is writable by its group and others \(mode 0777\)" \
        "/srv/tmp/ci|/srv/tmp is writable by its group and others \(mode 1777: sticky counts" \
        "/srv/group/ci|/srv/group is writable by its group \(mode 0775\)" \
        "/srv/theirs/ci|/srv/theirs/ci is owned by UID 1001"; do
        mp=${c%%|*} want=${c#*|}
        for verb in apply plan check; do
                rci --disk="$L" --mount-point="$mp" "$verb"
                expect_rc 2 "$verb, MountPoint=$mp"
                expect_out "^Configuration: MountPoint=$mp: (on the way, )?$want" "$verb, $mp: names the directory and why"
                expect_out "Nothing was changed" "$verb, $mp: says nothing was changed"
                expect_no_out "^disk:" "$verb, $mp: refused before the disk step"
        done
done
[ "$(sha "$L")" = "$before" ] && ok "the disk is byte for byte as it was" || fail "the disk changed"
[ "$(sha /etc/fstab)" = "$fstab_before" ] && ok "fstab is as it was" || fail "fstab changed"
[ -z "$(findmnt -rn -S "$L")" ] && ok "nothing is mounted from the disk" || fail "something is mounted from $L"
[ ! -e /srv/home-ci/data ] && [ ! -e /srv/tmp/ci ] && ok "no mount point was made" || fail "a mount point was made"

# --- 2. the mount goes through the checked directory --------------------------

# swap_race MODE: apply stopped right after the mount point's check; the
# checked /srv/race/ci moved to /srv/race-checked/ci, another /srv/race/ci
# put in its place; then let it go on.
swap_race() {
        local mode=$1 pid state deadline=$((SECONDS + 120)) part
        rm -rf /srv/race /srv/race-checked
        mkdir -p /srv/race
        set +e
        if [ "$mode" = fallback ]; then
                RCI_FORCE_MOUNT_FALLBACK=1 RCI_STOP_AT=disk-mount-point-checked RCI_ONLY_STEPS=disk \
                        "$RCI" --disk="$L" --mount-point=/srv/race/ci apply >"$WORK/out" 2>&1 &
        else
                RCI_STOP_AT=disk-mount-point-checked RCI_ONLY_STEPS=disk \
                        "$RCI" --disk="$L" --mount-point=/srv/race/ci apply >"$WORK/out" 2>&1 &
        fi
        pid=$!
        set -e
        while :; do
                state=$(ps -o stat= -p "$pid" || true)
                [[ $state == T* ]] && break
                if [ -z "$state" ] || ((SECONDS > deadline)); then
                        fail "$mode: rootless-ci did not stop at disk-mount-point-checked"
                        return
                fi
                sleep 0.1
        done
        [ -d /srv/race/ci ] && ok "$mode: stopped after making and checking /srv/race/ci" ||
                fail "$mode: /srv/race/ci is not there at the stop"
        mv /srv/race /srv/race-checked
        mkdir -p /srv/race/ci
        : >/srv/race/ci/swapped-in
        kill -CONT "$pid"
        set +e
        wait "$pid"
        RC=$?
        set -e
        part=${L}p1
        expect_rc 1 "$mode: the run fails"
        expect_out "was mounted on the directory checked as /srv/race/ci, but that directory is now /srv/race-checked/ci" \
                "$mode: says where the disk went and why"
        is_mounted_at "$part" /srv/race/ci && fail "$mode: the disk landed on the swapped-in /srv/race/ci" ||
                ok "$mode: the disk is not on the swapped-in /srv/race/ci"
        [ -e /srv/race/ci/swapped-in ] && ok "$mode: the swapped-in directory is not hidden" ||
                fail "$mode: /srv/race/ci/swapped-in is hidden"
        is_mounted_at "$part" /srv/race-checked/ci && ok "$mode: the disk is on the checked directory" ||
                fail "$mode: the disk is not on the checked directory ($(findmnt -rn -o TARGET -S "$part"))"
        umount /srv/race-checked/ci 2>/dev/null || true
}

swap_race new-api
swap_race fallback

# The two paths really differ: the new mount API moves a mount onto the fd,
# the fallback hands libmount /proc/self/fd/N (seen with strace, when there).
if command -v strace >/dev/null; then
        # The same mount point: fstab names it since the first run.
        rm -rf /srv/race /srv/race-checked
        # LeakSanitizer cannot run under ptrace (the sanitizer build aborts at
        # exit): leaks are checked by the runs above, the system calls here.
        export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
        RCI_ONLY_STEPS=disk strace -f -e trace=move_mount,mount -o "$WORK/trace" \
                "$RCI" --disk="$L" --mount-point=/srv/race/ci apply >"$WORK/out" 2>&1 && RC=0 || RC=$?
        expect_rc 0 "new mount API: apply on a fresh mount point"
        grep -q 'move_mount(.*MOVE_MOUNT_T_EMPTY_PATH' "$WORK/trace" && ! grep -q ' mount(' "$WORK/trace" &&
                ok "new mount API: move_mount onto the fd, no mount(2)" || fail "new mount API: $(cat "$WORK/trace")"
        umount /srv/race/ci
        RCI_FORCE_MOUNT_FALLBACK=1 RCI_ONLY_STEPS=disk strace -f -e trace=move_mount,mount -o "$WORK/trace" \
                "$RCI" --disk="$L" --mount-point=/srv/race/ci apply >"$WORK/out" 2>&1 && RC=0 || RC=$?
        expect_rc 0 "fallback: apply"
        grep -q 'mount("/dev/loop[0-9]*p1", "/proc/self/fd/[0-9]*"' "$WORK/trace" &&
                ok "fallback: mount(2) on /proc/self/fd/N" || fail "fallback: $(cat "$WORK/trace")"
        is_mounted_at "${L}p1" /srv/race/ci && ok "fallback: mounted at the mount point" || fail "fallback: not mounted"
        umount /srv/race/ci
else
        echo "# strace not installed: which mount call each path makes is not shown"
fi

finish
