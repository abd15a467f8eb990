#!/usr/bin/env bash
# Usage: scripts/build-deb.sh [OUTPUT_DIR]
#
# Builds the inlookup .deb from the workspace: the binaries (inlookup, inquerytest),
# libinquery.so and .a, inquery.h, inquery.pc, the man pages and the service directory
# template (/usr/share/inlookup/service/inlookup, with /usr/share/inlookup/install-service.sh).
# Installs cargo-deb (`cargo install cargo-deb --locked`) if it is missing, builds the
# workspace in release, then packages with the metadata in inlookup/Cargo.toml.
# Prints the path of the .deb (default OUTPUT_DIR: target/debian).
#
# Then: dpkg -i target/debian/inlookup_*.deb, and see /usr/share/doc/inlookup/operations.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
OUT=${1:-$ROOT/target/debian}

PROG=build-deb.sh
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

cd "$ROOT"
if ! cargo deb --version >/dev/null 2>&1; then
  echo "build-deb.sh: installing cargo-deb" >&2
  cargo install cargo-deb --locked --quiet
fi

# Everything the package holds, in release (cargo deb --no-build packages what is built).
cargo build --release --quiet -p inlookup -p inquerytest -p inquery
for page in inlookup.8 inquerytest.1 inquery.3; do
  [[ -f docs/man/$page ]] || die "docs/man/$page is missing (scripts/gen-man.sh makes the generated ones)"
done

# libinquery.a without its debug sections (cargo deb --strip strips executables and .so
# files only; the archive holds all of std and is ten times larger with them).
release=${CARGO_TARGET_DIR:-$ROOT/target}/release
mkdir -p target/deb-assets
strip --strip-debug -o target/deb-assets/libinquery.a "$release/libinquery.a"

# inquery.pc for the package's paths (/usr/include, /usr/lib).
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
sed -e 's|@PREFIX@|/usr|' -e 's|@LIBDIR@|/usr/lib|' -e "s|@VERSION@|$version|" \
  inquery/inquery.pc.in | grep -v '^#' >target/deb-assets/inquery.pc

mkdir -p "$OUT"
# --strip: the release profile keeps line tables for backtraces; the package need not.
deb=$(cargo deb -p inlookup --no-build --strip --quiet --output "$OUT")
echo "$deb"
