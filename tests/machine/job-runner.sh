# shellcheck shell=bash
# tests/machine/job-runner.sh — sourced by machine tests that run Buildkite
# jobs the way the agent runs them, on a machine converged by apply with the
# stand-in agent (agent-standin.sh) installed.
#
# The agent is not in Debian; this does for one job what its job executor
# does (internal/job/executor.go, checkout.go, hooks.go of
# github.com/buildkite/agent), with real git, the real plugin hooks from
# ../shared/fixtures and the real rootless daemon:
#
#   - the environment systemd gives the agent unit (read back with
#     `systemctl show -p Environment`: the package's and the drop-in's), as
#     the unit's User=, plus the job's BUILDKITE_* variables as the agent
#     sets them (the command hooks run with set -u);
#   - the hooks of each phase from every hooks path in the agent's order:
#     the configuration's hooks-path, then each of
#     BUILDKITE_ADDITIONAL_HOOKS_PATHS (comma-separated), then the
#     repository's .buildkite/hooks (after checkout), then the plugin's;
#     pre-exit (and post-command) in reverse. Shell hooks are sourced by
#     their shebang's shell as the agent's wrapper does; the plugin's
#     options (BUILDKITE_PLUGIN_*) are in the plugin's hooks' environment
#     only, BUILDKITE_PLUGINS (the JSON) in every hook's;
#   - the checkout: clone from a local bare repository into
#     BUILDKITE_BUILD_CHECKOUT_PATH; a later job cleans (git clean -ffxdq),
#     fetches, `checkout -f`, cleans again, and when any of that fails
#     removes the checkout and clones afresh (the agent tries the removal ten
#     times, ten seconds apart; once is enough to see EACCES here);
#   - the command: the plugin's command hook, else the step's command.
#
# Not done (the tests do not depend on it): environment changes a hook
# exports are not carried into later hooks; no artifacts, no meta-data
# (a `buildkite-agent` shim on PATH answers the plugins' meta-data calls
# "not there"), no PTY, no cancellation, no post-checkout.
#
# Inside the machine: /var/tmp/rci-job/{agent-job,bin/buildkite-agent},
# the fixtures under /var/tmp/rci-job/plugins, the bare repository under
# /var/tmp/rci-job/repo.git (the CI user's).

RCI_FIXTURES=$(cd "$RCI_SOURCE_DIR/.." && pwd)/shared/fixtures
JOB_DIR=/var/tmp/rci-job
JOB_SEQ=0
JOB_LOG=
JOB_AGENT_ENV=()

# job_runner_requirements: skip (77) with the reason when the fixtures are absent.
job_runner_requirements() {
	local p
	for p in docker-buildkite-plugin docker-compose-buildkite-plugin; do
		[[ -f $RCI_FIXTURES/$p/hooks/command ]] ||
			skip "needs the real plugin fixtures: $RCI_FIXTURES/$p/hooks/command is missing (see ../shared/fixtures/README.md)"
	done
}

# job_runner_install: after apply. The fixtures copied in (never into the
# repository), the runner, the agent shim, and the unit's environment read back.
job_runner_install() {
	local uid env
	uid=$(ci_uid)
	in_machine install -d -m 0755 "$JOB_DIR" "$JOB_DIR/plugins" "$JOB_DIR/bin"
	tar -C "$RCI_FIXTURES" -c docker-buildkite-plugin docker-compose-buildkite-plugin |
		in_machine tar -C "$JOB_DIR/plugins" -x --no-same-owner
	in_machine chmod -R go-w "$JOB_DIR/plugins"
	job_runner_write_runner | in_machine install -m 0755 /dev/stdin "$JOB_DIR/agent-job"
	job_runner_write_shim | in_machine install -m 0755 /dev/stdin "$JOB_DIR/bin/buildkite-agent"
	in_machine install -d -m 0700 -o "$uid" -g "$uid" "$JOB_DIR/work"

	# What systemd hands the agent: its Environment= lines in order (a later one wins) and its User=.
	env=$(in_machine systemctl show -p Environment --value buildkite-agent.service)
	read -ra JOB_AGENT_ENV <<<"$env"
	JOB_AGENT_USER=$(in_machine systemctl show -p User --value buildkite-agent.service)
	echo "# the agent unit runs as $JOB_AGENT_USER with: $env"
	[[ $JOB_AGENT_USER == "$CI_USER" ]] || fail "the agent unit does not run as $CI_USER (User=$JOB_AGENT_USER)"
}

