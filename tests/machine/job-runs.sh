#!/bin/bash
# job-runs: builds keep working, build after build. On one converged machine
# (real rootless daemon, the stand-in agent unit and its drop-in), jobs run
# the way the agent runs them (job-runner.sh) with the real docker and
# docker-compose plugin hooks and real git, one after another in the same
# checkout; each case ends with the NEXT job's checkout succeeding:
#
#   control   rootless-ci's hooks path left out (an agent older than 3.89
#             ignores BUILDKITE_ADDITIONAL_HOOKS_PATHS): after a UID 1000
#             step the next checkout fails with EACCES, git clean and the
#             removal alike, so the cases below cannot pass vacuously; then
#             the same pipeline with the hooks: pre-checkout alone recovers it;
#   defaults  the docker plugin as most pipelines use it;
#   uid-1000  user: "1000" writing a deep tree with read-only directories
#             (the operator's own pre-exit hook, which the agent runs
#             before the additional paths' one, counts the subordinate-owned
#             entries reclaim then gives back); the log explains the option;
#   compose   the docker-compose plugin's run with a volume, chowning into
#             the subordinate range (cli-version: 1: Debian 12 has
#             docker-compose 1.29, not the compose v2 CLI plugin the
#             plugin defaults to);
#   symlink   a container plants a symlink to a subordinate-owned directory
#             outside the checkout: its target's owner and mode unchanged;
#   propagate propagate-uid-gid: true: the log explains it before the
#             command, which then fails to write the checkout as explained;
# then a hooks path the CI user could write makes check FAIL.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=tests/machine/agent-standin.sh
source "$(dirname "$0")/agent-standin.sh"
# shellcheck source=tests/machine/job-runner.sh
source "$(dirname "$0")/job-runner.sh"

job_runner_requirements
machine_begin
machine_data_disk
standin_install
in_machine systemctl daemon-reload
in_machine rootless-ci apply >"$TEST_TMP/apply.out" 2>&1 || {
	sed 's/^/# /' "$TEST_TMP/apply.out"
	fail "apply failed"
}
uid=$(ci_uid)
# shellcheck disable=SC2016 # awk's own $1
sub=$(in_machine awk -F: -v u="$CI_USER" '$1 == u { print $2; exit }' /etc/subuid)
sub1000=$((sub + 999))
echo "# CI user UID $uid, subordinate UIDs from $sub: container UID 1000 is host UID $sub1000"
as_ci docker import /var/lib/rootless-ci-test/busybox.tar rci-busybox >/dev/null

assert_contains "$(in_machine systemctl show -p Environment --value buildkite-agent.service)" \
	"BUILDKITE_ADDITIONAL_HOOKS_PATHS=/usr/share/rootless-ci/hooks" "the agent's unit names rootless-ci's hooks"
run_json check check
assert_eq pass "$(jq -r '.items[] | select(.id == "agent.hooks") | .status' "$TEST_TMP/check.json")" \
	"check: rootless-ci's hooks are root's and unwritable by the CI user"
assert_eq warn "$(jq -r '.items[] | select(.id == "agent.version") | .status' "$TEST_TMP/check.json")" \
	"check: the stand-in agent's version is unknown (not from dpkg), and said so"

job_runner_install
job_repo_init
# The operator's own pre-exit hook (hooks-path): the agent runs it before the additional paths' one.
# shellcheck disable=SC2016 # for the hook's shell
printf '%s\n' '#!/bin/sh' \
	'echo "RCI-NOT-MINE-BEFORE-RECLAIM=$(find "$BUILDKITE_BUILD_CHECKOUT_PATH" -xdev ! -uid "$(id -u)" 2>/dev/null | wc -l)"' |
	in_machine install -m 0755 /dev/stdin /etc/buildkite-agent/hooks/pre-exit

docker_defaults=(IMAGE=rci-busybox TTY=false)
deep_tree='mkdir -p scratch/deep/a/b/c/d/e && echo x >scratch/deep/a/b/c/d/e/f && mkdir scratch/deep/ro && echo y >scratch/deep/ro/f && chmod 0555 scratch/deep/ro && chmod 0500 scratch/deep/a/b && ls -ln scratch/deep'

# ---- control: without rootless-ci's hooks the next checkout fails ----------------------------------------------
RCI_JOB_ENV=(BUILDKITE_ADDITIONAL_HOOKS_PATHS=)
run_job control-uid-1000 control docker-buildkite-plugin '{"image":"rci-busybox","tty":false,"user":"1000"}' \
	"$deep_tree" "${docker_defaults[@]}" USER=1000 || fail "control: the UID 1000 job itself failed"
