"""The soak benchmark's pure parts: the plan (the same for a seed), the classification of outcomes, RSS growth."""

from __future__ import annotations

import json

import pytest

from benchmarks.soak import (
    ANSWER,
    BUDGET,
    CLASSES,
    EXPECTED,
    KINDS,
    Planned,
    Received,
    RssLog,
    classify,
    growth,
    plan,
    reject,
    warmup_s,
)

SSE = "text/event-stream"
JSON = "application/json"
CUT = "unexpected_truncated_stream"


def chunk(content: str, finish: str | None = None) -> str:
    choice = {"index": 0, "delta": {"content": content}, "finish_reason": finish}
    return "data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "choices": [choice]}) + "\n\n"


def error(status_type: str, code: str | None) -> bytes:
    return json.dumps({"error": {"message": "no", "type": status_type, "param": None, "code": code}}).encode()


MESSAGE = {"role": "assistant", "content": "hi"}
WHOLE = json.dumps(
    {"id": "c", "object": "chat.completion", "choices": [{"index": 0, "message": MESSAGE, "finish_reason": "stop"}]}
).encode()
GOOD_STREAM = (chunk("hi") + chunk("", "stop") + "data: [DONE]\n\n").encode()


def planned(expect=ANSWER, stream=False, kind="local") -> Planned:  # type: ignore[no-untyped-def]
    return Planned(0.0, kind, "main", b"{}", stream, expect)


# ------------------------------------------------------------------------------ the plan


def test_the_plan_is_the_same_for_a_seed_and_differs_between_seeds() -> None:
    a, b, c = plan(3, 120, 3.0, 60), plan(3, 120, 3.0, 60), plan(4, 120, 3.0, 60)
    assert a == b
    assert a != c


def test_the_plan_is_open_loop_poisson_within_the_duration() -> None:
    requests = plan(1, 600, 3.0, 120)
    times = [p.at_s for p in requests]
    assert times == sorted(times) and 0 < times[0] and times[-1] < 600
    assert 1500 < len(requests) < 2100  # 3/s for 600 s: 1,800 expected


def test_every_kind_is_drawn_about_its_weight() -> None:
    requests = plan(2, 3000, 3.0, 120)
    drawn = {k: sum(p.kind == k for p in requests) / len(requests) for k in KINDS}
    assert sum(w for w, _ in KINDS.values()) == pytest.approx(1.0)
    for kind, (weight, _) in KINDS.items():
        assert drawn[kind] == pytest.approx(weight, abs=0.02), kind


def test_bodies_expectations_and_keys() -> None:
    requests = plan(5, 1200, 3.0, 120)
    for p in requests:
        if p.kind.startswith("bad-"):
            assert not p.expect.ok and p.expect.statuses and not p.stream
        elif p.kind.startswith("budget-"):
            assert p.expect == BUDGET and p.key.startswith(p.kind.split("-")[1]) and p.budget_key
            assert p.key.endswith(f"{int(p.at_s // 120):03d}")  # the key of its window
        else:
            assert p.expect == ANSWER and p.key == "main"
        if p.kind not in ("bad-json", "bad-oversized"):
            assert json.loads(p.body).get("stream", False) == p.stream
    assert {p.stream for p in requests if p.expect.ok} == {True, False}
    cached = {json.loads(p.body)["messages"][0]["content"] for p in requests if p.kind == "cached"}
    assert len(cached) <= 6  # repeated prompts: cache hits
    assert all(json.loads(p.body)["temperature"] == 0 for p in requests if p.kind == "cached")
    assert all(json.loads(p.body)["temperature"] > 0 for p in requests if p.kind in ("local", "remote"))
    slo = [p for p in requests if p.kind == "spill-slo"]
    assert slo and all(dict(p.headers) == {"x-ttft-slo-ms": "1"} for p in slo)


def test_warmup_is_a_tenth_or_a_minute_but_at_least_20_s() -> None:
    assert warmup_s(1800) == 60
    assert warmup_s(300) == 30
    assert warmup_s(120) == 20
    assert warmup_s(10) == 10  # never past the run


# ------------------------------------------------------------------------------ classification


