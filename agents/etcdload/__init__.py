"""etcd write load: a multi-process open-loop / closed-loop load generator against etcd's JSON
gateway (``/v3/kv/put``), a mergeable latency histogram, etcd administration over etcd3gw, and a
parser for etcd's Prometheus metrics.  Used by the ``etcd.load`` job on an agent and, for the
opt-in live-etcd mode, by the coordinator."""
