#!/usr/bin/env bash
# Usage: scripts/load-db.sh HOST PORT DBNAME
#
# Creates database DBNAME on the MariaDB at HOST:PORT if it is missing, then loads
# sql/schema.sql and sql/demo.sql into it as root (empty password, or MYSQL_PWD).
# Rerunnable: the schema uses CREATE TABLE IF NOT EXISTS and the demo rows are
# deleted and inserted afresh.
set -euo pipefail

if (($# != 3)); then
  sed -n '2,7s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
fi

host=$1
port=$2
db=$3
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)

if [[ ! $port =~ ^[0-9]+$ ]]; then
  echo "load-db.sh: bad port '$port'" >&2
  exit 2
fi
if [[ ! $db =~ ^[A-Za-z0-9_]+$ ]]; then
  echo "load-db.sh: database name must be letters, digits and _ only: '$db'" >&2
  exit 2
fi

client=(mariadb --no-defaults --connect-timeout=5 -h "$host" -P "$port" -uroot)

"${client[@]}" -e "CREATE DATABASE IF NOT EXISTS \`$db\`"
"${client[@]}" "$db" <"$root/sql/schema.sql"
"${client[@]}" "$db" <"$root/sql/demo.sql"
