#!/bin/bash
# shellcheck disable=SC2016 # the single-quoted scripts are expanded by the machine's shell
# tenants-escapes: two tenants on one machine — main (trusted, the CI user
# buildkite) and pr (untrusted, buildkite-pr) — provisioned by one apply on
# a fresh machine; a second apply changes nothing. Then, from the untrusted
# tenant's user, every way to reach the trusted tenant's builds is tried
# and judged by its effect (a container or image that would appear on the
# trusted daemon, bytes read, checksums before and after, a process that
# must survive, a tracer that must not appear, a marker a hook would
# write), one TAP line each:
#
#   1. connect to the trusted daemon's socket (the raw connect, the docker
#      CLI, the socket bind-mounted into pr's own container);
#   2. read the trusted home, builds directory and Docker data (a volume, a
#      container's layer), directly and through bind mounts in pr's own
#      daemon's containers (--privileged too);
#   3. read the trusted agent's configuration (its token);
#   4. an image pr's daemon tags with a name main's pipeline uses is never
#      seen by main's daemon;
#   5. signal (STOP, KILL) or ptrace main's daemon (rootlesskit and
#      dockerd), directly and from a --pid=host container;
#   6. write into a trusted checkout (builds dir), directly and from a
#      --privileged container with the builds dir bind-mounted;
#   7. a .git/hooks/post-checkout (and a core.fsmonitor) planted in an
#      untrusted checkout runs at no later checkout when git runs with the
#      GIT_CONFIG_* environment rootless-ci gives pr's agent (read from the
#      agent instance's unit, as systemd hands it to the agent).
#
# Each refusal that could also be a broken probe has a control that shows
# the probe works: root (or main itself) reads the secrets where they are;
# main connects to its own socket and sees its own images; pr's container
# reads pr's own bind-mounted home; pr's kill and strace reach a process of
# its own; pr writes into its own checkout; the planted hook and fsmonitor
# do run when git runs without that environment.
#
# Every step is the real one: the data disk is a blank loop disk configured
# as Device=, which apply partitions, formats and mounts. The agent is a
# stand-in with the package's template unit (agent-standin.sh).

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=tests/machine/agent-standin.sh
source "$(dirname "$0")/agent-standin.sh"

machine_begin
machine_data_disk
machine_two_tenants
MAIN=$MAIN_USER
PR=$PR_USER
MNT=/srv/rootless-ci

standin_install
standin_install_template
# Each tenant's agent configuration, written by the operator and left
# readable and owned as the package leaves its own: apply secures them.
for t in "$MAIN_TENANT" "$PR_TENANT"; do
	printf 'token="RCI-TOKEN-%s"\nbuild-path="/var/lib/buildkite-agent/builds"\n' "$t" |
		in_machine install -m 0644 -o buildkite-agent -g buildkite-agent /dev/stdin "/etc/buildkite-agent/$t.cfg"
done

as_main() { as_user "$MAIN" "$@"; }
as_pr() { as_user "$PR" "$@"; }

# ------------------------------------------------ 0. two tenants from one apply, a second changes nothing
run_json apply1 apply
[[ $rc -eq 0 ]] || { sed 's/^/# stderr: /' "$TEST_TMP/apply1.err"; jq -c '.items[] | select(.status == "fail")' "$TEST_TMP/apply1.json" | sed 's/^/# /'; }
assert_eq 0 "$rc" "a two-tenant apply on a fresh machine exits 0 (in $ms ms)"
for t in "$MAIN_TENANT" "$PR_TENANT"; do
	st=$(item "$TEST_TMP/apply1.json" "daemon.service:$t" status)
	[[ $st == create || $st == change || $st == pass ]] || fail "apply's report: daemon.service:$t is '$st'"
	ok "apply's report has daemon.service:$t ($st)"
	n=$(jq --arg t "$t" '[.items[] | select(.tenant == $t)] | length' "$TEST_TMP/apply1.json")
	[[ $n -gt 0 ]] || fail "no item of apply's JSON report names tenant $t"
	ok "$n items of apply's JSON report carry \"tenant\":\"$t\""
