#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Tests bench/gpu/steps.sh, the GPU check's step runner: a step that finishes is recorded
# ok or failed with its exit status; one that runs out of time is killed, with all its
# processes, after the stacks of its threads were written; one past the budget is skipped.
# Usage: steps_test.sh STEPS_SH
set -euo pipefail

steps_sh=$1
work=$(mktemp -d "${TMPDIR:-/tmp}/spillway-steps-test-XXXXXX")
trap 'rm -rf "$work"' EXIT
# shellcheck source=bench/gpu/steps.sh
source "$steps_sh"
STEPS_TSV=$work/steps.tsv
STEPS_LOGS=$work/logs
STEPS_BUDGET=100
STEPS_T0=$(date +%s)
mkdir -p "$STEPS_LOGS"
: >"$STEPS_TSV"

fail() { echo "FAIL: $*" >&2; exit 1; }
field() { awk -F'\t' -v s="$1" -v f="$2" '$1 == s { print $f }' "$STEPS_TSV"; }

rc=0
run_step quick 10 bash -c 'echo hello' 2>/dev/null || rc=$?
(( rc == 0 )) || fail "quick: status $rc"
[[ "$(field quick 2)" == ok ]] || fail "quick: recorded '$(field quick 2)'"
grep -q hello "$STEPS_LOGS/quick.log" || fail "quick: output not in its log"

rc=0
run_step broken 10 bash -c 'echo last words; exit 3' 2>/dev/null || rc=$?
(( rc == 3 )) || fail "broken: status $rc"
[[ "$(field broken 2)" == failed ]] || fail "broken: recorded '$(field broken 2)'"
[[ "$(field broken 4)" == "exit 3: last words" ]] || fail "broken: note '$(field broken 4)'"

# A hang: a process with a child, both asleep. Both must be gone afterwards, and the
# stacks file must name both and their threads.
rc=0
start=$(date +%s)
run_step hang 2 bash -c 'sleep 300 & echo "child $!"; sleep 300' 2>/dev/null || rc=$?
took=$(( $(date +%s) - start ))
(( rc == 124 )) || fail "hang: status $rc"
[[ "$(field hang 2)" == timeout ]] || fail "hang: recorded '$(field hang 2)'"
[[ "$(field hang 4)" == *"stacks in logs/hang.stacks"* ]] || fail "hang: note '$(field hang 4)'"
(( took < 15 )) || fail "hang: took ${took}s to end"
stacks=$STEPS_LOGS/hang.stacks
[[ $(grep -c '^=== pid ' "$stacks") -ge 2 ]] || fail "hang: stacks of fewer than 2 processes: $(cat "$stacks")"
grep -q 'sleep 300' "$stacks" || fail "hang: the sleeping child is not in the stacks"
grep -qE '^(Thread |thread |#0 |TID )' "$stacks" || fail "hang: no thread lines: $(cat "$stacks")"
child=$(awk '/^child / { print $2 }' "$STEPS_LOGS/hang.log")
[[ -n "$child" ]] || fail "hang: no child pid in the log"
# Gone, or a zombie its new parent has yet to reap (in a container, PID 1 may never).
sleep 0.5
state=$(ps -o stat= -p "$child" 2>/dev/null || true)
if [[ -n "$state" && "$state" != Z* ]]; then
  kill "$child"
  fail "hang: the child outlived the step (state $state)"
fi

# Past the budget: skipped, not run.
STEPS_BUDGET=0
rc=0
run_step late 10 bash -c "touch '$work/ran'" 2>/dev/null || rc=$?
(( rc == 125 )) || fail "late: status $rc"
[[ "$(field late 2)" == skipped ]] || fail "late: recorded '$(field late 2)'"
[[ ! -e "$work/ran" ]] || fail "late: it ran"

echo "steps_test: ok"
