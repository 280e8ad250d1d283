"""Probe ``rtt``, coordinator side (agent side: agents/probes/rtt/).

- driver.py: the driver: every agent measures to the peers it owes, control-plane pairs first
- metrics.py: both directions of a pair pooled, from raw samples or compacted histograms

The per-pair fan-out it shares with mtu is bench/probes/peer_jobs.py."""
