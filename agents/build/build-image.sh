#!/usr/bin/env bash
# Builds the talbench image with no container engine and no registry: a minimal Debian bookworm
# rootfs (mmdebstrap), the packages of agents/build/image-packages.txt, the project's wheel and
# its dependencies from PyPI in a venv at /opt/talbench, the Talos etcd/etcdctl that `make etcd`
# builds (agents/build/build-etcd.sh); packed by umoci as an OCI image and written as an OCI
# archive (a tar of an OCI image layout):
#
#   results/image/talbench-<version>-<arch>.oci.tar   one per architecture (one manifest)
#   results/image/talbench-<version>.oci.tar          when several architectures are built in one
#                                                     call: one image index over all of them
#
# The archive's image is tagged v<version>; each archive path is printed on stdout (the log goes
# to stderr).  Push one with
#   skopeo copy [--all] oci-archive:results/image/talbench-<version>.oci.tar docker://REGISTRY/talbench:v<version>
#
# Usage: agents/build/build-image.sh [--arch amd64|arm64]... [--out DIR] [--no-etcd]
#   --arch     default: this machine's; a foreign one runs under qemu-user-static (binfmt_misc is
#              mounted and qemu registered when they are not)
#   --no-etcd  build without etcd/etcdctl (the etcd probe cannot run on such an image)
# Needs root, mmdebstrap, umoci, python3 >= 3.11 and a venv with pip (make venv); arch-test,
# qemu-user-static and binfmt-support for a foreign architecture (`make image` installs them);
# git for the revision label.  The Debian packages are kept for the next build under
# ${TALBENCH_CACHE:-/var/cache/talbench}/image/apt/; etcd and etcdctl are read from where
# build-etcd.sh puts them, ${TALBENCH_CACHE:-/var/cache/talbench}/etcd/<ETCD_VERSION>/linux-<arch>/
# (the version the probe declares; the build checks that `etcd --version` says it).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${TALBENCH_CACHE:-/var/cache/talbench}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
IMAGE_PATH=/opt/talbench/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf 'build-image: [%4ds] %s\n' "$SECONDS" "$*" >&2; }
die() {
  log "$*"
  exit 1
}

arches=()
out=$ROOT/results/image
etcd=1
while [ $# -gt 0 ]; do
  case $1 in
    --arch) arches+=("${2:?--arch needs amd64 or arm64}"); shift 2 ;;
    --arch=*) arches+=("${1#--arch=}"); shift ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --no-etcd) etcd=0; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
host_arch=$(dpkg --print-architecture)
[ ${#arches[@]} -gt 0 ] || arches=("$host_arch")
# "amd64 arm64" as one word (make image ARCH="amd64 arm64") is two architectures
read -r -a arches <<<"${arches[*]}"

[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap's root mode, chroot, umoci unpack)"
for tool in mmdebstrap umoci python3 tar; do
  command -v "$tool" >/dev/null || die "$tool is not installed (make image installs what it needs)"
done
for i in "${!arches[@]}"; do
  case ${arches[$i]} in
    amd64 | arm64) ;;
    x86_64) arches[i]=amd64 ;;
    aarch64) arches[i]=arm64 ;;
    *) die "unsupported architecture: ${arches[$i]} (amd64, arm64)" ;;
  esac
done

version=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$ROOT/pyproject.toml")
tag=v$version
# root (sudo make image) reading a checkout another user owns: git would refuse it ("dubious
# ownership") and the image would say revision "unknown"
git_() { git -c safe.directory="$ROOT" -C "$ROOT" "$@"; }
revision=unknown
source=${TALBENCH_IMAGE_SOURCE:-}
if command -v git >/dev/null && git_ rev-parse --git-dir >/dev/null 2>&1; then
  revision=$(git_ rev-parse HEAD)
  [ -z "$(git_ status --porcelain)" ] || revision=$revision-dirty
  if [ -z "$source" ]; then
    source=$(git_ remote get-url origin 2>/dev/null || true)
  fi
else
  log "not a git checkout: the image's revision label says 'unknown'"
fi
# No credentials in a label: https://user:token@host/x -> https://host/x; git@host:x -> https://host/x
source=$(printf '%s' "$source" | sed -E 's#^[a-z+]+://[^/@]*@#https://#; s#^git@([^:]+):#https://\1/#; s#\.git$##')
[ -n "$source" ] || log "no git remote 'origin' and no TALBENCH_IMAGE_SOURCE: no org.opencontainers.image.source label"
created=$(date -u ${SOURCE_DATE_EPOCH:+-d "@$SOURCE_DATE_EPOCH"} +%Y-%m-%dT%H:%M:%SZ)

