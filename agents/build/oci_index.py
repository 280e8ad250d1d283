"""The OCI layout's index for build-image.sh (Python's standard library only; umoci writes no
platform into index.json and makes no image index).

    oci_index.py platform LAYOUT TAG ARCH        the descriptor tagged TAG gets its platform
    oci_index.py merge OUT TAG LAYOUT...         OUT: a layout whose TAG is one image index over
                                                 the TAG image of every LAYOUT (multi-platform)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

REF_NAME = "org.opencontainers.image.ref.name"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
LAYOUT_FILE = {"imageLayoutVersion": "1.0.0"}


def platform_of(arch: str) -> dict[str, str]:
    return {"architecture": arch, "os": "linux", **({"variant": "v8"} if arch == "arm64" else {})}


def _read(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _tagged(index: dict[str, Any], tag: str) -> dict[str, Any]:
    found = [m for m in index.get("manifests", []) if (m.get("annotations") or {}).get(REF_NAME) == tag]
    if len(found) != 1:
        raise ValueError(f"{len(found)} descriptors are tagged {tag!r}, not one")
    descriptor: dict[str, Any] = found[0]
    return descriptor


def set_platform(layout: Path, tag: str, arch: str) -> None:
    index = _read(layout / "index.json")
    _tagged(index, tag)["platform"] = platform_of(arch)
    _write(layout / "index.json", index)


def _link_blobs(source: Path, target: Path) -> None:
    for blob in (source / "blobs").rglob("*"):
        if blob.is_file():
            dest = target / blob.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                try:
                    os.link(blob, dest)
                except OSError:
                    shutil.copy2(blob, dest)


def merge(out: Path, tag: str, layouts: list[Path]) -> None:
    (out / "blobs" / "sha256").mkdir(parents=True)
    manifests = []
    for layout in layouts:
        descriptor = dict(_tagged(_read(layout / "index.json"), tag))
        if "platform" not in descriptor:
            raise ValueError(f"{layout}: the {tag} descriptor has no platform")
        descriptor.pop("annotations", None)
        manifests.append(descriptor)
        _link_blobs(layout, out)
    raw = json.dumps(
        {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": manifests}, indent=2, sort_keys=True
    ).encode()
    digest = hashlib.sha256(raw).hexdigest()
    (out / "blobs" / "sha256" / digest).write_bytes(raw)
    top = {
        "mediaType": INDEX_MEDIA_TYPE,
        "digest": f"sha256:{digest}",
        "size": len(raw),
        "annotations": {REF_NAME: tag},
    }
    _write(out / "index.json", {"schemaVersion": 2, "manifests": [top]})
    _write(out / "oci-layout", LAYOUT_FILE)


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "platform":
        set_platform(Path(argv[1]), argv[2], argv[3])
        return 0
    if len(argv) >= 4 and argv[0] == "merge":
        merge(Path(argv[1]), argv[2], [Path(p) for p in argv[3:]])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
