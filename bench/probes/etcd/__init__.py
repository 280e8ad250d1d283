"""Probe ``etcd``, coordinator side (agent side: agents/probes/etcd/).

- driver.py: the driver: the scratch cluster across the control planes, its load, its teardown
- metrics.py: observations from the scratch cluster's raw results (also the live-etcd probe's
  load and disk figures)"""
