# shellcheck shell=bash
# Shared by the scripts here (sourced, not run). The caller sets PROG (its name, for
# messages) before sourcing. install-service.sh does without it: the .deb ships it alone.

die() {
  echo "$PROG: $*" >&2
  exit 1
}

# usage LAST_LINE: prints the calling script's header comment (lines 2..LAST_LINE).
usage_from_header() {
  sed -n "2,${1}s/^# \{0,1\}//p" "$0" >&2
  exit 2
}

# abs_dir DIR: creates DIR and prints its absolute path.
abs_dir() {
  mkdir -p -- "$1"
  (cd -- "$1" && pwd -P)
}

# free_port: a TCP port on 127.0.0.1 that nothing uses right now.
free_port() {
  python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# running PID: the process exists and is not a zombie. (Daemons here are reparented to
# PID 1, which may reap them late; a zombie still passes `kill -0`.)
running() {
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  [[ ${st:0:1} != Z ]]
}

# live_pid PIDFILE COMM...: prints the pid in PIDFILE if it is a live process named COMM.
live_pid_of() {
  local pidfile="$1" pid comm want
  shift
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  running "$pid" || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
  for want in "$@"; do
    if [[ $comm == "$want" ]]; then
      echo "$pid"
      return 0
    fi
  done
  return 1
}

# stop_pid PID TIMEOUT: SIGTERM, wait up to TIMEOUT seconds, then SIGKILL.
stop_pid() {
  local pid="$1" timeout="$2" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < timeout * 20; i++)); do
    running "$pid" || return 0
    sleep 0.05
  done
  echo "$PROG: pid $pid ignored SIGTERM for ${timeout}s, sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    running "$pid" || return 0
    sleep 0.1
  done
  die "pid $pid survived SIGKILL"
}

# cmd_port STATE_DIR: the port recorded at start.
cmd_port() {
  (($# == 1)) || usage
  [[ -s $1/port ]] || die "no port recorded in $1/port"
  cat -- "$1/port"
}

# release_build: the one release build the scripts share (demo.sh,
# build-deb.sh, bench.sh): the programs, libinquery and the demo example in one cargo call,
# with cargo's progress lines. One call selects one set of dependency features every time;
# two calls over different packages select different ones and rebuild libinquery (whose
# file names carry no hash) back and forth, each undoing the other.
release_build() {
  cargo build --release -p inlookup -p inquerytest -p inquery -p inlookup-core \
    --bins --lib --example demo
}