# job_repo_init: a bare repository of the CI user's with one commit: a
# README, a docker-compose.yml, and a repository pre-command hook that
# opens a scratch directory to every container user (the way a pipeline
# whose containers run as a non-root USER has to).
job_repo_init() {
	# shellcheck disable=SC2016 # expanded by the CI user's shell inside
	as_ci sh -euc '
		cd '"$JOB_DIR"'/work
		git init -q --bare -b main repo.git
		git init -q -b main src && cd src
		git config user.email ci@example.invalid && git config user.name CI
		echo "a pipeline" >README
		mkdir -p .buildkite/hooks
		printf "#!/bin/bash\nmkdir -p scratch && chmod 0777 scratch\n" >.buildkite/hooks/pre-command
		chmod 0755 .buildkite/hooks/pre-command
		cat >docker-compose.yml <<YML
version: "2.4"
services:
  app:
    image: rci-busybox
    volumes:
      - ./out:/out
YML
		git add -A && git commit -qm init && git push -q ../repo.git main'
}

# run_job NAME PIPELINE PLUGIN_LOCATION PLUGIN_JSON_CONFIG COMMAND [OPTION=VALUE...]
# Runs one job of PIPELINE (its checkout: builds/agent-1/org/PIPELINE) with
# one plugin (a fixture directory name, or "" for none) configured as
# PLUGIN_JSON_CONFIG, whose options are also given as OPTION=VALUE
# (BUILDKITE_PLUGIN_<NAME>_OPTION) the way the agent flattens them. The
# log goes to $TEST_TMP/job-N-NAME.log ($JOB_LOG); returns the job's exit
# status. RCI_JOB_ENV (array of K=V) adds or overrides job variables.
run_job() {
	local name=$1 pipeline=$2 plugin=$3 config=$4 command=$5 uid rc=0 location prefix kv
	shift 5
	JOB_SEQ=$((JOB_SEQ + 1))
	JOB_LOG=$TEST_TMP/job-$JOB_SEQ-$name.log
	uid=$(ci_uid)
	case $plugin in
	docker-buildkite-plugin) location="github.com/buildkite-plugins/docker-buildkite-plugin#v5.13.0" prefix=BUILDKITE_PLUGIN_DOCKER ;;
	docker-compose-buildkite-plugin) location="github.com/buildkite-plugins/docker-compose-buildkite-plugin#v5.5.0" prefix=BUILDKITE_PLUGIN_DOCKER_COMPOSE ;;
	'') location='' prefix='' ;;
	*) fail "run_job: unknown plugin $plugin" ;;
	esac
	{
		# The job's variables as the agent sets them (job_runner.go, executor.go).
		local job_id
		job_id=$(printf '0190a1b2-c3d4-7e5f-8a9b-%012d' "$JOB_SEQ")
		printf 'export %s=%q\n' \
			BUILDKITE true CI true \
			BUILDKITE_AGENT_NAME agent-1 BUILDKITE_AGENT_ID 0190a1b2-0000-7000-8000-000000000001 \
			BUILDKITE_AGENT_ACCESS_TOKEN rci-job-token BUILDKITE_AGENT_ENDPOINT http://127.0.0.1:9/v3 \
			BUILDKITE_ORGANIZATION_SLUG org BUILDKITE_PIPELINE_SLUG "$pipeline" BUILDKITE_PIPELINE_NAME "$pipeline" \
			BUILDKITE_PIPELINE_ID 0190a1b2-0000-7000-8000-0000000000ff BUILDKITE_PIPELINE_DEFAULT_BRANCH main \
			BUILDKITE_BUILD_ID "0190a1b2-0000-7000-8000-$(printf %012d "$JOB_SEQ")" BUILDKITE_BUILD_NUMBER "$JOB_SEQ" \
			BUILDKITE_BUILD_URL "http://127.0.0.1:9/org/$pipeline/builds/$JOB_SEQ" \
			BUILDKITE_JOB_ID "$job_id" BUILDKITE_STEP_ID "$job_id" BUILDKITE_STEP_KEY "$name" BUILDKITE_LABEL "$name" \
			BUILDKITE_COMMAND "$command" BUILDKITE_SCRIPT_PATH "$command" BUILDKITE_SHELL "/bin/bash -e -c" \
			BUILDKITE_REPO "$JOB_DIR/work/repo.git" BUILDKITE_BRANCH main BUILDKITE_COMMIT HEAD BUILDKITE_TAG '' \
			BUILDKITE_MESSAGE "$name" BUILDKITE_SOURCE ui BUILDKITE_PULL_REQUEST false BUILDKITE_RETRY_COUNT 0 \
			BUILDKITE_TIMEOUT false BUILDKITE_CLEAN_CHECKOUT false BUILDKITE_GIT_CLEAN_FLAGS -ffxdq \
			BUILDKITE_GIT_CLONE_FLAGS -v BUILDKITE_GIT_FETCH_FLAGS "-v --prune" \
			BUILDKITE_BUILD_CREATOR ci BUILDKITE_BUILD_CREATOR_EMAIL ci@example.invalid \
			BUILDKITE_BUILD_AUTHOR ci BUILDKITE_BUILD_AUTHOR_EMAIL ci@example.invalid \
			BUILDKITE_BIN_PATH "$JOB_DIR/bin" BUILDKITE_CONFIG_PATH /etc/buildkite-agent/buildkite-agent.cfg \
			BUILDKITE_AGENT_DEBUG false BUILDKITE_AGENT_PID 1 BUILDKITE_LAST_HOOK_EXIT_STATUS 0 \
			BUILDKITE_PLUGINS "$([[ -z $location ]] && echo '[]' || printf '[{"%s":%s}]' "$location" "$config")"
		# The agent's checkout path: BUILD_PATH/AGENT_NAME/ORG/PIPELINE (BUILD_PATH from the unit's environment).
		# shellcheck disable=SC2016 # expanded when the runner sources it
		echo 'export BUILDKITE_BUILD_CHECKOUT_PATH="$BUILDKITE_BUILD_PATH/agent-1/org/$BUILDKITE_PIPELINE_SLUG"'
		[[ -z $plugin ]] || printf 'export RCI_PLUGIN_DIR=%q\n' "$JOB_DIR/plugins/$plugin"
		for kv in "${RCI_JOB_ENV[@]}"; do
			printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
		done
	} | in_machine install -m 0644 /dev/stdin "$JOB_DIR/job.env"
	{
		if [[ -n $plugin ]]; then
			# The plugin's options as the agent flattens them, plus what it adds for every plugin.
			printf 'export %s=%q\n' BUILDKITE_PLUGIN_NAME "${prefix#BUILDKITE_PLUGIN_}" BUILDKITE_PLUGIN_CONFIGURATION "$config"
			for kv in "$@"; do
				printf 'export %s=%q\n' "${prefix}_${kv%%=*}" "${kv#*=}"
			done
		fi
	} | in_machine install -m 0644 /dev/stdin "$JOB_DIR/plugin.env"
	# As the unit's User=, with exactly systemd's environment for it (PATH: systemd's default).
	in_machine setpriv --reuid="$uid" --regid="$uid" --init-groups \
		env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${JOB_AGENT_ENV[@]}" \
		bash "$JOB_DIR/agent-job" >"$JOB_LOG" 2>&1 </dev/null || rc=$?
	sed "s/^/#   [$name] /" "$JOB_LOG"
	return "$rc"
}

