#!/usr/bin/env bash
# Usage: scripts/soak.sh [SOAK ARGS...]
#
# The soak (issue 10, item 8): 10^6 PWD requests from 64 client processes, 90 % cache hits,
# with a fault every 5 s in rotation (MariaDB SIGKILLed and restarted, MariaDB SIGSTOPped
# for 3 s, SIGHUP to the daemon, a burst of hostile clients: reply FIFOs kept full, ALIAS
# and ALIAS-FULL of a 120-line alias list, abandoned reply FIFOs). Every reply is checked
# against its key's answer; lost and crossed replies must be 0. Writes docs/soak.md and
# docs/soak.svg; takes about 5 minutes on 2 vCPUs (paced at 4000 requests/s).
#
#   1. builds target/release/inlookup and the soak program (benches/soak.rs);
#   2. starts the soak's own MariaDB with scripts/mariadb.sh start target/soak-mariadb (the
#      soak kills and restarts it, so never a shared one);
#   3. runs `cargo bench --bench soak -- run --mysql HOST:PORT --mariadb-dir DIR …`, which
#      builds the database inl_soak there, starts its own inlookup (as nobody when root, its
#      own INFIFODIR, FIFOTMPDIR and CONTROLDIR under /dev/shm), forks the clients, injects
#      the faults, samples the daemon's fds, threads and RSS every second, and writes the
#      report; it exits 1 when a reply was lost or crossed;
#   4. stops the MariaDB it started (continued first, should the soak have died during a
#      SIGSTOP) and removes its datadir.
#
# SOAK ARGS go to the program: --requests N, --clients N, --hot N, --rate N (0: unpaced),
# --fault-every S, --stop-secs S, --timeout S, --max-secs S (default 900), --out DIR.
# `cargo bench --bench soak -- help` lists them.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PROG=soak.sh
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
cd "$root"

usage() { usage_from_header 24; }

for a in "$@"; do
  case "$a" in
    -h | --help) usage ;;
  esac
done

echo "soak.sh: building (release)" >&2
cargo build --release --quiet -p inlookup
cargo bench --quiet --bench soak --no-run

state="$root/target/soak-mariadb"
if live_pid_of "$state/mysqld.pid" mariadbd mysqld >/dev/null; then
  die "a MariaDB already runs from $state (another soak?); stop it with scripts/mariadb.sh stop $state"
fi
rm -rf -- "$state"
cleanup() {
  local pid
  if pid=$(live_pid_of "$state/mysqld.pid" mariadbd mysqld); then
    kill -CONT "$pid" 2>/dev/null || true
  fi
  scripts/mariadb.sh stop "$state" || true
  rm -rf -- "$state"
}
trap cleanup EXIT
read -r host port < <(scripts/mariadb.sh start "$state")

echo "soak.sh: MariaDB on $host:$port; soaking" >&2
# The run is bounded by its request count and by --max-secs (900 s unless given); timeout(1)
# is the last resort should the program itself hang.
timeout --kill-after=30 1200 cargo bench --quiet --bench soak -- run --mysql "$host:$port" \
  --mariadb-dir "$state" --inlookup "$root/target/release/inlookup" \
  --command "scripts/soak.sh $*" "$@"