done
run_json check1 check
[[ $rc -eq 0 ]] || jq -c '.items[] | select(.status == "fail")' "$TEST_TMP/check1.json" | sed 's/^/# /'
assert_eq 0 "$rc" "check passes after the two-tenant apply"
machine_snapshot "$TEST_TMP/before-apply2"
run_json apply2 apply
[[ $(jq -r .changed "$TEST_TMP/apply2.json") == false ]] ||
	jq -c '.items[] | select(.changed)' "$TEST_TMP/apply2.json" | sed 's/^/# /'
assert_eq "0 false" "$rc $(jq -r .changed "$TEST_TMP/apply2.json")" "a second apply changes nothing (in $ms ms)"
machine_snapshot "$TEST_TMP/after-apply2"
assert_same_snapshot "$TEST_TMP/before-apply2" "$TEST_TMP/after-apply2" "the second apply leaves the machine as it was"

main_uid=$(in_machine id -u "$MAIN")
pr_uid=$(in_machine id -u "$PR")
[[ $main_uid != "$pr_uid" ]] || fail "both tenants have UID $main_uid"
for u in "$MAIN" "$PR"; do
	v=$(as_user "$u" docker info --format '{{.ServerVersion}} {{.DockerRootDir}}' 2>&1) || fail "$u's Docker does not answer: $v"
	assert_eq "$MNT/$u/docker" "$(in_machine realpath "${v#* }")" "$u's own daemon answers, its data root on the data disk"
done
[[ $(user_docker_pid "$MAIN") != "$(user_docker_pid "$PR")" ]] || fail "one daemon for both tenants"
ok "each tenant has a daemon of its own (MainPID $(user_docker_pid "$MAIN") and $(user_docker_pid "$PR"))"
groups=$(in_machine id -nG "$PR")
[[ " $groups " != *" $MAIN "* && " $groups " != *" docker "* ]] || fail "$PR is in $MAIN's group or docker: $groups"
ok "$PR is in neither $MAIN's group nor docker ($groups)"
# Subordinate ranges: one line each, and disjoint.
for f in /etc/subuid /etc/subgid; do
	ranges=$(in_machine awk -F: -v a="$MAIN" -v b="$PR" '$1 == a || $1 == b {print $1, $2, $3}' "$f")
	out=$(awk '{s[NR] = $2; e[NR] = $2 + $3; u[NR] = $1}
		END {for (i = 1; i <= NR; i++) for (j = i + 1; j <= NR; j++) if (s[i] < e[j] && s[j] < e[i]) print "overlap"}' <<<"$ranges")
	[[ $(grep -c . <<<"$ranges") -eq 2 && -z $out ]] || fail "$f: the tenants' ranges are not one each and disjoint: $ranges"
	ok "$f: one range each, disjoint ($(tr '\n' ' ' <<<"$ranges"))"
done

as_main docker import /var/lib/rootless-ci-test/busybox.tar rci-busybox >/dev/null
as_pr docker import /var/lib/rootless-ci-test/busybox.tar rci-busybox >/dev/null
ok "busybox imported into each tenant's daemon"
# Both agents, as the operator enables them (the stand-in runs a container as it starts).
in_machine systemctl enable --now "buildkite-agent@$MAIN_TENANT.service" "buildkite-agent@$PR_TENANT.service" >/dev/null 2>&1 ||
	fail "the agent instances do not start"
main_report=$(standin_report "$main_uid")
pr_report=$(standin_report "$pr_uid")
while IFS= read -r e; do echo "#   pr agent: $e"; done <<<"$pr_report"
assert_contains "$main_report" "DOCKER_HOST=unix:///run/user/$main_uid/docker.sock" "main's agent runs as $MAIN against its own daemon"
assert_contains "$pr_report" "DOCKER_HOST=unix:///run/user/$pr_uid/docker.sock" "pr's agent runs as $PR against its own daemon"
assert_contains "$pr_report" "BUILDKITE_AGENT_CONFIG=/etc/buildkite-agent/$PR_TENANT.cfg" "pr's agent reads its own configuration"


# tree_state DIR: every entry under DIR with its owner, mode, size and checksum.
tree_state() {
	in_machine sh -c 'find "$1" -exec stat -c "%n %U:%G %a %s" {} + | sort; find "$1" -type f -exec sha256sum {} + | sort' sh "$1"
}
# prun ARGS...: docker run --rm on pr's daemon, output kept, status ignored.
prun() {
	as_pr docker run --rm "$@" 2>&1 || true
}

# ------------------------------------------------ 1. the trusted daemon's socket
main_sock=/run/user/$main_uid/docker.sock
CONNECT='use Socket; socket(my $s, PF_UNIX, SOCK_STREAM, 0) or die "socket: $!\n";
connect($s, pack_sockaddr_un($ARGV[0])) or die "connect: $!\n"; print "connected\n";'
assert_eq connected "$(as_main perl -e "$CONNECT" "$main_sock" 2>&1)" "main connects to its own socket $main_sock (the control)"
out=$(as_pr perl -e "$CONNECT" "$main_sock" 2>&1 || true)
[[ $out != connected ]] || fail "$PR connected to $main_sock"
ok "$PR cannot connect to $main_sock ($out)"
containers_before=$(as_main docker ps -aq --no-trunc | sort)
images_before=$(as_main docker images -q --no-trunc | sort)
out=$(as_pr sh -c "docker -H unix://$main_sock run --name rci-pwned-by-pr rci-busybox true;
	docker -H unix://$main_sock tag rci-busybox rci-pwned-by-pr" 2>&1 || true)
out+=$(prun -v "$main_sock:/s" rci-busybox sh -c 'test -S /s && echo SOCKET-VISIBLE')
out+=$(prun -v "/run/user/$main_uid:/r" rci-busybox sh -c 'test -S /r/docker.sock && echo SOCKET-VISIBLE')
assert_eq "$containers_before|$images_before" "$(as_main docker ps -aq --no-trunc | sort)|$(as_main docker images -q --no-trunc | sort)" \
	"nothing created on main's daemon through its socket, directly or bind-mounted in pr's container"
[[ $out != *SOCKET-VISIBLE* ]] || fail "pr's container sees main's socket: $out"
ok "pr's docker CLI and containers are refused ($(tr '\n' ' ' <<<"$out" | cut -c 1-160))"

# ------------------------------------------------ 2. the trusted home, builds and Docker data
# What a trusted build leaves, with the default umask: a file in the home,
# a checkout in the builds directory, a volume and a container's layer.
main_builds=$MNT/$MAIN/builds
main_checkout=$main_builds/rci-main-agent/org/app
as_main sh -c "umask 022; echo RCI-MAIN-HOME >~/rci-main-home; mkdir -p ~/.docker && echo '{\"auths\":{\"RCI-MAIN-AUTH\":{}}}' >~/.docker/config.json
	mkdir -p '$main_checkout' && cd '$main_checkout' && git init -q && echo RCI-MAIN-BUILD >rci-main-build &&
	git add . && git -c user.email=m@x -c user.name=m commit -qm one"
as_main docker run --name rci-main-keep -v rci-main-vol:/v rci-busybox sh -c 'echo RCI-MAIN-VOLUME >/v/rci-main-volume; echo RCI-MAIN-LAYER >/rci-main-layer'
found=$(in_machine sh -c "grep -rl 'RCI-MAIN-' /home/$MAIN $MNT/$MAIN 2>/dev/null | sort")
n=$(grep -c . <<<"$found" || true)
[[ $n -ge 5 ]] || fail "the control: root finds only $n of main's planted secrets: $found"
ok "root finds main's secrets in its home, checkout, volume and container layer ($n files; the control)"
while IFS= read -r e; do echo "#   $e"; done <<<"$found"
assert_eq RCI-MAIN-HOME "$(as_main cat "/home/$MAIN/rci-main-home")" "main reads its own home (the control)"
main_places=("/home/$MAIN" "$MNT/$MAIN" "$main_builds" "$MNT/$MAIN/docker" "/run/user/$main_uid")
out=$(as_pr sh -c 'for p; do grep -r RCI-MAIN- "$p"; ls -laR "$p"; done' sh "${main_places[@]}" 2>&1 || true)
[[ $out != *RCI-MAIN-* && $out != *rci-main-* ]] || fail "$PR read or listed main's files: $(grep -m 3 -i 'rci-main-' <<<"$out")"
ok "$PR reads and lists nothing of main's home, builds, Docker data or runtime dir ($(grep -m 1 -i denied <<<"$out" | cut -c 1-100))"
# Through bind mounts in pr's own containers; the control: pr's own home, bind-mounted, is read.
as_pr sh -c 'echo RCI-PR-OWN >~/rci-pr-own'
assert_contains "$(prun -v "/home/$PR:/h" rci-busybox cat /h/rci-pr-own)" RCI-PR-OWN \
	"pr's container reads pr's own bind-mounted home (the control)"
for opt in "" --privileged; do
	binds=()
	for p in "${main_places[@]}"; do binds+=(-v "$p:/m$p"); done
	# shellcheck disable=SC2086 # the option, split on purpose
	out=$(prun $opt "${binds[@]}" rci-busybox sh -c 'grep -r RCI-MAIN- /m; ls -laR /m')
	out+=$(for p in "${main_places[@]}"; do
		# shellcheck disable=SC2086
		prun $opt -v "$p:/m" rci-busybox sh -c 'grep -r RCI-MAIN- /m; ls -laR /m'
	done)
	[[ $out != *RCI-MAIN-* && $out != *rci-main-* ]] || fail "pr's ${opt:-plain} container read main's files: $(grep -m 3 -i 'rci-main-' <<<"$out")"
	ok "pr's ${opt:-plain} containers read nothing of main's through bind mounts ($(tr '\n' ' ' <<<"$out" | cut -c 1-120))"
done

# ------------------------------------------------ 3. the trusted agent's configuration
main_cfg=/etc/buildkite-agent/$MAIN_TENANT.cfg
pr_cfg=/etc/buildkite-agent/$PR_TENANT.cfg
assert_eq "root:$MAIN 640" "$(in_machine stat -c '%U:%G %a' "$main_cfg")" "$main_cfg is root:$MAIN 0640"
assert_eq "root:$PR 640" "$(in_machine stat -c '%U:%G %a' "$pr_cfg")" "$pr_cfg is root:$PR 0640"
assert_contains "$(as_main cat "$main_cfg")" RCI-TOKEN-main "main's agent user reads its token (the control)"
assert_contains "$(as_pr cat "$pr_cfg")" RCI-TOKEN-pr "pr's agent user reads its own token (the control)"
out=$(as_pr sh -c 'cat "$1"; grep -r RCI-TOKEN-main /etc/buildkite-agent' sh "$main_cfg" 2>&1 || true)
out+=$(prun -v /etc/buildkite-agent:/a rci-busybox sh -c 'cat /a/*; grep -r RCI-TOKEN /a')
out+=$(prun --privileged -v "$main_cfg:/c" rci-busybox cat /c)
[[ $out != *RCI-TOKEN-main* ]] || fail "$PR read main's token"
ok "$PR reads not main's token, directly or from a container ($(tr '\n' ' ' <<<"$out" | cut -c 1-120))"

# ------------------------------------------------ 4. an image tagged by pr's daemon
as_pr docker tag rci-busybox rci-main-app:latest
assert_contains "$(as_pr docker images --format '{{.Repository}}:{{.Tag}}')" rci-main-app:latest \
	"pr's daemon has the poisoned tag rci-main-app:latest (the control)"
as_main docker image inspect rci-busybox >/dev/null || fail "the control: main's daemon does not see its own rci-busybox"
out=$(as_main docker image inspect rci-main-app:latest 2>&1 || true)
assert_contains "$out" "No such image" "main's daemon never sees the image pr tagged"
[[ $(as_main docker images --format '{{.Repository}}') != *rci-main-app* ]] || fail "main lists rci-main-app"
ok "main's image list has no rci-main-app"

# ------------------------------------------------ 5. signal or ptrace the trusted daemon
# proc_id PID: the process's start time (field 22 of /proc/PID/stat) and
# state; a PID reused by another process would have another start time.
proc_id() { in_machine sh -c 'cut -d" " -f 3,22 "/proc/$1/stat" 2>/dev/null || echo gone' sh "$1"; }
rk=$(user_docker_pid "$MAIN")
dockerd=$(in_machine pgrep -u "$MAIN" -xo dockerd)
[[ $rk != 0 && -n $dockerd ]] || fail "main's daemon: rootlesskit $rk, dockerd '$dockerd'"
out=$(as_pr sh -c 'sleep 60 & p=$!; kill -STOP $p && kill -KILL $p && wait $p; echo own=$?' 2>/dev/null) # (the shell's "Killed")
assert_eq own=137 "$out" "pr's kill -STOP and -KILL reach a process of its own (the control)"
for pid in "$rk" "$dockerd"; do
	before=$(proc_id "$pid")
	out=$(as_pr sh -c 'kill -STOP "$1"; kill -KILL "$1"; kill -TERM "$1"' sh "$pid" 2>&1 || true)
	prun --pid=host --privileged rci-busybox sh -c "kill -STOP $pid; kill -KILL $pid" >/dev/null
	sleep 0.5
	after=$(proc_id "$pid")
	assert_eq "$before" "$after" "main's $(in_machine ps -o comm= -p "$pid") ($pid) survives pr's STOP, KILL and TERM, directly and from a --pid=host container ($(head -n 1 <<<"$out"))"
done
[[ $(as_main docker version --format '{{.Server.Version}}' 2>&1) =~ ^[0-9] ]] || fail "main's daemon no longer answers"
ok "main's daemon still answers"
out=$(trace_attempt_as as_pr own)
[[ $out =~ ^tracer=([1-9][0-9]*)\ strace=attached ]] || fail "the control: $PR's strace did not attach to its own process: $out"
ok "the control: $PR's strace attaches to a process of its own (TracerPid ${BASH_REMATCH[1]})"
for pid in "$rk" "$dockerd"; do
	out=$(trace_attempt_as as_pr "$pid")
	[[ $out =~ ^tracer=0\ strace=exited:[1-9] && $out == *"Operation not permitted"* ]] ||
		fail "$PR's strace -p $pid (main's daemon): $out"
	ok "$PR's strace -p $pid (main's daemon) is refused: TracerPid stays 0 while it runs (${out#* strace=})"
done

# ------------------------------------------------ 6. write into a trusted checkout
pr_checkout=$MNT/$PR/builds/rci-pr-agent/org/app
as_pr sh -c "mkdir -p '$pr_checkout/.git/hooks' && echo own >'$pr_checkout/file'"
WRITE='d=$1; echo pwned >>"$d/rci-main-build"; echo pwned >"$d/rci-planted"; mkdir -p "$d/.git/hooks";
	printf "#!/bin/sh\ntouch /tmp/rci-pwned\n" >"$d/.git/hooks/post-checkout"; chmod 0755 "$d/.git/hooks/post-checkout";
	echo pwned >"$d/../rci-planted"; mv "$d" "$d.moved"'
as_pr sh -c "$WRITE" sh "$pr_checkout" >/dev/null 2>&1 || true
in_machine test -e "$pr_checkout.moved/.git/hooks/post-checkout" -a -e "$pr_checkout.moved/rci-planted" ||
	fail "the control: $PR's write probe did not change its own checkout"
ok "the same writes change pr's own checkout (the control)"
before=$(tree_state "$main_builds")
as_pr sh -c "$WRITE" sh "$main_checkout" >/dev/null 2>&1 || true
prun --privileged -v "$main_builds:/b" rci-busybox sh -c "$WRITE" sh "/b/${main_checkout#"$main_builds"/}" >/dev/null
prun -v "$main_checkout:/c" rci-busybox sh -c "$WRITE" sh /c >/dev/null
after=$(tree_state "$main_builds")
if [[ $before != "$after" ]]; then
	diff <(echo "$before") <(echo "$after") | sed 's/^/#   /'
	fail "pr changed main's builds directory"
fi
ok "main's checkout is unchanged: no write, hook, rename or new file from pr, directly or from containers"

# ------------------------------------------------ 7. git hooks in an untrusted checkout
# The environment systemd hands pr's agent (the drop-in rootless-ci wrote).
mapfile -t agent_env < <(in_machine systemctl show -p Environment --value "buildkite-agent@$PR_TENANT.service" | tr ' ' '\n')
git_env=()
for e in "${agent_env[@]}"; do
	[[ $e != GIT_CONFIG_* ]] || git_env+=("$e")
done
echo "#   pr's agent's git environment: ${git_env[*]}"
config=$(in_machine env -i "${git_env[@]}" git config --list --show-scope 2>/dev/null || true)
assert_contains "$config" "command	core.hookspath=/dev/null" "pr's agent environment sets core.hooksPath=/dev/null"
assert_contains "$config" "command	core.fsmonitor=false" "pr's agent environment sets core.fsmonitor=false"
for v in BUILDKITE_NO_LOCAL_HOOKS=true BUILDKITE_CLEAN_CHECKOUT=true; do
	printf '%s\n' "${agent_env[@]}" | grep -qxF "$v" || fail "pr's agent environment lacks $v: ${agent_env[*]}"
	ok "pr's agent environment has $v"
done
assert_contains "$pr_report" "GIT_CONFIG_COUNT=" "pr's running agent has the GIT_CONFIG_* environment"
# A repository with two branches; a checkout of it, with a hook and an
# fsmonitor planted as a job would plant them.
origin=$MNT/$PR/builds/rci-origin.git
co=$MNT/$PR/builds/rci-pr-agent/org/hooked
as_pr sh -c "set -e; git init -q --bare '$origin'; t=\$(mktemp -d); cd \$t; git init -q -b main; echo one >f;
	git add f; git -c user.email=p@x -c user.name=p commit -qm one; git checkout -q -b other; echo two >f;
	git -c user.email=p@x -c user.name=p commit -qam two; git push -q '$origin' main other; cd /; rm -rf \$t
	git clone -q -b main '$origin' '$co'
	printf '#!/bin/sh\necho ran >>\$HOME/rci-hook-ran\n' >'$co/.git/hooks/post-checkout'
	printf '#!/bin/sh\necho ran >>\$HOME/rci-fsmonitor-ran\nexit 1\n' >'$co/.git/rci-fsmonitor'
	chmod 0755 '$co/.git/hooks/post-checkout' '$co/.git/rci-fsmonitor'
	git -C '$co' config core.fsmonitor '$co/.git/rci-fsmonitor'"
hook_runs() { in_machine sh -c 'cat "$1" "$2" 2>/dev/null | wc -l; rm -f "$1" "$2"' sh "/home/$PR/rci-hook-ran" "/home/$PR/rci-fsmonitor-ran"; }
hook_runs >/dev/null
as_pr git -C "$co" checkout -q other >/dev/null 2>&1 || true
n_hook=$(in_machine sh -c "cat /home/$PR/rci-hook-ran 2>/dev/null | wc -l")
as_pr git -C "$co" status --short >/dev/null 2>&1 || true
n_fs=$(in_machine sh -c "cat /home/$PR/rci-fsmonitor-ran 2>/dev/null | wc -l")
[[ $n_hook -ge 1 && $n_fs -ge 1 ]] || fail "the control: without the agent's environment the planted hook ran $n_hook times, the fsmonitor $n_fs"
ok "the control: without the agent's environment git runs the planted post-checkout and fsmonitor"
hook_runs >/dev/null
as_pr env "${git_env[@]}" sh -c 'git -C "$1" checkout -q main && git -C "$1" checkout -q other &&
	git -C "$1" status --short && git -C "$1" fetch -q && git -C "$1" checkout -qf main' sh "$co" ||
	fail "git with pr's agent environment fails in the checkout"
assert_eq 0 "$(hook_runs)" "with pr's agent environment neither the planted post-checkout nor the fsmonitor runs (checkout, status, fetch)"

echo "PASS: $TEST_NAME"
