"""On two CPUs the local CPU engine computes on one and Ray's processes run on the other (orchestrator.cpu_split)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from orchestrator import cpu_split
from orchestrator.settings import load_settings


def test_two_cpus_are_split_between_the_engine_and_the_rest() -> None:
    two = cpu_split.split({5, 2})
    assert two is not None
    assert (two.engine, two.rest, two.binding()) == ((2,), (5,), "2")


def test_other_machines_are_left_as_they_are() -> None:
    assert cpu_split.split({0}) is None
    assert cpu_split.split(set(range(4))) is None


@pytest.fixture
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})


@pytest.mark.usefixtures("two_cpus")
def test_a_deployment_that_starts_its_ray_for_a_cpu_engine_splits() -> None:
    planned = cpu_split.plan(load_settings(), {})
    assert planned is not None and planned.binding() == "0"


@pytest.mark.usefixtures("two_cpus")
@pytest.mark.parametrize(
    ("overrides", "environ"),
    [
        ({"ray": {"address": "10.0.0.1:6379"}}, {}),  # a cluster started elsewhere: its processes aren't ours
        ({"local": {"num_gpus": 1}}, {}),  # the engine is on a GPU
        ({}, {cpu_split.BIND: "auto"}),  # the user's binding stands (and nothing is pinned)
    ],
    ids=["joined-cluster", "gpu-engine", "binding-set"],
)
def test_no_split_where_it_is_not_ours_to_make(overrides: dict[str, object], environ: dict[str, str]) -> None:
    assert cpu_split.plan(load_settings(**overrides), environ) is None


def test_what_starts_while_pinned_runs_on_those_cpus_and_the_caller_goes_back() -> None:
    before = os.sched_getaffinity(0)
    one = {min(before)}
    script = "import os; print(sorted(os.sched_getaffinity(0)))"
    with cpu_split.pinned(one):
        child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert child.stdout.strip() == str(sorted(one))
    assert os.sched_getaffinity(0) == before
    with cpu_split.pinned(None):
        assert os.sched_getaffinity(0) == before
