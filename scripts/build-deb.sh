#!/usr/bin/env bash
# Usage: scripts/build-deb.sh [OUTPUT_DIR]
#
# Builds the inlookup .deb from the workspace: the binaries (inlookup, inquerytest),
# libinquery.so.0 (SONAME libinquery.so.0, with the libinquery.so development link) and
# libinquery.a, inquery.h, inquery.pc, the man pages, the documentation the README points to
# (/usr/share/doc/inlookup/docs), the daemontools/runit service directory template
# (/usr/share/inlookup/service/inlookup, with /usr/share/inlookup/install-service.sh) and the
# systemd unit inlookup.service (installed, not enabled) with its settings in
# /etc/default/inlookup. Packaging files: packaging/ (changelog, copyright, the unit, the
# postinst that makes the system user inlookup) and [package.metadata.deb] in
# inlookup/Cargo.toml.
#
# Installs cargo-deb (`cargo install cargo-deb --locked`, about 3 minutes the first time) and
# patchelf if missing, builds in release (scripts/lib.sh release_build, the demo's build),
# then packages. Prints the path of the .deb last (default OUTPUT_DIR: target/debian).
# DEBFULLNAME and DEBEMAIL, when both are set, are the Maintainer (as for dch).
#
# Then: dpkg -i target/debian/inlookup_*.deb, and see /usr/share/doc/inlookup/docs/operations.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
OUT=${1:-$ROOT/target/debian}

PROG=build-deb.sh
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

cd "$ROOT"
scripts/deps.sh deb
if ! cargo deb --version >/dev/null 2>&1; then
  echo "build-deb.sh: installing cargo-deb (cargo install cargo-deb --locked; about 3 minutes)" >&2
  cargo install cargo-deb --locked
fi

# Everything the package holds, in release (cargo deb --no-build packages what is built).
echo "build-deb.sh: building (release)" >&2
release_build
for page in inlookup.8 inquerytest.1 inquery.3; do
  [[ -f docs/man/$page ]] || die "docs/man/$page is missing (scripts/gen-man.sh makes the generated ones)"
done

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | sed -n 1p)
changelog_version=$(sed -n '1s/^inlookup (\([^)]*\)).*/\1/p' packaging/changelog)
[[ $changelog_version == "$version-1" ]] ||
  die "packaging/changelog's last entry is $changelog_version, the workspace is $version: add an entry for $version-1"

release=${CARGO_TARGET_DIR:-$ROOT/target}/release
assets=target/deb-assets
rm -rf "$assets"
mkdir -p "$assets"

# libinquery.a without its debug sections and the LLVM bitcode rustc embeds in the standard
# library's objects (cargo deb --strip strips executables and .so files only; the archive
# holds all of std: 75 MB as built, 27.6 MB without debug sections, about 18 without the
# bitcode). The objects themselves, and their symbols, are what a C program links.
strip --strip-debug --remove-section=.llvmbc --remove-section=.llvmcmd \
  --remove-section=.comment --enable-deterministic-archives \
  -o "$assets/libinquery.a" "$release/libinquery.a"

# libinquery.so.0: stripped, with the SONAME a program linked against it records (rustc
# sets none), so the library can change ABI as libinquery.so.1 beside it.
strip --strip-unneeded --remove-section=.comment -o "$assets/libinquery.so.0" "$release/libinquery.so"
patchelf --set-soname libinquery.so.0 "$assets/libinquery.so.0"
chmod 644 "$assets/libinquery.so.0"

# inquery.pc for the package's paths (/usr/include, /usr/lib).
sed -e 's|@PREFIX@|/usr|' -e 's|@LIBDIR@|/usr/lib|' -e "s|@VERSION@|$version|" \
  inquery/inquery.pc.in | grep -v '^#' >"$assets/inquery.pc"

# /etc/default/inlookup, inlookup.service's EnvironmentFile: the service directory's
# variables/, the same defaults in the form systemd reads. A file holding a line sets the
# variable (an empty line: to ""); an empty file leaves it unset, here a comment.
# INLOOKUP_USER and PATH belong to the run script (under systemd: User= and ExecStart=).
{
  cat <<'HEAD'
# inlookup's settings for inlookup.service (systemd), one NAME=VALUE a line. The same
# settings, defaults and meanings as the daemontools/runit service directory's variables/:
# /usr/share/inlookup/service/inlookup/variables/README explains each. A commented line is
# unset: inlookup's built-in default (or control/host.mysql, for MYSQL_*) applies.
# After a change: systemctl restart inlookup (reload only flushes the cache).
# The user is the unit's User= (inlookup; change it with `systemctl edit inlookup`).
# This file holds the MySQL password: keep it mode 0600.
HEAD
  for f in service/inlookup/variables/*; do
    name=${f##*/}
    case $name in README | INLOOKUP_USER | PATH) continue ;; esac
    if [[ -s $f ]]; then
      value=$(head -n 1 "$f" | sed 's/[[:space:]]*$//')
      printf '%s=%s\n' "$name" "$value"
    else
      printf '#%s=\n' "$name"
    fi
  done
} >"$assets/inlookup.default"

maint=()
if [[ -n ${DEBFULLNAME:-} && -n ${DEBEMAIL:-} ]]; then
  maint=(--maintainer "$DEBFULLNAME <$DEBEMAIL>")
fi

mkdir -p "$OUT"
# --strip: the release profile keeps line tables for backtraces; the package need not.
echo "build-deb.sh: packaging" >&2
deb=$(cargo deb -p inlookup --no-build --strip --quiet "${maint[@]}" --output "$OUT")
[[ -f $deb ]] || die "cargo deb made no package"

# What cargo-deb cannot write, put into the package's control part:
# - DEBIAN/shlibs, so that packages built against libinquery.so.0 depend on this one;
# - the synopsis: cargo-deb takes the first 79 characters of the crate's description and
#   starts the long description with the rest. The synopsis is packaging/synopsis, followed
#   by the long description as written in [package.metadata.deb].
synopsis=$(head -n 1 packaging/synopsis)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -R "$deb" "$work/pkg"
echo "libinquery 0 inlookup (>= $version)" >"$work/pkg/DEBIAN/shlibs"
chmod 644 "$work/pkg/DEBIAN/shlibs"
python3 - "$work/pkg/DEBIAN/control" "$synopsis" inlookup/Cargo.toml <<'PY'
import sys, textwrap, tomllib
control, synopsis, manifest = sys.argv[1:]
with open(manifest, "rb") as f:
    long = tomllib.load(f)["package"]["metadata"]["deb"]["extended-description"]
lines = [l for p in long.split("\n\n") for l in textwrap.wrap(p, 79) + ["."]][:-1]
out, skip = [], False
for line in open(control).read().splitlines():
    if line.startswith("Description:"):
        out.append("Description: " + synopsis)
        out.extend(" " + l for l in lines)
        skip = True
    elif skip and line.startswith(" "):
        continue
    else:
        skip = False
        out.append(line)
open(control, "w").write("\n".join(out) + "\n")
PY
dpkg-deb --root-owner-group -Zxz --build "$work/pkg" "$deb" >/dev/null
echo "$deb"
