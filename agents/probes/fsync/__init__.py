"""Probe ``fsync``: fdatasync latency of the disk under etcd's data, with fio.

- probe.py: the declaration, its parameters and the ``fsync`` job
- fio.py: fio's command line, its run and its JSON output"""
