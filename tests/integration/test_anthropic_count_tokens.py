"""`POST /v1/messages/count_tokens`, the `anthropic-version` header, and keys and their limits on
Anthropic's routes, through the official anthropic SDK over a real socket (`anthropic_gateway`).

Counts are the local model's tokenizer and chat template (the tiny-random model's here), whatever
route the model has; errors are Anthropic's `{"type": "error", "error": {"type", "message"}}`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import anthropic
import httpx
import pytest
from anthropic.types import MessageTokensCount
from anthropic_gateway import BROKE, LOCAL_ONLY, MASTER, ONE_RPM, TEAM, Gateway

from orchestrator.testing.provider import FakeProvider

pytest_plugins = ["anthropic_fixtures"]  # fakes, tokenizer, gw

SYSTEM = "You are terse."
CONVERSATION: list[Any] = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": [{"type": "text", "text": "And of Italy?"}]},
]

REPLY = "It is sunny."  # what the fake providers answer


def template_count(tokenizer: Path, messages: list[dict[str, str]]) -> int:
    """The prompt's tokens as the local model reads it: its chat template, then its tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer))
    return len(tok.encode(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)))


def error_of(caught: pytest.ExceptionInfo[anthropic.APIStatusError]) -> dict[str, Any]:
    body = cast(dict[str, Any], caught.value.body)
    assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}, body
    return cast(dict[str, Any], body["error"])


# ------------------------------------------------------------------------------ count_tokens


async def test_count_tokens_is_the_local_models_count_of_the_prompt(gw: Gateway, tokenizer: Path) -> None:
    client = gw.client()
    raw = await client.messages.with_raw_response.count_tokens(model="fake-chat", system=SYSTEM, messages=CONVERSATION)
    assert raw.http_request.url.path == "/v1/messages/count_tokens"
    counted = MessageTokensCount.model_validate_json(await raw.read())  # Anthropic's own type, nothing more
    expected = template_count(
        tokenizer,
        [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And of Italy?"},
        ],
    )
    assert counted.input_tokens == expected > 20  # the template's tokens and the texts'
    assert gw.engine.generations == []  # no model was asked


async def test_an_alias_and_a_remote_model_are_counted_the_same_way(
    gw: Gateway, fakes: dict[str, FakeProvider]
) -> None:
    client = gw.client()
    fakes["claude"].reset_stats()
    counts = {
        model: (await client.messages.count_tokens(model=model, system=SYSTEM, messages=CONVERSATION)).input_tokens
        for model in ("fake-chat", "auto", "claude/haiku")
    }
    assert len(set(counts.values())) == 1, counts
    assert fakes["claude"].counts.total() == 0  # counted here, never sent upstream


async def test_count_tokens_grows_with_the_prompt(gw: Gateway) -> None:
    client = gw.client()
    short = await client.messages.count_tokens(model="auto", messages=[{"role": "user", "content": "hi"}])
    long = await client.messages.count_tokens(model="auto", messages=[{"role": "user", "content": "hi " * 200}])
    assert 0 < short.input_tokens < long.input_tokens


async def test_count_tokens_for_an_unknown_model_is_a_404(gw: Gateway) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        await gw.client().messages.count_tokens(model="no-such-model", messages=CONVERSATION)
    assert error_of(caught)["type"] == "not_found_error"


async def test_count_tokens_for_a_model_the_key_may_not_use_is_a_403(gw: Gateway) -> None:
    client = gw.client(LOCAL_ONLY)
    assert (await client.messages.count_tokens(model="fake-chat", messages=CONVERSATION)).input_tokens > 0
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        await client.messages.count_tokens(model="claude/haiku", messages=CONVERSATION)
    error = error_of(caught)
    assert error["type"] == "permission_error" and "claude/haiku" in error["message"]


async def test_count_tokens_needs_a_key(gw: Gateway) -> None:
    with pytest.raises(anthropic.AuthenticationError) as caught:
        await gw.client("sk-orch-wrong").messages.count_tokens(model="fake-chat", messages=CONVERSATION)
    assert error_of(caught)["type"] == "authentication_error"
    async with httpx.AsyncClient(base_url=gw.url) as http:
        r = await http.post("/v1/messages/count_tokens", json={"model": "fake-chat", "messages": CONVERSATION})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert "x-api-key" in r.json()["error"]["message"]  # where Anthropic clients put it


@pytest.mark.parametrize(
    "body",
    [
        {"model": "fake-chat"},
        {"model": "fake-chat", "messages": []},
        {"model": "fake-chat", "messages": [{"role": "system", "content": "hi"}]},
        {"messages": CONVERSATION},
        {"model": "fake-chat", "messages": CONVERSATION, "system": 5},
        {"model": "fake-chat", "messages": CONVERSATION, "max_tokens": 0},
    ],
)
async def test_a_bad_count_tokens_body_is_a_400_in_anthropics_shape(gw: Gateway, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=gw.url) as http:
        r = await http.post("/v1/messages/count_tokens", json=body, headers={"x-api-key": TEAM})
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"


