"""The one Kubernetes stand-in beside the real control plane (testbed/kubelab): simulated nodes,
kubelets and agents, and an emulated API server for what a real one cannot be made to do on
demand.  Why each part is still needed, test by test: README.md beside this file.

    nodes.py          the simulated nodes (SimNode) and their Node objects; the scale benchmark's
                      set (3 control planes with Talos' labels and taint, workers, zones)
    pods.py           what the kubelet and the scheduler write for a pod: Ready and waiting
                      states, the scheduler's and the kubelet's messages, node affinity
    kubelet.py        the one simulated kubelet: its nodes' pods, their states and faults, what runs
                      for each; over an API (PodApi) and a runtime, one of each per side below
    emulator.py       an API server emulated in-process (ApiEmulator): a store, the DaemonSet and
                      namespace controllers, Pod Security's verdict, the pod proxy, and the kubelet
                      over its store (StorePods) running each pod's real agent command
    container.py      the emulator's runtime: the pod's real command as a child process (on a
                      loopback address, or in a lab node's network namespace)
    kubelets.py       the kubelet against a REAL API server (ApiServerPods): the simulated Nodes,
                      one watch over all pods, each bound pod's agent started in-process
    agents.py         the simulated agents: the real agent application with synthetic results
    control_plane.py  the scale benchmark's real control plane (audit log on, no leader election)
    simulator.py      the process that runs N simulated kubelets and agents (scale benchmark)

Nothing here is part of talbench; talbench never imports it.
"""
