#!/usr/bin/env bash
# Build a release binary of dualmx with its version embedded and its SHA-256
# checksum beside it, to copy to the server (docs/install.md, "Building
# elsewhere").
#
#   scripts/dist.sh [--static | --cgo] [--out DIR] [--version V]
#
# --static  (default) CGO_ENABLED=0: one file that runs on any Linux of the
#           same architecture; ARC sealing signs with Go's crypto.
# --cgo     links against the C library and signs ARC seals through the
#           system's OpenSSL 3 (libcrypto.so.3) when it is there, about three
#           times faster (docs/benchmarks.md). Build it on the Debian release
#           the server runs (or in a container of it): the binary needs that
#           C library version or newer.
# --out     where to write (default: dist/)
# --version what "dualmx version" prints (default: git describe, else "dev")
#
# GOOS and GOARCH from the environment cross-compile the static build, e.g.
# GOARCH=arm64 scripts/dist.sh.
#
# Prints the path of the binary; beside it is NAME.sha256, in the format
# "sha256sum -c" checks.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "dist.sh: $1 (see --help)" >&2; exit 2; }
kind=static
out=dist
version=""
while [ $# -gt 0 ]; do
	case "$1" in
	--static) kind=static ;;
	--cgo) kind=cgo ;;
	--out) [ $# -ge 2 ] && [ -n "$2" ] || usage "--out needs a directory"; out="$2"; shift ;;
	--version) [ $# -ge 2 ] && [ -n "$2" ] || usage "--version needs a value"; version="$2"; shift ;;
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) usage "unknown argument $1" ;;
	esac
	shift
done

if [ -z "$version" ]; then
	version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
fi
case "$version" in
*[!A-Za-z0-9._+-]*) usage "version \"$version\" may only hold letters, digits and . _ + -" ;;
esac

goos=$(go env GOOS)
goarch=$(go env GOARCH)
if [ "$kind" = cgo ]; then
	cgo=1
	if [ "$goos/$goarch" != "$(go env GOHOSTOS)/$(go env GOHOSTARCH)" ]; then
		usage "--cgo builds for this machine only ($(go env GOHOSTOS)/$(go env GOHOSTARCH)); build on (or in a container of) the target, or use --static"
	fi
else
	cgo=0
fi

mkdir -p "$out"
name="dualmx-$version-$goos-$goarch-$kind"
# -trimpath: no build machine paths in the binary; -s -w: no symbol table
# or DWARF (stack traces still name functions). The version carries the
# commit; -buildvcs=false because git refuses a checkout another user owns
# (a container's bind mount), which would fail the build.
CGO_ENABLED=$cgo go build -trimpath -buildvcs=false \
	-ldflags "-s -w -X main.version=$version" \
	-o "$out/$name.tmp" ./cmd/dualmx
mv "$out/$name.tmp" "$out/$name"
(cd "$out" && sha256sum "$name" > "$name.sha256")
echo "$out/$name"
