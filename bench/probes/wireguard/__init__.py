"""Probe ``wireguard``, coordinator side (agent side: agents/probes/wireguard/).

- driver.py: the driver: the pairs to measure, one at a time
- pair.py: one pair: tunnel up, iperf3 and round trips over both paths, tunnel down
- metrics.py: the pair's throughput, RTT and CPU cost, node path against tunnel"""
