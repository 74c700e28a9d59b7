"""The dashboard's document from a window and the scheduler's state: shares, empty slots, reasons, TTFT
against each alias's SLO, the cache's hit rate, spend ordering, the local load and the burst budget."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.dashboard.summary import (
    budget,
    cache,
    local,
    spend,
    spill_reasons,
    summarize,
    timeline,
    traffic,
    ttft,
)
from orchestrator.dashboard.window import Bounds, Group, Percentiles, Window
from orchestrator.scheduling.load import LoadSnapshot
from orchestrator.scheduling.policy import Budget
from orchestrator.scheduling.router import RoutingState

NOW = 1_800_000_030.0


def group(route: str, n: int, **kw: Any) -> Group:
    base: dict[str, Any] = dict(
        route=route,
        reason={"local": "local", "remote": "spill", "cache": "cache"}.get(route, "-"),
        cache={"cache": "HIT", "none": "-"}.get(route, "MISS"),
        key="team",
        model="auto",
        requests=n,
        errors=n if route == "none" else 0,
        prompt_tokens=10 * n,
        completion_tokens=5 * n,
        cost_usd=0.01 * n if route == "remote" else 0.0,
        reference_usd=0.02 * n if route != "none" else 0.0,
    )
    base.update(kw)
    return Group(**base)


GROUPS = [
    group("local", 5),
    group("local", 1, cache="BYPASS", key="-"),
    group("remote", 2),
    group("remote", 1, reason="capability", cache="BYPASS", key="zed", model="big"),
    group("cache", 1),
    group("none", 2, key="-", model="-"),
]


def window(**kw: Any) -> Window:
    base: dict[str, Any] = dict(
        bounds=Bounds.last(NOW, 3),
        groups=GROUPS,
        timeline=[(0, "local", 2), (2, "local", 4), (2, "remote", 3), (2, "cache", 1), (1, "none", 2)],
        ttft={"auto": Percentiles(9, 80.0, 900.0), "fast": Percentiles(1, 40.0, 40.0), "odd": Percentiles(2, 1, 2)},
        reference_model="p/ref",
    )
    base.update(kw)
    return Window(**base)


def snapshot(**kw: Any) -> LoadSnapshot:
    base: dict[str, Any] = dict(
        replicas=2,
        slots=16,
        waiting=3,
        running=16,
        queued_prompt_tokens=0,
        prefill_tokens_per_s=0.0,
        decode_tokens_per_s=0.0,
        finished_per_s=0.0,
        prefill_capacity_tokens_per_s=None,
        step_ms=None,
        recent_ttft_ms=250.0,
        kv_cache_usage=0.4,
        taken_at=NOW,
    )
    base.update(kw)
    return LoadSnapshot(**base)


def state(**kw: Any) -> RoutingState:
    base: dict[str, Any] = dict(
        local={"local": "chat"},
        load={"chat": snapshot(sent=1)},
        budget=Budget(2.0, 0.5),
        slo_ms={"auto": 800.0, "fast": 500.0},
        spilling={"auto": True, "fast": False},
    )
    base.update(kw)
    return RoutingState(**base)


def test_traffic_shares_are_of_answered_requests() -> None:
    t = traffic(window())
    assert (t["requests"], t["local"], t["remote"], t["cache"], t["failed"], t["answered"]) == (12, 6, 3, 1, 2, 10)
    assert (t["local_share"], t["spill_share"], t["cache_share"]) == (0.6, 0.3, 0.1)
    assert t["errors"] == 2


def test_remote_answers_no_local_route_could_have_given_are_no_spill() -> None:
    """An embeddings request on its listed remote route and an alias without a local route never met the
    scheduler's local-vs-remote choice: answered remotely, not spilled (were counted in the spill share)."""
    unchosen = [group("remote", 4, reason="embedding", model="emb"), group("remote", 2, reason="remote", model="big")]
    t = traffic(window(groups=[*GROUPS, *unchosen]))
    assert (t["answered"], t["remote"], t["spilled"]) == (16, 9, 3)
    assert t["spill_share"] == 3 / 16
    assert [r["reason"] for r in spill_reasons(window(groups=[*GROUPS, *unchosen]))] == ["spill", "capability"]
    fell_over = group("remote", 1, reason="fallback", model="emb")  # the local embedder failed, a remote one answered
    assert traffic(window(groups=[*unchosen, fell_over]))["spilled"] == 1


def test_no_answer_no_shares() -> None:
    t = traffic(window(groups=[group("none", 4)]))
    assert (t["requests"], t["answered"], t["local_share"], t["spill_share"]) == (4, 0, None, None)


def test_timeline_has_every_slot_in_order() -> None:
    slots = timeline(window())
    assert [s["start"] for s in slots] == [NOW - 30 - 120, NOW - 30 - 60, NOW - 30]
    assert [(s["local"], s["remote"], s["cache"], s["failed"]) for s in slots] == [
        (2, 0, 0, 0),
        (0, 0, 0, 2),
        (4, 3, 1, 0),
    ]


