#!/usr/bin/env bash
# Usage: scripts/test.sh [cargo test args...]
#
# Runs the whole test suite, as CI does (.ci/run calls this): installs what is missing
# (MariaDB, Dovecot, runit, daemontools, a C compiler, man, stunnel, Roundcube's IMAP library
# with php-cli; scripts/deps.sh, which starts and
# enables no system service), makes sure a MariaDB answers (the
# machine's own on 127.0.0.1:3306, else a throwaway one in target/test-services that this
# script stops again at the end), then: rustfmt check, clippy with warnings as errors, and
# every test of the workspace (unit, doc, in-process fault tests, end-to-end tests against
# the real daemon, MariaDB and Dovecot); then, as root and with no arguments, the .deb:
# built, linted, installed with dpkg -i, checked and removed (scripts/check-deb.sh, which
# installs lintian and systemd-analyze, and cargo-deb, when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh mariadb dovecot runit daemontools cc man stunnel roundcube

state="$PWD/target/test-services"
mkdir -p "$state"
line=$(scripts/mariadb.sh ensure "$state/mariadb")
read -r host port <<<"$line"
if [ -f "$state/mariadb/mysqld.pid" ] && kill -0 "$(cat "$state/mariadb/mysqld.pid")" 2>/dev/null; then
  # The machine had no usable MariaDB: the throwaway one is ours to stop.
  trap 'scripts/mariadb.sh stop "$state/mariadb" >/dev/null 2>&1 || true' EXIT
fi
export INLOOKUP_TEST_MYSQL="$host:$port"
echo "test.sh: MariaDB at $INLOOKUP_TEST_MYSQL"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace "$@"
if [ "$#" -eq 0 ] && [ "$(id -u)" = 0 ]; then
  scripts/check-deb.sh
else
  echo "test.sh: .deb check skipped (needs root and no test filter)"
fi
