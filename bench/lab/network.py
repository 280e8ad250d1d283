"""The lab's network, built inside its own namespaces: a bridge namespace joining the nodes, an
optional router namespace whose TUN device carries delayed nodes' traffic through the delay line
(bench/lab/delayline.py), and one namespace per node (a veth, its address, its route).

Nothing is created in the root network namespace, and no lab namespace has a default route.
"""

from __future__ import annotations

from talbench.bench.lab.netns import Ip
from talbench.bench.lab.topology import (
    BRIDGE_DEVICE,
    DELAY_RULE_PRIORITY,
    DELAY_TABLE,
    LAB_NETWORK,
    NODE_DEVICE,
    TUN_DEVICE,
    LabPlan,
    NodePlan,
)

_NO_IPV6 = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}
_ROUTER_SYSCTLS = {
    **_NO_IPV6,
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.default.send_redirects": "0",
    "net.ipv4.ip_forward": "1",
}


def build_network(ip: Ip, plan: LabPlan) -> None:
    br, rt = plan.bridge_namespace, plan.router_namespace
    ip.netns_add(br)
    ip.sysctl(br, _NO_IPV6)
    ip.batch([f"link add {BRIDGE_DEVICE} type bridge", f"link set {BRIDGE_DEVICE} up"], netns=br)
    if rt:
        ip.netns_add(rt)
        ip.sysctl(rt, _ROUTER_SYSCTLS)
        ip.batch(_bridge_leg("n-rt", rt), netns=br)
        bridge_leg = plan.router_legs[0]
        ip.batch(
            [
                "link set lo up",
                f"addr add {bridge_leg.address}/{bridge_leg.prefix} dev {NODE_DEVICE}",
                f"link set {NODE_DEVICE} up",
                f"tuntap add dev {TUN_DEVICE} mode tun",
                f"link set {TUN_DEVICE} up",
                f"route add {LAB_NETWORK} dev {TUN_DEVICE} table {DELAY_TABLE}",
                f"rule add iif {NODE_DEVICE} lookup {DELAY_TABLE} priority {DELAY_RULE_PRIORITY}",
            ],
            netns=rt,
        )
    for node in plan.nodes:
        _add_node(ip, plan, node)


def _bridge_leg(device: str, peer_namespace: str) -> list[str]:
    return [
        f"link add {device} type veth peer name {NODE_DEVICE} netns {peer_namespace}",
        f"link set {device} master {BRIDGE_DEVICE}",
        f"link set {device} up",
    ]


def _add_node(ip: Ip, plan: LabPlan, node: NodePlan) -> None:
    ip.netns_add(node.namespace)
    ip.sysctl(node.namespace, _NO_IPV6)
    if node.delayed:
        assert plan.router_namespace and node.via
        ip.batch(
            [
                f"link add {node.peer_device} type veth peer name {NODE_DEVICE} netns {node.namespace}",
                f"addr add {node.via}/{node.prefix} dev {node.peer_device}",
                f"link set {node.peer_device} up",
                f"rule add iif {node.peer_device} lookup {DELAY_TABLE} priority {DELAY_RULE_PRIORITY}",
            ],
            netns=plan.router_namespace,
        )
    else:
        ip.batch(_bridge_leg(node.peer_device, node.namespace), netns=plan.bridge_namespace)
    commands = [
        "link set lo up",
        f"addr add {node.address}/{node.prefix} dev {NODE_DEVICE}",
        f"link set {NODE_DEVICE} up",
    ]
    if node.via:
        commands.append(f"route add {LAB_NETWORK} via {node.via}")
    ip.batch(commands, netns=node.namespace)
