#!/usr/bin/env bash
# Usage: scripts/check-deb.sh
#
# Builds the .deb (scripts/build-deb.sh) and checks it as Debian and an administrator would:
#   - lintian: no errors (its warnings are shown), run as nobody;
#   - the control part: the synopsis is packaging/synopsis, whole; shlibs names libinquery.so.0;
# then installs it with dpkg -i and checks:
#   - both binaries run; every man page renders with `man -l`;
#   - every document the shipped README names (docs/…, sql/…) is in the package;
#   - libinquery.so.0 has the SONAME libinquery.so.0, libinquery.so links to it, ldconfig
#     knows it; libinquery.a has no debug sections or bitcode; a C program builds against
#     the installed header with pkg-config, records libinquery.so.0 and runs, and links
#     statically against libinquery.a too;
#   - the service template and install script are in place;
#   - inlookup.service: `systemd-analyze verify` is silent about it; it is installed but not
#     enabled (`systemctl --root=/ is-enabled`, no .wants link) and was not started; its
#     EnvironmentFile /etc/default/inlookup is a conffile, mode 0600, with every setting of
#     the service template; the system user inlookup exists.
# Then purges the package again (also on failure), and removes the user inlookup if this
# run's install made it. Needs root; refuses to run where a package named inlookup is
# already installed, so it never removes one it did not install.
set -euo pipefail

# grep -q stops reading at the first match, and under pipefail the writer's SIGPIPE then
# fails the pipeline (seen with `ldconfig -p`): read everything, print nothing.
matches() { grep "$@" >/dev/null; }
cd "$(dirname "$0")/.."

PROG=check-deb.sh
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

((EUID == 0)) || die "needs root (dpkg -i)"
if dpkg-query -W -f='${Status}' inlookup 2>/dev/null | matches 'ok installed'; then
  die "a package named inlookup is already installed; not touching it"
fi
scripts/deps.sh cc man debcheck