mapfile -t packages < <(sed 's/#.*//; s/[[:space:]]//g; /^$/d' "$HERE/image-packages.txt")
[ ${#packages[@]} -gt 0 ] || die "agents/build/image-packages.txt lists no package"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/talbench-image.XXXXXX")
cleanup() {
  # mmdebstrap unmounts what it mounted; anything still mounted below $work (an interrupted
  # hook) goes first, and rm never crosses into another filesystem.
  set +e
  findmnt -rn -o TARGET | grep -F "$work/" | sort -r | while read -r mnt; do umount -l "$mnt"; done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

ensure_foreign() { # $1: a foreign Debian architecture, run by qemu-user-static through binfmt_misc
  local qemu=${1/arm64/aarch64}
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
    die "cannot mount binfmt_misc: $1 cannot be built here"
  if [ ! -e "/proc/sys/fs/binfmt_misc/qemu-$qemu" ]; then
    [ -x "/usr/bin/qemu-$qemu-static" ] || die "qemu-$qemu-static is missing (apt-get install qemu-user-static binfmt-support)"
    command -v update-binfmts >/dev/null || die "update-binfmts is missing (apt-get install binfmt-support)"
    log "registering qemu-$qemu with binfmt_misc"
    update-binfmts --enable "qemu-$qemu" >&2 || die "cannot register qemu-$qemu with binfmt_misc"
  fi
  grep -q '^enabled' "/proc/sys/fs/binfmt_misc/qemu-$qemu" || die "binfmt_misc has qemu-$qemu disabled"
}

# The wheel, from the checkout's files (tracked, and untracked but not ignored: what the
# revision's -dirty stands for), built once for every architecture (it is pure Python).
mkdir -p "$work/src" "$work/wheel"
# shellcheck disable=SC2016 # $f is the inner shell's
if [ "$revision" != unknown ]; then
  git_ ls-files -z -co --exclude-standard
else
  (cd "$ROOT" && find . -path ./.git -prune -o -type f -print0)
fi |
  (cd "$ROOT" && xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) |
  tar -C "$ROOT" --null -T - -cf - | tar -C "$work/src" -xf -
wheel_python=$ROOT/.venv/bin/python
[ -x "$wheel_python" ] || wheel_python=python3
log "building the wheel of talbench $version ($revision)"
"$wheel_python" -m pip wheel --quiet --no-deps --disable-pip-version-check -w "$work/wheel" "$work/src" >&2 ||
  die "pip wheel failed (make venv gives a python with pip)"
wheel=$(cd "$work/wheel" && ls -- *.whl)
# pip in the chroot trusts what this machine's pip trusts (a TLS-intercepting proxy's CA): the
# bundle is in the rootfs only while pip runs.
ca_bundle=${PIP_CERT:-${REQUESTS_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}}
[ -r "$ca_bundle" ] || ca_bundle=

for arch in "${arches[@]}"; do
  start=$SECONDS
  [ "$arch" = "$host_arch" ] || ensure_foreign "$arch"
  etcd_dir=
  etcd_label=none
  skip_tools=
  if [ "$etcd" = 1 ]; then
    etcd_dir=$CACHE/etcd/$ETCD_VERSION/linux-$arch
    etcd_label=$ETCD_VERSION
    if [ ! -x "$etcd_dir/etcd" ] || [ ! -x "$etcd_dir/etcdctl" ]; then
      die "no etcd $ETCD_VERSION for $arch in $etcd_dir (make etcd builds it; --no-etcd builds an image without)"
    fi
  else
    log "WARNING: --no-etcd: the $arch image has no etcd/etcdctl, its etcd probe cannot run"
    skip_tools="etcd etcdctl"
  fi
  apt_cache=$CACHE/image/apt/$SUITE-$arch
  mkdir -p "$apt_cache"
  layout=$work/$arch/layout
  bundle=$work/$arch/bundle
  mkdir -p "$work/$arch"
  umoci init --layout "$layout"
  umoci new --image "$layout:$tag"
  umoci unpack --image "$layout:$tag" "$bundle" >&2
  log "$arch: Debian $SUITE rootfs (mmdebstrap) and the venv"
  # merged-usr hook: the rootfs is merged-/usr from the start (else apt meets init-system-helpers'
  # "usrmerge | usr-is-merged" with usrmerge, which brings perl into the image).  essential/unlink kept:
  # every package is in /var/cache/apt/archives when the customize hook saves them for the next
  # build.  eatmydata (its hook takes it out again) and force-unsafe-io: no fsync per file, the
  # rootfs is thrown away if the build stops.  No docs, man pages or translations (copyright
  # files stay).
  # shellcheck disable=SC2016 # the hooks' $1 and $TB_* are expanded by mmdebstrap's shell
  TB_WHEEL="$work/wheel/$wheel" TB_CA_BUNDLE=$ca_bundle TB_APT_CACHE=$apt_cache TB_ETCD_DIR=$etcd_dir \
    TB_ETCD_VERSION=$etcd_label TB_SKIP_TOOLS=$skip_tools TB_PATH=$IMAGE_PATH \
    mmdebstrap --quiet --variant=minbase --arch="$arch" --include="$(IFS=,; echo "${packages[*]}")" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --hook-dir=/usr/share/mmdebstrap/hooks/eatmydata \
    --skip=essential/unlink --dpkgopt=force-unsafe-io \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --setup-hook='mkdir -p "$1/var/cache/apt/archives" && { cp -al "$TB_APT_CACHE/." "$1/var/cache/apt/archives/" 2>/dev/null || cp -a "$TB_APT_CACHE/." "$1/var/cache/apt/archives/"; }' \
    --customize-hook="\"$HERE/image-customize.sh\" \"\$1\"" \
    "$SUITE" "$bundle/rootfs" \
    "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main" >&2
  # The build host's resolver and name (mmdebstrap copies them in) and device nodes (a runtime
  # mounts its own /dev) do not go into the image.
  ! findmnt -rn -o TARGET | grep -qF "$bundle/rootfs" || die "$arch: something is still mounted in the rootfs"
  rm -f "$bundle/rootfs/etc/resolv.conf" "$bundle/rootfs/etc/hostname"
  find "$bundle/rootfs/dev" -xdev -mindepth 1 -delete
  rootfs_size=$(du -sxh "$bundle/rootfs" | cut -f1)
  log "$arch: packing (umoci)"
  umoci repack --image "$layout:$tag" --history.created_by "agents/build/build-image.sh (mmdebstrap $SUITE, talbench $version)" \
    --history.created "$created" "$bundle" >&2
  labels=(
    "org.opencontainers.image.title=talbench"
    "org.opencontainers.image.description=talbench agent and coordinator (Debian $SUITE, etcd ${etcd_label})"
    "org.opencontainers.image.version=$version"
    "org.opencontainers.image.revision=$revision"
    "org.opencontainers.image.created=$created"
    "org.opencontainers.image.licenses=Apache-2.0"
  )
  [ -z "$source" ] || labels+=("org.opencontainers.image.source=$source")
  config=(--architecture "$arch" --os linux --created "$created" --author talbench --no-history
    --config.entrypoint /opt/talbench/bin/talbench --config.cmd=--help --config.user 0 --config.workingdir /tmp
    --config.env "PATH=$IMAGE_PATH" --config.env PYTHONUNBUFFERED=1 --config.env PYTHONDONTWRITEBYTECODE=1)
  for label in "${labels[@]}"; do config+=(--config.label "$label"); done
  umoci config --image "$layout:$tag" "${config[@]}"
  umoci gc --layout "$layout"
  python3 "$HERE/oci_index.py" platform "$layout" "$tag" "$arch"
  mkdir -p "$out"
  archive=$out/talbench-$version-$arch.oci.tar
  tar -C "$layout" --owner=0 --group=0 --numeric-owner -cf "$archive.tmp" oci-layout index.json blobs
  mv "$archive.tmp" "$archive"
  rm -rf --one-file-system "$bundle"
  log "$arch: $archive ($(du -h "$archive" | cut -f1); rootfs $rootfs_size) in $((SECONDS - start)) s"
  printf '%s\n' "$archive"
done

if [ ${#arches[@]} -gt 1 ]; then
  layouts=()
  for arch in "${arches[@]}"; do layouts+=("$work/$arch/layout"); done
  python3 "$HERE/oci_index.py" merge "$work/index" "$tag" "${layouts[@]}"
  archive=$out/talbench-$version.oci.tar
  tar -C "$work/index" --owner=0 --group=0 --numeric-owner -cf "$archive.tmp" oci-layout index.json blobs
  mv "$archive.tmp" "$archive"
  log "${arches[*]}: $archive ($(du -h "$archive" | cut -f1)), one image index (skopeo copy --all)"
  printf '%s\n' "$archive"
fi
