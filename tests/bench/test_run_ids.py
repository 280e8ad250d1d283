"""One definition of a run id (agents/wire.py): what the coordinator makes, what it accepts from
outside (``talbench clean --run-id``, the Kubernetes objects it builds) and what the agent takes."""

from __future__ import annotations

from typing import cast

import pytest

from talbench.agents.wire import valid_run_id
from talbench.bench.cli import main
from talbench.bench.errors import UsageError
from talbench.bench.kube import manifests as m
from talbench.bench.kube.client import KubeClient
from talbench.bench.kube.deploy import clean
from talbench.bench.run import check_run_id, new_run_id

GOOD = ["r", "run-1", "20261121-153000-a1b2", "a" * 54, "0-0"]
BAD = ["", "-run", "run-", "Run-1", "run_1", "run.1", "run 1", "a" * 55, "run/1", "run-1\n", "ä"]


@pytest.mark.parametrize("value", GOOD)
def test_valid_run_ids(value):
    assert valid_run_id(value) and check_run_id(value) == value
    m.AgentSpec(run_id=value, namespace=m.run_namespace(value), image="img", token="t")
    assert len(m.run_namespace(value)) <= 63 and m.run_namespace(value) == f"talbench-{value}"


@pytest.mark.parametrize("value", BAD)
def test_invalid_run_ids_are_refused_everywhere(value):
    assert not valid_run_id(value)
    with pytest.raises(UsageError, match="run id"):
        check_run_id(value)
    with pytest.raises(ValueError, match="run id"):
        m.AgentSpec(run_id=value, namespace="talbench", image="img", token="t")


def test_only_strings_are_run_ids():
    assert not valid_run_id(None) and not valid_run_id(12) and not valid_run_id(b"run-1")


def test_the_coordinator_makes_valid_run_ids():
    assert all(valid_run_id(new_run_id(now)) for now in (0.0, 1.8e9, 4.1e9))
    assert new_run_id(0.0).startswith("19700101-000000-")


def test_clean_refuses_a_bad_run_id_before_reaching_any_cluster(capsys):
    assert main(["clean", "--run-id", "Run_1", "--kubeconfig", "/nonexistent"]) == 2
    assert "run id 'Run_1'" in capsys.readouterr().err


async def test_the_kube_cleaner_never_puts_a_bad_run_id_into_a_label_selector():
    with pytest.raises(UsageError, match="run id"):
        await clean(cast(KubeClient, None), run_id="x,app=other")  # refused before any API call
