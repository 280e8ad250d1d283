"""Probe ``fsync``, coordinator side (agent side: agents/probes/fsync/).

- driver.py: the driver and its metrics: fio's etcd recipe, node by node"""
