#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Hostile values for every option and configuration key ([Tenant] too), fed to the real
# binary on a --root fake tree: empty, longer than PATH_MAX, not UTF-8,
# newlines aimed at fstab and unit files, "..", a user name with a colon or
# a leading dash, mount points in or on system directories. Each must end
# with exit 2, a message naming the option (or file:line and key), and the
# tree exactly as it was. Then a mount point that is or goes through a
# symlink (/srv/link -> /etc), or below a directory others can write: exit
# 2 too, for every verb, nothing written.
# Devices that are partitions, files or character devices are the host
# tier's (tests/host/disk-refuse.sh).
#
# Usage: test-hostile-input.sh PATH-TO-ROOTLESS-CI (meson passes the built binary)

set -u

BIN=${1:?usage: $0 PATH-TO-ROOTLESS-CI}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/rci-hostile.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT

# shellcheck source=tests/lib/fake-tree.sh
source "$(dirname "$0")/../lib/fake-tree.sh"

T=$TMP/tree
make_tree "$T" debian
: >"$TMP/empty.conf"

LONG=/srv/$(printf 'a%.0s' $(seq 1 5000))
NAMEMAX=/srv/$(printf 'b%.0s' $(seq 1 300))

# hostile_option OPTION VALUE...: apply --OPTION=VALUE for each value; plan
# and check too for the first (they share the parsing; apply is the one
# that could change something, and each run under ASan costs a quarter second).
hostile_option() {
        local opt=$1 v verb verbs="check plan apply"
        shift
        for v in "$@"; do
                for verb in $verbs; do
                        expect 2 "$verb $opt=$(printf '%q' "$v" | cut -c1-60)" --in "$T" --err "$opt=" \
                                -- --config="$TMP/empty.conf" --root="$T" "$verb" "$opt=$v"
                done
                verbs=apply
        done
}

# hostile_key SECTION KEY VALUE...: KEY=VALUE in a config file, with apply.
hostile_key() {
        local section=$1 key=$2 v n=0
        shift 2
        for v in "$@"; do
                n=$((n + 1))
                printf '[%s]\n%s=%s\n' "$section" "$key" "$v" >"$TMP/hostile-$key-$n.conf"
                expect 2 "[$section] $key=$(printf '%q' "$v" | cut -c1-60)" --in "$T" \
                        --err "hostile-$key-$n.conf:2: $key=" \
                        -- --config="$TMP/hostile-$key-$n.conf" --root="$T" apply
        done
}

hostile_option --disk "" "$LONG" "/dev/$NAMEMAX" $'/dev/\xff\xfe' $'/dev/sdb\nUUID=evil / ext4' "/dev/../etc/passwd" \
        "/dev/disk/../../etc/shadow" "sdb" "/etc/passwd" "-/dev/sdb"
hostile_option --filesystem "" "ext3" "EXT4" $'ext4\n' $'\xff' "$LONG"
hostile_option --mount-point "" "$LONG" "$NAMEMAX" $'/srv/\xff\xfe' $'/srv/x\nUUID=evil / ext4 defaults 0 0' \
        $'/srv/x\tdefaults' "/srv/../etc" "/srv/ci/.." "/srv//ci" "srv/ci" \
        / /proc /proc/sys/ci /sys /sys/fs/ci /dev /dev/shm/ci /etc /etc/ci /usr/local/ci /run/ci /boot /srv /var/lib
hostile_option --user "" "$(printf 'u%.0s' $(seq 1 40))" $'a\nb' "a:b" "-a" "root" $'b\xffk' "A" "1ci" "a b" \
        "../root" "a/b"
hostile_option --agent-unit "" $'x.service\n[Service]' $'x.service\nExecStart=/bin/sh' "x" "x.socket" \
        "x@.service" "../x.service" "/etc/x.service" $'\xff.service' "-x.service" ".service" \
        "$(printf 'u%.0s' $(seq 1 300)).service"
hostile_option --ready-timeout "" "0" "-1" "86401" "1e3" "99999999999999999999" $'5\n' "five"
hostile_option --lock-timeout "" "-1" "five" "99999999999999999999"

hostile_key Disk Device "" "$LONG" $'/dev/\xff' "/dev/../etc/passwd" "sdb"
hostile_key Disk FileSystem "" "ext3" $'\xff'
hostile_key Disk MountPoint "" "$LONG" $'/srv/\xff' "/srv/../etc" / /proc/ci /sys/ci /dev/ci /etc/ci /etc
hostile_key Disk Wipe "" "maybe" $'\xff' "yes please"
hostile_key User Name "" "a:b" "-a" "root" $'b\xffk' "$(printf 'u%.0s' $(seq 1 40))"
hostile_key Agent Unit "" "x" "x@.service" $'\xff.service' "../x.service"
hostile_key Daemon ReadyTimeoutSec "" "0" "-5" "86401" "five"
hostile_key Tenant Name "" "PR" "a:b" "-pr" "../pr" "pr/x" "pr.cfg" $'p\xffr' "$(printf 'n%.0s' $(seq 1 33))"
hostile_key Tenant User "" "a:b" "-a" "root" $'b\xffk' "$(printf 'u%.0s' $(seq 1 40))"
hostile_key Tenant AgentUnit "" "x" "x@.service" $'\xff.service' "../x.service"
hostile_key Tenant AgentConfig "" "/" "etc/x.cfg" "$LONG" $'/etc/\xff.cfg' "/etc/../shadow" "/etc/x.cfg/"
hostile_key Tenant Trust "" "yes" "Trusted" $'\xff'

