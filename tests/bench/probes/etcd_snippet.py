"""The etcd probe's snippet for scenarios/control-plane.yaml, read by the driver's tests and the lab's."""

SNIPPET = """
schema: 1
name: etcd-snippet
probes:
  etcd:
    profile: s                  # 150 writes/s from 50 clients, 60 s (etcdctl check perf --load=s);
                                # clusters of several hundred nodes: m (1000/s, 200 clients)
    duration: 60s
    heartbeat_interval: 100ms   # the scratch members run etcd's (and Talos') defaults
    election_timeout: 1s
checks:
  - name: etcd-write-rate
    metric: etcd.rate_ratio
    scope: cluster
    fail: 90 %
    source: >-
      etcdctl check perf (etcd v3.4): fails when the achieved throughput is below 90 % of the
      load profile's rate. Measured on a scratch etcd cluster of one member per control plane,
      data on the node's disk, load through the JSON gateway from one control plane.
    description: achieved write rate as a share of the profile's rate
  - name: etcd-slowest-write
    metric: etcd.max_latency
    scope: cluster
    fail: 500ms
    source: >-
      etcdctl check perf (etcd v3.4): fails when the slowest request took longer than 0.5 s.
      talbench measures from each write's scheduled send time (no coordinated omission).
    description: slowest write of the run
  - name: etcd-latency-stddev
    metric: etcd.latency_stddev
    scope: cluster
    fail: 100ms
    source: >-
      etcdctl check perf (etcd v3.4): fails when the standard deviation of request latency
      exceeds 0.1 s.
    description: spread of write latency
  - name: etcd-write-errors
    metric: etcd.errors
    scope: cluster
    fail: 1
    source: etcdctl check perf (etcd v3.4) fails on any request error.
    description: writes that failed (HTTP error, timeout, lost connection)
  - name: etcd-latency-p99
    metric: etcd.latency_p99
    scope: cluster
    source: Reported, not judged (etcdctl check perf judges the slowest write and the spread).
    description: 99th percentile write latency
  - name: etcd-leader-changes
    metric: etcd.leader_changes
    scope: cluster
    warn: 1
    source: >-
      talbench: a leader election under a steady write load means heartbeats were missed (etcd
      tuning guide); reported as a warning, etcd sets no limit.
    description: leader elections seen during the load
  - name: etcd-wal-fsync
    metric: etcd.wal_fsync_p99
    scope: control-plane-nodes
    fail: 10ms
    source: >-
      etcd guidance on disks: the 99th percentile of etcd_disk_wal_fsync_duration_seconds should
      stay below 10 ms. Read from the member's own histogram over the load, interpolated in its
      bucket as Prometheus' histogram_quantile() does (buckets 1, 2, 4, 8, 16 ms ...).
    description: p99 WAL fsync of this node's scratch member under the load
  - name: etcd-backend-commit
    metric: etcd.backend_commit_p99
    scope: control-plane-nodes
    fail: 25ms
    source: >-
      etcd guidance on disks: the 99th percentile of etcd_disk_backend_commit_duration_seconds
      should stay below 25 ms. Read like etcd-wal-fsync.
    description: p99 backend commit of this node's scratch member under the load
  - name: etcd-member-rtt
    metric: etcd.peer_rtt
    scope: cluster
    source: Reported, not judged (the RTT limit is control-plane-rtt's); etcd's own peer prober.
    description: largest mean round-trip time between two etcd members
  - name: etcd-recommended-heartbeat
    metric: etcd.recommended_heartbeat
    scope: cluster
    source: >-
      etcd tuning guide: heartbeat-interval around the maximum of the average round-trip time
      between members. Reported, not judged.
    description: heartbeat-interval for the measured member RTT
  - name: etcd-recommended-election-timeout
    metric: etcd.recommended_election_timeout
    scope: cluster
    source: >-
      etcd tuning guide: election-timeout at least 10 times the round-trip time between members.
      Reported, not judged.
    description: election-timeout for the measured member RTT
"""
