#!/usr/bin/env bash
# Usage: scripts/deps.sh [GROUP...]
#
# Installs the tools the tests and benchmarks need, only where missing.
# Groups: mariadb dovecot runit daemontools nc hyperfine cc man  (no argument = all).
# Checks each command with `command -v`; runs `apt-get update -qq` once, and only
# if something is missing; then installs the missing Debian packages in one go.
# Prints one line per package installed and nothing when all is present.
# Needs root (or sudo) only when something has to be installed.
set -euo pipefail

ALL_GROUPS=(mariadb dovecot runit daemontools nc hyperfine cc man)

# group_checks GROUP: prints "command package" pairs, one a line.
# A command starting with / is checked as an executable path instead.
group_checks() {
  case "$1" in
    mariadb)
      printf '%s\n' \
        'mariadbd mariadb-server' \
        'mariadb-install-db mariadb-server' \
        'mariadb mariadb-client' \
        'mariadb-admin mariadb-client' \
        'python3 python3'
      ;;
    dovecot)
      printf '%s\n' \
        'dovecot dovecot-core' \
        'doveconf dovecot-core' \
        '/usr/lib/dovecot/imap dovecot-imapd' \
        'openssl openssl' \
        'python3 python3'
      ;;
    runit) printf '%s\n' 'runsv runit' 'sv runit' ;;
    daemontools) printf '%s\n' 'multilog daemontools' 'svc daemontools' ;;
    nc) printf '%s\n' 'nc netcat-openbsd' ;;
    hyperfine) printf '%s\n' 'hyperfine hyperfine' ;;
    cc) printf '%s\n' 'cc gcc' ;;
    man) printf '%s\n' 'man man-db' 'groff groff-base' ;;
    *)
      echo "deps.sh: unknown group '$1' (known: ${ALL_GROUPS[*]})" >&2
      exit 2
      ;;
  esac
}

have() {
  if [[ $1 == /* ]]; then
    [[ -x $1 ]]
  else
    command -v "$1" >/dev/null 2>&1
  fi
}

main() {
  local groups=("$@")
  if ((${#groups[@]} == 0)); then
    groups=("${ALL_GROUPS[@]}")
  fi

  local group cmd pkg
  for group in "${groups[@]}"; do
    group_checks "$group" >/dev/null # exits 2 on an unknown group
  done

  local -a missing=()
  local -A seen=()
  for group in "${groups[@]}"; do
    while read -r cmd pkg; do
      if ! have "$cmd" && [[ -z ${seen[$pkg]:-} ]]; then
        seen[$pkg]="$cmd"
        missing+=("$pkg")
      fi
    done < <(group_checks "$group")
  done

  if ((${#missing[@]} == 0)); then
    return 0
  fi

  local -a sudo=()
  if ((EUID != 0)); then
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update -qq
  # Installing starts no service here (no init system); daemons are started by
  # scripts/mariadb.sh and scripts/dovecot.sh as needed.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    -o Dpkg::Use-Pty=0 "${missing[@]}" >/dev/null
  for pkg in "${missing[@]}"; do
    echo "installed ${pkg} (for ${seen[$pkg]})"
  done
}

main "$@"
