"""Probe ``node``: the node's size and its CPU and memory utilisation.

- probe.py: the declaration, its parameters and the ``node`` job (facts from agents/facts.py)"""
