#!/usr/bin/env bash
# Usage:
#   scripts/mariadb.sh ensure STATE_DIR        use the MariaDB on 127.0.0.1:${MYSQL_VPORT:-3306}
#                                              if root (empty password) gets in, else start a
#                                              throwaway one in STATE_DIR; prints "127.0.0.1 PORT"
#   scripts/mariadb.sh start  STATE_DIR [PORT] start (or reuse) a throwaway MariaDB in STATE_DIR
#                                              on PORT or a free port; prints "127.0.0.1 PORT"
#   scripts/mariadb.sh stop   STATE_DIR        stop it (SIGTERM, SIGKILL after 20 s)
#   scripts/mariadb.sh port   STATE_DIR        print its port
#   scripts/mariadb.sh replicate STATE_DIR PRIMARY_PORT
#                                              make the instance in STATE_DIR a replica of the
#                                              one on 127.0.0.1:PRIMARY_PORT (root, from the
#                                              start of its binlog) and wait until it runs
#
# MARIADB_SERVER_ID=N at the first start turns the binlog on (log_bin, server_id N,
# binlog_format ${MARIADB_BINLOG_FORMAT:-ROW}, binlog_row_image FULL, binlog_row_metadata
# FULL, log_slave_updates): kept in STATE_DIR/binlog.conf, so a restart keeps them.
#
# The throwaway instance: datadir STATE_DIR/data, socket STATE_DIR/mysqld.sock, pid file
# STATE_DIR/mysqld.pid, log STATE_DIR/err.log, port in STATE_DIR/port. Root has no password.
# With STATE_DIR/tls/cert.pem and key.pem (and ca.pem) put there before start, it offers TLS.
# It runs detached (setsid, nohup), so it outlives the calling shell; stop it explicitly.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
START_TIMEOUT=30
STOP_TIMEOUT=20

PROG=mariadb.sh
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { usage_from_header 22; }

# ping PORT: the server on 127.0.0.1:PORT answers within about 2 s.
# (mariadb-admin ping also succeeds on "Access denied": it only proves a server is there.)
ping_port() {
  timeout 3 mariadb-admin --no-defaults --connect-timeout=2 \
    -h127.0.0.1 -P"$1" -uroot ping >/dev/null 2>&1
}

# root_ok PORT: root with an empty password can run a query there.
root_ok() {
  timeout 3 mariadb --no-defaults --connect-timeout=2 \
    -h127.0.0.1 -P"$1" -uroot -N -B -e 'SELECT 1' >/dev/null 2>&1
}

# ours DIR PORT: the server on PORT is the one running from DIR/data (not some other
# server that happens to hold the port).
ours() {
  local datadir
  datadir=$(timeout 3 mariadb --no-defaults --connect-timeout=2 -h127.0.0.1 -P"$2" -uroot \
    -N -B -e 'SELECT @@datadir' 2>/dev/null) || return 1
  [[ ${datadir%/} == "$1/data" ]]
}

# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() {
  # SO_REUSEADDR, as mariadbd binds: TIME_WAIT sockets left by a stopped server do not
  # make the port busy; only a listener does.
  python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}

# live_pid STATE_DIR: prints the pid from mysqld.pid if that process is a live mariadbd.
live_pid() { live_pid_of "$1/mysqld.pid" mariadbd mysqld; }

ensure_binaries() {
  local c
  for c in mariadbd mariadb-install-db mariadb mariadb-admin python3; do
    if ! command -v "$c" >/dev/null 2>&1; then
      "$SCRIPT_DIR/deps.sh" mariadb >&2
      return
    fi
  done
}

