"""The Kubernetes lab: a real control plane and the lab kubelet on the process lab.

control (the control plane: binaries, PKI, files, command lines, Nodes, the forwarder, status),
kubelet (the lab kubelet), addon (the process lab's add-on that starts them), cli and __main__
(``python -m testbed.kubelab up|status|down``).
"""
