"""Probe ``etcd``: a scratch etcd cluster on the control planes and a write load into it.  The
write load and the metrics parser also serve the live-etcd probe (bench/probes/etcd_live/),
which points them at a running cluster's etcd from the coordinator.

- probe.py: the declaration and its parameters
- member.py: the ``etcd.member`` job: this node's member (start, stop, status, peer round trips)
- load.py: the ``etcd.load`` job: the write load and the members' metrics around it
- binary.py: finding the etcd binary and its version
- local_cluster.py: a scratch cluster of local members (one machine, tests and benchmarks)
- settings.py: the load's and the members' settings, shared with the coordinator
- profiles.py: the load profiles (s, m, l, xl)
- generator.py: the multi-process open-loop / closed-loop load generator
- worker.py: one load process (``python -m``), its clients and their latencies
- connection.py: a client connection to etcd's JSON gateway
- grpc_put.py: writes over etcd's client protocol (gRPC)
- histogram.py: a mergeable latency histogram
- admin.py: etcd administration over etcd3gw (status, members, prefix clean-up)
- promtext.py: a parser for etcd's Prometheus metrics
- peer_rtt.py: round trips to the other members' peer listeners
"""