owner=$(in_machine stat -c %u "/srv/rootless-ci/$CI_USER/builds/agent-1/org/control/scratch/deep/ro")
assert_eq "$sub1000" "$owner" "control: the UID 1000 container's files belong to host UID $sub1000 (a subordinate ID)"
set +e
run_job control-next control docker-buildkite-plugin '{"image":"rci-busybox","tty":false}' 'true' "${docker_defaults[@]}"
rc=$?
set -e
[[ $rc -ne 0 ]] || fail "control: the next job succeeded without the hooks: the cases below would prove nothing"
job_log_has "Permission denied" "control: the next checkout fails with EACCES (Permission denied)"
job_log_has "RCI-CHECKOUT=failed (the checkout cannot be removed)" "control: the agent's fallback, removing the checkout, fails too"
RCI_JOB_ENV=()
# The same broken pipeline with the hooks: pre-checkout alone (the last job's pre-exit never reclaimed) recovers it.
run_job control-recovered control docker-buildkite-plugin '{"image":"rci-busybox","tty":false}' 'true' \
	"${docker_defaults[@]}" || fail "control-recovered: the job failed"
job_log_has "RCI-CHECKOUT=cloned" "control -> control-recovered: with the hooks, pre-checkout's reclaim lets the agent remove the half-removed checkout and clone again"

# ---- with the hooks ----------------------------------------------------------------------------------------------
run_job defaults app docker-buildkite-plugin '{"image":"rci-busybox","tty":false}' \
	'echo built >built.txt && id -u' "${docker_defaults[@]}" || fail "defaults: the job failed"
job_log_has "RCI-CHECKOUT=cloned" "defaults: first checkout cloned"
job_log_has "Running global pre-checkout hook" "defaults: the agent runs rootless-ci's pre-checkout hook"
assert_eq "$uid" "$(in_machine stat -c %u "/srv/rootless-ci/$CI_USER/builds/agent-1/org/app/built.txt")" \
	"defaults: container root wrote as the CI user"
if grep -q "+++ :warning: rootless-ci" "$JOB_LOG"; then fail "defaults: explain said something about a plain docker step"; fi
ok "defaults: nothing explained for the plugin's defaults"

run_job uid-1000 app docker-buildkite-plugin '{"image":"rci-busybox","tty":false,"user":"1000"}' \
	"$deep_tree" "${docker_defaults[@]}" USER=1000 || fail "uid-1000: the job failed"
job_log_has "RCI-CHECKOUT=reused" "defaults -> uid-1000: the next job's checkout (clean, fetch, checkout -f) succeeded"
job_log_has "* docker plugin, user: 1000" "uid-1000: the log explains user: 1000"
job_log_has "host UID $sub1000" "uid-1000: with the host UID it runs as"
not_mine=$(sed -n 's/^RCI-NOT-MINE-BEFORE-RECLAIM=//p' "$JOB_LOG")
# The CI user cannot even look below the 0500 directory: 5 entries it can see (deep, a, b, ro, ro/f).
[[ ${not_mine:-0} -ge 5 ]] || fail "uid-1000: the operator's pre-exit hook saw $not_mine entries not the CI user's (expected the deep tree)"
ok "uid-1000: before rootless-ci's pre-exit hook, $not_mine entries in the checkout were not the CI user's"
assert_eq 0 "$(in_machine find "/srv/rootless-ci/$CI_USER/builds/agent-1/org/app" -xdev ! -uid "$uid" | wc -l)" \
	"uid-1000: after the job every entry of the checkout is the CI user's again"

run_job compose app docker-compose-buildkite-plugin '{"run":"app","cli-version":"1"}' \
	'mkdir -p /out/tree/sub && echo z >/out/tree/sub/f && chown -R 1000:1000 /out/tree && chmod 0500 /out/tree/sub && ls -ln /out/tree' \
	RUN=app CLI_VERSION=1 || fail "compose: the job failed"
job_log_has "RCI-CHECKOUT=reused" "uid-1000 -> compose: the next job's checkout succeeded"
job_log_has "RCI-COMMAND-EXIT=0" "compose: docker-compose 1.29 ran the service with the checkout's volume"
not_mine=$(sed -n 's/^RCI-NOT-MINE-BEFORE-RECLAIM=//p' "$JOB_LOG")
# tree and tree/sub (the CI user cannot look inside the 0500 sub)
[[ ${not_mine:-0} -ge 2 ]] || fail "compose: the volume's tree was not in the subordinate range before reclaim ($not_mine)"
ok "compose: $not_mine entries of the volume belonged to subordinate IDs before rootless-ci's pre-exit hook"

