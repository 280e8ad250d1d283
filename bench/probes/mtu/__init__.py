"""Probe ``mtu``, coordinator side (agent side: agents/probes/mtu/).

- driver.py: the driver and its metrics: each pair's figure is the smaller direction

The per-pair fan-out it shares with rtt is bench/probes/peer_jobs.py."""
