"""Probe ``wireguard``: WireGuard / KubeSpan overhead between pairs of nodes.

- probe.py: the declaration, its parameters and the three jobs
- tunnel.py: the ``wireguard.tunnel`` job: a test tunnel between two agents
- links.py: WireGuard links (kernel or wireguard-go), configured with wg and ip
- kubespan.py: KubeSpan detection on a Talos node
- iperf.py: the ``wireguard.iperf`` job: one side of an iperf3 transfer
- ping.py: the ``wireguard.ping`` job: ICMP echo to the peer over either path"""
