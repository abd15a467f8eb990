#!/usr/bin/env bash
# Usage: scripts/demo.sh
#
# The main job, from a fresh clone: installs MariaDB and Dovecot if missing, uses the
# machine's MariaDB on 127.0.0.1:3306 or starts a throwaway one, starts a throwaway Dovecot
# (users alice/secret, bob/hunter2), loads IndiMail's schema and the demo data into a
# database `inlookup_demo`, builds and starts inlookup (as nobody when run as root), and
# asks every kind of question twice: first answered from MySQL, then from the cache, with
# the time each took; then PING, two IMAP "page views" through inlookup (the second reuses
# the connection) and IMAP password checks (a miss, then the auth cache), and each of the
# seven kinds through inquerytest; then two webmail page views through the IMAP front door
# (plain IMAP on 127.0.0.1:1144, IMAP_LISTEN) with the number of logins Dovecot logged for
# them. One release build (scripts/lib.sh release_build, shared
# with build-deb.sh): nothing is rebuilt when nothing changed.
# On a terminal it then keeps inlookup running for you to try until Ctrl-C; otherwise it
# stops at once. It stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
PROG=demo.sh
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
state="$root/target/demo"
mkdir -p "$state"

scripts/deps.sh mariadb dovecot cc
echo "== building (release; cargo's lines follow, about 2 minutes on a fresh clone)" >&2
release_build

line=$(scripts/mariadb.sh ensure "$state/mariadb")
read -r host port <<<"$line"
echo "== MariaDB at $host:$port; loading sql/schema.sql and sql/demo.sql into inlookup_demo" >&2
scripts/load-db.sh "$host" "$port" inlookup_demo

line=$(scripts/dovecot.sh start "$state/dovecot")
read -r imap_host imap_port <<<"$line"
echo "== Dovecot (throwaway) at $imap_host:$imap_port" >&2

run="$state/run"
rm -rf "$run"
mkdir -p "$run/fifo" "$run/tmp" "$run/control"
chmod 755 "$state" "$run"
user_args=()
if [ "$(id -u)" = 0 ]; then
  chown nobody:nogroup "$run/fifo"
  chgrp nogroup "$run/tmp"
  user_args=(--user nobody)
fi
chmod 2770 "$run/tmp"

inlookup_pid=
cleanup() {
  if [ -n "$inlookup_pid" ]; then
    kill -TERM "$inlookup_pid" 2>/dev/null || true
    wait "$inlookup_pid" 2>/dev/null || true
  fi
  scripts/dovecot.sh stop "$state/dovecot" >/dev/null 2>&1 || true
  if [ -f "$state/mariadb/mysqld.pid" ]; then
    scripts/mariadb.sh stop "$state/mariadb" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export MYSQL_HOST="$host" MYSQL_VPORT="$port" MYSQL_USER=root MYSQL_PASSWD='' MYSQL_DATABASE=inlookup_demo
export INFIFODIR="$run/fifo" FIFOTMPDIR="$run/tmp" CONTROLDIR="$run/control"
export IMAP_HOST="$imap_host" IMAP_PORT="$imap_port"
# The IMAP front door, as the service template sets it (imapproxy's port is 1143).
export IMAP_LISTEN=${IMAP_LISTEN:-127.0.0.1:1144}
target/release/inlookup "${user_args[@]}" 2>"$run/inlookup.log" &
inlookup_pid=$!
for _ in $(seq 100); do
  [ -p "$run/fifo/infifo" ] && break
  kill -0 "$inlookup_pid" 2>/dev/null || { cat "$run/inlookup.log" >&2; exit 1; }
  sleep 0.05
done
# Its start line, whole, one setting a line (it is long: every effective setting).
echo "== inlookup running (pid $inlookup_pid), log in $run/inlookup.log:" >&2
grep -m 1 'started: ' "$run/inlookup.log" | sed -e 's/^inlookup: info: //' -e 's/; /\n/g' |
  sed 's/^/     /' >&2
echo
IMAP_DEMO=alice:secret,bob:hunter2 target/release/examples/demo "$run/fifo/infifo" "$run/tmp"

echo
echo "== the same daemon through inquerytest (IndiMail's options; exit code in brackets)"
export INFIFO="$run/fifo/infifo"
# ask SHOWN ARG...: prints "$ SHOWN", runs inquerytest ARG... on this daemon (stdin passed
# on), then its exit code in brackets.
ask() {
  local rc=0
  echo "\$ $1"
  shift
  target/release/inquerytest -i "$INFIFO" "$@" || rc=$?
  echo "[$rc]"
}
for args in "-q 1 testuser@example.com" "-q 3 alice@example.com" "-q 4 testuser@example.com" \
  "-q 2 alice@example.com 192.0.2.10" "-q 5 sales@example.com" "-q 6 example.com" "-q 7 example.org"; do
  # shellcheck disable=SC2086 # the options are meant to split
  ask "inquerytest $args" $args
done
echo secret | ask "echo secret | inquerytest imap login alice cli-session" imap login alice cli-session
ask "inquerytest imap cmd cli-session 'c1 STATUS INBOX (MESSAGES UNSEEN)'" imap cmd cli-session 'c1 STATUS INBOX (MESSAGES UNSEEN)'
ask "inquerytest imap logout cli-session" imap logout cli-session

echo
echo "== two webmail page views through the IMAP front door ($IMAP_LISTEN), plain IMAP"
door_host=${IMAP_LISTEN%%:*} door_port=${IMAP_LISTEN##*:}
dovecot_logins() { grep -c 'Login: user=<alice>' "$state/dovecot/dovecot.log" || true; }
before=$(dovecot_logins)
for view in 1 2; do
  echo "-- page view $view: LOGIN, SELECT, FETCH 1:* (FLAGS ENVELOPE), LOGOUT (pipelined)"
  exec 3<>"/dev/tcp/$door_host/$door_port"
  printf 'a1 LOGIN alice secret\r\na2 SELECT INBOX\r\na3 FETCH 1:* (FLAGS ENVELOPE)\r\na4 LOGOUT\r\n' >&3
  timeout 10 cat <&3 | tr -d '\r' | cut -c1-110
  exec 3<&-
done
sleep 0.2
echo "-- Dovecot logged $(($(dovecot_logins) - before)) login(s) of alice for these 2 page views"
echo "\$ inquerytest stats"
target/release/inquerytest -i "$INFIFO" stats

if [ -t 0 ]; then
  cat <<MSG

inlookup keeps running. Try, in another shell:
  INFIFO=$run/fifo/infifo FIFOTMPDIR=$run/tmp $root/target/release/inquerytest -q 3 -i "" alice@example.com
  python3 -c 'import imaplib; m=imaplib.IMAP4("$door_host",$door_port); m.login("alice","secret"); print(m.select("INBOX")); m.logout()'
  kill -USR1 $inlookup_pid; tail $run/inlookup.log
Ctrl-C stops inlookup (and the throwaway MariaDB, if this script started one).
MSG
  wait "$inlookup_pid"
fi
