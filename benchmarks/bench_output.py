"""The result file a benchmark writes (results/bench/NAME.json): its own figures between what
every record carries, the schema, when, the host, its kernel and the command line.

The bench_*.py scripts run as files, so their directory is on sys.path and they import this
sibling as ``bench_output``.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_record(out: Path, schema: str, figures: Mapping[str, Any], *, with_kernel: bool = True) -> None:
    """Write to ``out`` (its directory made if missing) ``schema``, when (seconds since the
    epoch), host, kernel (unless ``with_kernel`` is False), ``figures`` in their order and the
    command, then print where it went."""
    record: dict[str, Any] = {"schema": schema, "when": time.time(), "host": platform.node()}
    if with_kernel:
        record["kernel"] = platform.release()
    record.update(figures)
    record["command"] = " ".join(sys.argv)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(f"written: {out}")
