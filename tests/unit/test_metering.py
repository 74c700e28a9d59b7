"""The meter: one record per answer; answers shared in flight are free and count once against the burst budget."""

from __future__ import annotations

from typing import Any

from orchestrator.accounting import Accounts, Tab
from orchestrator.accounting.prices import Price, Prices, UsageRecord
from orchestrator.calls import CHAT, Call
from orchestrator.metering import Meter
from orchestrator.protocol import AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionRequest, Usage
from orchestrator.routes import Route, Routed


class Plan:
    """What the meter tells a plan: the overflow spend of each upstream call."""

    def __init__(self) -> None:
        self.spent: list[float] = []

    def overflowed(self, cost_usd: float) -> None:
        self.spent.append(cost_usd)


class Recording(Tab):
    def record(self, record: UsageRecord) -> None:
        self.records.append(record)


def call() -> tuple[Call, list[UsageRecord]]:
    tab = Recording(Accounts(), "req_1", "POST", "/v1/chat/completions")
    tab.records = []  # type: ignore[attr-defined]
    body = ChatCompletionRequest.model_validate({"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
    return Call(CHAT, body, {}, tab), tab.records  # type: ignore[attr-defined]


def answer() -> Routed[Any]:
    whole = ChatCompletion(
        id="chatcmpl-1",
        created=0,
        model="m",
        choices=[ChatChoice(index=0, message=AssistantMessage(content="hello"), finish_reason="stop")],
        usage=Usage(prompt_tokens=1000, completion_tokens=1000, total_tokens=2000),
    )
    return Routed(Route("paid", "big", "spill: ...", overflow=True), whole)


def test_ten_identical_requests_one_upstream_call_one_charge_one_overflow() -> None:
    meter = Meter(Prices({("paid", "big"): Price(input_per_mtok=2.0, output_per_mtok=10.0)}))
    plan, rows = Plan(), []
    leader, recorded = call()
    meter.whole(leader, answer(), plan)  # type: ignore[arg-type]
    rows += recorded
    for _ in range(9):
        follower, recorded = call()
        meter.whole(follower, answer(), plan, shared=True)  # type: ignore[arg-type]
        rows += recorded
    assert plan.spent == [0.012]  # the burst budget counts the one upstream call
    assert [r.cost_usd for r in rows] == [0.012] + [0.0] * 9
    assert [r.cache for r in rows[1:]] == ["SHARED"] * 9
    assert all(r.saved_usd == 0.012 for r in rows[1:])


def test_what_attempts_that_didnt_serve_cost_is_part_of_the_answers_cost() -> None:
    meter = Meter(Prices({("paid", "big"): Price(input_per_mtok=2.0, output_per_mtok=10.0)}))
    plan = Plan()
    local = Route("local", "small", "local: ...; hedge to paid/big called off", discarded_usd=0.002)
    leader, rows = call()
    meter.whole(leader, Routed(local, answer().result), plan)  # type: ignore[arg-type]
    assert [r.cost_usd for r in rows] == [0.002]  # the local model itself is free here
    assert plan.spent == []  # the flow counted the spill when the attempts ended (`Pipeline._attempt`)
    follower, shared = call()  # an identical request riding the same flight: its leader paid
    meter.whole(follower, Routed(local, answer().result), plan, shared=True)  # type: ignore[arg-type]
    assert [r.cost_usd for r in shared] == [0.0]