# Newlines cannot reach a key through a file (a line ends there); a value that
# continues on the next line is a stray line, refused with its number.
printf '[Disk]\nMountPoint=/srv/x\nUUID=evil / ext4 defaults 0 0\n' >"$TMP/continued.conf"
expect 2 "a value continued on the next line" --in "$T" --err "continued.conf:3:" \
        -- --config="$TMP/continued.conf" --root="$T" apply
printf '[Disk]\nMountPoint=/srv/x\0/etc\n' >"$TMP/nul.conf"
expect 2 "a NUL byte in the file" --in "$T" --err "nul.conf:2: contains a NUL byte" \
        -- --config="$TMP/nul.conf" --root="$T" apply
expect 2 "--config empty" --in "$T" --err "--config" -- --config= --root="$T" apply
expect 2 "--root empty" --in "$T" --err "--root" -- --config="$TMP/empty.conf" --root= plan
expect 2 "--root too long" --in "$T" --err "--root" -- --config="$TMP/empty.conf" --root="$LONG" plan

# --- a mount point that is or goes through a symlink: exit 2 for every verb,
# before any step, nothing written through it. Trees where apply would stop
# at preflight (bare), would create the user first (fresh: the check must
# come before the user step), and would otherwise succeed (complete).

for kind in bare fresh complete; do
        T2=$TMP/$kind
        make_tree "$T2" debian
        if [ "$kind" != bare ] && ! make_setuid "$T2"; then
                skip "MountPoint through a symlink ($kind tree)" "needs root (setuid newuidmap)"
                continue
        fi
        [ "$kind" = complete ] && make_ci_user "$T2"
        mkdir -p "$T2/srv"
        ln -s /etc "$T2/srv/link"
        printf '[Disk]\nMountPoint=/srv/link\n' >"$TMP/link.conf"
        printf '[Disk]\nMountPoint=/srv/link/ci\n' >"$TMP/link-below.conf"
        for verb in apply plan check; do
                expect 2 "MountPoint=/srv/link, the symlink itself ($kind tree), $verb" --in "$T2" \
                        --err "MountPoint=/srv/link is the symlink $T2/srv/link (to /etc)" --err "Nothing was changed" \
                        -- --config="$TMP/link.conf" --root="$T2" "$verb"
                expect 2 "MountPoint=/srv/link/ci, through a symlink ($kind tree), $verb" --in "$T2" \
                        --err "MountPoint=/srv/link/ci goes through the symlink $T2/srv/link (to /etc)" \
                        -- --config="$TMP/link-below.conf" --root="$T2" "$verb"
                expect 2 "--mount-point=/srv/link/ci, through a symlink ($kind tree), $verb" --in "$T2" \
                        --err "goes through the symlink $T2/srv/link" \
                        -- --config="$TMP/empty.conf" --root="$T2" "$verb" --mount-point=/srv/link/ci
        done
        expect 2 "MountPoint through a symlink ($kind tree), check --json" --in "$T2" --err "goes through the symlink" \
                -- --config="$TMP/link-below.conf" --root="$T2" --json check
done

# --- a mount point on ground someone else can write: exit 2 for every verb,
# before any step (they could swap a directory between the check and the
# mount, or before systemd mounts the fstab line at boot), nothing written.

W=$TMP/writable
make_tree "$W" debian
mkdir -p "$W/srv/shared" "$W/srv/tmp" "$W/srv/group" "$W/srv/own/ci"
chmod 0777 "$W/srv/shared"
chmod 1777 "$W/srv/tmp"
chmod 0775 "$W/srv/group"
chmod 0757 "$W/srv/own/ci"
for c in "/srv/shared/ci|on the way, $W/srv/shared is writable by its group and others (mode 0777)" \
        "/srv/tmp/ci|on the way, $W/srv/tmp is writable by its group and others (mode 1777: sticky counts" \
        "/srv/group/new/ci|on the way, $W/srv/group is writable by its group (mode 0775)" \
        "/srv/own/ci|$W/srv/own/ci is writable by others (mode 0757)"; do
        mp=${c%%|*}
        for verb in apply plan check; do
                expect 2 "MountPoint=$mp on writable ground, $verb" --in "$W" \
                        --err "Configuration: MountPoint=$mp: ${c#*|}" --err "Nothing was changed" \
                        -- --config="$TMP/empty.conf" --root="$W" "$verb" --mount-point="$mp"
        done
done

finish
