"""Load profiles, the same as ``etcdctl check perf --load``: a rate of writes per second, a
number of concurrent clients, 60 s, 256-byte keys and 1 KiB values."""

from __future__ import annotations

from dataclasses import dataclass

KEY_SIZE = 256
VALUE_SIZE = 1024
DURATION = 60.0


@dataclass(frozen=True)
class LoadProfile:
    name: str
    rate: float  # writes per second
    clients: int

    @property
    def label(self) -> str:
        return f"{self.name} ({self.rate:g} writes/s, {self.clients} clients)"


PROFILES: dict[str, LoadProfile] = {
    "s": LoadProfile("s", 150.0, 50),
    "m": LoadProfile("m", 1000.0, 200),
    "l": LoadProfile("l", 8000.0, 500),
    "xl": LoadProfile("xl", 15000.0, 1000),
}
