#!/usr/bin/env bash
# Builds the Kubernetes control plane of `talbench lab up --kubernetes` (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl) from the k8s.io/kubernetes Go module (the
# wrapper module in agents/build/kubernetes pins it and its staging modules), for this machine's
# architecture (or the ones named), into the machine's cache:
#
#   ${TALBENCH_CACHE:-/var/cache/talbench}/kubernetes/v1.36.3/linux-<arch>/{kube-apiserver,...}
#
# once per machine: an architecture whose stamp matches the recipe (go.mod, go.sum, the build
# flags) is skipped without running Go.  The Go module and build caches are the ones
# build-etcd.sh uses.  Static (CGO_ENABLED=0), -trimpath, the version stamped as Kubernetes'
# own build does (hack/lib/version.sh): gitVersion, gitMajor/Minor, buildDate = the module's
# publication time on the proxy; the module proxy serves no commit, so gitCommit stays empty.
# Go runs under `nice -n 19`: a cold build is long on a small shared machine.
#
#   agents/build/build-kubernetes.sh [ARCH...]        ARCH: amd64, arm64 (default: this machine's)
#   agents/build/build-kubernetes.sh --print-dir [ARCH]   the directory holding ARCH's binaries
set -euo pipefail

KUBERNETES_VERSION=v1.36.3
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
TOOL=build-kubernetes
PRODUCT="Kubernetes $KUBERNETES_VERSION"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=go-build-common.sh
source "$here/go-build-common.sh"
recipe=$here/kubernetes
root=$cache/kubernetes/$KUBERNETES_VERSION

host_arch() {
  case $(uname -m) in
    x86_64) echo amd64 ;;
    aarch64) echo arm64 ;;
    *) die "unsupported machine $(uname -m) (amd64, arm64)" ;;
  esac
}

if [[ ${1:-} == --print-dir ]]; then
  echo "$root/linux-${2:-$(host_arch)}"
  exit 0
fi

arches=("$@")
[[ ${#arches[@]} -gt 0 ]] || arches=("$(host_arch)")
check_arches "${arches[@]}"

grep -Eq "^(require)?[[:space:]]*k8s.io/kubernetes $KUBERNETES_VERSION( // indirect)?\$" "$recipe/go.mod" \
  || die "agents/build/kubernetes/go.mod does not pin k8s.io/kubernetes $KUBERNETES_VERSION"
staging=v0.${KUBERNETES_VERSION#v1.}
if grep -E '^	k8s.io/[a-z-]+ => ' "$recipe/go.mod" | grep -vq " $staging\$"; then
  die "agents/build/kubernetes/go.mod replaces a staging module with another version than $staging"
fi

major_minor=${KUBERNETES_VERSION#v}
major=${major_minor%%.*}
minor=${major_minor#*.}
minor=${minor%%.*}

stamp_flags() {  # -X flags of Kubernetes' own build (hack/lib/version.sh)
  local date=$1 flags=() pkg
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    flags+=("-X $pkg.gitVersion=$KUBERNETES_VERSION" "-X $pkg.gitMajor=$major" "-X $pkg.gitMinor=$minor"
      "-X $pkg.gitTreeState=clean" "-X $pkg.buildDate=$date")
  done
  echo "${flags[*]}"
}

# What a built binary depends on: the recipe and the build flags.  A change rebuilds.
recipe_hash=$( (cd "$recipe" && cat go.mod go.sum && stamp_flags - && echo "${BINARIES[*]}") | sha256sum | cut -c1-16)

select_unbuilt "${arches[@]}"
[[ ${#todo[@]} -gt 0 ]] || exit 0
find_go
use_cache

# buildDate: when the proxy published the module (reproducible, unlike the build's own clock).
published=$(cd "$recipe" && "$go" list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)
[[ -n $published ]] || published=1970-01-01T00:00:00Z
ldflags="-s -w $(stamp_flags "$published")"

for arch in "${todo[@]}"; do
  built "$arch" && continue  # built by the run we waited for
  tmp=$(mktemp -d "$root/.build-$arch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  started=$(date +%s)
  echo "build-kubernetes: building Kubernetes $KUBERNETES_VERSION for linux/$arch ($("$go" env GOVERSION), nice 19; a cold build takes tens of minutes)" >&2
  packages=()
  for binary in "${BINARIES[@]}"; do packages+=("k8s.io/kubernetes/cmd/$binary"); done
  (cd "$recipe" && GOARCH=$arch nice -n 19 "$go" build -trimpath -ldflags "$ldflags" -o "$tmp/" "${packages[@]}")
  for binary in "${BINARIES[@]}"; do
    info=$("$go" version -m "$tmp/$binary")
    grep -q "GOARCH=$arch" <<<"$info" || die "$binary is not a linux/$arch binary"
    grep -Eq "mod[[:space:]]+k8s.io/kubernetes[[:space:]]+$KUBERNETES_VERSION|dep[[:space:]]+k8s.io/kubernetes[[:space:]]+$KUBERNETES_VERSION" <<<"$info" \
      || die "$binary was not built from k8s.io/kubernetes $KUBERNETES_VERSION"
  done
  if [[ $arch == $("$go" env GOHOSTARCH) ]]; then
    reported=$("$tmp/kube-apiserver" --version)
    [[ $reported == "Kubernetes $KUBERNETES_VERSION" ]] || die "kube-apiserver --version is '$reported', not Kubernetes $KUBERNETES_VERSION"
  fi
  install_built "$arch" "$tmp" "$started"
done
