"""A key's share of a replica's places: its HTTP requests in progress (and its open sockets), counted per key."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator.accounting.accounts import Accounts, Tab
from orchestrator.accounting.keys import KeyPolicy, hash_key
from orchestrator.accounting.places import Places
from orchestrator.accounting.setup import requests_per_key
from orchestrator.errors import KeyRateLimited
from orchestrator.settings import load_settings


def key(key_id: str = "team-a", **limits: Any) -> KeyPolicy:
    return KeyPolicy(id=key_id, sha256=hash_key(f"sk-{key_id}"), **limits)


def tab(accounts: Accounts, policy: KeyPolicy | None) -> Tab:
    t = Tab(accounts, "req", "POST", "/v1/chat/completions")
    t.key = policy
    return t


def refusals(accounts: Accounts, key_id: str, reason: str) -> float:
    value = accounts.metrics.registry.get_sample_value(
        "orchestrator_key_refusals_total", {"key": key_id, "reason": reason}
    )
    return value or 0.0


def test_places_are_taken_up_to_the_cap_and_given_back() -> None:
    places = Places()
    assert [places.take("a", 2), places.take("a", 2)] == [None, None]
    assert places.take("a", 2) == 2  # refused: how many it holds
    assert places.take("b", 2) is None  # another key's count is its own
    places.give_back("a")
    assert places.held("a") == 1 and places.take("a", 2) is None
    for _ in range(2):
        places.give_back("a")
    places.give_back("b")
    assert len(places) == 0 and places.held("a") == 0  # nothing kept for a key that holds nothing


def test_a_key_holds_at_most_its_own_cap_or_the_gateways() -> None:
    accounts = Accounts(requests_per_key=2)
    own, default = key("own", parallel_requests=1), key("default")
    first = tab(accounts, own)
    accounts.hold_request(first)
    with pytest.raises(KeyRateLimited) as refused:
        accounts.hold_request(tab(accounts, own))
    error = refused.value
    assert (error.status_code, error.error_type, error.code) == (429, "requests", "rate_limit_exceeded")
    assert error.retry_after == 1.0 and "parallel_requests: 1" in error.message
    assert refusals(accounts, "own", "parallel_requests") == 1
    held = [tab(accounts, default) for _ in range(2)]
    for t in held:
        accounts.hold_request(t)
    with pytest.raises(KeyRateLimited):
        accounts.hold_request(tab(accounts, default))
    accounts.release(first)
    accounts.hold_request(tab(accounts, own))  # its place came back
    # A key may have more than the gateway's default, too.
    big = key("big", parallel_requests=5)
    for _ in range(5):
        accounts.hold_request(tab(accounts, big))
    assert accounts.requests.held("big") == 5


def test_a_tab_holds_one_place_and_gives_it_back_once() -> None:
    accounts = Accounts(requests_per_key=2)
    policy = key()
    t = tab(accounts, policy)
    accounts.hold_request(t)
    accounts.hold_request(t)  # a route that checks the key twice still holds one place
    assert accounts.requests.held("team-a") == 1
    other = tab(accounts, policy)
    accounts.hold_request(other)
    accounts.release(t)
    accounts.release(t)  # released again: never another request's place
    assert accounts.requests.held("team-a") == 1
    accounts.release(other)
    assert len(accounts.requests) == 0


def test_a_refused_request_gives_back_nothing_it_did_not_take() -> None:
    accounts = Accounts(requests_per_key=1)
    held, refused = tab(accounts, key()), tab(accounts, key())
    accounts.hold_request(held)
    with pytest.raises(KeyRateLimited):
        accounts.hold_request(refused)
    accounts.release(refused)  # its response (the 429) ended
    assert accounts.requests.held("team-a") == 1  # the other's place is still held
    with pytest.raises(KeyRateLimited):
        accounts.hold_request(tab(accounts, key()))


def test_no_cap_without_a_key_or_a_limit() -> None:
    open_endpoint = Accounts(requests_per_key=1)
    for _ in range(3):
        open_endpoint.hold_request(tab(open_endpoint, None))
    uncapped = Accounts()
    for _ in range(3):
        uncapped.hold_request(tab(uncapped, key()))
    assert len(open_endpoint.requests) == len(uncapped.requests) == 0


@pytest.mark.parametrize("ending", ["answered", "error", "cancelled"])
async def test_a_requests_place_comes_back_however_its_tab_closes(ending: str) -> None:
    accounts = Accounts(requests_per_key=1)

    async def request() -> None:
        with accounts.open("POST", "/v1/chat/completions") as t:
            t.key = key()
            accounts.hold_request(t)
            t.status = 200
            if ending == "error":
                raise RuntimeError("boom")
            if ending == "cancelled":
                await asyncio.sleep(10)

    task = asyncio.create_task(request())
    await asyncio.sleep(0)
    if ending == "cancelled":
        assert accounts.requests.held("team-a") == 1
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert accounts.requests.held("team-a") == 0


async def test_requests_racing_for_a_keys_last_places_take_exactly_the_cap() -> None:
    accounts = Accounts(requests_per_key=3)
    admitted = 0

    async def request() -> str:
        nonlocal admitted
        with accounts.open("POST", "/v1/chat/completions") as t:
            t.key = key()
            await asyncio.sleep(0)  # every request authenticated before any holds
            try:
                accounts.hold_request(t)
            except KeyRateLimited:
                return "429"
            admitted += 1
            await asyncio.sleep(0.01)
            return "200"

    answers = await asyncio.gather(*(request() for _ in range(50)))
    assert sorted(answers).count("200") == 3 and admitted == 3
    assert len(accounts.requests) == 0


def test_a_sockets_refusal_is_counted_as_its_own() -> None:
    accounts = Accounts(sockets_per_key=1, requests_per_key=1)
    socket = tab(accounts, key())
    accounts.hold_socket(socket)
    with pytest.raises(KeyRateLimited):
        accounts.hold_socket(tab(accounts, key()))
    accounts.hold_request(tab(accounts, key()))  # sockets and requests are counted apart
    assert refusals(accounts, "team-a", "sockets") == 1
    accounts.release_socket(socket)
    assert accounts.sockets.held("team-a") == 0


def test_the_gateways_default_is_a_quarter_of_a_replicas_places() -> None:
    assert requests_per_key(load_settings()) == 128  # max_ongoing_requests: 512
    assert requests_per_key(load_settings(gateway={"max_ongoing_requests": 2})) == 1
    assert requests_per_key(load_settings(gateway={"parallel_requests_per_key": 7})) == 7


@pytest.mark.parametrize("value", [0, -1, 1_000_001])
def test_a_configured_cap_is_a_count_of_requests(value: int) -> None:
    """0 would lock a key out for good (none: the gateway's default); past a million is no replica's."""
    with pytest.raises(ValidationError, match="parallel_requests"):
        load_settings(keys={"a": {"sha256": "0" * 64, "parallel_requests": value}})
    with pytest.raises(ValidationError, match="parallel_requests_per_key"):
        load_settings(gateway={"parallel_requests_per_key": value})
    assert load_settings(keys={"a": {"sha256": "0" * 64, "parallel_requests": 1}}).keys["a"].parallel_requests == 1
