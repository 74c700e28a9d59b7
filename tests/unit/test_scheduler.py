"""The overflow scheduler's decisions, as tables: request x load x config -> routes and reason."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from orchestrator.errors import ContextLengthExceeded, InvalidRequest, ModelNotFound, OverflowBudgetExhausted
from orchestrator.scheduling.capabilities import Backend, ModelEntry, Registry
from orchestrator.scheduling.load import LoadSnapshot
from orchestrator.scheduling.policy import AliasPolicy, Budget, Facts, Knobs, Plan, Rule, plan, predict_ttft_ms

CHAT = frozenset({"chat", "completions"})
LOCAL = Backend("local", "small", CHAT, frozenset({"json_schema"}), 2048, weights="small")
BIG = Backend("r1", "big", CHAT, frozenset({"tools", "auto_tools", "vision", "json_schema"}), 128_000, "r1")
HOSTED = Backend(
    "r2", "small-hosted", CHAT, frozenset({"tools", "auto_tools", "json_schema"}), 8192, "r2", weights="small"
)
CHEAP = Backend("r3", "cheap", CHAT, frozenset({"tools", "auto_tools", "json_schema"}), 32_000, "r3")
SMART = Backend("r1", "smart", CHAT, frozenset({"tools", "auto_tools", "json_schema"}), 200_000, "r1")

REGISTRY = Registry(
    [
        ModelEntry("auto", (LOCAL, BIG, HOSTED, CHEAP)),
        ModelEntry("local", (LOCAL,)),
        ModelEntry("remote", (BIG, CHEAP)),
        ModelEntry("smart", (SMART,)),
        ModelEntry("hybrid-smart", (LOCAL, SMART)),
    ]
)
PRICES = {("r1", "big"): 3.0, ("r2", "small-hosted"): 2.0, ("r3", "cheap"): 0.5, ("r1", "smart"): 10.0}
KNOBS = Knobs(
    ttft_slo_ms=1000, headroom=1.0, hysteresis=0.2, prefill_tokens_per_s=1000, idle_step_ms=20, min_finish_rate=1.0
)

IDLE = LoadSnapshot(
    replicas=1,
    slots=8,
    waiting=0,
    running=1,
    queued_prompt_tokens=0,
    prefill_tokens_per_s=0.0,
    prefill_capacity_tokens_per_s=None,
    decode_tokens_per_s=50.0,
    finished_per_s=2.0,
    step_ms=30.0,
    recent_ttft_ms=None,
    kv_cache_usage=0.1,
    taken_at=0.0,
)
# Every slot busy and 10 waiting: the 11th in line waits 11 / 2 per s = 5.5 s for a slot.
SATURATED = replace(IDLE, running=8, waiting=10, queued_prompt_tokens=500)
# Predicted 30 + (0 + 100) / 1000 s + 0 = 130 ms with 100 prompt tokens.


def make(facts: Facts, snapshot: LoadSnapshot | None = IDLE, **kw: Any) -> Plan:
    kw.setdefault("knobs", KNOBS)
    kw.setdefault("budget", Budget(None, 0.0))
    kw.setdefault("prices", PRICES)
    policies = kw.pop("policies", {})
    load = {"small": snapshot}
    return plan(facts, REGISTRY, policies, local_providers=frozenset({"local"}), load=load, **kw)


def routes(p: Plan) -> list[str]:
    return [f"{t.provider}/{t.model}" for t in p.targets]


def ask(model: str = "auto", **kw: Any) -> Facts:
    kw.setdefault("prompt_tokens", 100)
    return Facts(model=model, task=kw.pop("task", "chat"), **kw)


# --------------------------------------------------------------------- prediction


@pytest.mark.parametrize(
    ("snapshot", "prompt", "expected_ms"),
    [
        (IDLE, 100, 30 + 100),  # a step, then its own prefill
        (replace(IDLE, step_ms=None), 100, 20 + 100),  # no step measured yet: the idle figure
        (replace(IDLE, queued_prompt_tokens=900), 100, 30 + 1000),  # prompts queued ahead prefill first
        (replace(IDLE, prefill_capacity_tokens_per_s=4000), 100, 30 + 25),  # the engine's shown speed
        (replace(IDLE, prefill_capacity_tokens_per_s=250), 100, 30 + 400),  # slower than configured, too
        (replace(IDLE, running=8, waiting=0), 100, 30 + 100 + 1 / 2 * 1000),  # all slots busy: wait for one
        (SATURATED, 100, 30 + 600 + 11 / 2 * 1000),
        (replace(SATURATED, finished_per_s=0.0), 100, 30 + 600 + 11 / 1 * 1000),  # none finished: the floor
        (replace(SATURATED, replicas=2, slots=16, running=16, queued_prompt_tokens=1000), 0, 30 + 500 + 11 / 2 * 1000),
        (replace(IDLE, recent_ttft_ms=900.0), 100, 900),  # what requests just saw is a floor
        (replace(IDLE, recent_ttft_ms=50.0), 100, 130),  # but never lowers the model's figure
        (replace(IDLE, recent_ttft_ms=900.0, sent=2), 100, 900 * 4 / 2),  # scaled by the sends since
        # measured while 9 were in flight, 1 now: the queue that gave it has drained (floor 900 x 2 / 10)
        (replace(IDLE, recent_ttft_ms=900.0, recent_ttft_in_flight=9.0), 100, 180),
        (replace(IDLE, recent_ttft_ms=900.0, recent_ttft_in_flight=0.5), 100, 900),  # more now: as measured
        (replace(IDLE, sent=8, sent_prompt_tokens=400), 100, 30 + 500 + 2 / 2 * 1000),  # sends wait like any
    ],
    ids=[
        "idle",
        "no-step",
        "queued-prompts",
        "fast-prefill",
        "slow-prefill",
        "slots-full",
        "saturated",
        "no-finishes",
        "2-replicas",
        "measured-floor",
        "measured-below",
        "measured-scaled",
        "measured-drained",
        "measured-busier",
        "sent-since",
    ],
)
def test_predicted_ttft(snapshot: LoadSnapshot, prompt: int, expected_ms: float) -> None:
    assert predict_ttft_ms(snapshot, prompt, KNOBS) == pytest.approx(expected_ms)


# One busy key's backlog: every slot its, 10 of its requests waiting (the engines queue keys fairly).
BUSY_KEY = replace(SATURATED, recent_ttft_ms=5000.0, waiting_by_tenant={"key:busy": 10})


def test_a_key_with_nothing_waiting_is_predicted_behind_its_share_of_the_queue() -> None:
    """Behind at most one of the busy key's 10: the slot wait and the queued prompts scale by 1/10, and the
    measured floor is taken at that place in the queue (the first tokens measured were the busy key's own,
    each behind the whole queue: 5 s)."""
    other = predict_ttft_ms(BUSY_KEY, 100, KNOBS, "key:other")
    assert other == pytest.approx(max(30 + 50 + 100 + 2 / 2 * 1000, 5000 * (1 + 1) / (10 + 1)))
    assert other == pytest.approx(1180)
    # Sends since the snapshot (mostly the busy key's, queued behind it) count by the same share.
    sent = replace(BUSY_KEY, sent=10, sent_prompt_tokens=500)
    assert predict_ttft_ms(sent, 100, KNOBS, "key:other") == pytest.approx(30 + 200 + 3 / 2 * 1000)
    assert predict_ttft_ms(BUSY_KEY, 100, KNOBS, "key:busy") == predict_ttft_ms(BUSY_KEY, 100, KNOBS)
    assert predict_ttft_ms(SATURATED, 100, KNOBS, "key:other") == predict_ttft_ms(SATURATED, 100, KNOBS)


def test_the_busy_key_spills_and_another_key_stays_local() -> None:
    slo = {"ttft_slo_ms": 3000}
    busy = make(ask(tenant="key:busy", **slo), replace(BUSY_KEY, recent_ttft_ms=None))
    other = make(ask(tenant="key:other", **slo), replace(BUSY_KEY, recent_ttft_ms=None))
    assert routes(busy)[0] != "local/small" and busy.overflow
    assert routes(other)[0] == "local/small", other.targets[0].reason


# ------------------------------------------------------------------ the prompt's size

# Every slot busy, none waiting: a slot frees in 1 / 2 per s = 500 ms; prefill at 4,000 tokens/s.
LOADED = replace(IDLE, running=8, prefill_capacity_tokens_per_s=4000.0)
SIZED = KNOBS.model_copy(update={"headroom": 0.8, "hysteresis": 0.0})  # the line at 800 ms; size_bias 1
TYPICAL = {"small": 200.0}


def test_under_load_a_long_prompts_wait_weighs_more_and_it_spills_where_a_typical_one_stays() -> None:
    typical = make(ask(prompt_tokens=200), LOADED, knobs=SIZED, typical_prompt=TYPICAL)
    assert routes(typical)[0] == "local/small"  # 30 + 50 + 500 = 580 ms
    # 30 + 200 + 500 = 730 ms, within the line; its wait (500 ms) counts twice: 230 + 1,000 = 1,230 ms.
    long = make(ask(prompt_tokens=800), LOADED, knobs=SIZED, typical_prompt=TYPICAL)
    assert routes(long)[0] != "local/small" and long.overflow
    assert long.targets[0].reason == (
        "spill: predicted local TTFT 730 ms (its wait x2.00 for a prompt 4x the typical: 1230 ms) over 800 ms "
        "(SLO 1000 ms)"
    )
    # One line for every size without the bias, or without a typical prompt known yet.
    unweighed = SIZED.model_copy(update={"size_bias": 0.0})
    assert routes(make(ask(prompt_tokens=800), LOADED, knobs=unweighed, typical_prompt=TYPICAL))[0] == "local/small"
    assert routes(make(ask(prompt_tokens=800), LOADED, knobs=SIZED))[0] == "local/small"


def test_under_load_a_short_prompt_stays_local_past_the_line_but_within_0_9_of_the_slo() -> None:
    slow = replace(LOADED, finished_per_s=1.25)  # a slot in 800 ms
    # 30 + 12.5 + 800 = 842.5 ms: over the 800 ms line; its wait weighs 0.8 / 0.9 (not 50 / 200): 753.6 ms.
    short = make(ask(prompt_tokens=50), slow, knobs=SIZED, typical_prompt=TYPICAL)
    assert routes(short)[0] == "local/small", short.targets[0].reason
    assert short.predicted_ttft_ms == pytest.approx(842.5) and short.predicted_ttft_ms <= 900
    assert "its wait x0.89 for a prompt 0.25x the typical: 754 ms" in short.targets[0].reason
    assert routes(make(ask(prompt_tokens=200), slow, knobs=SIZED, typical_prompt=TYPICAL))[0] != "local/small"
    # Further past the line, the least weight can't bring it within 0.9 x SLO: it spills.
    slower = replace(LOADED, finished_per_s=1.1)  # a slot in 909 ms
    assert routes(make(ask(prompt_tokens=50), slower, knobs=SIZED, typical_prompt=TYPICAL))[0] != "local/small"


def test_a_long_prompt_on_an_idle_engine_stays_local_where_its_own_step_and_prefill_fit() -> None:
    idle = replace(IDLE, prefill_capacity_tokens_per_s=2500.0)
    # 30 + 760 = 790 ms, all of it its own (no queue, a slot free): nothing to weigh, within the 800 ms line.
    long = make(ask(prompt_tokens=1900), idle, knobs=SIZED, typical_prompt=TYPICAL)
    assert routes(long)[0] == "local/small" and "typical" not in long.targets[0].reason, long.targets[0].reason


# ------------------------------------------------------------------------ latency


def test_idle_local_model_serves_with_remote_routes_behind_it() -> None:
    p = make(ask())
    assert routes(p) == ["local/small", "r2/small-hosted", "r1/big", "r3/cheap"]
    assert p.targets[0].reason == "local: predicted TTFT 130 ms within 1000 ms (SLO 1000 ms)"
    assert [t.reason for t in p.targets[1:]] == ["fallback"] * 3
    assert (p.spilling, p.overflow) == (False, False)


def test_a_route_after_a_remote_one_keeps_the_plans_reason_and_after_a_local_one_is_fallback() -> None:
    """What the dashboard counts as spill is read from these: an alias without a local route whose first
    provider failed didn't spill (it was counted as spilled); a spilled request whose first remote failed
    still spilled, and says why; a remote route after the local one is a fallback, and a spill."""
    no_local = make(ask("remote"))
    assert [t.reason for t in no_local.targets] == ["remote: no local route"] * 2
    spilled = make(ask(), SATURATED)
    assert spilled.targets[0].reason.startswith("spill:") and routes(spilled)[-1] == "local/small"
    assert [t.reason for t in spilled.targets[:-1]] == [spilled.targets[0].reason] * (len(spilled.targets) - 1)
    assert spilled.targets[-1].reason == spilled.targets[0].reason  # the local route last: tried as spilled
    after_local = make(ask("hybrid-smart"))
    assert [t.reason for t in after_local.targets][1:] == ["fallback"]


def test_saturated_local_model_spills_same_weights_first_and_keeps_local_last() -> None:
    p = make(ask(), SATURATED)
    assert routes(p) == ["r2/small-hosted", "r1/big", "r3/cheap", "local/small"]
    assert p.targets[0].reason == "spill: predicted local TTFT 6130 ms over 1000 ms (SLO 1000 ms)"
    assert (p.spilling, p.overflow) == (True, True)


@pytest.mark.parametrize(
    ("factor", "leads", "reason"),
    [
        (1.0, "local", "local: predicted TTFT 630 ms within 700 ms (SLO 1000 ms)"),
        # the model has been under-predicting: 630 ms x 1.5 is over the line
        (1.5, "r2", "spill: predicted local TTFT 945 ms over 700 ms (SLO 1000 ms, x1.50 learned)"),
        # over-predicting (a quiet machine, a fast batch): more stays local
        (0.8, "local", "local: predicted TTFT 504 ms within 700 ms (SLO 1000 ms, x0.80 learned)"),
    ],
)
def test_the_learned_calibration_scales_the_prediction(factor: float, leads: str, reason: str) -> None:
    busy = replace(IDLE, running=8, waiting=0)  # 30 + 100 + 500 = 630 ms modelled
    p = make(ask(), busy, knobs=KNOBS.model_copy(update={"headroom": 0.7}), calibration={"small": factor})
    assert (p.targets[0].provider, p.targets[0].reason) == (leads, reason)
    assert p.modelled_ttft_ms == pytest.approx(630) and p.predicted_ttft_ms == pytest.approx(630 * factor)


@pytest.mark.parametrize(
    ("order", "same_weights_first", "expected"),
    [
        ("listed", True, ["r2/small-hosted", "r1/big", "r3/cheap"]),
        ("price", True, ["r2/small-hosted", "r3/cheap", "r1/big"]),
        ("listed", False, ["r1/big", "r2/small-hosted", "r3/cheap"]),
        ("price", False, ["r3/cheap", "r2/small-hosted", "r1/big"]),
    ],
)
def test_spill_order(order: Any, same_weights_first: bool, expected: list[str]) -> None:
    p = make(
        ask(),
        SATURATED,
        policies={"auto": AliasPolicy(order=order)},
        knobs=KNOBS.model_copy(update={"same_weights_first": same_weights_first}),
    )
    assert routes(p) == [*expected, "local/small"]


def test_spill_order_by_observed_latency() -> None:
    p = make(ask(), SATURATED, policies={"auto": AliasPolicy(order="latency")}, remote_ttft_ms={"r3": 90, "r1": 400})
    assert routes(p) == ["r2/small-hosted", "r3/cheap", "r1/big", "local/small"]


# predicted 30 + 100 + 750 = 880 ms: between 0.8 x 1000 and 1000
EDGE = replace(IDLE, queued_prompt_tokens=750)


@pytest.mark.parametrize(
    ("snapshot", "was_spilling", "leads", "still_spilling"),
    [
        (EDGE, False, "local", False),  # under the SLO: stays local
        (EDGE, True, "r2", True),  # but once spilling, not back until under 800 ms
        (IDLE, True, "local", False),  # well under: back to local
        (SATURATED, False, "r2", True),
    ],
)
def test_hysteresis(snapshot: LoadSnapshot, was_spilling: bool, leads: str, still_spilling: bool) -> None:
    p = make(ask(), snapshot, spilling={"auto": was_spilling})
    assert (p.targets[0].provider, p.spilling) == (leads, still_spilling)
    if was_spilling and leads == "r2":
        assert p.targets[0].reason == "spill: predicted local TTFT 880 ms over 800 ms (SLO 1000 ms, hysteresis)"


def test_without_hysteresis_a_spilling_alias_keeps_its_line_and_the_reason_says_no_hysteresis() -> None:
    """With `hysteresis` 0 (the default) being in a spill moves nothing, so the reason doesn't name it."""
    over = replace(IDLE, queued_prompt_tokens=1000)  # predicted 30 + 100 + 1000 = 1130 ms
    knobs = KNOBS.model_copy(update={"hysteresis": 0.0})
    p = make(ask(), over, spilling={"auto": True}, knobs=knobs)
    assert p.targets[0].reason == "spill: predicted local TTFT 1130 ms over 1000 ms (SLO 1000 ms)"
    assert make(ask(), EDGE, spilling={"auto": True}, knobs=knobs).targets[0].provider == "local"


