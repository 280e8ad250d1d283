"""``python -m testbed.kubelab.kubelet``: the lab kubelet (testbed/kubelab/kubelet/main.py)."""

import sys

from testbed.kubelab.kubelet.main import main

sys.exit(main())