# A directory outside the checkout, owned by a subordinate ID (made by a container of the CI user's).
outside=$JOB_DIR/work/outside
as_ci mkdir -m 0755 "$outside"
as_ci docker run --rm -v "$outside:/o" rci-busybox sh -c 'mkdir /o/target && echo s >/o/target/secret && chown -R 1000:1000 /o/target && chmod 0750 /o/target'
target_before=$(in_machine stat -c '%u:%g %a' "$outside/target" "$outside/target/secret")
run_job symlink app docker-buildkite-plugin '{"image":"rci-busybox","tty":false}' \
	"ln -s $outside/target planted && chown -h 1000:1000 planted && ls -ln planted" "${docker_defaults[@]}" ||
	fail "symlink: the job failed"
job_log_has "RCI-CHECKOUT=reused" "compose -> symlink: the next job's checkout succeeded"
assert_eq "$target_before" "$(in_machine stat -c '%u:%g %a' "$outside/target" "$outside/target/secret")" \
	"symlink: the planted link's target outside the checkout kept its owner and mode ($sub1000, 0750)"
assert_eq "$uid" "$(in_machine stat -c %u "/srv/rootless-ci/$CI_USER/builds/agent-1/org/app/planted")" \
	"symlink: the planted link itself was given back to the CI user (not followed)"

set +e
run_job propagate app docker-buildkite-plugin '{"image":"rci-busybox","tty":false,"propagate-uid-gid":true}' \
	'touch made-by-propagate' "${docker_defaults[@]}" PROPAGATE_UID_GID=true
rc=$?
set -e
job_log_has "RCI-CHECKOUT=reused" "symlink -> propagate: the next job's checkout succeeded"
job_log_has "+++ :warning: rootless-ci: plugin options that mean something else on this host" \
	"propagate: the log opens a +++ section"
job_log_has "* docker plugin, propagate-uid-gid: true" "propagate: naming the option"
job_log_has "cannot write the checkout" "propagate: saying what happens here"
job_log_has "Instead: remove propagate-uid-gid" "propagate: and what to write instead"
explained=$(grep -n "propagate-uid-gid: true" "$JOB_LOG" | head -n 1 | cut -d: -f1)
command_at=$(grep -n "Running plugin command hook" "$JOB_LOG" | head -n 1 | cut -d: -f1)
[[ -n $explained && -n $command_at && $explained -lt $command_at ]] ||
	fail "propagate: the explanation (line ${explained:-?}) is not before the command (line ${command_at:-?})"
ok "propagate: explained before the command ran"
[[ $rc -ne 0 ]] || fail "propagate: the container could write the checkout as --user $uid:$uid"
job_log_has "Permission denied" "propagate: the command failed as explained (it cannot write the checkout)"

run_job final app docker-buildkite-plugin '{"image":"rci-busybox","tty":false}' 'true' "${docker_defaults[@]}" ||
	fail "final: the job failed"
job_log_has "RCI-CHECKOUT=reused" "propagate -> final: the next job's checkout succeeded"

# ---- a hooks path the CI user could write ----------------------------------------------------------------------
in_machine chmod o+w /usr/share/rootless-ci/hooks
run_json check2 check
assert_eq 1 "$rc" "check fails when the CI user could write rootless-ci's hooks directory"
assert_eq fail "$(jq -r '.items[] | select(.id == "agent.hooks:/usr/share/rootless-ci/hooks") | .status' "$TEST_TMP/check2.json")" \
	"check names agent.hooks:/usr/share/rootless-ci/hooks"
as_ci sh -c 'echo "#!/bin/sh" >/usr/share/rootless-ci/hooks/environment' ||
	fail "the control: the CI user cannot write the o+w directory after all"
in_machine rm -f /usr/share/rootless-ci/hooks/environment
in_machine chmod 0755 /usr/share/rootless-ci/hooks
run_json check3 check
assert_eq pass "$(jq -r '.items[] | select(.id == "agent.hooks") | .status' "$TEST_TMP/check3.json")" \
	"check passes agent.hooks again once the directory is root's alone"

echo "PASS: $TEST_NAME"