@pytest.mark.parametrize(
    ("request_slo", "alias_slo", "leads"),
    [(None, None, "local"), (100, None, "r2"), (None, 100, "r2"), (5000, 100, "local")],
    ids=["default", "request", "alias", "request-over-alias"],
)
def test_slo_from_request_then_alias_then_default(
    request_slo: float | None, alias_slo: float | None, leads: str
) -> None:
    p = make(
        ask(ttft_slo_ms=request_slo),
        replace(IDLE, queued_prompt_tokens=200),
        policies={"auto": AliasPolicy(ttft_slo_ms=alias_slo)},
    )
    assert p.targets[0].provider == leads


def test_without_load_data_the_configured_order_holds() -> None:
    p = make(ask(), None)
    assert routes(p)[0] == "local/small" and p.targets[0].reason == "local: no load data yet"


def test_load_data_the_board_was_late_with_still_decides_and_the_reason_says_how_old() -> None:
    busy = replace(IDLE, sent=40, sent_prompt_tokens=40 * 2000, stale_s=2.5)  # a burst sent since the last read
    p = make(ask(), busy)
    assert p.targets[0].provider != "local" and p.overflow
    assert "load data 2.5 s old" in p.targets[0].reason
    p = make(ask(), replace(IDLE, stale_s=2.5))
    assert routes(p)[0] == "local/small" and "load data 2.5 s old" in p.targets[0].reason
    # Its error is the staleness's, not the model's: it teaches the calibration nothing.
    assert p.predicted_ttft_ms is not None and p.modelled_ttft_ms is None
    assert make(ask(), IDLE).modelled_ttft_ms is not None


