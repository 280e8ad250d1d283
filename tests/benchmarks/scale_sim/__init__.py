"""A SIMULATOR for the coordinator's scale benchmark (tests/benchmarks/bench_scale_kube.py).

It stands in for the kubelets and the talbench agents of up to a thousand nodes, and for nothing
else: the kube-apiserver, the DaemonSet controller, the scheduler, the API server's pod proxy and
the coordinator (``talbench run --target kube``) are the real programs.

    control_plane.py  a lab namespace with etcd, kube-apiserver (audit log on), controller manager
                      and scheduler, and the simulated node addresses on its loopback
    nodes.py          the simulated Node objects (3 control planes with Talos' labels and taint,
                      workers, zones)
    kubelets.py       one watch over the cluster's pods: a pod bound to a simulated node gets its
                      agent started and is reported Running and Ready (hostNetwork: podIP = node
                      address); a pod being deleted is stopped and removed at once
    agents.py         the agents: the real agent application (agents/app.py: routes, auth, job
                      registry, UDP echo) on each node's address, with a job table whose probes
                      return synthetic results instead of measuring (fsync: real fio, once)
    simulator.py      the process that runs all of it (python -m scale_sim.simulator)

Nothing here is part of talbench; it measures talbench's coordinator.
"""
