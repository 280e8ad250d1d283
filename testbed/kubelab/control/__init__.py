"""The Kubernetes lab's control plane.

binaries (locating what ``make kubernetes`` built), pki (the lab's CA and certificates), files
(kubeconfigs, tokens, admission), argv (the components' command lines), nodes (the Node objects),
forward (the loopback forwarder into the lab), plane (starting it and its record), status.
"""
