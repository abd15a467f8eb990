#!/usr/bin/env bash
# Usage: scripts/deps.sh [GROUP...]
#
# Installs the Debian packages the scripts here need, only where missing.
# Groups (no argument = all):
#   mariadb      MariaDB server and client      (demo, tests, bench)
#   dovecot      Dovecot IMAP, openssl          (demo, tests, bench)
#   runit        runsv, sv                      (tests: the service directory under runsv)
#   daemontools  envdir, multilog, svc          (the service directory's run scripts)
#   cc           a C compiler                   (tests: the C ABI; check-deb.sh)
#   man          man-db, groff                  (tests and check-deb.sh: man pages render)
#   deb          patchelf, python3              (build-deb.sh)
#   debcheck     lintian, systemd-analyze       (check-deb.sh)
#   stunnel      stunnel4                       (tests: a TLS client for TCP_TLS_CERT)
#   roundcube    roundcube-core, php-cli,       (tests: Roundcube's IMAP library and Python's
#                python3                         imaplib at the IMAP front door)
#   imapproxy    Debian's imapproxy             (bench: the door against imapproxy)
#
# Checks each command with `command -v`; runs `apt-get update -qq` once, and only if something
# is missing; then installs the missing packages in one go, quietly (apt's output goes to a
# log that is shown only on failure), and says in one line on stderr what it installed.
# Nothing is printed when all is present. Needs root (or sudo) only when something has to be
# installed.
#
# Installing never starts or enables a system service: while apt runs, a policy-rc.d forbids
# every start (an existing /usr/sbin/policy-rc.d that already forbids them is left as it is;
# one that does not makes this script refuse), and any unit or init script the install
# enabled (a new link in /etc/systemd/system/*.wants or /etc/rcN.d/S*) is disabled again, the
# way Debian's maintainer scripts record it, so upgrades keep it disabled. The scripts here
# start their own throwaway MariaDB and Dovecot (scripts/mariadb.sh, scripts/dovecot.sh).
set -euo pipefail

ALL_GROUPS=(mariadb dovecot runit daemontools cc man deb debcheck stunnel roundcube imapproxy)
POLICY=/usr/sbin/policy-rc.d

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
    daemontools) printf '%s\n' 'multilog daemontools' 'svc daemontools' 'envdir daemontools' ;;
    cc) printf '%s\n' 'cc gcc' 'pkg-config pkgconf' ;;
    man) printf '%s\n' 'man man-db' 'groff groff-base' ;;
    deb) printf '%s\n' 'patchelf patchelf' 'strip binutils' 'python3 python3' ;;
    debcheck) printf '%s\n' 'lintian lintian' 'systemd-analyze systemd' ;;
    stunnel) printf '%s\n' 'stunnel4 stunnel4' ;;
    roundcube)
      printf '%s\n' 'php php-cli' 'python3 python3' \
        '/usr/share/roundcube/bin/update.sh roundcube-core'
      ;;
    imapproxy) printf '%s\n' '/usr/sbin/imapproxyd imapproxy' ;;
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

# enable_links: every link that enables a unit or an init script at boot, one a line.
enable_links() {
  find /etc/systemd/system -mindepth 2 -maxdepth 2 -type l \
    \( -path '*.wants/*' -o -path '*.requires/*' -o -path '*.upholds/*' \) 2>/dev/null || true
  find /etc/rc[0-6S].d -maxdepth 1 -type l -name 'S*' 2>/dev/null || true
}

# disable_new LINKS_BEFORE: disables what the install enabled (links not in LINKS_BEFORE);
# prints the names, space-separated.
disable_new() {
  local before=$1 link name done_names=" " out=()
  while read -r link; do
    [[ -n $link ]] || continue
    if [[ $link == /etc/systemd/* ]]; then
      name=${link##*/}
      [[ $done_names == *" $name "* ]] && continue
      # deb-systemd-helper records the state Debian's maintainer scripts look at (an
      # upgrade then keeps the unit disabled); it also removes the links.
      if command -v deb-systemd-helper >/dev/null 2>&1; then
        deb-systemd-helper disable "$name" >/dev/null 2>&1 || true
      fi
      if [[ -L $link ]]; then
        if [[ -d /run/systemd/system ]]; then
          systemctl disable --quiet "$name" >/dev/null 2>&1 || true
        else
          systemctl --root=/ disable --quiet "$name" >/dev/null 2>&1 || true
        fi
      fi
      [[ -L $link ]] && rm -f -- "$link"
    else
      name=${link##*/S[0-9][0-9]}
      [[ $done_names == *" $name "* ]] && continue
      update-rc.d "$name" disable >/dev/null 2>&1 || rm -f -- "$link"
    fi
    done_names+="$name "
    out+=("$name")
  done < <(comm -13 <(printf '%s\n' "$before" | sort) <(enable_links | sort))
  echo "${out[*]}"
}

# install_packages PKG...: apt-get install, quietly, with service starts forbidden; disables
# what the install enabled. Prints one line on stderr.
install_packages() {
  if ((EUID != 0)); then
    # All of it needs root (policy-rc.d, the links): run this script again as root.
    exec sudo "$0" "${GROUPS_ASKED[@]}"
  fi
  local log own_policy=0 before disabled rc=0
  log=$(mktemp /tmp/inlookup-deps.XXXXXX.log)

  if [[ -e $POLICY ]]; then
    local prc=0
    "$POLICY" deps-check start >/dev/null 2>&1 || prc=$?
    if ((prc != 101)); then
      echo "deps.sh: $POLICY exists and allows starting services (exit $prc, not 101);" \
        "not installing $* (install them yourself)" >&2
      exit 1
    fi
  else
    printf '#!/bin/sh\n# scripts/deps.sh (inlookup): no service starts while it installs.\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    own_policy=1
    trap 'rm -f -- "$POLICY"' EXIT
  fi
  before=$(enable_links)

  printf 'deps.sh: installing %s with apt-get (log: %s) ...' "$*" "$log" >&2
  {
    apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "$@"
  } >"$log" 2>&1 || rc=$?
  disabled=$(disable_new "$before")
  if ((own_policy)); then
    rm -f -- "$POLICY"
    trap - EXIT
  fi
  if ((rc != 0)); then
    echo " failed (exit $rc); the end of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
  if [[ -n $disabled ]]; then
    echo " done; left disabled: $disabled" >&2
  else
    echo " done" >&2
  fi
  rm -f -- "$log"
}

main() {
  GROUPS_ASKED=("$@")
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
  install_packages "${missing[@]}"
}

# Sourced (by a test), only the functions are defined.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
