"""Probe ``etcd``: a scratch etcd cluster of one member per control plane, its data on the disk
under test, and a write load into it from one control plane.

Two jobs: ``etcd.member`` (start, stop, status of this node's member, and round trips to the
other members' peer listeners: agents/probes/etcd/member.py) and ``etcd.load`` (the write load
and the members' own metrics around it: agents/probes/etcd/load.py).  The parameters are
declared in agents/probes/etcd/settings.py: the scenario's block and the jobs share them.
"""

from __future__ import annotations

from talbench.agents.probe import ProbeDeclaration, Tool
from talbench.agents.probes.etcd import load as etcd_load
from talbench.agents.probes.etcd import member as etcd_member
from talbench.agents.probes.etcd.binary import ETCD_VERSION
from talbench.agents.probes.etcd.settings import EtcdSettings

PROBE = ProbeDeclaration(
    name="etcd",
    summary="scratch etcd cluster across the control planes under an etcdctl-check-perf write load",
    settings=EtcdSettings,
    jobs=(etcd_member.JOB, etcd_load.JOB),
    # etcd runs the members; etcdctl ships beside it (same release) for looking into a scratch
    # member by hand, and the benchmark compares against its `check perf`.  The jobs themselves
    # talk to etcd directly, not through etcdctl: the load over gRPC (agents/probes/etcd/grpc_put.py),
    # administration over its JSON gateway (etcd3gw).  Both are built
    # from etcd's Go modules at the version Talos ships (`make etcd`, agents/build/build-etcd.sh),
    # not Debian's 3.4: the scratch cluster refuses an etcd older than 3.5 (binary.py).
    tools=(
        Tool("etcd", built_by="etcd", version=ETCD_VERSION),
        Tool("etcdctl", built_by="etcd", version=ETCD_VERSION),
    ),
)

MEMBER, LOAD = PROBE.jobs