def test_cold_start_spills_until_a_replica_reports() -> None:
    p = make(ask(), replace(IDLE, replicas=0, slots=0, running=0))
    assert routes(p) == ["r2/small-hosted", "r1/big", "r3/cheap", "local/small"]
    assert p.targets[0].reason == "cold-start: no local replica ready" and p.overflow


# ------------------------------------------------------------------ capabilities


@pytest.mark.parametrize(
    ("needs", "expected", "reason"),
    [
        ({"tools"}, ["r1/big", "r2/small-hosted", "r3/cheap"], "capability: the local model lacks tools"),
        ({"vision"}, ["r1/big"], "capability: the local model lacks vision"),
        ({"json_schema"}, ["local/small", "r2/small-hosted", "r1/big", "r3/cheap"], None),
    ],
)
def test_capabilities(needs: Any, expected: list[str], reason: str | None) -> None:
    p = make(ask(needs=frozenset(needs)))
    assert routes(p) == expected
    if reason:
        assert p.targets[0].reason == reason and not p.overflow


# A local model with forced tool calls (structured output) but no tool-call parser, in front of remotes.
FORCED = Backend("local", "small", CHAT, frozenset({"json_schema", "tools"}), 2048, weights="small")
TOOLED = Registry([ModelEntry("auto", (FORCED, BIG, HOSTED, CHEAP)), ModelEntry("local", (FORCED,))])


