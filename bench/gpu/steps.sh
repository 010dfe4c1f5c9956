# shellcheck shell=bash
# SPDX-License-Identifier: Apache-2.0
#
# The GPU check's steps (sourced by bench/gpu/run.sh; tests/gpu/steps_test.sh tests it):
# run_step runs one command with a time limit and records how it went in STEPS_TSV.
#
# A step that runs out its time has its threads' stacks taken before it is killed, into
# LOGS/STEP.stacks: a hang is then a result, not a mystery (programs under Spillway hung
# at exit on the H200 once, docs/gpu.md, and device time is too short to reproduce it by
# hand). gdb if it can attach, else eu-stack, else what /proc says each thread waits in.
#
# Contract (the caller sets these):
#   STEPS_TSV     the step table (step, status, seconds, note), appended to
#   STEPS_LOGS    directory for STEP.log (the command's output) and STEP.stacks
#   STEPS_BUDGET  no step starts once this many seconds have passed since STEPS_T0
#   STEPS_T0      when the run began (date +%s)
# run_step STEP LIMIT CMD...: returns CMD's status (124 when it ran out of time, 125 when
# skipped), never stops the caller. The command runs in a session of its own: at the limit
# the whole of it gets SIGTERM, and SIGKILL 10 s later.

steps_elapsed() { echo $(( $(date +%s) - STEPS_T0 )); }

# steps_record STEP STATUS SECONDS NOTE: one line of the step table.
steps_record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4//$'\t'/ }" >>"$STEPS_TSV"; }

# steps_dump_stacks PID: every thread of PID and of its descendants.
steps_dump_stacks() {
  local pids=("$1") i=0 p t
  while (( i < ${#pids[@]} )); do
    # shellcheck disable=SC2207
    pids+=($(pgrep -P "${pids[i]}" 2>/dev/null || true))
    i=$(( i + 1 ))
  done
  for p in "${pids[@]}"; do
    [[ -d /proc/$p ]] || continue
    echo "=== pid $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"
    if command -v gdb >/dev/null 2>&1; then
      local bt
      bt=$(timeout 60 gdb -p "$p" -batch -nx -ex 'set pagination off' \
             -ex 'thread apply all bt' 2>&1 || true)
      if grep -q '^Thread ' <<<"$bt"; then
        echo "$bt"
        continue
      fi
    fi
    if command -v eu-stack >/dev/null 2>&1 && timeout 60 eu-stack -p "$p" 2>&1; then continue; fi
    for t in /proc/"$p"/task/*; do
      echo "thread ${t##*/} $(cat "$t/comm" 2>/dev/null): wchan $(cat "$t/wchan" 2>/dev/null)," \
        "syscall $(cut -d' ' -f1 "$t/syscall" 2>/dev/null), state" \
        "$(awk '{ print $3 }' "$t/stat" 2>/dev/null)"
    done
  done
}

run_step() {
  local step=$1 limit=$2
  shift 2
  if (( $(steps_elapsed) >= STEPS_BUDGET )); then
    steps_record "$step" skipped 0 "time budget of ${STEPS_BUDGET}s spent"
    return 125
  fi
  local remaining=$(( STEPS_BUDGET + 60 - $(steps_elapsed) ))
  (( limit > remaining )) && limit=$remaining
  local log=$STEPS_LOGS/$step.log stacks=$STEPS_LOGS/$step.stacks
  rm -f "$stacks"
  local start end rc=0 pid watchdog
  start=$(date +%s.%N)
  setsid "$@" >"$log" 2>&1 </dev/null &
  pid=$!
  (
    for (( tenths = 0; tenths < limit * 10; tenths++ )); do
      kill -0 "$pid" 2>/dev/null || exit 0
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null || exit 0
    steps_dump_stacks "$pid" >"$stacks" 2>&1
    kill -TERM -- -"$pid" 2>/dev/null
    for (( tenths = 0; tenths < 100; tenths++ )); do
      kill -0 "$pid" 2>/dev/null || exit 0
      sleep 0.1
    done
    kill -KILL -- -"$pid" 2>/dev/null
  ) &
  watchdog=$!
  wait "$pid" || rc=$?
  wait "$watchdog" 2>/dev/null || true
  end=$(date +%s.%N)
  local secs
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
  if [[ -e "$stacks" ]]; then
    rc=124
    steps_record "$step" timeout "$secs" "killed after ${limit}s; stacks in logs/$step.stacks"
  elif (( rc == 0 )); then
    steps_record "$step" ok "$secs" ""
  else
    steps_record "$step" failed "$secs" "exit $rc: $(tail -n 1 "$log")"
  fi
  echo "run.sh: $step: $(tail -n 1 "$STEPS_TSV" | cut -f2,3) s" >&2
  return "$rc"
}
