#!/usr/bin/env bash
# Usage:
#   scripts/dovecot.sh start   STATE_DIR [PORT]          start (or reuse) a throwaway Dovecot 2.3
#                                                        IMAP server on 127.0.0.1:PORT (default: a
#                                                        free port); prints "127.0.0.1 PORT"
#   scripts/dovecot.sh stop    STATE_DIR                 stop it (SIGTERM, SIGKILL after 10 s)
#   scripts/dovecot.sh port    STATE_DIR                 print its port
#   scripts/dovecot.sh adduser STATE_DIR USER PASSWORD   add (or reset) a user; works while running
#
# Environment for start:
#   DOVECOT_REUSE=1  reuse login and imap processes (fast logins) instead of Debian's
#                    fork-per-connection default
#   DOVECOT_TLS=1    self-signed certificate for CN=localhost, STARTTLS on the plain port
#   DOVECOT_MAX_CONNECTIONS=N  allow N connections of one user from one IP
#                    (mail_max_userip_connections; Dovecot's default is 10) and raise the
#                    imap and imap-login process limits to N where they are lower
#
# First start seeds users alice/secret and bob/hunter2 and one message in alice's
# Maildir/new. Files: STATE_DIR/dovecot.conf, passwd, home/USER/Maildir, dovecot.log
# (logins are logged there), run/master.pid, port. As root the mail processes run as
# nobody:nogroup; as another user everything runs as that user.
#
# As root, nobody must reach passwd, home/ and run/. This script changes the mode of no
# directory but STATE_DIR (made 0755): when a directory above it is closed to others (a
# clone under /root), those three live in a directory it makes for them instead
# (/tmp/inlookup-dovecot.XXXXXX, mode 0755, named in STATE_DIR/mailroot, reused by the next
# start, removed by stop), with STATE_DIR/home and STATE_DIR/run linked to it.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
START_TIMEOUT=15
STOP_TIMEOUT=10

PROG=dovecot.sh
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { usage_from_header 26; }

# Mail, login and internal processes: nobody:nogroup as root, else ourselves.
mail_user() {
  if ((EUID == 0)); then echo nobody; else id -un; fi
}
mail_group() {
  if ((EUID == 0)); then id -gn nobody; else id -gn; fi
}

# greeting PORT SECONDS: waits until 127.0.0.1:PORT sends a line starting with "* OK".
greeting() {
  python3 - "$1" "$2" <<'EOF'
import socket, sys, time
port, deadline = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(2)
            if s.makefile("rb").readline().startswith(b"* OK"):
                s.sendall(b"a LOGOUT\r\n")
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)
sys.exit(1)
EOF
}

# live_pid STATE_DIR: prints the master pid if that process is a live dovecot.
live_pid() { live_pid_of "$1/run/master.pid" dovecot; }