@pytest.mark.parametrize(
    ("needs", "expected", "reason"),
    [
        # tool_choice "required" or a named function: the local model serves it, remotes behind it
        ({"tools"}, ["local/small", "r2/small-hosted", "r1/big", "r3/cheap"], "local: predicted TTFT"),
        # tool_choice "auto": only a route that chooses its calls itself
        (
            {"tools", "auto_tools"},
            ["r1/big", "r2/small-hosted", "r3/cheap"],
            "capability: the local model lacks auto_tools",
        ),
    ],
)
def test_tool_requests_stay_local_when_the_local_model_serves_their_mode(
    needs: Any, expected: list[str], reason: str
) -> None:
    facts = ask(needs=frozenset(needs))
    p = plan(
        facts,
        TOOLED,
        {},
        local_providers=frozenset({"local"}),
        load={"small": IDLE},
        budget=Budget(None, 0.0),
        knobs=KNOBS,
        prices=PRICES,
    )
    assert routes(p) == expected and p.targets[0].reason.startswith(reason)


def test_a_model_with_no_tools_lacks_tools_not_auto_tools() -> None:
    p = make(ask(needs=frozenset({"tools", "auto_tools"})))
    assert p.targets[0].reason == "capability: the local model lacks tools"


def test_a_prompt_longer_than_the_local_context_goes_remote() -> None:
    p = make(ask(prompt_tokens=5000))
    assert routes(p) == ["r1/big", "r2/small-hosted", "r3/cheap"]
    assert p.targets[0].reason.startswith("context: 5000 prompt tokens")


