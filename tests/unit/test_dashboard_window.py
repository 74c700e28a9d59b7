"""The dashboard's window over a real ledger file: slots, routes, reason codes, cache outcomes, exact TTFT
percentiles (nearest rank), and spend by key and model; rows outside the window don't count."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.accounting.book import Book, Settle
from orchestrator.dashboard.window import Bounds, nearest_rank, read_window
from orchestrator.scheduling.policy import spill_reason_code

NOW = 1_800_000_030.0  # 30 s into a minute


@pytest.fixture
def book(tmp_path: Path) -> Iterator[Book]:
    b = Book(tmp_path / "ledger.sqlite")
    yield b
    b.close()


def row(ts: float, route: str = "local", **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "ts": ts,
        "request_id": f"req_{random.random()}",
        "key_id": "team",
        "endpoint": "/v1/chat/completions",
        "model": "auto",
        "provider": {"local": "local", "remote": "alpha", "cache": "cache", "none": None}[route],
        "route": route,
        "route_reason": {
            "local": "local: the only route",
            "remote": "spill: predicted local TTFT 900 ms over 700 ms",
        }.get(route, "cache hit" if route == "cache" else None),
        "cache": {"cache": "HIT", "none": None}.get(route, "MISS"),
        "status": 200 if route != "none" else 429,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost_usd": 0.001 if route == "remote" else 0.0,
        "reference_usd": 0.002,
        "ttft_ms": 100.0,
    }
    base.update(kw)
    return base


def settle(book: Book, *rows: dict[str, Any]) -> None:
    book.settle_many([Settle(None, r) for r in rows])


def test_bounds_are_whole_minutes_up_to_now() -> None:
    b = Bounds.last(NOW, 60)
    assert b.until == NOW and b.slots == 60 and b.slot_s == 60
    assert b.since == 1_800_000_000.0 - 59 * 60
    assert b.slot_start(59) == 1_800_000_000.0


@pytest.mark.parametrize(
    ("n", "p", "rank"),
    [
        (1, 50, 1),
        (1, 95, 1),
        (2, 50, 1),
        (2, 95, 2),
        (10, 50, 5),
        (10, 95, 10),
        (20, 95, 19),
        (100, 95, 95),
        (101, 50, 51),
    ],
)
def test_nearest_rank(n: int, p: int, rank: int) -> None:
    assert nearest_rank(n, p) == rank == max(1, math.ceil(n * p / 100))


def test_routes_per_slot_and_groups_by_route_reason_cache_key_and_model(book: Book) -> None:
    b = Bounds.last(NOW, 60)
    settle(
        book,
        row(NOW - 1),  # the current slot
        row(NOW - 2, "remote"),
        row(NOW - 3, "remote", route_reason="capability: the local model lacks tools", key_id="other"),
        row(NOW - 4, "cache"),
        row(NOW - 5, "none", key_id=None, model="nope"),
        row(b.since + 1, "local", cache="BYPASS"),  # the first slot
        row(b.since - 1, "remote"),  # before the window
        row(NOW + 5, "remote"),  # after it (a clock ahead): not in it either
    )
    w = read_window(book.db, b)
    assert w.timeline == [(0, "local", 1), (59, "cache", 1), (59, "local", 1), (59, "none", 1), (59, "remote", 2)]
    assert [(g.route, g.reason, g.cache, g.key, g.model, g.requests, g.errors) for g in w.groups] == [
        ("cache", "cache", "HIT", "team", "auto", 1, 0),
        ("local", "local", "BYPASS", "team", "auto", 1, 0),
        ("local", "local", "MISS", "team", "auto", 1, 0),
        ("none", "-", "-", "-", "nope", 1, 1),
        ("remote", "capability", "MISS", "other", "auto", 1, 0),
        ("remote", "spill", "MISS", "team", "auto", 1, 0),
    ]


def test_reason_codes_are_the_metrics_label(book: Book) -> None:
    reasons = [
        "spill: predicted local TTFT 900 ms over 700 ms (SLO 1000 ms, hysteresis)",
        "cold-start: no local replica ready",
        "local: the only route (rule long: auto -> big)",
        "spill: predicted local TTFT 900 ms over 700 ms; fallback after alpha upstream_unavailable",
        "fallback after local upstream_timeout",
        "data-class: sensitive stays local",
    ]
    settle(book, *(row(NOW - 1, "remote", route_reason=r) for r in reasons))
    codes = {g.reason for g in read_window(book.db, Bounds.last(NOW, 1)).groups}
    assert (
        codes == {spill_reason_code(r) for r in reasons} == {"spill", "cold-start", "local", "fallback", "data-class"}
    )


def test_ttft_percentiles_are_exact_per_model_over_model_answers_only(book: Book) -> None:
    rng = random.Random(7)
    values = {"auto": [rng.uniform(5, 2000) for _ in range(137)], "small": [rng.uniform(5, 50) for _ in range(3)]}
    rows = [
        row(NOW - 1 - i * 0.01, rng.choice(["local", "remote"]), model=m, ttft_ms=v)
        for m, vs in values.items()
        for i, v in enumerate(vs)
    ]
    rows += [
        row(NOW - 1, "cache", ttft_ms=0.1),  # the cache: not a model's TTFT
        row(NOW - 1, "remote", status=502, ttft_ms=0.2),  # failed
        row(NOW - 1, "local", ttft_ms=None),  # never got a first byte
    ]
    settle(book, *rows)
    w = read_window(book.db, Bounds.last(NOW, 60))
    assert list(w.ttft) == ["auto", "small"]
    for model, vs in values.items():
        ordered = sorted(vs)
        p = w.ttft[model]
        assert p.requests == len(vs)
        assert p.p50_ms == ordered[math.ceil(0.5 * len(vs)) - 1]
        assert p.p95_ms == ordered[math.ceil(0.95 * len(vs)) - 1]


def test_cost_and_reference_per_group(book: Book) -> None:
    settle(
        book,
        row(NOW - 1, "remote", key_id="other", model="big", cost_usd=0.01, reference_usd=0.004),
        row(NOW - 2, "remote", key_id="other", model="big", cost_usd=0.02, reference_usd=0.004, prompt_tokens=7),
    )
    [g] = read_window(book.db, Bounds.last(NOW, 5), reference_model="alpha/ref").groups
    assert (g.requests, g.prompt_tokens, g.completion_tokens) == (2, 17, 10)
    assert (g.cost_usd, g.reference_usd) == (pytest.approx(0.03), pytest.approx(0.008))


def test_an_empty_log_is_an_empty_window(book: Book) -> None:
    w = read_window(book.db, Bounds.last(NOW, 60), reference_model="alpha/ref")
    assert (w.groups, w.timeline, w.ttft, w.reference_model) == ([], [], {}, "alpha/ref")
