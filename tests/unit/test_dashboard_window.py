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


def test_routes_per_slot_reason_codes_and_cache_outcomes(book: Book) -> None:
    b = Bounds.last(NOW, 60)
    settle(
        book,
        row(NOW - 1),  # the current slot
        row(NOW - 2, "remote"),
        row(NOW - 3, "remote", route_reason="capability: the local model lacks tools"),
        row(NOW - 4, "cache"),
        row(NOW - 5, "none"),
        row(b.since + 1, "local", cache="BYPASS"),  # the first slot
        row(b.since - 1, "remote"),  # before the window
        row(NOW + 5, "remote"),  # after it (a clock ahead): not in it either
    )
    w = read_window(book.db, b)
    assert w.timeline == [(0, "local", 1), (59, "cache", 1), (59, "local", 1), (59, "none", 1), (59, "remote", 2)]
    assert sorted(w.reasons) == [
        ("cache", "cache", 1),
        ("local", "local", 2),
        ("remote", "capability", 1),
        ("remote", "spill", 1),
    ]
    assert w.cache == {"-": 1, "BYPASS": 1, "HIT": 1, "MISS": 3}
    assert w.usage["totals"]["requests"] == 6
    assert {k: v["requests"] for k, v in w.usage["by_route"].items()} == {
        "cache": 1,
        "local": 2,
        "none": 1,
        "remote": 2,
    }


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


def test_spend_by_key_and_model_and_the_reference(book: Book) -> None:
    settle(
        book,
        row(NOW - 1, "remote", key_id="team", model="auto"),
        row(NOW - 2, "remote", key_id="other", model="big", cost_usd=0.01, reference_usd=0.004),
        row(NOW - 3, "local", key_id=None, model="auto"),
    )
    w = read_window(book.db, Bounds.last(NOW, 5), reference_model="alpha/ref")
    assert w.usage["savings"]["reference_model"] == "alpha/ref"
    assert w.usage["by_key"]["other"]["saved_usd"] == pytest.approx(-0.006)
    assert w.usage["by_key"]["-"]["requests"] == 1
    assert w.usage["by_model"]["auto"]["cost_usd"] == pytest.approx(0.001)


def test_an_empty_log_is_an_empty_window(book: Book) -> None:
    w = read_window(book.db, Bounds.last(NOW, 60))
    assert (w.timeline, w.reasons, w.cache, w.ttft) == ([], [], {}, {})
    assert w.usage["totals"]["requests"] == 0
