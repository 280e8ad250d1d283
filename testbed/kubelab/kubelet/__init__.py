"""The lab kubelet (``python -m testbed.kubelab.kubelet``; main says what it does).

main (the process), config (what it is given), api (its API calls), node (heartbeat, pod watch),
server (the nodes' port 10250), prism (KubePrism), pod (one pod's life), container (its bundle
and probes), spec and volumes (the pod spec as an OCI runtime config), probe, runc, status.
"""
