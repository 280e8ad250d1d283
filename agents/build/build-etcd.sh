#!/usr/bin/env bash
# Builds the etcd and etcdctl talbench runs, from etcd's own Go modules (the wrapper module in
# agents/build/etcd pins them), for linux/amd64 and linux/arm64, into the machine's cache:
#
#   ${TALBENCH_CACHE:-/var/cache/talbench}/etcd/v3.6.16/linux-<arch>/{etcd,etcdctl}
#
# once per machine: an architecture whose stamp matches the recipe (go.mod, go.sum, the main
# packages, the build flags) is skipped without running Go, so a second run is instant.  The Go
# module and build caches live under the same cache directory.  Static (CGO_ENABLED=0),
# -trimpath, no VCS stamp of this repository.  etcd's own build sets api/v3/version.GitSHA from
# its git checkout; the module proxy serves no commit, so `etcd --version` says "Not provided".
#
#   agents/build/build-etcd.sh [ARCH...]      ARCH: amd64, arm64 (default: both)
#   agents/build/build-etcd.sh --print-dir ARCH   the directory holding ARCH's binaries
#
# Needs Go >= the go line of agents/build/etcd/go.mod (GO=/path/to/go, else go on PATH, else
# /usr/local/go/bin/go) and the Go module proxy, only when something is to be built.
set -euo pipefail

ETCD_VERSION=v3.6.16
ARCHES_DEFAULT=(amd64 arm64)
BUILD_FLAGS=(-trimpath -ldflags "-s -w")  # static (CGO_ENABLED=0, below), reproducible paths, no symbols

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
recipe=$here/etcd
cache=${TALBENCH_CACHE:-/var/cache/talbench}
root=$cache/etcd/$ETCD_VERSION

die() { echo "build-etcd: $*" >&2; exit 2; }

if [[ ${1:-} == --print-dir ]]; then
  [[ -n ${2:-} ]] || die "--print-dir needs an architecture"
  echo "$root/linux-$2"
  exit 0
fi

arches=("$@")
[[ ${#arches[@]} -gt 0 ]] || arches=("${ARCHES_DEFAULT[@]}")
for arch in "${arches[@]}"; do
  [[ $arch == amd64 || $arch == arm64 ]] || die "unknown architecture $arch (amd64, arm64)"
done

for module in server etcdctl; do
  grep -q "^	go.etcd.io/etcd/$module/v3 $ETCD_VERSION\$" "$recipe/go.mod" \
    || die "agents/build/etcd/go.mod does not pin go.etcd.io/etcd/$module/v3 $ETCD_VERSION"
done

# What a built binary depends on: the recipe and the build flags.  A change rebuilds.
recipe_hash=$( (cd "$recipe" && cat go.mod go.sum cmd/etcd/main.go cmd/etcdctl/main.go && echo "${BUILD_FLAGS[*]}") \
  | sha256sum | cut -c1-16)

built() {  # ARCH: both binaries there and stamped with this recipe
  local dir=$root/linux-$1
  [[ -x $dir/etcd && -x $dir/etcdctl && -f $dir/.stamp ]] && [[ $(head -n1 "$dir/.stamp") == "$recipe_hash" ]]
}

todo=()
for arch in "${arches[@]}"; do
  if built "$arch"; then
    echo "build-etcd: etcd $ETCD_VERSION linux/$arch already built in $root/linux-$arch" >&2
  else
    todo+=("$arch")
  fi
done
[[ ${#todo[@]} -gt 0 ]] || exit 0

go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[[ -x $go ]] || die "Go is needed to build etcd $ETCD_VERSION (https://go.dev/dl/; GO=/path/to/go)"
need=$(awk '$1 == "go" {print $2; exit}' "$recipe/go.mod")
have=$("$go" env GOVERSION | sed 's/^go//')
[[ $(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1) == "$need" ]] \
  || [[ ${GOTOOLCHAIN:-auto} != local ]] \
  || die "etcd $ETCD_VERSION needs Go >= $need, $go is $have (GOTOOLCHAIN=local)"

mkdir -p "$root" "$cache/go" 2>/dev/null && [[ -w $root ]] \
  || die "cannot write $root: run as root, or set TALBENCH_CACHE to a directory of yours"
exec 9>"$root/.lock"
flock 9  # one build at a time per cache; the second waits, then finds the stamps

export GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/build GOPATH=$cache/go/path
export GOFLAGS="-modcacherw -mod=readonly -buildvcs=false" CGO_ENABLED=0 GOOS=linux

for arch in "${todo[@]}"; do
  built "$arch" && continue  # built by the run we waited for
  dir=$root/linux-$arch
  tmp=$(mktemp -d "$root/.build-$arch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  started=$(date +%s)
  echo "build-etcd: building etcd $ETCD_VERSION for linux/$arch ($("$go" env GOVERSION))" >&2
  for binary in etcd etcdctl; do
    (cd "$recipe" && GOARCH=$arch "$go" build "${BUILD_FLAGS[@]}" -o "$tmp/$binary" "./cmd/$binary")
    # The binary carries its module versions: check they are the pinned ones, for this arch.
    info=$("$go" version -m "$tmp/$binary")
    grep -q "GOARCH=$arch" <<<"$info" || die "$binary is not a linux/$arch binary"
    grep -Eq "dep[[:space:]]+go.etcd.io/etcd/(server|etcdctl)/v3[[:space:]]+$ETCD_VERSION" <<<"$info" \
      || die "$binary was not built from etcd $ETCD_VERSION"
  done
  # Run it when this machine can (its own arch; a foreign one through qemu-user-static's binfmt).
  if [[ $arch == $("$go" env GOHOSTARCH) ]] || "$tmp/etcd" --version >/dev/null 2>&1; then
    reported=$("$tmp/etcd" --version)$'\n'$("$tmp/etcdctl" version)
    grep -qx "etcd Version: ${ETCD_VERSION#v}" <<<"$reported" || die "etcd --version is not ${ETCD_VERSION#v}: $reported"
    grep -qx "etcdctl version: ${ETCD_VERSION#v}" <<<"$reported" || die "etcdctl version is not ${ETCD_VERSION#v}: $reported"
  fi
  mkdir -p "$dir"
  rm -f "$dir/.stamp"
  mv -f "$tmp/etcd" "$tmp/etcdctl" "$dir/"
  printf '%s\netcd %s linux/%s built %s with %s in %ss\n' "$recipe_hash" "$ETCD_VERSION" "$arch" \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$("$go" env GOVERSION)" "$(($(date +%s) - started))" >"$dir/.stamp"
  rm -rf "$tmp"
  trap - EXIT
  echo "build-etcd: etcd $ETCD_VERSION linux/$arch in $dir ($(($(date +%s) - started)) s)" >&2
done
