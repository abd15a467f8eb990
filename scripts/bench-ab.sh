#!/usr/bin/env bash
# Usage: scripts/bench-ab.sh [--pairs N] [--out DIR] REV
#
# The one-client miss against an older daemon, side by side (issue 11's miss goal): builds
# the daemon of REV (a commit, e.g. c44e4cd, the run of record) in a temporary worktree, then
# runs `scripts/bench.sh --quick --only matrix --clients 1 --rounds 3` N times (default 8)
# for this tree's daemon and REV's in turn, on the same MariaDB, and writes DIR/ab.md (default
# target/bench-ab): per run the floor, raw and miss p50 and miss / (floor + raw), then the
# medians and how many pairs this tree won. One run's ratio spans 3x on this VM
# (docs/bench/findings.md, "How much the miss ratio says"); alternating the binaries makes the
# machine's state the same for both. About 30 s per pair, plus REV's build.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PROG=bench-ab.sh
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
cd "$root"

usage() { usage_from_header 11; }

pairs=8
out=target/bench-ab
rev=
while (($#)); do
  case $1 in
  --pairs) pairs=${2:?}; shift 2 ;;
  --out) out=${2:?}; shift 2 ;;
  -h | --help) usage ;;
  -*) die "unknown option $1" ;;
  *) [[ -z $rev ]] || usage; rev=$1; shift ;;
  esac
done
[[ -n $rev ]] || usage
[[ $pairs =~ ^[1-9][0-9]*$ ]] || die "--pairs wants a positive number, not $pairs"
git rev-parse --verify --quiet "$rev^{commit}" >/dev/null || die "$rev is not a commit here"

out=$(abs_dir "$out")
old="$out/tree-$rev"
if [[ ! -d $old ]]; then
  git worktree add --detach "$old" "$rev" >/dev/null
fi
echo "$PROG: building the daemon of $rev in $old" >&2
(cd "$old" && CARGO_TARGET_DIR="$out/target-old" cargo build --quiet --release -p inlookup)
echo "$PROG: building this tree's daemon" >&2
cargo build --quiet --release -p inlookup

for ((i = 1; i <= pairs; i++)); do
  for side in new old; do
    bin="$root/target/release/inlookup"
    [[ $side == old ]] && bin="$out/target-old/release/inlookup"
    scripts/bench.sh --quick --only matrix --clients 1 --rounds 3 --inlookup "$bin" \
      --out "$out/$side-$i" >"$out/$side-$i.log" 2>&1 || die "run $side-$i failed: $out/$side-$i.log"
    echo "$PROG: pair $i $side done" >&2
  done
done
git worktree remove --force "$old"

python3 - "$out" "$pairs" "$rev" "$(git rev-parse --short HEAD)" >"$out/ab.md" <<'EOF'
import json, statistics, sys
out, pairs, rev, head = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def cell(side, i):
    d = json.load(open(f"{out}/{side}-{i}/results.json"))
    c = {x["case"]: x for x in d["cells"] if x["clients"] == 1}
    f, r, m = c["floor"]["p50_us"], c["raw"]["p50_us"], c["miss"]["p50_us"]
    if c["miss"]["errors"]:
        sys.exit(f"{side}-{i}: {c['miss']['errors']} miss errors")
    return f, r, m, m / (f + r)
print(f"# Miss p50 against floor + raw: this tree ({head}) and {rev}, alternating\n")
print("| pair | side | floor p50 µs | raw p50 µs | miss p50 µs | miss / (floor + raw) |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
rows = {"new": [], "old": []}
for i in range(1, pairs + 1):
    for side in ("new", "old"):
        f, r, m, q = cell(side, i)
        rows[side].append((m, q))
        name = head if side == "new" else rev
        print(f"| {i} | {name} | {f:.1f} | {r:.1f} | {m:.1f} | {q:.2f} |")
med = {s: (statistics.median(m for m, _ in v), statistics.median(q for _, q in v)) for s, v in rows.items()}
won = sum(1 for a, b in zip(rows["new"], rows["old"]) if a[0] < b[0])
print()
print(f"Medians: {head} miss {med['new'][0]:.1f} µs, ratio {med['new'][1]:.2f}; "
      f"{rev} miss {med['old'][0]:.1f} µs, ratio {med['old'][1]:.2f}. "
      f"This tree's miss / {rev}'s: {med['new'][0] / med['old'][0]:.2f}; "
      f"faster miss in {won} of {pairs} pairs.")
EOF
cat "$out/ab.md"