def test_spill_reasons_are_the_spilled_requests_most_first() -> None:
    assert spill_reasons(window()) == [
        {"reason": "spill", "requests": 2, "share": 2 / 3},
        {"reason": "capability", "requests": 1, "share": 1 / 3},
    ]
    tie = [group("remote", 1, reason="b"), group("remote", 1, reason="a"), group("local", 9, reason="c")]
    assert [r["reason"] for r in spill_reasons(window(groups=tie))] == ["a", "b"]


def test_ttft_against_each_aliases_slo() -> None:
    rows = {r["model"]: r for r in ttft(window(), {"auto": 800.0, "fast": 500.0})}
    assert rows["auto"] == {
        "model": "auto",
        "requests": 9,
        "p50_ms": 80.0,
        "p95_ms": 900.0,
        "slo_ms": 800.0,
        "p95_within_slo": False,
    }
    assert rows["fast"]["p95_within_slo"] is True
    assert rows["odd"]["slo_ms"] is None and rows["odd"]["p95_within_slo"] is None  # a name no longer configured


@pytest.mark.parametrize(
    ("outcomes", "rate", "lookups"),
    [
        ({"HIT": 1, "MISS": 6, "SHARED": 1, "BYPASS": 5, "-": 2}, 1 / 8, 8),
        ({"BYPASS": 3}, None, 0),
        ({}, None, 0),
        ({"HIT": 4}, 1.0, 4),
    ],
)
def test_cache_hit_rate_over_the_lookups_it_could_answer(
    outcomes: dict[str, int], rate: float | None, lookups: int
) -> None:
    c = cache(window(groups=[group("local", n, cache=outcome) for outcome, n in outcomes.items()]))
    assert (c["hit_rate"], c["lookups"]) == (rate, lookups)
    assert (c["hits"], c["misses"], c["bypass"]) == tuple(outcomes.get(k, 0) for k in ("HIT", "MISS", "BYPASS"))


def test_spend_in_total_and_by_key_and_model_most_first() -> None:
    s = spend(window())
    assert s["reference_model"] == "p/ref"
    assert (s["cost_usd"], s["reference_usd"]) == (pytest.approx(0.03), pytest.approx(0.2))
    assert s["saved_usd"] == pytest.approx(0.17)
    keys = {r["key"]: r for r in s["by_key"]}
    assert [r["key"] for r in s["by_key"]] == ["team", "zed", "-"]  # spend first, then requests
    assert keys["team"] == {
        "key": "team",
        "requests": 8,
        "errors": 0,
        "cache_hits": 1,
        "prompt_tokens": 80,
        "completion_tokens": 40,
        "cost_usd": pytest.approx(0.02),
        "reference_usd": pytest.approx(0.16),
        "saved_usd": pytest.approx(0.14),
    }
    assert keys["-"]["requests"] == 3 and keys["-"]["errors"] == 2
    assert [(r["model"], r["requests"]) for r in s["by_model"]] == [("auto", 9), ("big", 1), ("-", 2)]
    tie = spend(window(groups=[group("local", 1, key="b"), group("local", 1, key="a")]))
    assert [r["key"] for r in tie["by_key"]] == ["a", "b"]


def test_local_load_or_why_there_is_none() -> None:
    [row] = local(state())
    assert row["status"] == "ok"
    assert row["load"] == {
        "replicas": 2,
        "slots": 16,
        "running": 16,
        "waiting": 4,
        "kv_cache_usage": 0.4,
        "recent_ttft_ms": 250.0,
    }
    assert local(state(load={"chat": None}))[0] == {
        "provider": "local",
        "model": "chat",
        "status": "no fresh load report",
        "load": None,
    }
    assert local(state(load={}))[0]["status"].startswith("no load board")


@pytest.mark.parametrize(
    ("cap", "spent", "expected"),
    [
        (
            2.0,
            0.5,
            {"cap_usd_per_hour": 2.0, "spent_usd": 0.5, "remaining_usd": 1.5, "used_share": 0.25, "exhausted": False},
        ),
        (
            1.0,
            1.5,
            {"cap_usd_per_hour": 1.0, "spent_usd": 1.5, "remaining_usd": 0.0, "used_share": 1.5, "exhausted": True},
        ),
        (
            None,
            0.7,
            {"cap_usd_per_hour": None, "spent_usd": 0.7, "remaining_usd": None, "used_share": None, "exhausted": False},
        ),
        (
            1.0,
            None,
            {"cap_usd_per_hour": 1.0, "spent_usd": None, "remaining_usd": 1.0, "used_share": 0.0, "exhausted": False},
        ),
    ],
)
def test_burst_budget(cap: float | None, spent: float | None, expected: dict[str, Any]) -> None:
    assert budget(state(budget=Budget(cap, spent))) == expected


def test_the_whole_document_and_without_a_ledger() -> None:
    doc = summarize(window(), state(), NOW)
    assert doc["object"] == "dashboard" and doc["generated_at"] == NOW
    assert doc["window"] == {"source": "ledger", "since": NOW - 150, "until": NOW, "slot_s": 60.0, "slots": 3}
    assert doc["spilling"] == ["auto"]
    empty = summarize(None, state(), NOW)
    assert empty["window"]["source"] is None and empty["timeline"] == [] and empty["ttft"] == []
    assert empty["traffic"]["requests"] == 0 and empty["cache"]["hit_rate"] is None
    assert empty["spend"]["by_key"] == [] and empty["local"][0]["status"] == "ok"
