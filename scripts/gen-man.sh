#!/usr/bin/env bash
# Usage: scripts/gen-man.sh [--check] [--bindir DIR]
#
# Regenerates the man pages made from the clap definitions:
#   docs/man/inlookup.8     from `inlookup --generate-man`
#   docs/man/inquerytest.1  from `inquerytest --generate-man`
# each with the hand-written sections of docs/man/parts/PAGE.roff (when there is one) put in
# before its VERSION section. docs/man/inquery.3 is written by hand.
#
#   --bindir DIR  take the binaries from DIR (default: build them with cargo, debug profile)
#   --check       write nothing; exit 1 if a page differs from what would be generated
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
MAN=$ROOT/docs/man

PROG=gen-man.sh
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

usage() { usage_from_header 11; }

# splice PARTS: copies stdin to stdout with the file PARTS inserted before the first
# `.SH VERSION` line (at the end when there is none).
splice() {
  if [[ ! -f $1 ]]; then
    cat
    return
  fi
  awk -v parts="$1" '
    function insert() { while ((getline line < parts) > 0) print line; done = 1 }
    /^\.SH VERSION/ && !done { insert() }
    { print }
    END { if (!done) insert() }
  '
}

main() {
  local check=0 bindir=""
  while (($#)); do
    case "$1" in
      --check) check=1; shift ;;
      --bindir) bindir=${2:?--bindir needs a directory}; shift 2 ;;
      -h | --help) usage ;;
      *) die "unknown argument $1" ;;
    esac
  done
  if [[ -z $bindir ]]; then
    (cd "$ROOT" && cargo build --quiet -p inlookup -p inquerytest)
    bindir=$ROOT/target/debug
  fi

  local stale=0 page bin section
  NEW=$(mktemp)
  trap 'rm -f "$NEW" "$NEW.page"' EXIT
  for page in inlookup.8 inquerytest.1; do
    bin=${page%.*}
    section=${page##*.}
    [[ -x $bindir/$bin ]] || die "no $bindir/$bin (build it first)"
    "$bindir/$bin" --generate-man >"$NEW" || die "$bin --generate-man failed"
    grep -q "^\.TH $bin $section" "$NEW" || die "$bin --generate-man gave no $page"
    splice "$MAN/parts/$page.roff" <"$NEW" >"$NEW.page"
    mv -f "$NEW.page" "$NEW"
    if ((check)); then
      if ! cmp -s "$NEW" "$MAN/$page"; then
        echo "docs/man/$page is stale:" >&2
        diff -u "$MAN/$page" "$NEW" >&2 || true
        stale=1
      fi
    elif ! cmp -s "$NEW" "$MAN/$page"; then
      cp "$NEW" "$MAN/$page"
      echo "wrote docs/man/$page"
    fi
  done
  if ((stale)); then
    echo "gen-man.sh: run scripts/gen-man.sh to regenerate" >&2
    exit 1
  fi
}

main "$@"
