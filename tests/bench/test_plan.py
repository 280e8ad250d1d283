import pytest

from talbench.bench import scenario
from talbench.bench.errors import UsageError
from talbench.bench.judge import judge
from talbench.bench.model import STORAGE_LABEL, Node, ResultKey, Role, Scope, Status, Subject
from talbench.bench.plan import make_plan, select_checks, subjects
from talbench.bench.probes import default_drivers
from talbench.bench.run import RunRequest, agent_nodes, metrics_of, plan_of
from tests.bench.factories import nodes

METRICS = metrics_of(default_drivers())


def test_scopes_pick_the_right_subjects():
    cluster = nodes(3, 2)
    assert subjects(Scope.CONTROL_PLANE_PAIRS, cluster) == (
        Subject(("cp1", "cp2")),
        Subject(("cp1", "cp3")),
        Subject(("cp2", "cp3")),
    )
    assert len(subjects(Scope.ALL_PAIRS, cluster)) == 10
    other = subjects(Scope.OTHER_PAIRS, cluster)
    assert len(other) == 7 and all(any(n.startswith("w") for n in s.nodes) for s in other)
    assert subjects(Scope.WORKER_NODES, cluster) == (Subject(("w1",)), Subject(("w2",)))
    assert subjects(Scope.CLUSTER, cluster) == (Subject(()),)
    storage = (*cluster[:3], Node("w1", Role.WORKER, "10.213.0.101", {STORAGE_LABEL: ""}), cluster[4])
    assert subjects(Scope.STORAGE_NODES, storage) == (Subject(("w1",)),)


def test_plan_expects_both_directions_of_every_pair_up_front():
    loaded = scenario.load(scenario.resolve("control-plane"), METRICS)
    plan = make_plan(select_checks(loaded, ["rtt"]), nodes(3, 1), METRICS)
    # 4 nodes: every node owes a result towards every other node
    assert plan.keys_of("rtt") == frozenset(
        ResultKey("rtt", a, b) for a in ("cp1", "cp2", "cp3", "w1") for b in ("cp1", "cp2", "cp3", "w1") if a != b
    )


def test_only_takes_probe_or_check_names_and_refuses_others():
    loaded = scenario.load(scenario.resolve("control-plane"), METRICS)
    assert [c.name for c in select_checks(loaded, ["worker-rtt"])] == ["worker-rtt"]
    assert {c.probe for c in select_checks(loaded, ["rtt"])} == {"rtt"}
    assert select_checks(loaded, [""]) == loaded.checks
    with pytest.raises(UsageError, match="--only gpu: not a probe or check"):
        select_checks(loaded, ["gpu"])


def test_kubeprism_does_not_apply_on_the_process_lab_and_is_judged_on_kubernetes():
    """The acceptance gate could never pass on the process lab (no KubePrism on a network
    namespace): there the check is an info verdict saying so, and nothing is measured for it;
    on a Kubernetes target it is planned on every node."""
    loaded = scenario.load(scenario.resolve("acceptance"), METRICS)
    checks = select_checks(loaded, ["kubeprism"])
    on_lab = make_plan(checks, nodes(3, 1), METRICS, target="lab")
    assert on_lab.keys_of("kubeprism") == frozenset() and "kubeprism" not in on_lab.probes
    [verdict] = judge(on_lab, {}, nodes(3, 1), METRICS)
    assert verdict.status is Status.INFO and "does not apply on the process lab" in verdict.message
    on_kube = make_plan(checks, nodes(3, 1), METRICS, target="kube")
    assert on_kube.keys_of("kubeprism") == frozenset(ResultKey("kubeprism", n) for n in ("cp1", "cp2", "cp3", "w1"))
    verdicts = judge(on_kube, {}, nodes(3, 1), METRICS)
    assert {v.status for v in verdicts} == {Status.NO_DATA}  # planned and missing: never a pass


def test_agents_go_only_where_the_checks_need_them():
    """The nodes a run deploys agents on: all of them for RTT among every node, the control planes
    alone for the control-plane fsync check or the scratch etcd, none for topology."""
    drivers = default_drivers()
    loaded = scenario.load(scenario.resolve("control-plane"), METRICS)
    cluster = nodes(3, 2)
    names = {n.name for n in cluster}

    def needed(only: list[str]) -> frozenset[str]:
        probes = {check.probe for check in loaded.checks}  # the live-etcd probe has no defaults: not asked for here
        settings = {p: drivers[p].settings(loaded.probes.get(p, {}), quick=True) for p in probes}
        request = RunRequest("run-x", loaded, select_checks(loaded, only), settings, quick=True)
        return agent_nodes(plan_of(request, drivers, cluster, "kube"), drivers, cluster)

    assert needed(["rtt"]) == names
    assert needed(["control-plane-fsync"]) == {"cp1", "cp2", "cp3"}
    assert needed(["etcd"]) == {"cp1", "cp2", "cp3"}
    assert needed(["control-plane-count"]) == frozenset()  # the API's facts: no agent at all
