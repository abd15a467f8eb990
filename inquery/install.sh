#!/usr/bin/env bash
# Usage: inquery/install.sh [PREFIX] [LIBDIR]
#   Builds libinquery (release) and installs, under $DESTDIR if set:
#     PREFIX/include/inquery.h
#     LIBDIR/libinquery.so, LIBDIR/libinquery.a      (LIBDIR defaults to PREFIX/lib)
#     LIBDIR/pkgconfig/inquery.pc                    (from inquery/inquery.pc.in)
#   PREFIX defaults to /usr/local. Then: cc prog.c $(pkg-config --cflags --libs inquery)
#   (static: pkg-config --static --libs inquery, and link libinquery.a).
set -euo pipefail

PREFIX=${1:-/usr/local}
LIBDIR=${2:-$PREFIX/lib}
DESTDIR=${DESTDIR:-}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(dirname "$HERE")

case $PREFIX in /*) ;; *) echo "install.sh: PREFIX must be absolute" >&2; exit 2 ;; esac
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1)

(cd "$ROOT" && cargo build --release -p inquery --lib)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/release

install -d "$DESTDIR$PREFIX/include" "$DESTDIR$LIBDIR/pkgconfig"
install -m 0644 "$HERE/include/inquery.h" "$DESTDIR$PREFIX/include/inquery.h"
install -m 0755 "$TARGET/libinquery.so" "$DESTDIR$LIBDIR/libinquery.so"
install -m 0644 "$TARGET/libinquery.a" "$DESTDIR$LIBDIR/libinquery.a"
sed -e "s|@PREFIX@|$PREFIX|" -e "s|@LIBDIR@|$LIBDIR|" -e "s|@VERSION@|$VERSION|" \
  "$HERE/inquery.pc.in" | grep -v '^#' > "$DESTDIR$LIBDIR/pkgconfig/inquery.pc"
echo "installed libinquery $VERSION under $DESTDIR$PREFIX"