# job_log_has TEXT MESSAGE: the last job's log contains TEXT.
job_log_has() {
	assert_contains "$(cat "$JOB_LOG")" "$1" "$2"
}

job_runner_write_shim() {
	cat <<'SHIM'
#!/bin/sh
# buildkite-agent, as the plugins call it during a job: no meta-data is
# there (exit 100 like "meta-data exists" for a missing key), uploads succeed.
echo "[buildkite-agent shim] $*" >&2
case "$1 ${2:-}" in
"meta-data exists") exit 100 ;;
"meta-data get") exit 1 ;;
*) exit 0 ;;
esac
SHIM
}

job_runner_write_runner() {
	cat <<'RUNNER'
#!/bin/bash
# agent-job: one job as the Buildkite agent's executor runs it (see
# tests/machine/job-runner.sh). Prints the log; exits with the job's status.
set -uo pipefail
# shellcheck disable=SC1091
. /var/tmp/rci-job/job.env
export PATH="$BUILDKITE_BIN_PATH:$PATH"
BUILDKITE_HOOKS_PATH=$(sed -n 's/^hooks-path="\(.*\)"$/\1/p' "$BUILDKITE_AGENT_CONFIG")
export BUILDKITE_HOOKS_PATH
checked_out=false

# The global hooks of a phase: hooks-path first, then each additional path.
global_hooks() {
	local d paths
	[[ -z $BUILDKITE_HOOKS_PATH ]] || echo "$BUILDKITE_HOOKS_PATH/$1"
	IFS=, read -ra paths <<<"${BUILDKITE_ADDITIONAL_HOOKS_PATHS:-}"
	for d in "${paths[@]}"; do
		d=${d#"${d%%[![:space:]]*}"}
		d=${d%"${d##*[![:space:]]}"}
		[[ -z $d ]] || echo "$d/$1"
	done
}

# run_hook SCOPE PHASE PATH: a shell hook sourced by its shebang's shell (the
# agent's wrapper), anything else executed; plugin hooks with the plugin's options.
run_hook() {
	local scope=$1 phase=$2 path=$3 shebang interp
	[[ -f $path ]] || return 0
	echo "~~~ Running $scope $phase hook"
	echo "\$ $path"
	shebang=$(head -c 128 "$path" | head -n 1)
	case $shebang in
	'#!/bin/sh'* | '#!/bin/bash'* | '#!/usr/bin/env bash'* | '#!/usr/bin/env sh'* | '') interp=${shebang#\#!} interp=${interp:-/bin/bash} ;;
	*) interp= ;;
	esac
	(
		export BUILDKITE_HOOK_PHASE=$phase BUILDKITE_HOOK_PATH=$path BUILDKITE_HOOK_SCOPE=$scope
		if [[ $scope == plugin ]]; then
			# shellcheck disable=SC1091
			set -a && . /var/tmp/rci-job/plugin.env && set +a
		fi
		if [[ -n $interp ]]; then
			# shellcheck disable=SC2086 # "/usr/bin/env bash" is two words
			exec $interp -c '. "$0"' "$path"
		fi
		exec "$path"
	)
}

# hooks PHASE forward|reverse: every hook of a phase in the agent's order
# (hooks.go): global, local, plugin; reversed: plugin, local, global. The
# global hooks keep their own order either way (hooks-path, then each
# additional path: executeGlobalHook).
hooks() {
	local phase=$1 order=$2 h list=() global=() local_=() plugin=()
	while IFS= read -r h; do global+=("global:$h"); done < <(global_hooks "$phase")
	if $checked_out; then local_+=("local:$BUILDKITE_BUILD_CHECKOUT_PATH/.buildkite/hooks/$phase"); fi
	[[ -z ${RCI_PLUGIN_DIR:-} ]] || plugin+=("plugin:$RCI_PLUGIN_DIR/hooks/$phase")
	if [[ $order == reverse ]]; then
		list=("${plugin[@]}" "${local_[@]}" "${global[@]}")
	else
		list=("${global[@]}" "${local_[@]}" "${plugin[@]}")
	fi
	for h in "${list[@]}"; do
		run_hook "${h%%:*}" "$phase" "${h#*:}" || return
	done
}

# One try at the agent's checkout: an existing clone is cleaned, fetched,
# checked out and cleaned again; anything else is cloned into.
checkout_once() {
	local co=$BUILDKITE_BUILD_CHECKOUT_PATH
	mkdir -p "$co" && cd "$co" || return
	if [[ -d .git ]]; then
		echo "\$ git clean $BUILDKITE_GIT_CLEAN_FLAGS && git fetch && git checkout -f FETCH_HEAD && git clean"
		# shellcheck disable=SC2086 # flags are words
		git remote set-url origin "$BUILDKITE_REPO" && git clean $BUILDKITE_GIT_CLEAN_FLAGS &&
			git fetch $BUILDKITE_GIT_FETCH_FLAGS -- origin "$BUILDKITE_BRANCH" &&
			git checkout -f FETCH_HEAD && git clean $BUILDKITE_GIT_CLEAN_FLAGS &&
			echo "RCI-CHECKOUT=reused"
		return
	fi
	# shellcheck disable=SC2086
	git clone $BUILDKITE_GIT_CLONE_FLAGS -- "$BUILDKITE_REPO" . && git checkout -f "$BUILDKITE_BRANCH" &&
		echo "RCI-CHECKOUT=cloned"
}

# The agent's checkout phase: when a try fails, the checkout is removed and tried again.
checkout() {
	local co=$BUILDKITE_BUILD_CHECKOUT_PATH
	echo "~~~ Preparing working directory"
	checkout_once && return
	echo "checkout failed, removing $co and trying again"
	cd / || return
	if ! rm -rf "$co"; then
		echo "RCI-CHECKOUT=failed (the checkout cannot be removed)"
		return 1
	fi
	checkout_once
}

command_phase() {
	if [[ -n ${RCI_PLUGIN_DIR:-} && -f $RCI_PLUGIN_DIR/hooks/command ]]; then
		run_hook plugin command "$RCI_PLUGIN_DIR/hooks/command"
	elif [[ -f .buildkite/hooks/command ]]; then
		run_hook local command .buildkite/hooks/command
	else
		echo "~~~ Running commands"
		bash -e -c "$BUILDKITE_COMMAND"
	fi
}

status=0
if hooks environment forward && hooks pre-checkout forward; then
	if checkout; then
		checked_out=true
		if hooks pre-command forward; then
			command_phase
			status=$?
			export BUILDKITE_COMMAND_EXIT_STATUS=$status
			echo "RCI-COMMAND-EXIT=$status"
			hooks post-command reverse || status=$?
		else
			status=$?
		fi
	else
		status=$?
		echo "RCI-CHECKOUT-EXIT=$status"
	fi
else
	status=$?
fi
cd "${BUILDKITE_BUILD_CHECKOUT_PATH}" 2>/dev/null || cd /
hooks pre-exit reverse || { [[ $status -ne 0 ]] || status=$?; }
echo "RCI-JOB-EXIT=$status"
exit "$status"
RUNNER
}
