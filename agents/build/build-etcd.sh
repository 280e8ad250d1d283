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
BUILD_FLAGS=(-trimpath -ldflags "-s -w")  # static (CGO_ENABLED=0, go-build-common.sh), reproducible paths, no symbols
BINARIES=(etcd etcdctl)
TOOL=build-etcd
PRODUCT="etcd $ETCD_VERSION"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=go-build-common.sh
source "$here/go-build-common.sh"
recipe=$here/etcd
root=$cache/etcd/$ETCD_VERSION

if [[ ${1:-} == --print-dir ]]; then
  [[ -n ${2:-} ]] || die "--print-dir needs an architecture"
  echo "$root/linux-$2"
  exit 0
fi

arches=("$@")
[[ ${#arches[@]} -gt 0 ]] || arches=("${ARCHES_DEFAULT[@]}")
check_arches "${arches[@]}"

for module in server etcdctl; do
  grep -q "^	go.etcd.io/etcd/$module/v3 $ETCD_VERSION\$" "$recipe/go.mod" \
    || die "agents/build/etcd/go.mod does not pin go.etcd.io/etcd/$module/v3 $ETCD_VERSION"
done

# What a built binary depends on: the recipe and the build flags.  A change rebuilds.
recipe_hash=$( (cd "$recipe" && cat go.mod go.sum cmd/etcd/main.go cmd/etcdctl/main.go && echo "${BUILD_FLAGS[*]}") \
  | sha256sum | cut -c1-16)

select_unbuilt "${arches[@]}"
[[ ${#todo[@]} -gt 0 ]] || exit 0
find_go
use_cache

for arch in "${todo[@]}"; do
  built "$arch" && continue  # built by the run we waited for
  tmp=$(mktemp -d "$root/.build-$arch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  started=$(date +%s)
  echo "build-etcd: building etcd $ETCD_VERSION for linux/$arch ($("$go" env GOVERSION))" >&2
  for binary in "${BINARIES[@]}"; do
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
  install_built "$arch" "$tmp" "$started"
done
