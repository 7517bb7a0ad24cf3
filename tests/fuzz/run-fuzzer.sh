#!/bin/bash
# SPDX-License-Identifier: MIT
#
# run-fuzzer.sh FUZZER SEED-CORPUS ARTIFACT-DIR: run one libFuzzer target
# for RCI_FUZZ_SECONDS (default 60) on a scratch copy of its seed corpus
# (the source tree is never written), first replaying every seed. Exit 0
# when nothing crashed; 1 (with the input saved in ARTIFACT-DIR) when
# something did.

set -euo pipefail

fuzzer=${1:?usage: $0 FUZZER SEED-CORPUS ARTIFACT-DIR}
seeds=${2:?}
artifacts=${3:?}
seconds=${RCI_FUZZ_SECONDS:-60}
name=$(basename "$fuzzer")

if ! compgen -G "$seeds/*" >/dev/null; then
        echo "no seed corpus in $seeds"
        exit 1
fi
[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || { echo "RCI_FUZZ_SECONDS=$seconds: not a positive number"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/rci-$name.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -r "$seeds" "$work/corpus"
mkdir -p "$artifacts"

export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}

# Every seed must pass on its own first: a seed that crashes is a regression.
"$fuzzer" -runs=0 "$work/corpus" >"$work/replay.log" 2>&1 || {
        cat "$work/replay.log"
        echo "$name: a seed input fails"
        exit 1
}

rc=0
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
        -artifact_prefix="$artifacts/$name-" "$work/corpus" >"$work/fuzz.log" 2>&1 || rc=$?
# The summary (and on failure the report) rather than thousands of progress lines.
if [[ $rc -ne 0 ]]; then
        tail -n 80 "$work/fuzz.log"
        echo "$name: failed (exit $rc); the input is in $artifacts/$name-*"
        exit 1
fi
grep -E '^(stat::|Done|INFO: Seed)' "$work/fuzz.log" || true
echo "$name: ${seconds}s without a crash, corpus $(find "$work/corpus" -type f | wc -l) inputs"
