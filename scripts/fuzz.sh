#!/usr/bin/env bash
# Usage: scripts/fuzz.sh [--long] [-j N] [SECONDS] [TARGET...]
#
# Runs inlookup's cargo-fuzz targets (fuzz/, docs/fuzz.md): frame, payload, imap_response,
# imap_command, shared_reader, door_track (all by default), each for SECONDS (default 60),
# or with --long for 10^7 executions each (-runs=10000000, the documented long run). -j N
# runs N targets at once (default 1; one core each). Every run has bounds:
# -rss_limit_mb=2048 (the process), -malloc_limit_mb=64 (any one allocation of the code
# under test), -timeout=10 (seconds for one input); passing one is a crash. Prints one
# summary line per target: executions, exec/s, seconds, peak RSS, result; exits 1 if any
# target failed.
#
#   1. installs cargo-fuzz if missing (cargo install cargo-fuzz --locked);
#   2. builds the targets: RUSTC_BOOTSTRAP=1 cargo fuzz build -a (release, debug
#      assertions on, AddressSanitizer). cargo fuzz needs nightly's -Z flags
#      (-Zsanitizer=address) and this machine has only stable Rust: RUSTC_BOOTSTRAP=1 lets
#      stable rustc take them, and stable ships the ASan runtime (librustc-stable_rt.asan.a).
#      ASan is kept (not --sanitizer none) because libFuzzer's -malloc_limit_mb needs the
#      sanitizer's allocator hooks: without them no allocation bound is enforced;
#   3. runs each target's binary on a working corpus, fuzz/target/corpus/TARGET (new inputs
#      go there), seeded with the checked-in fuzz/corpus/TARGET (read only here). Crashes go
#      to fuzz/artifacts/TARGET/, the log to fuzz/target/logs/TARGET.log.
#
# Touches only fuzz/target and fuzz/artifacts. The checked-in corpus replays on stable Rust
# in `cargo test` (fuzz/checks/tests/corpus.rs); docs/fuzz.md says how to add to it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PROG=fuzz.sh
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
cd "$root"

usage() { usage_from_header 25; }

ALL=(frame payload imap_response imap_command shared_reader door_track)
LONG_RUNS=10000000
BOUNDS=(-rss_limit_mb=2048 -malloc_limit_mb=64 -timeout=10)

long=0
jobs=1
secs=60
targets=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --long) long=1 ;;
    -j) [ "$#" -ge 2 ] || usage; jobs=$2; shift ;;
    -h | --help) usage ;;
    -*) usage ;;
    *)
      if [[ "$1" =~ ^[0-9]+$ ]]; then
        secs=$1
      elif [[ " ${ALL[*]} " == *" $1 "* ]]; then
        targets+=("$1")
      else
        die "unknown target $1 (targets: ${ALL[*]})"
      fi
      ;;
  esac
  shift
done
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || die "-j takes a number of targets at once"
[ "${#targets[@]}" -gt 0 ] || targets=("${ALL[@]}")

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "$PROG: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

echo "$PROG: building ${targets[*]} (release, debug assertions, ASan)" >&2
for t in "${targets[@]}"; do
  RUSTC_BOOTSTRAP=1 cargo fuzz build --fuzz-dir fuzz -a "$t"
done

bin=fuzz/target/x86_64-unknown-linux-gnu/release
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0}
if [ "$long" = 1 ]; then
  limit=("-runs=$LONG_RUNS")
else
  limit=(-max_total_time="$secs")
fi

# run_one TARGET: runs it, writes fuzz/target/logs/TARGET.summary.
run_one() {
  local t=$1 log=fuzz/target/logs/$1.log start end rc=0
  mkdir -p "fuzz/target/corpus/$t" "fuzz/artifacts/$t" fuzz/target/logs
  start=$(date +%s)
  "$bin/$t" "fuzz/target/corpus/$t" "fuzz/corpus/$t" "${limit[@]}" "${BOUNDS[@]}" \
    -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1 || rc=$?
  end=$(date +%s)
  local execs rate rss result=ok
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  if [ "$rc" != 0 ]; then
    result=$(grep -o -m1 -E 'ERROR: libFuzzer: [a-z -]+|ERROR: AddressSanitizer: [a-z-]+|panicked at [^ ]+' "$log" || true)
    result="FAILED (exit $rc${result:+: $result}; see $log and fuzz/artifacts/$t/)"
  fi
  printf '%-14s executions %-10s exec/s %-7s seconds %-6s peak RSS %5s MB  %s\n' \
    "$t" "${execs:-?}" "${rate:-?}" "$((end - start))" "${rss:-?}" "$result" \
    >"fuzz/target/logs/$t.summary"
  [ "$rc" = 0 ]
}

echo "$PROG: running ${targets[*]} ($([ "$long" = 1 ] && echo "$LONG_RUNS runs" || echo "$secs s") each, $jobs at once)" >&2
pids=()
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
    wait -n || true
  done
  run_one "$t" &
  pids+=($!)
done
failed=0
for p in "${pids[@]}"; do
  wait "$p" || failed=1
done
echo "$PROG: $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$([ -z "$(git status --porcelain -- fuzz src/wire.rs imap/src 2>/dev/null)" ] || echo ' (with uncommitted changes)')"
for t in "${targets[@]}"; do
  cat "fuzz/target/logs/$t.summary"
done
exit "$failed"