def test_only_exact_counts_rule_routes_out() -> None:
    p = make(ask(prompt_tokens=5000, exact=False, ttft_slo_ms=60_000))  # an upper bound: the engine decides
    assert routes(p)[0] == "local/small"


def test_a_prompt_longer_than_every_context_is_the_clients_mistake() -> None:
    with pytest.raises(ContextLengthExceeded) as e:
        make(ask(prompt_tokens=500_000))
    assert e.value.param == "messages" and "128000" in e.value.message


def test_unknown_model() -> None:
    with pytest.raises(ModelNotFound):
        make(ask("nope"))


def test_remote_only_alias() -> None:
    p = make(ask("remote"), SATURATED)
    assert routes(p) == ["r1/big", "r3/cheap"] and p.targets[0].reason == "remote: no local route"


def test_local_only_alias_never_spills() -> None:
    p = make(ask("local"), SATURATED)
    assert routes(p) == ["local/small"] and p.targets[0].reason == "local: the only route"


# -------------------------------------------------------------------- data class


def test_sensitive_never_leaves_the_machine_even_when_saturated() -> None:
    p = make(ask(data_class="sensitive"), SATURATED)
    assert routes(p) == ["local/small"] and p.targets[0].reason == "data-class: sensitive stays local"


def test_sensitive_that_needs_a_remote_capability_is_refused() -> None:
    with pytest.raises(InvalidRequest) as e:
        make(ask(data_class="sensitive", needs=frozenset({"tools"})))
    assert (e.value.code, e.value.param) == ("data_class_unroutable", "x-data-class")
    assert "lacks tools" in e.value.message


