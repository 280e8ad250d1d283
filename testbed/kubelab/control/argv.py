"""The command lines of the Kubernetes lab's control-plane components (testbed/kubelab/control/plane.py
starts them): etcd, kube-apiserver with Talos' admission and authorization settings,
kube-controller-manager and kube-scheduler, each pointing at its files under the lab's
``kubernetes/`` directory."""

from __future__ import annotations

from pathlib import Path

from talbench.bench.lab.state import LabNode
from testbed.kubelab.control.binaries import KubeBinaries
from testbed.kubelab.control.pki import LabPki

API_PORT = 6443
ETCD_CLIENT_PORT = 2379  # Talos' ports, on the control plane's loopback (the scratch cluster uses 12379)
ETCD_PEER_PORT = 2380
SERVICE_CIDR = "10.96.0.0/12"
# The lab runs one controller manager and one scheduler, and nothing restarts them: a component
# that cannot renew its lease within the renew deadline exits (as upstream does, for its static
# pod to be restarted).  At the defaults (15 s lease, 10 s deadline, 2 s retry) one slow GET on a
# saturated host can end them midway through a large rollout; with one candidate there is
# no one to fail over to, so the lab waits much longer before giving up the lease.
LEADER_ELECTION_TIMING = (
    "--leader-elect-lease-duration=120s",
    "--leader-elect-renew-deadline=100s",
    "--leader-elect-retry-period=5s",
)


def etcd_argv(binaries: KubeBinaries, directory: Path, pki: LabPki, node: LabNode) -> list[str]:
    client = f"https://127.0.0.1:{ETCD_CLIENT_PORT}"
    peer = f"http://127.0.0.1:{ETCD_PEER_PORT}"
    return [
        str(binaries.etcd),
        f"--name={node.name}",
        f"--data-dir={directory / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={node.name}={peer}",
        f"--cert-file={pki.etcd_server.cert}",
        f"--key-file={pki.etcd_server.key}",
        f"--trusted-ca-file={pki.ca.cert}",
        "--client-cert-auth=true",
        # The lab's API store is not what talbench measures (the scratch cluster is): no fsync, so
        # it does not load the disk the fsync and etcd probes measure on this machine.
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_argv(binaries: KubeBinaries, directory: Path, pki: LabPki, node: LabNode) -> list[str]:
    return [
        str(binaries.apiserver),
        f"--advertise-address={node.address}",
        "--bind-address=0.0.0.0",  # inside the node's namespace: its address and loopback
        f"--secure-port={API_PORT}",
        f"--tls-cert-file={pki.apiserver.cert}",
        f"--tls-private-key-file={pki.apiserver.key}",
        f"--client-ca-file={pki.ca.cert}",
        f"--token-auth-file={directory / 'tokens.csv'}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        f"--admission-control-config-file={directory / 'admission.yaml'}",
        "--allow-privileged=true",
        f"--etcd-servers=https://127.0.0.1:{ETCD_CLIENT_PORT}",
        f"--etcd-cafile={pki.ca.cert}",
        f"--etcd-certfile={pki.etcd_client.cert}",
        f"--etcd-keyfile={pki.etcd_client.key}",
        f"--kubelet-client-certificate={pki.kubelet_client.cert}",
        f"--kubelet-client-key={pki.kubelet_client.key}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--profiling=false",
        "--v=1",
    ]


def controller_manager_argv(binaries: KubeBinaries, directory: Path, pki: LabPki, cluster: str) -> list[str]:
    kubeconfig = directory / "controller-manager.kubeconfig"
    return [
        str(binaries.controller_manager),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--cert-dir={directory / 'controller-manager-serving'}",
        f"--cluster-name={cluster}",
        f"--cluster-signing-cert-file={pki.ca.cert}",
        f"--cluster-signing-key-file={pki.ca.key}",
        f"--root-ca-file={pki.ca.cert}",
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--use-service-account-credentials=true",
        "--controllers=*,bootstrapsigner,tokencleaner",
        "--leader-elect=true",
        *LEADER_ELECTION_TIMING,
        "--profiling=false",
        "--v=1",
    ]


def scheduler_argv(binaries: KubeBinaries, directory: Path) -> list[str]:
    kubeconfig = directory / "scheduler.kubeconfig"
    return [
        str(binaries.scheduler),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--cert-dir={directory / 'scheduler-serving'}",
        "--leader-elect=true",
        *LEADER_ELECTION_TIMING,
        "--profiling=false",
        "--v=1",
    ]
