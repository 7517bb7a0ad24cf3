#!/bin/bash
# apply-concurrent: two whole applies started together on a fresh machine,
# as cloud-init and an operator might. The second waits for the first's lock
# (and says whose it is) for as long as the first works — the default wait
# outlasts a first apply — then finds the host converged. Both exit 0; check
# passes; the CI user's Docker answers; a third apply changes nothing.

# shellcheck source=tests/machine/lib.sh
source "$(dirname "$0")/lib.sh"

machine_begin
machine_data_disk

# One shell inside the machine starts both: the second only once the first
# has written its PID into the lock file, i.e. holds the lock with its whole
# apply (every step) still ahead of it.
# shellcheck disable=SC2016 # expanded by the machine's shell
in_machine sh -c '
	rootless-ci apply >/tmp/a.out 2>&1 &
	a=$!
	i=0
	until [ "$(tr -d " \n" 2>/dev/null </run/rootless-ci.lock)" = "$a" ]; do
		i=$((i + 1))
		[ $i -lt 1200 ] || { echo "first apply (PID $a) never took the lock"; exit 1; }
		sleep 0.05
	done
	rootless-ci apply >/tmp/b.out 2>&1 &
	b=$!
	wait $a; ra=$?
	wait $b; rb=$?
	echo "$a $ra $rb" >/tmp/result
' || fail "could not start the two applies"

read -r first_pid first_rc second_rc < <(in_machine cat /tmp/result)
out_a=$(in_machine cat /tmp/a.out)
out_b=$(in_machine cat /tmp/b.out)
[[ $first_rc -eq 0 ]] || printf "#   first: %s\n" "${out_a//$'\n'/$'\n#   first: '}"
[[ $second_rc -eq 0 ]] || printf "#   second: %s\n" "${out_b//$'\n'/$'\n#   second: '}"
assert_eq 0 "$first_rc" "the first apply converges the machine"
assert_eq 0 "$second_rc" "the second apply exits 0 too"
assert_contains "$out_b" "for the lock held by PID $first_pid (rootless-ci)" \
	"the second apply waited for the first's lock and named its holder"
assert_contains "$out_b" "Nothing changed" "the second apply found the host converged"

in_machine rootless-ci check >"$TEST_TMP/check.out" 2>&1 || { cat "$TEST_TMP/check.out"; fail "check after both applies"; }
ok "check passes after both applies"
assert_eq 1 "$(in_machine grep -c x-rootless-ci /etc/fstab)" "one fstab line for the data disk"
assert_eq 1 "$(in_machine sh -c "grep -c '^$CI_USER:' /etc/subuid")" "one subuid range for the CI user"
assert_eq hello "$(as_ci sh -c 'docker import /var/lib/rootless-ci-test/busybox.tar rci-bb >/dev/null &&
	docker run --rm rci-bb echo hello')" "the CI user's Docker runs containers"
assert_contains "$(in_machine rootless-ci apply 2>&1)" "Nothing changed" "a third apply changes nothing"

echo "PASS: $TEST_NAME"
