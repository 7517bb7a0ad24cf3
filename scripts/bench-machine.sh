# shellcheck shell=bash
# scripts/bench-machine.sh — the machine sections of scripts/bench (sourced).
# Each boots a disposable machine (scripts/machine), installs the build into
# it and gives it a sparse loop-file data disk: nothing of this host is used.

MACHINE_BUILD_DIR=${MACHINE_BUILD_DIR:-$HERE/build-bench}
NOOP_RUNS=${NOOP_RUNS:-20}
FIRST_RUNS=${FIRST_RUNS:-3}
BENCH_MACHINE=
CI_USER=buildkite
SETUPTOOL=/usr/share/docker.io/contrib/dockerd-rootless-setuptool.sh

bench_machine_build() {
	if [[ ! -f $MACHINE_BUILD_DIR/build.ninja ]]; then
		meson setup "$MACHINE_BUILD_DIR" "$HERE" --prefix=/usr >/dev/null
	fi
	ninja -C "$MACHINE_BUILD_DIR" src/rootless-ci >/dev/null
}

bench_machine_stop() {
	[[ -z $BENCH_MACHINE ]] || "$HERE/scripts/machine" stop "$BENCH_MACHINE" >/dev/null 2>&1 || true
	BENCH_MACHINE=
}

# bench_machine_start NAME: boot, install, attach a 4 GiB data disk and name it in the config.
bench_machine_start() {
	local disk
	BENCH_MACHINE=$1-$$
	trap bench_machine_stop EXIT
	RCI_MACHINE_OWNER=$$ "$HERE/scripts/machine" start "$BENCH_MACHINE" >/dev/null 2>&1
	"$HERE/scripts/machine" install "$BENCH_MACHINE" "$MACHINE_BUILD_DIR"
	disk=$("$HERE/scripts/machine" attach-disk "$BENCH_MACHINE" 4G)
	printf '[Disk]\nDevice=%s\n' "$disk" | bm_run install -m 0644 /dev/stdin /etc/rootless-ci.conf
}

bm_run() {
	"$HERE/scripts/machine" run "$BENCH_MACHINE" "$@"
}

