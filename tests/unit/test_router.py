"""The scheduler's I/O side: observed first-token times rank spill routes for `order: latency`."""

from __future__ import annotations

from orchestrator.capabilities import Backend, ModelEntry, Registry
from orchestrator.failover import Target
from orchestrator.protocol import ChatCompletionRequest
from orchestrator.router import Router
from orchestrator.scheduler import AliasPolicy

CHAT = frozenset({"chat", "completions"})
REGISTRY = Registry(
    [
        ModelEntry(
            "fast-first",
            (
                Backend("slowco", "m1", CHAT, owned_by="slowco"),
                Backend("quickco", "m2", CHAT, owned_by="quickco"),
            ),
        )
    ]
)
REQUEST = ChatCompletionRequest.model_validate({"model": "fast-first", "messages": [{"role": "user", "content": "hi"}]})


def order(router: Router) -> list[str]:
    return [t.provider for t in router.plan(REQUEST, "chat", set(), {}).targets]


def test_latency_order_follows_the_first_tokens_each_route_has_shown() -> None:
    router = Router(REGISTRY, local={}, policies={"fast-first": AliasPolicy(order="latency")})
    assert order(router) == ["slowco", "quickco"]  # nothing observed yet: as listed
    router.first_token(Target("slowco", "m1"), 900.0)
    router.first_token(Target("quickco", "m2"), 120.0)
    assert order(router) == ["quickco", "slowco"]
    for _ in range(20):  # quickco slows down for good: the average follows
        router.first_token(Target("quickco", "m2"), 2000.0)
    assert order(router) == ["slowco", "quickco"]


def test_listed_order_ignores_observed_latency() -> None:
    router = Router(REGISTRY, local={})
    router.first_token(Target("quickco", "m2"), 1.0)
    router.first_token(Target("slowco", "m1"), 5000.0)
    assert order(router) == ["slowco", "quickco"]
