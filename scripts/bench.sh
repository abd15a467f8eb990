#!/usr/bin/env bash
# Usage: scripts/bench.sh [--shared] [BENCH ARGS...]
#
# inlookup's benchmarks in one rerunnable command (issue 6). Writes docs/bench/results.md,
# docs/bench/results.json and docs/bench/results.svg; takes about 12 minutes on 2 vCPUs.
#
#   1. builds target/release/inlookup and the bench program (benches/compare.rs);
#   2. starts the bench's own MariaDB with scripts/mariadb.sh start target/bench-mariadb,
#      so its CPU time is ours alone and its pid is known (the datadir, with the million
#      generated users of the bench database, is kept for the next run); with --shared it
#      uses whatever scripts/mariadb.sh ensure finds instead;
#   3. runs `cargo bench --bench compare -- run --mysql HOST:PORT …`, which starts its own
#      inlookup daemons (as nobody when root, each with its own INFIFODIR, FIFOTMPDIR and
#      CONTROLDIR in a temp dir) and echo server, runs every case side by side with the case
#      order rotating, measures CPU and memory from /proc, and writes the results;
#   4. stops the MariaDB (and the Dovecots) it started.
#
# BENCH ARGS go to the program: --quick (a 1-minute development run, results in
# target/bench-quick), --rounds N, --secs S, --clients 1,4,16,64, --rss 10000,100000,1000000,
# --only matrix,cpu,mariadb,whatif,imap,rss, --out DIR. `cargo bench --bench compare -- help`
# lists them all. The imap part starts two throwaway Dovecots with scripts/dovecot.sh
# (forking, and DOVECOT_REUSE=1) in the run's temp dir. What the cases are: docs/bench/README.md.
#
# --only cluster runs the clustered site's connection bench instead (benches/cluster.rs, about
# a minute): a connection per worker per database against MYSQL_POOL_PER_DB pools, every
# request a miss over a central and two mail store databases on the bench's MariaDB; writes
# docs/bench/cluster.md. --clients, --workers, --secs, --rounds, --pools and --users go to it.
#
# --only refresh runs refresh-ahead's bench instead (benches/refresh.rs, about a minute): a hot
# set of PWD answers at a short TTL with REFRESH_AHEAD off and on, misses counted by the
# daemon; writes docs/bench/refresh.md. --clients, --hot, --ttl, --secs, --rounds and
# --percents go to it.
#
# --only door runs the IMAP front door's page-view bench instead (benches/door.rs, about a
# minute): connect, LOGIN, SELECT, FETCH 1:20 (FLAGS ENVELOPE), LOGOUT through the door,
# straight to a forking and a process-reusing Dovecot, and through Debian's imapproxy
# (installed by scripts/deps.sh imapproxy), with Dovecot's logins counted; writes
# docs/bench/door.md. --rounds goes to it.
#
# --only fleet runs issue 13's bench instead (benches/fleet.rs): its own primary and replica
# MariaDB replicating, invalidation lag p50/p99 from an UPDATE's commit to the new answer of a
# daemon tailing the primary and of one tailing the replica, and the failover time from a
# replica's SIGKILL to the next good answer; writes docs/bench/fleet.md. --changes and --kills
# go to it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PROG=bench.sh
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
cd "$root"

usage() { usage_from_header 22; }

shared=0
args=()
for a in "$@"; do
  case "$a" in
    --shared) shared=1 ;;
    -h | --help) usage ;;
    *) args+=("$a") ;;
  esac
done

# The standalone benches take the arguments without `--only NAME`.
rest=()
skip=0
for a in "${args[@]}"; do
  if ((skip)); then skip=0; continue; fi
  [[ $a == --only ]] && { skip=1; continue; }
  rest+=("$a")
done

# The fleet bench starts MariaDBs of its own: none of the setup below.
if [[ " ${args[*]} " == *" --only fleet "* ]]; then
  echo "bench.sh: running the fleet bench (its own primary and replica MariaDB)" >&2
  cargo build --quiet --release -p inlookup
  cargo bench --quiet --bench fleet -- "${rest[@]}"
  exit 0
fi
echo "bench.sh: building (release)" >&2
release_build
cargo bench --bench compare --no-run

state="$root/target/bench-mariadb"
started=0
if ((shared)); then
  # ensure uses the machine's MariaDB, else starts a throwaway one here: stop that one at
  # the end, as test.sh does.
  state="$root/target/bench-mariadb-ensure"
  live_pid_of "$state/mysqld.pid" mariadbd mysqld >/dev/null || started=2
  read -r host port < <(scripts/mariadb.sh ensure "$state")
  if ((started == 2)); then
    started=0
    live_pid_of "$state/mysqld.pid" mariadbd mysqld >/dev/null && started=1
  fi
  own=()
else
  # Stop it at the end only if it is not running yet (mariadb.sh start reuses a live one).
  live_pid_of "$state/mysqld.pid" mariadbd mysqld >/dev/null || started=1
  read -r host port < <(scripts/mariadb.sh start "$state")
  own=(--own-mariadb --mariadb-pid "$(cat "$state/mysqld.pid")")
fi
stop_mariadb() {
  if ((started)); then
    scripts/mariadb.sh stop "$state" || true
  fi
}
trap stop_mariadb EXIT

standalone=
[[ " ${args[*]} " == *" --only cluster "* ]] && standalone=cluster
[[ " ${args[*]} " == *" --only refresh "* ]] && standalone=refresh
[[ " ${args[*]} " == *" --only door "* ]] && standalone=door
if [[ -n $standalone ]]; then
  [[ $standalone == door ]] && scripts/deps.sh dovecot imapproxy
  echo "bench.sh: MariaDB on $host:$port; running the $standalone bench" >&2
  cargo bench --quiet --bench "$standalone" -- --mysql "$host:$port" "${rest[@]}"
  exit 0
fi
echo "bench.sh: MariaDB on $host:$port; running the benchmarks" >&2
cargo bench --quiet --bench compare -- run --mysql "$host:$port" "${own[@]}" \
  --command "scripts/bench.sh $*" "${args[@]}"