def test_batch_waits_for_the_cheapest_route() -> None:
    p = make(ask(data_class="batch"), SATURATED)
    assert routes(p)[0] == "local/small" and p.targets[0].reason.startswith("batch:")


# ------------------------------------------------------------------------- budget


def test_spent_budget_queues_locally_when_the_wait_fits() -> None:
    p = make(ask(), SATURATED, budget=Budget(5.0, 5.0))
    assert routes(p) == ["local/small"] and p.targets[0].reason.startswith("budget: overflow budget spent")
    assert not p.overflow


def test_spent_budget_with_a_wait_beyond_the_limit_is_a_429() -> None:
    with pytest.raises(OverflowBudgetExhausted) as e:
        make(ask(), SATURATED, budget=Budget(5.0, 7.5), knobs=KNOBS.model_copy(update={"budget_max_wait_ms": 2000}))
    assert e.value.status_code == 429 and e.value.retry_after and e.value.code == "overflow_budget_exhausted"


def test_budget_left_spills_normally() -> None:
    assert make(ask(), SATURATED, budget=Budget(5.0, 4.99)).overflow


def test_a_key_that_spent_its_share_of_the_budget_waits_while_others_still_spill() -> None:
    """One key's spill (its own backlog, or a tight x-ttft-slo-ms on every request) spends at most its share of
    the hour's budget: past it, its requests wait locally or get a 429 that says whose budget is spent."""
    mine = Budget(5.0, 2.5, key_spent_usd=2.5, key_share=0.5)
    p = make(ask(), SATURATED, budget=mine)
    assert routes(p) == ["local/small"] and p.targets[0].reason.startswith("budget: overflow budget spent")
    with pytest.raises(OverflowBudgetExhausted) as e:
        make(ask(), SATURATED, budget=mine, knobs=KNOBS.model_copy(update={"budget_max_wait_ms": 100}))
    assert e.value.status_code == 429 and e.value.code == "overflow_budget_exhausted"
    assert "This key's share of the overflow budget ($2.50 of $5.00 per hour) is spent" in e.value.message
    other = Budget(5.0, 2.5, key_spent_usd=0.0, key_share=0.5)
    assert make(ask(), SATURATED, budget=other).overflow  # the rest is the others'
    assert make(ask(), SATURATED, budget=Budget(5.0, 2.5, key_spent_usd=2.5, key_share=1.0)).overflow  # no share


