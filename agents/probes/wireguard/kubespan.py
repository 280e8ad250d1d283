"""KubeSpan detection on a Talos node.

KubeSpan is Talos's WireGuard full mesh: a link named ``kubespan``; Talos routes traffic to peer
nodes into it with an fwmark-based routing rule (priority 32500, table 180), and packets that
already carry the mark 0x20 bypass it (that is how KubeSpan's own encrypted UDP leaves the node).
A test tunnel whose UDP goes to peer node addresses must carry that mark too, or it would run
inside KubeSpan (tunnel-in-tunnel).

Detection reads sysfs only; the root is passed in so it can be tested with a directory tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

LINK = "kubespan"
BYPASS_MARK = 0x20  # packets with this mark are not routed into KubeSpan
RULE_PRIORITY = 32500
ROUTE_TABLE = 180
WIREGUARD_PORT = 51820  # KubeSpan's port: test tunnels use another one
IFF_UP = 0x1


@dataclass(frozen=True)
class KubeSpanState:
    present: bool  # /sys/class/net/kubespan exists
    up: bool  # and is administratively up
    operstate: str | None = None
    mtu: int | None = None

    @property
    def active(self) -> bool:
        return self.present and self.up

    def as_dict(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "present": self.present,
            "up": self.up,
            "operstate": self.operstate,
            "mtu": self.mtu,
            "link": LINK,
        }


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def detect(sys_root: Path = Path("/sys")) -> KubeSpanState:
    """KubeSpan's state on this node, from ``<sys_root>/class/net/kubespan``."""
    link = sys_root / "class" / "net" / LINK
    if not link.exists():
        return KubeSpanState(present=False, up=False)
    flags_text = _read(link / "flags")
    try:
        flags = int(flags_text, 16) if flags_text else 0
    except ValueError:
        flags = 0
    mtu_text = _read(link / "mtu")
    operstate = _read(link / "operstate")
    # A WireGuard link that is up reports operstate "unknown": the IFF_UP flag is what counts.
    up = bool(flags & IFF_UP) or operstate == "up"
    return KubeSpanState(
        present=True, up=up, operstate=operstate, mtu=int(mtu_text) if mtu_text and mtu_text.isdigit() else None
    )


def path_of(route_dev: str | None) -> str:
    """Name of the path a figure took, from the device the kernel routed it through."""
    return "kubespan" if route_dev == LINK else "plain"
