"""Probe ``etcd-live``, coordinator side only: the live etcd of a running cluster, read (and,
when allowed, written under the run's prefix) from the coordinator with the etcd probe's load
generator and metrics parser (agents/probes/etcd/).

- driver.py: the driver: status, members, metrics and the optional write load
- settings.py: its declared settings (from the command line's --etcd-* options)
- metrics.py: its metrics, and which of the checks in scenarios/_etcd-live.yaml a run judges"""