def test_capability_routes_are_not_overflow_and_ignore_the_burst_budget() -> None:
    p = make(ask(needs=frozenset({"tools"})), SATURATED, budget=Budget(5.0, 50.0))
    assert routes(p)[0] == "r1/big" and not p.overflow


# -------------------------------------------------------------------------- rules


RULES = {
    "auto": AliasPolicy(
        rules=(
            Rule(use="smart", name="long", min_prompt_tokens=1000),
            Rule(use="smart", name="proofs", pattern=re.compile(r"(?i)\bprove\b")),
            Rule(use="local", name="internal", tags={"team": "internal"}),
        )
    )
}


@pytest.mark.parametrize(
    ("facts", "expected", "rule"),
    [
        (ask(prompt_tokens=1500), ["r1/smart"], "long"),
        (ask(text="Please PROVE it"), ["r1/smart"], "proofs"),
        (ask(tags={"team": "internal"}), ["local/small"], "internal"),
        (ask(tags={"team": "other"}, text="improve"), ["local/small", "r2/small-hosted", "r1/big", "r3/cheap"], None),
    ],
    ids=["tokens", "regex", "tags", "none"],
)
def test_rules_pick_an_alias(facts: Facts, expected: list[str], rule: str | None) -> None:
    p = make(facts, policies=RULES)
    assert routes(p) == expected
    if rule:
        assert p.targets[0].reason.endswith(f"(rule {rule}: auto -> {p.alias})")


