#!/usr/bin/env bash
# Builds `benchmark`, etcd's own load tool (tools/benchmark of go.etcd.io/etcd/v3; the wrapper
# module agents/build/etcd-benchmark pins it), for this machine's architecture, next to the etcd
# build-etcd.sh makes:
#
#   ${TALBENCH_CACHE:-/var/cache/talbench}/etcd/v3.6.16/linux-<arch>/benchmark
#
# once per machine: a binary whose stamp matches the recipe (go.mod, go.sum, main.go, the build
# flags) is kept without running Go.  Only the benchmarks use it (benchmarks/bench_etcd.py),
# from the host, so only the host's architecture is built.  Same Go caches and flags as build-etcd.sh.
#
#   agents/build/build-etcd-benchmark.sh            build it if missing
#   agents/build/build-etcd-benchmark.sh --print    the binary's path
set -euo pipefail

ETCD_VERSION=v3.6.16  # the server's (build-etcd.sh); the tool's client libraries are pinned to it
BUILD_FLAGS=(-trimpath -ldflags "-s -w")

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
recipe=$here/etcd-benchmark
cache=${TALBENCH_CACHE:-/var/cache/talbench}
go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

die() { echo "build-etcd-benchmark: $*" >&2; exit 2; }

arch=$(uname -m | sed 's/^x86_64$/amd64/; s/^aarch64$/arm64/')
dir=$cache/etcd/$ETCD_VERSION/linux-$arch
binary=$dir/benchmark
stamp=$dir/.stamp-benchmark
if [[ ${1:-} == --print ]]; then
  echo "$binary"
  exit 0
fi
[[ $# -eq 0 ]] || die "unknown argument $1"

grep -q "^	go.etcd.io/etcd/client/v3 $ETCD_VERSION " "$recipe/go.mod" \
  || die "agents/build/etcd-benchmark/go.mod does not pin go.etcd.io/etcd/client/v3 $ETCD_VERSION"

recipe_hash=$( (cd "$recipe" && cat go.mod go.sum cmd/benchmark/main.go && echo "${BUILD_FLAGS[*]}") \
  | sha256sum | cut -c1-16)
built() { [[ -x $binary && -f $stamp ]] && [[ $(head -n1 "$stamp") == "$recipe_hash" ]]; }

if built; then
  echo "build-etcd-benchmark: benchmark already built in $binary" >&2
  exit 0
fi

[[ -x $go ]] || die "Go is needed to build etcd's benchmark (https://go.dev/dl/; GO=/path/to/go)"
if ! mkdir -p "$dir" "$cache/go" 2>/dev/null || [[ ! -w $dir ]]; then
  die "cannot write $dir: run as root, or set TALBENCH_CACHE to a directory of yours"
fi
exec 9>"$dir/.lock-benchmark"
flock 9
built && exit 0  # built by the run we waited for

export GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/build GOPATH=$cache/go/path
export GOFLAGS="-modcacherw -mod=readonly -buildvcs=false" CGO_ENABLED=0 GOOS=linux GOARCH=$arch
started=$(date +%s)
tmp=$(mktemp -d "$dir/.build-benchmark.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "build-etcd-benchmark: building etcd's benchmark for linux/$arch ($("$go" env GOVERSION))" >&2
(cd "$recipe" && nice -n "${NICE:-10}" "$go" build "${BUILD_FLAGS[@]}" -o "$tmp/benchmark" ./cmd/benchmark)
info=$("$go" version -m "$tmp/benchmark")
grep -Eq "dep[[:space:]]+go.etcd.io/etcd/client/v3[[:space:]]+$ETCD_VERSION" <<<"$info" \
  || die "benchmark was not built with etcd's client $ETCD_VERSION"
"$tmp/benchmark" put --help >/dev/null || die "the built benchmark does not run"
rm -f "$stamp"
mv -f "$tmp/benchmark" "$binary"
tool=$(grep -Eo "dep[[:space:]]+go.etcd.io/etcd/v3[[:space:]]+v[^[:space:]]+" <<<"$info" | awk '{print $3}')
printf '%s\nbenchmark (go.etcd.io/etcd/v3 %s, client %s) linux/%s built %s with %s in %ss\n' "$recipe_hash" \
  "$tool" "$ETCD_VERSION" "$arch" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$("$go" env GOVERSION)" \
  "$(($(date +%s) - started))" >"$stamp"
echo "build-etcd-benchmark: $binary ($(($(date +%s) - started)) s)" >&2
