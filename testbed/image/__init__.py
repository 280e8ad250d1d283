"""The image runner: the lab's agents from the talbench OCI image, each in a runc container.

oci_image (unpacking an archive, once per digest), oci_spec (a pod's context as an OCI runtime
config), runner (the containers and the lab's agent launcher), pod (the DaemonSet's pod context),
down (the teardown command ``lab down`` runs: containers and cgroups).
"""
