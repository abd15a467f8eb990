#!/usr/bin/env bash
# Usage: scripts/install-service.sh [OPTION...] SERVICE_DIR
#
# Installs inlookup's daemontools/runit service directory at SERVICE_DIR (for example
# /etc/sv/inlookup, or /service/inlookup.infifo) from the template service/inlookup.
# Idempotent: run, log/run and variables/README are replaced; a variable already in
# SERVICE_DIR/variables is kept unless an option sets it; missing ones get their defaults.
#
#   --user USER        INLOOKUP_USER, the user inlookup and its logger run as
#   --infifo NAME      INFIFO (a name inside INFIFODIR, or an absolute path)
#   --fifo-dir DIR     INFIFODIR
#   --tmp-dir DIR      FIFOTMPDIR, where clients make their reply FIFOs
#   --controldir DIR   CONTROLDIR
#   --bindir DIR       look for inlookup in DIR first (sets variables/PATH)
#   --set NAME=VALUE   any variable; an empty VALUE sets it to the empty string
#   --unset NAME       leave NAME unset (an empty file)
#   --create-user      create USER as a system user (and group) if it does not exist
#   --down             add SERVICE_DIR/down: not started until `sv up` / `svc -u`
#   --link SCANDIR     then symlink SERVICE_DIR into SCANDIR (/service, /etc/service), which
#                      makes svscan or runsvdir start it
#   --template DIR     the template (default: ./service/inlookup beside this script, as the
#                      .deb installs it, else ../service/inlookup of the source tree)
#
# Example: scripts/install-service.sh --user qmaild --set MYSQL_HOST=db1 /etc/sv/inlookup
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

die() {
  echo "install-service.sh: $*" >&2
  exit 1
}

usage() {
  sed -n '2,24s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

# valid_name NAME: a variable name envdir can carry.
valid_name() {
  [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "bad variable name '$1'"
}

# write_file PATH CONTENT MODE: replaces PATH atomically (a supervisor may be running it).
write_file() {
  local tmp="$1.new.$$"
  printf '%s' "$2" >"$tmp"
  chmod "$3" "$tmp"
  mv -f "$tmp" "$1"
}

# copy_file SRC DST MODE: replaces DST with a copy of SRC, atomically.
copy_file() {
  local tmp="$2.new.$$"
  cp "$1" "$tmp"
  chmod "$3" "$tmp"
  mv -f "$tmp" "$2"
}

main() {
  local template="" dir="" user="" create_user=0 down=0 scandir="" bindir=""
  # Settings from options, in order: "NAME=VALUE" sets, "NAME" alone unsets.
  local -a settings=()
  while (($#)); do
    case "$1" in
      --user) user=${2:?--user needs a value}; settings+=("INLOOKUP_USER=$2"); shift 2 ;;
      --infifo) settings+=("INFIFO=${2:?--infifo needs a value}"); shift 2 ;;
      --fifo-dir) settings+=("INFIFODIR=${2:?--fifo-dir needs a value}"); shift 2 ;;
      --tmp-dir) settings+=("FIFOTMPDIR=${2:?--tmp-dir needs a value}"); shift 2 ;;
      --controldir) settings+=("CONTROLDIR=${2:?--controldir needs a value}"); shift 2 ;;
      --bindir) bindir=${2:?--bindir needs a value}; shift 2 ;;
      --set)
        [[ ${2:-} == *=* ]] || die "--set needs NAME=VALUE"
        valid_name "${2%%=*}"
        settings+=("$2")
        shift 2
        ;;
      --unset) valid_name "${2:?--unset needs a name}"; settings+=("$2"); shift 2 ;;
      --create-user) create_user=1; shift ;;
      --down) down=1; shift ;;
      --link) scandir=${2:?--link needs a directory}; shift 2 ;;
      --template) template=${2:?--template needs a directory}; shift 2 ;;
      -h | --help) usage ;;
      -*) die "unknown option $1" ;;
      *)
        [[ -z $dir ]] || die "one SERVICE_DIR only"
        dir=$1
        shift
        ;;
    esac
  done
  [[ -n $dir ]] || usage

  if [[ -z $template ]]; then
    for t in "$HERE/service/inlookup" "$HERE/../service/inlookup"; do
      if [[ -f $t/run ]]; then
        template=$t
        break
      fi
    done
  fi
  [[ -n $template && -f $template/run && -f $template/log/run && -d $template/variables ]] ||
    die "no service template found (give --template DIR)"

  if [[ -n $bindir ]]; then
    bindir=$(cd "$bindir" && pwd -P) || die "--bindir $bindir: no such directory"
    [[ -x $bindir/inlookup ]] || echo "install-service.sh: warning: no $bindir/inlookup yet" >&2
    settings+=("PATH=$bindir:$(head -n 1 "$template/variables/PATH")")
  fi

  if [[ -n $user ]] && ! id -u "$user" >/dev/null 2>&1; then
    if ((create_user)); then
      useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$user"
      echo "created system user $user"
    else
      die "no user $user (create it, or pass --create-user)"
    fi
  fi

  mkdir -p "$dir/log" "$dir/variables"
  dir=$(cd "$dir" && pwd -P)
  chmod 0755 "$dir" "$dir/log" "$dir/variables"

  copy_file "$template/run" "$dir/run" 0755
  copy_file "$template/log/run" "$dir/log/run" 0755
  copy_file "$template/variables/README" "$dir/variables/README" 0644

  # Defaults for the variables this directory does not have yet (an operator's edits stay).
  local f name
  for f in "$template/variables"/*; do
    name=${f##*/}
    [[ $name == README ]] && continue
    if [[ ! -e $dir/variables/$name ]]; then
      copy_file "$f" "$dir/variables/$name" 0644
    fi
  done

  local s value
  for s in "${settings[@]}"; do
    if [[ $s == *=* ]]; then
      name=${s%%=*}
      value=${s#*=}
      [[ $value != *$'\n'* ]] || die "$name: a value is one line"
      write_file "$dir/variables/$name" "$value"$'\n' 0644
    else
      write_file "$dir/variables/$s" "" 0644
    fi
  done
  # The passwords are secrets: root (who runs ./run) reads them, nobody else.
  chmod 0600 "$dir/variables/MYSQL_PASSWD" "$dir/variables/CNTRL_PASSWD"

  if ((down)); then
    : >"$dir/down"
  fi

  if [[ -n $scandir ]]; then
    local link
    link="$scandir/$(basename "$dir")"
    if [[ -L $link && $(readlink "$link") == "$dir" ]]; then
      :
    elif [[ -e $link || -L $link ]]; then
      die "$link exists and is not a link to $dir"
    else
      ln -s "$dir" "$link"
    fi
  fi
  echo "installed $dir"
}

main "$@"
