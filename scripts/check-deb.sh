#!/usr/bin/env bash
# Usage: scripts/check-deb.sh
#
# Builds the .deb (scripts/build-deb.sh), installs it with dpkg -i, and checks what an
# administrator would: both binaries run, every man page renders with `man -l`, the service
# template and install script are in place, and a C program builds against the installed
# header and library with pkg-config and links. Then removes the package again (it also
# removes it on failure). Needs root; refuses to run where a package named inlookup is
# already installed, so it never removes one it did not install.
set -euo pipefail
cd "$(dirname "$0")/.."

PROG=check-deb.sh
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

((EUID == 0)) || die "needs root (dpkg -i)"
if dpkg-query -W -f='${Status}' inlookup 2>/dev/null | grep -q 'ok installed'; then
  die "a package named inlookup is already installed; not touching it"
fi

deb=$(scripts/build-deb.sh | tail -n 1)
[[ -f $deb ]] || die "build-deb.sh printed no .deb"
scratch=$(mktemp -d)
cleanup() {
  dpkg -r inlookup >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap cleanup EXIT

dpkg -i "$deb" >/dev/null
echo "check-deb.sh: installed $(basename "$deb")"

inlookup --version
inquerytest --version
for page in man8/inlookup.8 man1/inquerytest.1 man3/inquery.3; do
  out=$(man -l "/usr/share/man/$page.gz" 2>&1 >/dev/null | grep -v '^$' || true)
  [[ -z $out ]] || die "man -l $page: $out"
  man -l "/usr/share/man/$page.gz" 2>/dev/null | grep -q '^NAME' || die "man -l $page shows no NAME"
done
[[ -x /usr/share/inlookup/service/inlookup/run ]] || die "no service template"
[[ -x /usr/share/inlookup/install-service.sh ]] || die "no install-service.sh"

cat >"$scratch/t.c" <<'C'
#include <stdio.h>
#include <inquery.h>
int main(void) {
	/* The header and the library agree on the result layout, and a query to a daemon that
	   is not there fails cleanly (NULL) instead of hanging. */
	if (inquery_result_size() != sizeof(struct inquery_result))
		return 2;
	return inquery(USER_QUERY, "nobody@example.invalid", 0) == NULL ? 0 : 3;
}
C
# shellcheck disable=SC2046 # pkg-config's words are meant to split
cc "$scratch/t.c" $(pkg-config --cflags --libs inquery) -o "$scratch/t"
INFIFO="$scratch/no-such-fifo" "$scratch/t" || die "the C program against the package failed ($?)"
echo "check-deb.sh: ok (binaries run, man pages render, C program links with pkg-config)"
