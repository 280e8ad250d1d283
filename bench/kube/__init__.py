"""Running talbench on a real Kubernetes cluster.

The only package (with bench.dispatch.kube) that talks to the Kubernetes API:
    config       kubeconfig / in-cluster credentials (KUBECONFIG, --kubeconfig, --context)
    client       the thin JSON-over-HTTP API layer (aiohttp)
    manifests    pure builders of the run's objects (namespace, SA, Secret, DaemonSet)
    rbac         the least RBAC the coordinator needs (rules, Role/ClusterRole documents)
    cronjob      CronJob mode: manifests, results kept in ConfigMaps
    pushgateway  pushing a run's figures to a Prometheus Pushgateway
    facts        what the API says about the cluster (nodes, versions, pods on control planes)
    topology     reference-architecture topology metrics and their driver
    kubeprism    coordinator side of the agent's KubePrism check
"""
