"""Probe ``node``, coordinator side (agent side: agents/probes/node/).

- driver.py: the driver and its metrics: size and utilisation of each node"""
