"""Probe ``kubeprism``: does KubePrism answer on this node.

- probe.py: the declaration, its parameters and the ``kubeprism`` job"""
