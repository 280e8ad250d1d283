"""Stop a lab's containers and remove its cgroups: the teardown command the image launcher and
the Kubernetes lab leave on record (talbench.bench.lab.addons.Leftovers), run by ``talbench lab
down`` and the leftover sweep, which never import the test bed.

    python -m testbed.image.down LAB_ID [--grace SECONDS]

Prints ``{"removed": {"containers": [...], "cgroup directories": [...]}}``.  Idempotent.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from talbench.bench.lab.topology import is_lab_id
from testbed.image import runner

DEFAULT_GRACE = 10.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.image.down", description=__doc__.splitlines()[0])
    parser.add_argument("lab_id")
    parser.add_argument("--grace", type=float, default=DEFAULT_GRACE, help="seconds a container gets after SIGTERM")
    args = parser.parse_args(argv)
    if not is_lab_id(args.lab_id):
        parser.error(f"not a lab id: {args.lab_id!r}")
    stopped = runner.stop_lab(args.lab_id, args.grace)
    cgroups = runner.remove_cgroups(args.lab_id)
    json.dump({"removed": {"containers": list(stopped), "cgroup directories": list(cgroups)}}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