# A timing loop run inside the machine by one bash, as root: each round runs
# every command once, the order rotated from round to round, so all of them
# meet the same load (this host's load moves within seconds; timing one
# command's runs after another's compared different moments). Every command
# is started the same way, fork and exec from that shell (a command line
# given as one string, run by eval), and timed with the shell's own clock
# ($EPOCHREALTIME). Prints one median in ms per command, in order.
bm_interleaved_ms() {
	local runs=$1
	shift
	bm_run bash -s "$runs" "$@" <<'EOF'
runs=$1
shift
cmds=("$@")
n=${#cmds[@]}
t=()
for ((i = 0; i < runs; i++)); do
	for ((k = 0; k < n; k++)); do
		j=$(((i + k) % n))
		s=$EPOCHREALTIME
		eval "${cmds[j]}" >/dev/null 2>&1
		e=$EPOCHREALTIME
		t[j]+="$((${e/./} - ${s/./})) "
	done
done
for ((j = 0; j < n; j++)); do
	# shellcheck disable=SC2086 # one number per word
	printf '%s\n' ${t[j]} | sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f\n", m / 1000 }'
done
EOF
}

bench_noop() {
	local uid as_ci apply check tool tool_full sysd truef truef_ci tool_rc tool_full_rc
	echo "== noop (issue 7): a converged machine, median of $NOOP_RUNS interleaved runs each, ms =="
	bench_machine_build
	bench_machine_start rci-bench-noop
	bm_run rootless-ci apply >/dev/null 2>&1 || { echo "bench: the first apply failed" >&2; return 1; }
	bm_run rootless-ci apply 2>&1 | grep -q '^Nothing changed' || { echo "bench: the machine is not converged" >&2; return 1; }
	uid=$(bm_run id -u "$CI_USER")
	as_ci=(setpriv --reuid="$uid" --regid="$uid" --init-groups env HOME="/home/$CI_USER" USER="$CI_USER"
		XDG_RUNTIME_DIR="/run/user/$uid" PATH=/usr/share/docker.io/contrib:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin)
	set +e
	bm_run "${as_ci[@]}" "$SETUPTOOL" check >/dev/null 2>&1
	tool_rc=$?
	# In these machines the module check fails (no ip_tables module to be
	# seen) and the tool stops there; --skip-iptables runs all the rest.
	bm_run "${as_ci[@]}" "$SETUPTOOL" check --skip-iptables >/dev/null 2>&1
	tool_full_rc=$?
	set -e

	# The setuptool runs as the CI user, as that user would run it: through
	# setpriv and env, whose own cost is measured as "as $CI_USER: /bin/true"
	# and taken off its figures.
	local as
	as=$(printf '%q ' "${as_ci[@]}")
	{
		read -r apply
		read -r check
		read -r sysd
		read -r truef
		read -r tool
		read -r tool_full
		read -r truef_ci
	} < <(bm_interleaved_ms "$NOOP_RUNS" "rootless-ci apply" "rootless-ci check" \
		"systemctl --user -M $CI_USER@ is-active docker" /bin/true \
		"$as $SETUPTOOL check" "$as $SETUPTOOL check --skip-iptables" "$as /bin/true")
	read -r tool tool_full < <(awk -v t="$tool" -v tf="$tool_full" -v c="$truef_ci" -v f="$truef" \
		'BEGIN { printf "%.2f %.2f\n", t - (c - f), tf - (c - f) }')

	echo "kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); $(bm_run rootless-ci version)"
	printf '  %-58s %9s\n' "rootless-ci apply (converged, no-op)" "$apply"
	printf '  %-58s %9s\n' "rootless-ci check" "$check"
	printf '  %-58s %9s   (exit %s)\n' "dockerd-rootless-setuptool.sh check, as $CI_USER" "$tool" "$tool_rc" \
		"dockerd-rootless-setuptool.sh check --skip-iptables, as $CI_USER" "$tool_full" "$tool_full_rc"
	printf '  %-58s %9s\n' "systemctl --user -M $CI_USER@ is-active docker" "$sysd"
	printf '  %-58s %9s   (as %s through setpriv: %s, taken off the setuptool'"'"'s)\n' "/bin/true" "$truef" "$CI_USER" "$truef_ci"
	awk -v a="$apply" -v c="$check" -v t="$tool" -v tf="$tool_full" -v s="$sysd" -v f="$truef" 'BEGIN {
		printf "  ratios: setuptool check / apply = %.1fx (complete, --skip-iptables: %.1fx), setuptool check / check = %.1fx,\n", t / a, tf / a, t / c
		printf "          systemctl is-active / apply = %.1fx, apply / true = %.1fx, apply - true = %.2f ms\n", s / a, a / f, a - f
	}'
	bench_machine_stop
}

