# shellcheck shell=bash disable=SC2034 # the arrays are used by the scripts that source this file
# scripts/deps.sh — the Debian packages the build and the tests need, and
# how they are installed. Sourced by scripts/test and scripts/demo.

# Building rootless-ci.
BUILD_PACKAGES=(
	meson ninja-build pkg-config gcc libc6-dev
	libmount-dev libblkid-dev libsystemd-dev libparted-dev
)

# The disposable machines (scripts/machine): the image is built with
# mmdebstrap from Debian's archive (it needs the archive keyring and gpg to
# verify it), booted with systemd-nspawn, entered with nsenter; jq reads
# rootless-ci's JSON.
MACHINE_PACKAGES=(
	mmdebstrap debian-archive-keyring gpg libdpkg-perl mount
	systemd-container util-linux procps jq
)

# The vm tier (scripts/vm): qemu with software emulation (no network device,
# so nothing beyond the system emulator), qemu-img for the per-VM overlay
# disks, genisoimage for the NoCloud seed, mkfs.ext4 -d for the root disk
# (e2fsprogs, below). cloud-init itself is only needed inside the VM image,
# where `cloud-init schema` validates conf/cloud-init.yaml; the host needs
# none.
VM_PACKAGES=(
	qemu-system-x86 qemu-utils genisoimage
)

# Everything else the test tiers use: real filesystems on loop devices
# (host tier), the subordinate-ID tools, a second compiler, the linter for
# the scripts.
TEST_PACKAGES=(
	e2fsprogs xfsprogs uidmap clang shellcheck
	# the host tier's "someone else's disks" (tests/host/disk-foreign.sh and others)
	btrfs-progs dosfstools lvm2 cryptsetup-bin fdisk genisoimage python3
)

# install_packages PKG...: install what is not installed yet. Nothing is
# fetched when all is there (a re-run, or CI on a prepared machine); else
# the package lists are updated once, then everything missing installed,
# without prompts and without a terminal.
install_packages() {
	local pkg missing=()
	for pkg in "$@"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -qx 'install ok installed' ||
			missing+=("$pkg")
	done
	((${#missing[@]})) || return 0
	if [[ $(id -u) -ne 0 ]]; then
		echo "missing packages: ${missing[*]}; run as root to install them" >&2
		return 1
	fi
	echo "installing: ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
}
