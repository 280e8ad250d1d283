"""`python -m talbench.bench.cli`: the `talbench` command without its console script."""

import sys

from talbench.bench.cli import main

sys.exit(main())