bench_first() {
	local i out
	local -a walls waited cpu steps_pre steps_disk steps_user steps_storage steps_daemon steps_agent mkfs useradd mgr ping reloads jobs
	echo "== first (issue 5): the first apply on a fresh machine, median of $FIRST_RUNS machines, ms =="
	bench_machine_build
	for ((i = 0; i < FIRST_RUNS; i++)); do
		bench_machine_start "rci-bench-first$i"
		# shellcheck disable=SC2016 # expanded by the machine's shell
		out=$(bm_run bash -c 's=$EPOCHREALTIME; rootless-ci -v apply 2>&1 >/dev/null; e=$EPOCHREALTIME; echo "WALL $(( ${e/./} - ${s/./} ))"')
		bench_machine_stop
		step() { sed -n "s/^$1: [0-9]* \(changed\|items in place\) (\([0-9.]*\) ms)$/\2/p" <<<"$out" | tail -n1; }
		walls+=("$(awk '/^WALL/ { printf "%.1f", $2 / 1000 }' <<<"$out")")
		# apply's own account (-v, at its end): the time it waited for systemd,
		# logind, dockerd and its children; its CPU, start-up included.
		waited+=("$(sed -n 's/^Timing: run .* ms, waiting for other processes \([0-9.]*\) ms, .*$/\1/p' <<<"$out")")
		cpu+=("$(sed -n 's/^Timing: run .*(CPU \([0-9.]*\) ms.*$/\1/p' <<<"$out")")
		steps_pre+=("$(step preflight)")
		steps_disk+=("$(step disk)")
		steps_user+=("$(step user)")
		steps_storage+=("$(step storage)")
		steps_daemon+=("$(step daemon)")
		steps_agent+=("$(step agent)")
		mkfs+=("$(sed -n 's/^disk: Timing: mkfs\.[a-z0-9]* \([0-9.]*\) ms$/\1/p' <<<"$out")")
		useradd+=("$(sed -n 's/^user: Timing: useradd \([0-9.]*\) ms$/\1/p' <<<"$out")")
		mgr+=("$(sed -n 's/^daemon: user@[0-9]*\.service is active after \([0-9.]*\) s$/\1/p' <<<"$out" | awk '{ printf "%.1f", $1 * 1000 }')")
		# systemd's own work we wait for: daemon-reloads, and jobs other than
		# the user manager's start (in mgr) and dockerd's (in ping).
		reloads+=("$(sed -n 's/^[a-z]*: Timing: daemon-reload (systemd) \([0-9.]*\) ms$/\1/p' <<<"$out" |
			awk '{ s += $1 } END { printf "%.1f", s }')")
		jobs+=("$(grep -v -e ' docker\.service (systemd job)' -e ' user@[0-9]*\.service (systemd job)' <<<"$out" |
			sed -n 's/^[a-z]*: Timing: .* (systemd \(job\|unit files\)) \([0-9.]*\) ms$/\2/p' | awk '{ s += $1 } END { printf "%.1f", s }')")
		ping+=("$(sed -n "s/^daemon: .*'s Docker answered \([0-9.]*\) s after the start request$/\1/p" <<<"$out" | awk '{ printf "%.1f", $1 * 1000 }')")
		if [[ -n ${BENCH_VERBOSE:-} ]]; then printf '    | %s\n' "${out//$'\n'/$'\n'    | }"; fi
	done
	med() { printf '%s\n' "$@" | grep -v '^$' | sort -n | awk '{ v[NR] = $1 } END { if (!NR) { print "-"; exit } m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f\n", m }'; }
	local W P D U S DA A M UA G Q O
	W=$(med "${walls[@]}") P=$(med "${steps_pre[@]}") D=$(med "${steps_disk[@]}") U=$(med "${steps_user[@]}")
	S=$(med "${steps_storage[@]}") DA=$(med "${steps_daemon[@]}") A=$(med "${steps_agent[@]}")
	M=$(med "${mkfs[@]}") UA=$(med "${useradd[@]}") G=$(med "${mgr[@]}") Q=$(med "${ping[@]}")
	local RL JB
	RL=$(med "${reloads[@]}") JB=$(med "${jobs[@]}")
	# Ours: each machine's wall time (measured outside, so process start-up
	# counts as ours) less everything apply waited for: mkfs, useradd,
	# systemd, logind and dockerd. The second figure also keeps systemd's
	# waits in, so only mkfs and dockerd's start-up are left out.
	local -a own=() own_sd=()
	for ((i = 0; i < ${#walls[@]}; i++)); do
		own_sd+=("$(awk -v w="${walls[i]}" -v m="${mkfs[i]:-0}" -v q="${ping[i]:-0}" 'BEGIN { printf "%.1f", w - m - q }')")
		own+=("$(awk -v w="${walls[i]}" -v x="${waited[i]:-0}" 'BEGIN { printf "%.1f", w - x }')")
	done
	O=$(med "${own[@]}")
	local OS X C
	OS=$(med "${own_sd[@]}") X=$(med "${waited[@]}") C=$(med "${cpu[@]}")
	printf '  %-58s %9s\n' "whole apply, wall clock" "$W" \
		"  preflight" "$P" "  disk" "$D" "    of which mkfs (child process)" "$M" \
		"  user" "$U" "    of which useradd (child process)" "$UA" "  storage" "$S" \
		"  daemon" "$DA" "    of which waiting for user@UID.service" "$G" \
		"    of which start docker.service -> first /_ping answer" "$Q" "  agent" "$A" \
		"systemd daemon-reloads, all steps" "$RL" "systemd jobs and unit-file calls (root daemon mask/stop, ...)" "$JB" \
		"wall - mkfs - dockerd start-up" "$OS" \
		"waiting for other processes (apply's own account)" "$X" \
		"rootless-ci's own code: wall - all that waiting" "$O" \
		"  its CPU time, user + system, start-up included" "$C"
}