def test_spill_state_is_per_alias() -> None:
    p = make(ask("hybrid-smart"), SATURATED, spilling={"auto": True})
    assert p.alias == "hybrid-smart" and routes(p) == ["r1/smart", "local/small"]


# ---------------------------------------------------------------------- patience


def test_a_local_attempt_with_remote_routes_behind_it_has_a_first_token_budget() -> None:
    p = make(ask(ttft_slo_ms=500))
    assert [(t.provider, t.first_token_timeout_s) for t in p.targets] == [
        ("local", 1.5),  # 3 x the SLO, then the next route serves
        ("r2", None),
        ("r1", None),
        ("r3", None),
    ]


@pytest.mark.parametrize(
    "facts",
    [ask("local"), ask(data_class="sensitive"), ask(data_class="batch")],
    ids=["only-route", "sensitive", "batch"],
)
def test_a_local_attempt_that_must_or_may_wait_keeps_the_policys_timeout(facts: Facts) -> None:
    assert all(t.first_token_timeout_s is None for t in make(facts, SATURATED).targets)
    assert all(t.hedge_after_s is None for t in make(facts).targets)  # and gets no hedge


def test_a_local_attempt_with_nothing_remote_behind_it_keeps_the_policys_timeout() -> None:
    """Patience is for falling over: the local route last (the spill's fallback) or alone (waiting out a spent
    budget) waits as long as any route does; given up at 3 x a 1 ms SLO, the budget's wait was a 504."""
    waiting = make(ask(ttft_slo_ms=1), SATURATED, budget=Budget(5.0, 5.0))
    assert [(t.provider, t.first_token_timeout_s) for t in waiting.targets] == [("local", None)]
    spilled = make(ask(ttft_slo_ms=1), SATURATED)
    assert spilled.targets[-1].provider == "local" and spilled.targets[-1].first_token_timeout_s is None


def test_a_local_attempt_with_a_remote_route_right_behind_it_is_hedged_at_its_fraction_of_the_slo() -> None:
    knobs = KNOBS.model_copy(update={"hedge_at": 0.5})
    p = make(ask(ttft_slo_ms=500), knobs=knobs)
    assert [(t.provider, t.hedge_after_s) for t in p.targets] == [
        ("local", 0.25),
        ("r2", None),
        ("r1", None),
        ("r3", None),
    ]
    # Off: no hedge; a spent burst budget: none either (a hedge that answers is load spill).
    assert (
        make(ask(ttft_slo_ms=500), knobs=KNOBS.model_copy(update={"hedge_at": None})).targets[0].hedge_after_s is None
    )
    spent = make(ask(ttft_slo_ms=500), knobs=knobs, budget=Budget(5.0, 5.0))
    assert spent.targets[0].provider == "local" and spent.targets[0].hedge_after_s is None


def test_the_load_that_counts_is_that_of_the_local_model_in_the_plan() -> None:
    busy_other = plan(
        ask(),
        REGISTRY,
        {},
        local_providers=frozenset({"local"}),
        load={"small": IDLE, "other": SATURATED},
        budget=Budget(None, 0.0),
        knobs=KNOBS,
    )
    assert busy_other.targets[0].provider == "local"


@pytest.mark.parametrize(
    ("predicted_load", "was_spilling", "leads"),
    [(550, False, "local"), (750, False, "r2"), (600, True, "r2"), (500, True, "local")],
)
def test_headroom_keeps_the_typical_ttft_well_inside_the_slo(
    predicted_load: int, was_spilling: bool, leads: str
) -> None:
    # predicted = 30 + (queued + 100) / 1000 s: queued chosen to land on `predicted_load` ms
    snap = replace(IDLE, queued_prompt_tokens=predicted_load - 130)
    p = make(ask(), snap, knobs=KNOBS.model_copy(update={"headroom": 0.7}), spilling={"auto": was_spilling})
    assert p.targets[0].provider == leads  # local up to 700 ms; back from spilling below 560 ms
