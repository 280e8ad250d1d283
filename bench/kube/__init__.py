"""Running talbench on a real Kubernetes cluster: only what talks to the Kubernetes API or builds
and reads its objects.  With bench.dispatch.kube, the only code that does:
    config       kubeconfig / in-cluster credentials (KUBECONFIG, --kubeconfig, --context)
    exec_plugin  client-go credential plugins (users[].user.exec), run bounded
    transport    the HTTP session to one API server (API calls and pod-proxy calls alike)
    client       the thin JSON-over-HTTP API layer (aiohttp)
    image        the agent image (--image) and its pull secrets, checked before anything is created
    manifests    pure builders of the run's objects (namespace, SA, Secret, DaemonSet)
    rbac         the least RBAC the coordinator needs (rules, Role/ClusterRole documents)
    cronjob      CronJob mode: its manifests, and the results kept in ConfigMaps
    facts        the cluster's facts (bench.cluster_facts) read from Node and Pod objects
    readiness    why an agent pod is (not) ready, read from Pod and Event objects
    deploy       the run's life on the cluster: read the facts, create, wait for, remove, clean
    lease        a run's deadline, renewed while the run lasts

What the API says becomes plain records (bench.cluster_facts) that the topology probe
(bench.probes.topology) judges; the Pushgateway client is a report (bench.report.pushgateway).
"""
