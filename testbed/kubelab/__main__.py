"""``python -m testbed.kubelab up|status|down``: the test bed's entry point (testbed/kubelab/cli.py)."""

import sys

from testbed.kubelab.cli import main

sys.exit(main())
