"""How a run's agents are deployed and reached.

Modules:
    base    the interface both dispatchers implement (the Fleet they yield, what a teardown leaves)
    lab     agents in the local lab of network namespaces, reached over unix sockets
    kube    a DaemonSet of agents on a Kubernetes cluster, reached through the API server or directly
"""