cmd_start() {
  (($# >= 1 && $# <= 2)) || usage
  ensure_binaries
  local dir port pid
  dir=$(abs_dir "$1")
  port=${2:-}

  # Already running from this STATE_DIR: report it (waiting if it is still starting).
  if pid=$(live_pid "$dir") && [[ -s $dir/port ]]; then
    local running_port i
    running_port=$(<"$dir/port")
    if [[ -n $port && $port != "$running_port" ]]; then
      echo "mariadb.sh: already running in $dir on port $running_port (asked for $port)" >&2
    fi
    for ((i = 0; i < START_TIMEOUT * 5; i++)); do
      if ping_port "$running_port" && ours "$dir" "$running_port"; then
        echo "127.0.0.1 $running_port"
        return 0
      fi
      running "$pid" || break
      sleep 0.2
    done
    die "pid $pid from $dir/mysqld.pid does not answer on port $running_port"
  fi

  if [[ -z $port ]]; then
    port=$(free_port)
  fi
  [[ $port =~ ^[0-9]+$ ]] || die "bad port '$port'"
  port_free "$port" || die "port $port on 127.0.0.1 is already in use"

  local user
  user=$(id -un)
  if [[ ! -d $dir/data/mysql ]]; then
    if [[ -d $dir/data && -n $(ls -A -- "$dir/data") ]]; then
      die "$dir/data is not empty and not a MariaDB datadir; refusing to touch it"
    fi
    if ! mariadb-install-db --no-defaults --datadir="$dir/data" --user="$user" \
      --auth-root-authentication-method=normal --skip-test-db \
      --innodb-log-file-size=8M --innodb-buffer-pool-size=32M \
      >"$dir/install.log" 2>&1; then
      tail -n 30 "$dir/install.log" >&2
      die "mariadb-install-db failed (log: $dir/install.log)"
    fi
  fi

  rm -f -- "$dir/mysqld.pid" "$dir/mysqld.sock"
  echo "$port" >"$dir/port"
  # TLS when STATE_DIR/tls holds cert.pem and key.pem (and optionally ca.pem).
  local tls=()
  if [[ -s $dir/tls/cert.pem && -s $dir/tls/key.pem ]]; then
    tls=(--ssl-cert="$dir/tls/cert.pem" --ssl-key="$dir/tls/key.pem")
    [[ -s $dir/tls/ca.pem ]] && tls+=(--ssl-ca="$dir/tls/ca.pem")
  fi
  # The binlog (MARIADB_SERVER_ID at the first start, then STATE_DIR/binlog.conf).
  if [[ -n ${MARIADB_SERVER_ID:-} && ! -s $dir/binlog.conf ]]; then
    [[ $MARIADB_SERVER_ID =~ ^[0-9]+$ ]] || die "bad MARIADB_SERVER_ID '$MARIADB_SERVER_ID'"
    printf '%s\n' "--server-id=$MARIADB_SERVER_ID" "--log-bin=$dir/data/binlog" \
      "--binlog-format=${MARIADB_BINLOG_FORMAT:-ROW}" --binlog-row-image=FULL \
      --binlog-row-metadata=FULL --log-slave-updates "--relay-log=$dir/data/relay" \
      >"$dir/binlog.conf"
  fi
  local binlog=(--skip-log-bin)
  if [[ -s $dir/binlog.conf ]]; then
    mapfile -t binlog <"$dir/binlog.conf"
  fi
  # Not in a job-control shell, so setsid need not fork: $! is mariadbd itself.
  setsid nohup mariadbd --no-defaults \
    --datadir="$dir/data" \
    --socket="$dir/mysqld.sock" \
    --pid-file="$dir/mysqld.pid" \
    --log-error="$dir/err.log" \
    --port="$port" \
    --bind-address=127.0.0.1 \
    --user="$user" \
    --innodb-log-file-size=8M \
    --innodb-buffer-pool-size=32M \
    "${binlog[@]}" \
    --skip-name-resolve \
    "${tls[@]}" \
    </dev/null >>"$dir/err.log" 2>&1 &
  local child=$!

  local i
  for ((i = 0; i < START_TIMEOUT * 10; i++)); do
    if ping_port "$port" && ours "$dir" "$port"; then
      echo "127.0.0.1 $port"
      return 0
    fi
    if ! running "$child"; then
      break
    fi
    sleep 0.1
  done
  echo "mariadb.sh: MariaDB in $dir did not come up on port $port; tail of err.log:" >&2
  tail -n 30 "$dir/err.log" >&2 || true
  kill "$child" 2>/dev/null || true
  exit 1
}

cmd_stop() {
  (($# == 1)) || usage
  local dir="$1" pid i
  [[ -d $dir ]] || return 0
  dir=$(cd -- "$dir" && pwd -P)
  pid=$(live_pid "$dir") || return 0
  stop_pid "$pid" "$STOP_TIMEOUT"
}

cmd_ensure() {
  (($# == 1)) || usage
  local port=${MYSQL_VPORT:-3306}
  if command -v mariadb-admin >/dev/null 2>&1 && ping_port "$port"; then
    if root_ok "$port"; then
      echo "127.0.0.1 $port"
      return 0
    fi
    echo "mariadb.sh: a server answers on port $port but root with no password cannot log in; starting a throwaway one" >&2
  fi
  cmd_start "$1"
}

cmd_replicate() {
  (($# == 2)) || usage
  local dir="$1" primary="$2" port i state
  [[ $primary =~ ^[0-9]+$ ]] || die "bad port '$primary'"
  port=$(cmd_port "$dir")
  sql() { timeout 10 mariadb --no-defaults -h127.0.0.1 -P"$port" -uroot -N -B -e "$1"; }
  sql "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$primary,
       MASTER_USER='root', MASTER_PASSWORD='', MASTER_USE_GTID=no, MASTER_CONNECT_RETRY=1;
       START SLAVE" || die "CHANGE MASTER TO on port $port failed"
  for ((i = 0; i < 100; i++)); do
    state=$(timeout 10 mariadb --no-defaults -h127.0.0.1 -P"$port" -uroot -e 'SHOW SLAVE STATUS\G' | awk '/Slave_IO_Running:|Slave_SQL_Running:/ {print $2}' | tr '\n' ' ')
    [[ $state == "Yes Yes " ]] && return 0
    sleep 0.1
  done
  timeout 10 mariadb --no-defaults -h127.0.0.1 -P"$port" -uroot -e 'SHOW SLAVE STATUS\G' >&2 || true
  die "the replica on port $port is not running ($state)"
}

main() {
  (($# >= 1)) || usage
  local sub="$1"
  shift
  case "$sub" in
    ensure) cmd_ensure "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    port) cmd_port "$@" ;;
    replicate) cmd_replicate "$@" ;;
    -h | --help | help) usage ;;
    *) usage ;;
  esac
}

main "$@"
