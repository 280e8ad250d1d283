# shellcheck shell=bash disable=SC2154  # root, recipe and recipe_hash are the sourcing script's
# What build-etcd.sh and build-kubernetes.sh share: the machine's cache, the architectures, the
# Go toolchain and its caches, the lock, and each architecture's directory with its stamp.
# Sourced (not run) by them after `set -euo pipefail` and after they set:
#
#   TOOL      their name, in front of every message (build-etcd)
#   PRODUCT   what they build, in messages and stamps ("etcd v3.6.16")
#   BINARIES  the binaries an architecture's directory holds
#
# then `recipe` (the wrapper Go module) and `root` (the version's directory under $cache), and
# `recipe_hash` before `built`, `select_unbuilt` or `install_built`.

cache=${TALBENCH_CACHE:-/var/cache/talbench}

die() { echo "$TOOL: $*" >&2; exit 2; }

check_arches() {  # ARCH...: each one we know how to build
  local arch
  for arch in "$@"; do
    [[ $arch == amd64 || $arch == arm64 ]] || die "unknown architecture $arch (amd64, arm64)"
  done
}

built() {  # ARCH: every binary there and stamped with this recipe
  local dir=$root/linux-$1 binary
  for binary in "${BINARIES[@]}"; do [[ -x $dir/$binary ]] || return 1; done
  [[ -f $dir/.stamp ]] && [[ $(head -n1 "$dir/.stamp") == "$recipe_hash" ]]
}

select_unbuilt() {  # ARCH...: todo=(those not built with this recipe); says which already are
  local arch
  todo=()
  for arch in "$@"; do
    if built "$arch"; then
      echo "$TOOL: $PRODUCT linux/$arch already built in $root/linux-$arch" >&2
    else
      todo+=("$arch")
    fi
  done
}

find_go() {  # go=the Go toolchain (GO, else go on PATH, else /usr/local/go/bin/go), new enough for the recipe
  local need have
  go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
  [[ -x $go ]] || die "Go is needed to build $PRODUCT (https://go.dev/dl/; GO=/path/to/go)"
  need=$(awk '$1 == "go" {print $2; exit}' "$recipe/go.mod")
  have=$("$go" env GOVERSION | sed 's/^go//')
  [[ $(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1) == "$need" ]] \
    || [[ ${GOTOOLCHAIN:-auto} != local ]] \
    || die "$PRODUCT needs Go >= $need, $go is $have (GOTOOLCHAIN=local)"
}

use_cache() {  # $root made and locked for this build (fd 9); Go's module and build caches under $cache
  if ! mkdir -p "$root" "$cache/go" 2>/dev/null || [[ ! -w $root ]]; then
    die "cannot write $root: run as root, or set TALBENCH_CACHE to a directory of yours"
  fi
  exec 9>"$root/.lock"
  flock 9  # one build at a time per cache; the second waits, then finds the stamps
  export GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/build GOPATH=$cache/go/path
  export GOFLAGS="-modcacherw -mod=readonly -buildvcs=false" CGO_ENABLED=0 GOOS=linux
}

install_built() {  # ARCH TMP STARTED: TMP's binaries into ARCH's directory, stamped; TMP and its EXIT trap gone
  local arch=$1 tmp=$2 started=$3 dir=$root/linux-$1 binary
  mkdir -p "$dir"
  rm -f "$dir/.stamp"
  for binary in "${BINARIES[@]}"; do mv -f "$tmp/$binary" "$dir/"; done
  printf '%s\n%s linux/%s built %s with %s in %ss\n' "$recipe_hash" "$PRODUCT" "$arch" \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$("$go" env GOVERSION)" "$(($(date +%s) - started))" >"$dir/.stamp"
  rm -rf "$tmp"
  trap - EXIT
  echo "$TOOL: $PRODUCT linux/$arch in $dir ($(($(date +%s) - started)) s)" >&2
}