deb=$(scripts/build-deb.sh | tail -n 1)
[[ -f $deb ]] || die "build-deb.sh printed no .deb"
scratch=$(mktemp -d)
chmod 755 "$scratch"
user_existed=0
getent passwd inlookup >/dev/null && user_existed=1
cleanup() {
  dpkg -P inlookup >/dev/null 2>&1 || true
  if ((!user_existed)) && getent passwd inlookup >/dev/null; then
    userdel inlookup >/dev/null 2>&1 || true
    getent group inlookup >/dev/null && groupdel inlookup >/dev/null 2>&1
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT

# --- the package file ------------------------------------------------------------------
cp "$deb" "$scratch/"
chmod 644 "$scratch/${deb##*/}"
echo "check-deb.sh: lintian $(basename "$deb")"
lintian_rc=0
(cd "$scratch" && setpriv --reuid=nobody --regid=nogroup --clear-groups \
  env HOME="$scratch" lintian --fail-on error --tag-display-limit 0 "${deb##*/}") \
  >"$scratch/lintian.out" 2>&1 || lintian_rc=$?
sed 's/^/  /' "$scratch/lintian.out"
((lintian_rc == 0)) || die "lintian reports errors (exit $lintian_rc)"

synopsis=$(dpkg-deb -f "$deb" Description | sed -n 1p)  # sed reads it all: no SIGPIPE under pipefail
[[ $synopsis == "$(head -n 1 packaging/synopsis)" ]] ||
  die "synopsis '$synopsis' is not packaging/synopsis"
((${#synopsis} < 80)) || die "synopsis longer than 79 characters"
dpkg-deb -I "$deb" shlibs | matches -x 'libinquery 0 inlookup (>= .*)' || die "no shlibs for libinquery.so.0"
maintainer=$(dpkg-deb -f "$deb" Maintainer)
placeholder='@[^>]*(\.invalid|\.example|example\.(com|org|net))>'
if [[ $maintainer =~ $placeholder ]]; then
  echo "check-deb.sh: warning: Maintainer is a placeholder ($maintainer): set it in" \
    "inlookup/Cargo.toml and packaging/ (or DEBFULLNAME and DEBEMAIL)" >&2
fi

# --- installed ---------------------------------------------------------------------------
# A unit would be started here only by the package's own scripts: catch that as well.
started_before=$(pgrep -x inlookup -u inlookup 2>/dev/null || true)
dpkg -i "$deb" >"$scratch/dpkg.out" 2>&1 || {
  cat "$scratch/dpkg.out" >&2
  die "dpkg -i failed"
}
echo "check-deb.sh: installed $(basename "$deb")"

inlookup --version
inquerytest --version
for page in man8/inlookup.8 man1/inquerytest.1 man3/inquery.3; do
  out=$(man -l "/usr/share/man/$page.gz" 2>&1 >/dev/null | grep -v '^$' || true)
  [[ -z $out ]] || die "man -l $page: $out"
  man -l "/usr/share/man/$page.gz" 2>/dev/null | matches '^NAME' || die "man -l $page shows no NAME"
done
[[ -x /usr/share/inlookup/service/inlookup/run ]] || die "no service template"
[[ -x /usr/share/inlookup/install-service.sh ]] || die "no install-service.sh"

# The documents the shipped README names: beside it, or installed as man pages.
doc=/usr/share/doc/inlookup
# shellcheck disable=SC2016 # the backquotes are Markdown's
grep -q '`\.\./' "$doc/README.md" && die "the README names a file outside the repository: $(grep -o '`\.\./[^`]*`' "$doc/README.md" | sed -n 1p)"
while read -r path; do
  case $path in
    docs/man/*) want=/usr/share/man/man${path##*.}/${path##*/}.gz ;;
    *) want=$doc/$path ;;
  esac
  [[ -e $want ]] || die "the README names $path, but the package has no $want"
done < <(
  # shellcheck disable=SC2016
  grep -o '`\(docs\|sql\)/[^` ]*`' "$doc/README.md" | tr -d '`' | sort -u)

# libinquery: the SONAME, the development link, ldconfig; the archive stripped.
soname=$(readelf -d /usr/lib/libinquery.so.0 | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ $soname == libinquery.so.0 ]] || die "libinquery.so.0 has SONAME '$soname'"
[[ $(readlink /usr/lib/libinquery.so) == libinquery.so.0 ]] || die "libinquery.so is not a link to libinquery.so.0"
# The ldconfig trigger is activate-noawait: dpkg may leave it pending past `dpkg -i` (seen
# once in a fresh clone's run); process what is pending before judging it.
if ! ldconfig -p | matches 'libinquery\.so\.0 '; then
  dpkg --triggers-only --pending >>"$scratch/dpkg.out" 2>&1 || true
  ldconfig -p | matches 'libinquery\.so\.0 ' || {
    cat "$scratch/dpkg.out" >&2
    die "ldconfig does not know libinquery.so.0 (the trigger)"
  }
fi
if objdump -h /usr/lib/libinquery.a 2>/dev/null | matches -E ' \.(debug_[a-z]+|llvmbc) '; then
  die "libinquery.a has debug sections or bitcode"
fi

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
readelf -d "$scratch/t" | matches 'NEEDED.*\[libinquery\.so\.0\]' || die "the program does not record libinquery.so.0"
INFIFO="$scratch/no-such-fifo" "$scratch/t" || die "the C program against the package failed ($?)"
# shellcheck disable=SC2046
cc "$scratch/t.c" $(pkg-config --cflags inquery) /usr/lib/libinquery.a \
  $(pkg-config --static --libs-only-l inquery | sed 's/-linquery//') -o "$scratch/t-static"
readelf -d "$scratch/t-static" | matches libinquery && die "the static program still needs libinquery.so"
INFIFO="$scratch/no-such-fifo" "$scratch/t-static" || die "the program linked with libinquery.a failed ($?)"

# inlookup.service: verified, installed, not enabled, not started; its settings.
unit=/usr/lib/systemd/system/inlookup.service
[[ -f $unit ]] || die "no $unit"
# verify also loads the units it names (After=, WantedBy=): only lines about this one count.
verify_out=$(systemd-analyze verify "$unit" 2>&1 || true)
if [[ -z $verify_out ]]; then
  echo "check-deb.sh: systemd-analyze verify $unit: no output"
else
  echo "check-deb.sh: systemd-analyze verify $unit:"
  printf '  %s\n' "$verify_out"
fi
if grep -qi 'inlookup' <<<"$verify_out"; then
  die "systemd-analyze verify complains about inlookup.service"
fi
state=$(systemctl --root=/ is-enabled inlookup.service 2>&1 || true)
[[ $state == disabled ]] || die "inlookup.service is '$state' after install, not disabled"
if compgen -G '/etc/systemd/system/*.wants/inlookup.service' >/dev/null; then
  die "a .wants link enables inlookup.service"
fi
started_after=$(pgrep -x inlookup -u inlookup 2>/dev/null || true)
[[ $started_after == "$started_before" ]] || die "installing started inlookup"
env_file=/etc/default/inlookup
[[ $(stat -c %a "$env_file") == 600 ]] || die "$env_file is not mode 0600"
dpkg-query -W -f='${Conffiles}\n' inlookup | matches " $env_file " || die "$env_file is not a conffile"
for f in service/inlookup/variables/*; do
  name=${f##*/}
  case $name in README | INLOOKUP_USER | PATH) continue ;; esac
  grep -q "^#\{0,1\}$name=" "$env_file" || die "$env_file lacks $name"
done
getent passwd inlookup | matches ':/usr/sbin/nologin$' || die "no system user inlookup"

echo "check-deb.sh: ok (lintian: no errors; binaries run, man pages render, the README's" \
  "documents are there, libinquery.so.0 with its SONAME and the .a link from C;" \
  "inlookup.service verified, installed, not enabled, not started)"
