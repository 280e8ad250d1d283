"""Probe ``kubeprism``, coordinator side (agent side: agents/probes/kubeprism/).

- driver.py: the driver and its metric: the share of attempts answered"""
