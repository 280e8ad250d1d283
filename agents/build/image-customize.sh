#!/usr/bin/env bash
# mmdebstrap's customize hook of build-image.sh: $1 is the finished Debian rootfs (the chroot runs
# the target architecture, under qemu for a foreign one).  From build-image.sh's environment:
#   TB_WHEEL         the talbench wheel
#   TB_CA_BUNDLE     the CA bundle pip trusts while it runs (the build host's); may be empty
#   TB_APT_CACHE     the Debian packages of this architecture (kept for the next build)
#   TB_ETCD_DIR      etcd and etcdctl for this architecture; empty: none in the image
#   TB_ETCD_VERSION  the version they must report
#   TB_SKIP_TOOLS    declared tools not checked (etcd etcdctl without TB_ETCD_DIR)
#   TB_PATH          the image's PATH
set -euo pipefail
rootfs=${1:?usage: image-customize.sh ROOTFS}
log() { printf 'image-customize: [%4ds] %s\n' "$SECONDS" "$*" >&2; }
in_root() { chroot "$rootfs" /usr/bin/env -i PATH="$TB_PATH" HOME=/root PYTHONDONTWRITEBYTECODE=1 "$@"; }

# Keep this build's Debian packages for the next one; drop those no longer installed.
archives=$rootfs/var/cache/apt/archives
cp -n "$archives"/*.deb "$TB_APT_CACHE"/ 2>/dev/null || true
# shellcheck disable=SC2016 # dpkg-query's fields
in_root dpkg-query -W -f '${Package}_${Version}_${Architecture}.deb\n' | sed 's/:/%3a/g' | sort >"$rootfs/tmp/installed-debs"
find "$TB_APT_CACHE" -maxdepth 1 -name '*.deb' -printf '%f\n' | sort | comm -23 - "$rootfs/tmp/installed-debs" |
  (cd "$TB_APT_CACHE" && xargs -r rm -f --)
rm -f "$archives"/*.deb

log "the venv: talbench and its dependencies from PyPI"
mkdir -p "$rootfs/tmp/wheel"
cp "$TB_WHEEL" "$rootfs/tmp/wheel/"
pip_env=()
if [ -n "$TB_CA_BUNDLE" ]; then
  cp "$TB_CA_BUNDLE" "$rootfs/tmp/build-ca.crt"
  pip_env+=(PIP_CERT=/tmp/build-ca.crt)
fi
# The build host's index, proxy and timeout settings apply to the build (not stored in the image).
for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_DEFAULT_TIMEOUT http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  [ -z "${!var:-}" ] || pip_env+=("$var=${!var}")
done
in_root python3 -m venv /opt/talbench
in_root "${pip_env[@]}" /opt/talbench/bin/pip install --quiet --disable-pip-version-check --no-warn-script-location \
  --no-compile --no-cache-dir "/tmp/wheel/$(basename "$TB_WHEEL")" >&2
# What the venv holds, for whoever audits the image; pip itself is not needed at run time.
in_root /opt/talbench/bin/pip freeze --all --exclude pip --disable-pip-version-check >"$rootfs/opt/talbench/pip-freeze.txt"
in_root /opt/talbench/bin/pip uninstall --quiet --yes pip >&2

if [ -n "$TB_ETCD_DIR" ]; then
  install -m 0755 "$TB_ETCD_DIR/etcd" "$TB_ETCD_DIR/etcdctl" "$rootfs/usr/local/bin/"
  reported=$(in_root etcd --version | sed -n 's/^etcd Version: //p')
  [ "v$reported" = "$TB_ETCD_VERSION" ] || { log "etcd in the image reports '$reported', not $TB_ETCD_VERSION"; exit 1; }
  in_root etcdctl version >/dev/null
fi

log "checking the image: every tool a probe declares is on its PATH, the agent starts"
in_root TB_SKIP_TOOLS="$TB_SKIP_TOOLS" /opt/talbench/bin/python - <<'EOF'
import os
import shutil
import sys

from talbench.agents.probes.registry import declarations

skip = set(os.environ["TB_SKIP_TOOLS"].split())
tools = {tool for declaration in declarations().values() for tool in declaration.tools}
missing = sorted(f"{t.binary} ({t.debian_package})" for t in tools if t.binary not in skip and not shutil.which(t.binary))
if missing:
    sys.exit("image-customize: declared tools missing from the image: " + ", ".join(missing))
import etcd3gw  # noqa: E402,F401  (the live-etcd client: its dependencies import at run time)
EOF
in_root /opt/talbench/bin/talbench --help >/dev/null
in_root python -m talbench.agents --help >/dev/null # the DaemonSet's command

# No caches or logs; build-image.sh removes the host's resolv.conf and hostname and /dev's nodes
# once mmdebstrap has unmounted what it mounted.
rm -rf "$rootfs"/tmp/* "$rootfs"/tmp/.[!.]* "$rootfs"/root/.cache "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old \
  "$rootfs"/var/log/apt/* "$rootfs"/var/log/dpkg.log "$rootfs"/var/log/alternatives.log
# Byte code, compiled once here: a read-only root never caches it, and without it every agent
# start compiles talbench and its dependencies again, several times slower to import the agent
# (more so on a small arm64 node; docs/measurements.md), for a little more unpacked.
# unchecked-hash: the files never change in an image, so no timestamp or hash check at import.
find "$rootfs/opt" "$rootfs/usr/lib" -xdev -depth -type d -name __pycache__ -exec rm -rf {} +
in_root /opt/talbench/bin/python -m compileall -q --invalidation-mode unchecked-hash \
  /opt/talbench/lib /usr/lib/python3.11 /usr/lib/python3/dist-packages >&2
log "done"