# reachable DIR: "others" may search DIR and every directory above it.
reachable() {
  local d=$1 mode
  while :; do
    mode=$(stat -c %a -- "$d")
    ((8#$mode & 1)) || return 1
    [[ $d == / ]] && return 0
    d=$(dirname -- "$d")
  done
}

# mail_root DIR [make]: prints where passwd, home/ and run/ are: DIR when the mail user can
# reach it (or is ourselves), else the directory named in DIR/mailroot. With `make`, that
# directory is made (or checked) and linked from DIR.
mail_root() {
  local dir=$1 live=
  if ((EUID != 0)) || reachable "$dir"; then
    echo "$dir"
    return
  fi
  [[ -s $dir/mailroot ]] && live=$(<"$dir/mailroot")
  if [[ ${2:-} != make ]]; then
    echo "${live:-$dir}"
    return
  fi
  # Ours only if it is a real directory of root's, as we made it.
  if [[ -z $live || -L $live || ! -d $live || ! -O $live || $live != /tmp/inlookup-dovecot.* ]]; then
    live=$(mktemp -d /tmp/inlookup-dovecot.XXXXXX)
    echo "$live" >"$dir/mailroot"
  fi
  chmod 755 -- "$live"
  mkdir -p -- "$live/home" "$live/run"
  local name
  for name in home run; do
    if [[ ! -L $dir/$name ]]; then
      rm -rf -- "${dir:?}/$name"
    fi
    ln -sfn -- "$live/$name" "$dir/$name"
  done
  echo "$live"
}
ensure_binaries() {
  local c
  for c in dovecot doveconf python3 openssl; do
    if ! command -v "$c" >/dev/null 2>&1; then
      "$SCRIPT_DIR/deps.sh" dovecot >&2
      return
    fi
  done
  [[ -x /usr/lib/dovecot/imap ]] || "$SCRIPT_DIR/deps.sh" dovecot >&2
}

# add_user DIR USER PASSWORD: (re)writes USER's passwd line and creates the Maildir (DIR:
# the mail root).
add_user() {
  local dir="$1" user="$2" pass="$3"
  [[ $user =~ ^[A-Za-z0-9._@+-]+$ ]] || die "bad user name '$user'"
  [[ $pass != *:* && $pass != *$'\n'* && -n $pass ]] || die "password must be non-empty, without ':' or newline"
  local pw="$dir/passwd" tmp
  touch -- "$pw"
  tmp=$(mktemp -- "$pw.XXXXXX")
  grep -v -- "^${user//./\\.}:" "$pw" >"$tmp" || true
  printf '%s:{PLAIN}%s\n' "$user" "$pass" >>"$tmp"
  chmod 644 -- "$tmp"
  mv -f -- "$tmp" "$pw"

  local home="$dir/home/$user"
  mkdir -p -- "$home/Maildir/cur" "$home/Maildir/new" "$home/Maildir/tmp"
  chmod 755 -- "$dir/home"
  chown -R -- "$(mail_user):$(mail_group)" "$home"
  chmod -R u+rwX,go-rwx -- "$home"
}

seed() {
  local dir="$1"
  add_user "$dir" alice secret
  add_user "$dir" bob hunter2
  local msg="$dir/home/alice/Maildir/new/1700000000.M1P1.inlookup-seed"
  cat >"$msg" <<'EOF'
Return-Path: <bob@example.com>
From: Bob <bob@example.com>
To: Alice <alice@example.com>
Subject: Welcome
Date: Tue, 14 Nov 2023 22:13:20 +0000
Message-ID: <seed-1@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Hello Alice, this is the seeded test message.
EOF
  chown -- "$(mail_user):$(mail_group)" "$msg"
  chmod 600 -- "$msg"
}

make_cert() {
  local dir="$1"
  mkdir -p -- "$dir/ssl"
  if [[ ! -s $dir/ssl/cert.pem || ! -s $dir/ssl/key.pem ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 \
      -subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
      -keyout "$dir/ssl/key.pem" -out "$dir/ssl/cert.pem" >"$dir/ssl/openssl.log" 2>&1 ||
      {
        cat "$dir/ssl/openssl.log" >&2
        die "openssl could not make a certificate"
      }
    chmod 600 -- "$dir/ssl/key.pem"
  fi
}

# write_config DIR MAILROOT PORT
write_config() {
  local dir="$1" live="$2" port="$3" user group uid max limit=100
  user=$(mail_user)
  group=$(mail_group)
  uid=1
  if ((EUID != 0)); then uid=$(id -u); fi
  max=${DOVECOT_MAX_CONNECTIONS:-}
  [[ -z $max || $max =~ ^[1-9][0-9]*$ ]] || die "DOVECOT_MAX_CONNECTIONS must be a positive number"
  if [[ -n $max ]] && ((max > limit)); then limit=$max; fi

  {
    cat <<EOF
# Generated by scripts/dovecot.sh; rewritten on every start.
protocols = imap
listen = 127.0.0.1
base_dir = $live/run
state_dir = $live/state
instance_name = dovecot-$(basename -- "$dir")
log_path = $dir/dovecot.log
auth_verbose = yes
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = $user
default_internal_group = $group
default_login_user = $user
first_valid_uid = $uid
mail_location = maildir:~/Maildir
EOF
    if [[ -n $max ]]; then
      echo "mail_max_userip_connections = $max"
    fi
    if [[ ${DOVECOT_TLS:-0} == 1 ]]; then
      cat <<EOF
ssl = yes
ssl_cert = <$dir/ssl/cert.pem
ssl_key = <$dir/ssl/key.pem
EOF
    else
      echo 'ssl = no'
    fi
    cat <<EOF
passdb {
  driver = passwd-file
  args = scheme=PLAIN $live/passwd
}
userdb {
  driver = static
  args = uid=$user gid=$group home=$live/home/%u
}
service imap-login {
  chroot =
  inet_listener imap {
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
EOF
    # Dovecot's defaults: 100 imap-login processes (default_process_limit), 1024 imap ones.
    if ((limit > 100)); then
      echo "  process_limit = $limit"
    fi
    if [[ ${DOVECOT_REUSE:-0} == 1 ]]; then
      cat <<EOF
  service_count = 0
  process_min_avail = 1
}
service imap {
  service_count = 1000
  process_limit = $limit
  process_min_avail = 1
EOF
    elif ((limit > 1024)); then
      printf '}\nservice imap {\n  process_limit = %s\n' "$limit"
    fi
    cat <<'EOF'
}
service anvil {
  chroot =
}
service auth-worker {
  user = $default_internal_user
}
EOF
  } >"$dir/dovecot.conf"
}

cmd_start() {
  (($# >= 1 && $# <= 2)) || usage
  ensure_binaries
  local dir port pid
  dir=$(abs_dir "$1")
  port=${2:-}

  if pid=$(live_pid "$dir") && [[ -s $dir/port ]]; then
    local running_port
    running_port=$(<"$dir/port")
    if [[ -n $port && $port != "$running_port" ]]; then
      echo "dovecot.sh: already running in $dir on port $running_port (asked for $port)" >&2
    fi
    greeting "$running_port" "$START_TIMEOUT" ||
      die "master pid $pid from $dir/run/master.pid does not greet on port $running_port"
    echo "127.0.0.1 $running_port"
    return 0
  fi

  if [[ -z $port ]]; then
    port=$(free_port)
  fi
  [[ $port =~ ^[0-9]+$ ]] || die "bad port '$port'"

  chmod 755 -- "$dir"
  local live
  live=$(mail_root "$dir" make)
  if [[ ! -e $live/passwd ]]; then
    seed "$live"
  fi
  if [[ ${DOVECOT_TLS:-0} == 1 ]]; then
    make_cert "$dir"
  fi
  write_config "$dir" "$live" "$port"
  echo "$port" >"$dir/port"

  # The master daemonizes itself (new session); configuration errors come back here.
  if ! dovecot -c "$dir/dovecot.conf" </dev/null >"$dir/start.log" 2>&1; then
    cat "$dir/start.log" >&2
    tail -n 20 "$dir/dovecot.log" >&2 2>/dev/null || true
    die "dovecot did not start (config: $dir/dovecot.conf)"
  fi
  if ! greeting "$port" "$START_TIMEOUT"; then
    echo "dovecot.sh: no '* OK' greeting on 127.0.0.1:$port within ${START_TIMEOUT}s; tail of dovecot.log:" >&2
    tail -n 20 "$dir/dovecot.log" >&2 2>/dev/null || true
    cmd_stop "$dir" || true
    exit 1
  fi
  echo "127.0.0.1 $port"
}

cmd_stop() {
  (($# == 1)) || usage
  local dir="$1" pid live
  [[ -d $dir ]] || return 0
  dir=$(cd -- "$dir" && pwd -P)
  if pid=$(live_pid "$dir"); then
    stop_pid "$pid" "$STOP_TIMEOUT"
  fi
  # The mail root this script made under /tmp goes with the server.
  live=$(mail_root "$dir")
  if [[ $live != "$dir" && $live == /tmp/inlookup-dovecot.* && -d $live && ! -L $live && -O $live ]]; then
    rm -rf -- "$live"
    rm -f -- "$dir/mailroot" "$dir/home" "$dir/run"
  fi
}

cmd_adduser() {
  (($# == 3)) || usage
  local dir
  [[ -d $1 ]] || die "no such state dir '$1'"
  dir=$(cd -- "$1" && pwd -P)
  add_user "$(mail_root "$dir")" "$2" "$3"
  # passwd-file is re-read at most once a second, so a change made in the same second
  # as the last login could go unseen: a reload restarts the auth process at once.
  local pid
  if pid=$(live_pid "$dir"); then
    kill -HUP "$pid"
  fi
}

main() {
  (($# >= 1)) || usage
  local sub="$1"
  shift
  case "$sub" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    port) cmd_port "$@" ;;
    adduser) cmd_adduser "$@" ;;
    *) usage ;;
  esac
}

main "$@"