@pytest.mark.parametrize(
    ("p", "received", "expected"),
    [
        (planned(), Received(200, JSON, WHOLE), "ok"),
        (planned(stream=True), Received(200, SSE, GOOD_STREAM), "ok"),
        (planned(BUDGET), Received(200, JSON, WHOLE), "ok"),
        (planned(BUDGET), Received(429, JSON, error("insufficient_quota", "insufficient_quota")), "over_budget"),
        (planned(reject(400)), Received(400, JSON, error("invalid_request_error", None)), "rejected"),
        (planned(reject(413)), Received(413, JSON, error("invalid_request_error", "request_too_large")), "rejected"),
        # A budget key's 429 that is not about its budget; a 4xx where a 200 was expected; the wrong 4xx.
        (planned(BUDGET), Received(429, JSON, error("requests", "rate_limit_exceeded")), "unexpected_4xx"),
        (planned(), Received(429, JSON, error("insufficient_quota", "insufficient_quota")), "unexpected_4xx"),
        (planned(reject(404)), Received(400, JSON, error("invalid_request_error", None)), "unexpected_4xx"),
        (planned(reject(400)), Received(400, "text/plain", b"bad"), "unexpected_4xx"),  # not OpenAI's shape
        (planned(reject(400)), Received(400, JSON, b'{"detail": "x"}'), "unexpected_4xx"),
        (planned(reject(400)), Received(200, JSON, WHOLE), "unexpected_accepted"),
        (planned(), Received(500, JSON, error("api_error", None)), "unexpected_5xx"),
        (planned(reject(400)), Received(503, JSON, error("api_error", "overloaded")), "unexpected_5xx"),
        (planned(), Received(None, failure="timeout"), "unexpected_timeout"),
        (planned(), Received(None, failure="transport"), "unexpected_transport"),
        (planned(), Received(302, JSON, b"{}"), "unexpected_status"),
        # Streams cut short: no finish_reason, no [DONE], an error event, the connection broken mid-body.
        (planned(stream=True), Received(200, SSE, (chunk("hi") + "data: [DONE]\n\n").encode()), CUT),
        (planned(stream=True), Received(200, SSE, (chunk("hi") + chunk("", "stop")).encode()), CUT),
        (
            planned(stream=True),
            Received(200, SSE, (chunk("hi") + "data: " + error("api_error", None).decode() + "\n\n").encode()),
            CUT,
        ),
        (planned(stream=True), Received(200, SSE, chunk("hi").encode(), "transport"), CUT),
        (planned(stream=True), Received(200, SSE, b"data: {not json\n\n"), CUT),
        # Whole answers that are not whole.
        (planned(), Received(200, JSON, b'{"choices": []}'), "unexpected_bad_body"),
        (planned(), Received(200, JSON, WHOLE.replace(b'"stop"', b"null")), "unexpected_bad_body"),
        (planned(), Received(200, JSON, WHOLE[:-5]), "unexpected_bad_body"),
    ],
)  # fmt: skip
def test_classify(p: Planned, received: Received, expected: str) -> None:
    cls, why = classify(p, received)
    assert cls == expected
    assert cls in CLASSES
    assert (why is None) == (cls in EXPECTED)


# ------------------------------------------------------------------------------ RSS


def test_growth_is_measured_from_the_first_sample_after_the_warmup() -> None:
    log = RssLog(who={1: ("Gateway replica", "g"), 2: ("Ray system", "r"), 3: ("other Ray workers", "w")})
    log.samples = [
        (0.0, {1: 100, 2: 500, 3: 50}),  # before the warm-up ends: not the baseline
        (20.0, {1: 1000, 2: 1000, 3: 50}),
        (40.0, {1: 1200, 2: 1000}),
        (60.0, {1: 1090, 2: 1050, 4: 10}),
    ]
    rows = {r["pid"]: r for r in growth(log, 20.0)}
    assert rows[1]["growth_pct"] == 9.0 and rows[1]["max_mb"] == round(1200 / 1024, 1) and not rows[1]["flag"]
    assert rows[2]["growth_pct"] == 5.0 and not rows[2]["flag"]
    assert rows[3]["end_mb"] is None and rows[3]["flag"] and rows[3]["note"] == "gone before the end"
    assert rows[4]["start_mb"] is None and not rows[4]["flag"] and rows[4]["note"] == "appeared after the start"
    log.samples[-1][1][1] = 1100
    assert next(r for r in growth(log, 20.0) if r["pid"] == 1)["flag"]  # 10 % is flagged