async def test_count_tokens_requests_get_their_own_metrics_label(gw: Gateway) -> None:
    await gw.client().messages.count_tokens(model="fake-chat", messages=CONVERSATION)
    await gw.client().messages.create(model="fake-chat", max_tokens=5, messages=CONVERSATION)
    async with httpx.AsyncClient(base_url=gw.url) as http:
        metrics = (await http.get("/metrics", headers={"Authorization": f"Bearer {MASTER}"})).text
    for endpoint in ("/v1/messages/count_tokens", "/v1/messages"):
        assert f'orchestrator_requests_total{{endpoint="{endpoint}"' in metrics, endpoint


# ------------------------------------------------------------------------------ anthropic-version


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
@pytest.mark.parametrize("version", ["2099-01-01", "yesterday", "", "2023-06-01; drop table"])
async def test_an_unknown_or_malformed_version_is_a_400_naming_the_header(gw: Gateway, path: str, version: str) -> None:
    client = gw.client()
    with pytest.raises(anthropic.BadRequestError) as caught:
        if path.endswith("count_tokens"):
            await client.messages.count_tokens(
                model="fake-chat", messages=CONVERSATION, extra_headers={"anthropic-version": version}
            )
        else:
            await client.messages.create(
                model="fake-chat", max_tokens=5, messages=CONVERSATION, extra_headers={"anthropic-version": version}
            )
    error = error_of(caught)
    assert error["type"] == "invalid_request_error" and error["message"].startswith("anthropic-version: ")


@pytest.mark.parametrize("version", [None, "2023-06-01", "2023-01-01"])
async def test_an_absent_or_known_version_is_served(gw: Gateway, version: str | None) -> None:
    # curl users may leave the header out: it is taken as 2023-06-01.
    headers = {"x-api-key": TEAM, **({"anthropic-version": version} if version else {})}
    body = {"model": "fake-chat", "max_tokens": 5, "messages": CONVERSATION}
    async with httpx.AsyncClient(base_url=gw.url) as http:
        answer = await http.post("/v1/messages", json=body, headers=headers)
        count = await http.post("/v1/messages/count_tokens", json=body, headers=headers)
    assert answer.status_code == 200 and answer.json()["type"] == "message", answer.text
    assert count.status_code == 200 and count.json()["input_tokens"] > 0, count.text


# ------------------------------------------------------------------------------ keys in x-api-key


async def test_a_key_in_x_api_key_is_accounted_to_its_owner(gw: Gateway) -> None:
    await gw.client().messages.create(model="fake-chat", max_tokens=5, messages=CONVERSATION)
    async with httpx.AsyncClient(base_url=gw.url) as http:
        metrics = (await http.get("/metrics", headers={"x-api-key": MASTER})).text
    assert 'key="team"' in metrics


async def test_a_model_the_key_may_not_use_is_a_403_in_anthropics_shape(gw: Gateway) -> None:
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        await gw.client(LOCAL_ONLY).messages.create(model="claude/haiku", max_tokens=5, messages=CONVERSATION)
    assert error_of(caught)["type"] == "permission_error"


async def test_an_exhausted_budget_is_a_429_in_anthropics_shape(gw: Gateway) -> None:
    client = gw.client(BROKE)
    await client.messages.create(model="claude/haiku", max_tokens=50, messages=CONVERSATION)  # spends it
    with pytest.raises(anthropic.RateLimitError) as caught:
        await client.messages.create(model="claude/haiku", max_tokens=50, messages=CONVERSATION)
    error = error_of(caught)
    assert error["type"] == "rate_limit_error" and "budget" in error["message"]
    assert caught.value.response.headers.get("retry-after", "").isdigit()


async def test_a_rate_limit_is_a_429_in_anthropics_shape(gw: Gateway) -> None:
    client = gw.client(ONE_RPM)
    await client.messages.create(model="fake-chat", max_tokens=5, messages=CONVERSATION)
    with pytest.raises(anthropic.RateLimitError) as caught:
        await client.messages.create(model="fake-chat", max_tokens=5, messages=CONVERSATION)
    assert error_of(caught)["type"] == "rate_limit_error"
    assert int(caught.value.response.headers["retry-after"]) >= 1


async def test_count_tokens_is_one_of_the_keys_requests_per_minute(gw: Gateway) -> None:
    """A count is the gateway's CPU (its tokenizer): a request of the key's minute, refused past its rpm in
    Anthropic's shape as a message is; it spends nothing (no tokens, no budget)."""
    client = gw.client(ONE_RPM)
    assert (await client.messages.count_tokens(model="fake-chat", messages=CONVERSATION)).input_tokens > 0
    with pytest.raises(anthropic.RateLimitError) as caught:
        await client.messages.count_tokens(model="fake-chat", messages=CONVERSATION)
    error = error_of(caught)
    assert error["type"] == "rate_limit_error" and "requests per min" in error["message"]
    assert int(caught.value.response.headers["retry-after"]) >= 1
    with pytest.raises(anthropic.RateLimitError):  # the minute's one request was the count
        await client.messages.create(model="fake-chat", max_tokens=5, messages=CONVERSATION)
    async with httpx.AsyncClient(base_url=gw.url) as http:
        listed = (await http.get("/admin/keys", headers={"x-api-key": MASTER})).json()["data"]
    spend = next(k["spend"] for k in listed if k["id"] == "one-rpm")
    assert (spend["usd"], spend["tokens"], spend["reserved_tokens"]) == (0, 0, 0)
