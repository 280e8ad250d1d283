"""Probe ``topology``, coordinator side only (it needs no agent).

- driver.py: the driver and its metrics over the cluster's facts"""
