"""The ledger's book: admission, settlement, periods, minute windows, persistence."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator.accounting.accounts import Accounts, Tab
from orchestrator.accounting.book import (
    REQUEST_COLUMNS,
    Admitted,
    AdmitUnasked,
    Book,
    Choice,
    CreateKey,
    DeleteKey,
    InProcessOwner,
    ListKeys,
    Lookup,
    Query,
    Refused,
    Reserve,
    RetiredKeyId,
    RotateKey,
    Settle,
    SyncKeys,
    UpdateKey,
    period_bounds,
)
from orchestrator.accounting.keys import KeyPolicy, hash_key, new_key, presented, redact
from orchestrator.accounting.reports import render, usage_report
from orchestrator.errors import InvalidApiKey
from orchestrator.testing.clock import FakeClock

NOW = datetime(2026, 11, 23, 12, 30, tzinfo=UTC).timestamp()


def policy(key_id: str = "team-a", **limits: Any) -> KeyPolicy:
    return KeyPolicy(id=key_id, sha256=hash_key(f"sk-{key_id}"), **limits)


def row(key_id: str | None, cost: float, prompt: int = 10, completion: int = 5, **extra: Any) -> dict[str, Any]:
    return {
        "ts": NOW,
        "key_id": key_id,
        "status": 200,
        "model": "m",
        "provider": "p",
        "route": "remote",
        "cache": "MISS",
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost_usd": cost,
        "reference_usd": 2 * cost,
        **extra,
    }


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def book(tmp_path: Path, clock: FakeClock) -> Book:
    return Book(tmp_path / "ledger.sqlite", clock=clock)


def reserve(book: Book, key_id: str, rid: str, usd: float = 1.0, tokens: int = 100) -> Admitted | Refused:
    return book.reserve(Reserve(key_id, rid, Choice("m", usd, tokens)))


def test_keys_are_random_hashed_and_read_from_either_header() -> None:
    a, b = new_key(), new_key()
    assert a != b and a.startswith("sk-orch-") and len(a) > 40
    assert hash_key(a) != a and len(hash_key(a)) == 64
    assert presented({"authorization": f"Bearer {a}"}) == a
    assert presented({"x-api-key": a}) == a
    assert presented({"authorization": "Basic xyz"}) is None
    assert a[-4:] in redact(a) and a[10:-4] not in redact(a)


def test_admitted_while_under_budget_so_overspend_is_at_most_one_reservation(book: Book) -> None:
    book.sync_keys([policy(budget_usd=2.5)])
    answers = [reserve(book, "team-a", f"r{i}") for i in range(5)]
    admitted = [a for a in answers if isinstance(a, Admitted)]
    assert len(admitted) == 3  # 0 < 2.5, 1 < 2.5, 2 < 2.5; then 3 >= 2.5
    refused = answers[3]
    assert isinstance(refused, Refused) and refused.reason == "budget_usd" and refused.retry_after is not None
    for a in admitted:  # each cost less than it reserved
        book.settle(Settle(a.reservation_id, row("team-a", 0.4)))
    assert book.spend("team-a").spent_usd == pytest.approx(1.2)
    assert book.spend("team-a").reserved_usd == 0
    again = reserve(book, "team-a", "r9")
    assert isinstance(again, Admitted)  # 1.2 spent < 2.5: room again


def test_token_budget_and_period_reset(book: Book, clock: FakeClock) -> None:
    book.sync_keys([policy(budget_tokens=100, period="day")])
    a = reserve(book, "team-a", "r1", usd=0, tokens=50)
    assert isinstance(a, Admitted)
    book.settle(Settle("r1", row("team-a", 0.0, prompt=60, completion=60)))
    refused = reserve(book, "team-a", "r2")
    assert isinstance(refused, Refused) and refused.reason == "budget_tokens"
    assert refused.retry_after == pytest.approx(period_bounds("day", NOW)[1] - NOW)  # type: ignore[operator]
    clock.advance(24 * 3600)
    assert isinstance(reserve(book, "team-a", "r3"), Admitted)


def test_rpm_and_tpm_windows_with_retry_after(book: Book, clock: FakeClock) -> None:
    book.sync_keys([policy("rpm", rpm=2), policy("tpm", tpm=100)])
    assert isinstance(reserve(book, "rpm", "a"), Admitted)
    clock.advance(10)
    assert isinstance(reserve(book, "rpm", "b"), Admitted)
    refused = reserve(book, "rpm", "c")
    assert isinstance(refused, Refused) and refused.reason == "rpm"
    assert refused.retry_after == pytest.approx(50)
    clock.advance(50.5)
    assert isinstance(reserve(book, "rpm", "d"), Admitted)

    first = reserve(book, "tpm", "t1", tokens=500)  # reserved: 500 tokens count in the window
    assert isinstance(first, Admitted)
    assert isinstance(reserve(book, "tpm", "t2"), Refused)
    book.settle(Settle("t1", row("tpm", 0.0, prompt=20, completion=10)))  # really 30
    assert isinstance(reserve(book, "tpm", "t3", tokens=10), Admitted)


def test_a_request_no_model_answers_counts_in_the_minutes_requests_and_nothing_else(
    book: Book, clock: FakeClock
) -> None:
    """A token count (`AdmitUnasked`) is one of its key's requests per minute, refused past them as any
    request; it takes no tokens of the minute, reserves nothing and spends nothing, so a key at its tpm or
    its budget may still count."""
    book.sync_keys([policy("k", rpm=3, tpm=100, budget_usd=1.0), policy("free")])
    assert book.admit_unasked("k") is None
    assert isinstance(reserve(book, "k", "r1", usd=1.0, tokens=100), Admitted)  # tpm and budget now used up
    assert book.admit_unasked("k") is None
    refused = book.admit_unasked("k")
    assert isinstance(refused, Refused) and refused.reason == "rpm"
    assert refused.retry_after == pytest.approx(60)
    refused = reserve(book, "k", "r2")  # one window for both kinds: the counts filled it
    assert isinstance(refused, Refused) and refused.reason == "rpm"
    assert book.spend("k").reserved_tokens == 100 and book.spend("k").reserved_usd == pytest.approx(1.0)
    clock.advance(61)
    assert book.admit_unasked("k") is None
    assert [e[1] for e in book._windows["k"]] == [0.0]  # inspected: a count adds no tokens
    assert all(book.admit_unasked("free") is None for _ in range(100))  # no rpm, no refusal
    book.delete_key("k")
    revoked = book.admit_unasked("k")
    assert isinstance(revoked, Refused) and revoked.reason == "revoked"


async def test_an_unasked_admission_carries_the_replicas_settlements(book: Book) -> None:
    owner = InProcessOwner(book)
    book.sync_keys([policy("k", rpm=10)])
    assert await owner.call(AdmitUnasked("k", (Settle(None, row("k", 0.25)),))) is None
    assert book.spend("k").spent_usd == pytest.approx(0.25)


def test_what_the_book_holds_per_key_in_memory_stays_bounded(book: Book, clock: FakeClock) -> None:
    book.sync_keys([policy("hourly", period="hour", budget_usd=100.0, rpm=1000), policy("gone", rpm=5)])
    late = reserve(book, "hourly", "late", usd=0.01)
    for hour in range(48):
        assert isinstance(reserve(book, "hourly", f"r{hour}", usd=0.01), Admitted)
        book.settle(Settle(f"r{hour}", row("hourly", 0.01, ts=clock.now)))
        clock.advance(3600)
    # Inspected, not patched: of 48 periods, the current and the previous one are in memory.
    assert len(book._spent["hourly"]) <= 2
    # A settlement for a period long gone still lands on disk, where that period's spend is.
    assert isinstance(late, Admitted)
    book.settle(Settle("late", row("hourly", 0.5, ts=NOW)))
    start = period_bounds("hour", NOW)[0]
    usd = book.db.execute("SELECT usd FROM spend WHERE key_id = 'hourly' AND period_start = ?", (start,)).fetchone()
    assert usd[0] == pytest.approx(0.51)
    # A deleted key leaves nothing behind but its history on disk.
    assert isinstance(reserve(book, "gone", "g1"), Admitted)
    book.settle(Settle("g1", row("gone", 0.1)))
    assert book.delete_key("gone")
    assert "gone" not in book._windows and "gone" not in book._spent and "gone" not in book._held


def test_soft_limit_downgrades_instead_of_refusing(book: Book) -> None:
    book.sync_keys([policy(budget_usd=10, soft_limit_usd=1, downgrade_to="cheap")])
    cheap = Choice("cheap", 0.01, 100)
    first = book.reserve(Reserve("team-a", "r1", Choice("big", 1.0, 100), cheap))
    assert isinstance(first, Admitted) and (first.model, first.downgraded) == ("big", False)
    second = book.reserve(Reserve("team-a", "r2", Choice("big", 1.0, 100), cheap))
    assert isinstance(second, Admitted) and (second.model, second.downgraded) == ("cheap", True)
    assert book.spend("team-a").reserved_usd == pytest.approx(1.01)


def test_spend_keys_and_log_survive_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "ledger.sqlite"
    book = Book(path, clock=clock)
    book.sync_keys([policy(budget_usd=1)])
    book.create_key(policy("admin-made", budget_usd=5, source="admin"))
    a = reserve(book, "team-a", "r1")
    assert isinstance(a, Admitted)
    book.settle(Settle("r1", row("team-a", 0.75)))
    reserve(book, "team-a", "in-flight")  # lost with the process: only settled spend counts
    book.close()

    again = Book(path, clock=clock)
    assert [k.id for k in again.keys()] == ["admin-made", "team-a"]
    assert again.spend("team-a").spent_usd == pytest.approx(0.75)
    assert again.spend("team-a").reserved_usd == 0
    assert usage_report(again.db)["totals"]["requests"] == 1


def test_config_sync_removes_config_keys_only_and_revokes(book: Book) -> None:
    book.sync_keys([policy("a"), policy("b")])
    book.create_key(policy("c", source="admin"))
    book.sync_keys([policy("a")])
    assert [k.id for k in book.keys()] == ["a", "c"]
    assert book.lookup(hash_key("sk-b")) is None and book.lookup(hash_key("sk-a")) is not None
    refused = reserve(book, "b", "r")
    assert isinstance(refused, Refused) and refused.reason == "revoked"
    assert book.create_key(policy("a", source="admin")) == "taken"  # the id is in use


def test_a_deleted_admin_keys_id_is_never_the_configs(tmp_path: Path, clock: FakeClock) -> None:
    """An id is its key's tenancy: a config naming a deleted admin key's id is refused (it would take that
    key's stored responses, cache entries and spend), on this ledger and after a restart; a config key
    deleted at runtime comes back while the config has it."""
    path = tmp_path / "ledger.sqlite"
    book = Book(path, clock=clock)
    book.sync_keys([policy("team-a")])
    book.create_key(policy("acme", source="admin"))
    assert book.delete_key("acme") and book.delete_key("team-a")
    with pytest.raises(RetiredKeyId, match="acme"):
        book.sync_keys([policy("team-a"), KeyPolicy(id="acme", sha256=hash_key("sk-new"))])
    book.sync_keys([policy("team-a")])  # the config's own key, deleted at runtime, comes back
    assert [k.id for k in book.keys()] == ["team-a"]
    book.close()
    again = Book(path, clock=clock)
    with pytest.raises(RetiredKeyId):
        again.sync_keys([policy("acme")])
    assert again.create_key(policy("acme", source="admin")) == "retired"


def test_a_ledger_from_before_deleted_keys_sources_opens_as_it_was(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "ledger.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE retired_keys (id TEXT PRIMARY KEY, retired REAL NOT NULL)")
    old.execute("INSERT INTO retired_keys VALUES ('gone', 1.0)")
    old.commit()
    old.close()
    book = Book(path, clock=clock)
    assert book.create_key(policy("gone", source="admin")) == "retired"
    book.sync_keys([policy("gone")])  # its source unknown: the config's, as before
    assert [k.id for k in book.keys()] == ["gone"]


def test_unsettled_reservations_expire(tmp_path: Path, clock: FakeClock) -> None:
    book = Book(tmp_path / "l.sqlite", clock=clock, reservation_ttl_s=60)
    book.sync_keys([policy(budget_usd=1)])
    assert isinstance(reserve(book, "team-a", "lost"), Admitted)
    assert isinstance(reserve(book, "team-a", "r2"), Refused)
    clock.advance(61)
    assert isinstance(reserve(book, "team-a", "r3"), Admitted)


async def test_every_command_goes_through_one_method(book: Book) -> None:
    owner = InProcessOwner(book)
    await owner.call(SyncKeys((policy(budget_usd=3),)))
    assert (await owner.call(Lookup(hash_key("sk-team-a")))) is not None
    assert await owner.call(CreateKey(policy("x", source="admin"))) is not None
    listed = await owner.call(ListKeys())
    assert [k.id for k, _ in listed] == ["team-a", "x"]
    assert await owner.call(DeleteKey("x")) is True and await owner.call(DeleteKey("x")) is False
    await owner.call(Settle(None, row(None, 0.5)))
    report = await owner.call(Query(usage_report))
    assert report["by_key"]["-"]["cost_usd"] == pytest.approx(0.5)


def test_report_groups_and_savings(book: Book) -> None:
    book.sync_keys([policy("a"), policy("b")])
    book.settle(Settle(None, row("a", 0.1, provider="openrouter", route="remote")))
    book.settle(Settle(None, row("a", 0.0, provider="local", route="local")))
    book.settle(Settle(None, row("b", 0.0, provider="cache", route="cache", cache="HIT")))
    report = usage_report(book.db, reference_model="openrouter/gpt-4o-mini")
    assert report["totals"]["requests"] == 3
    assert report["savings"]["saved_usd"] == pytest.approx(0.1)  # reference 0.2 - actual 0.1
    assert set(report["by_route"]) == {"remote", "local", "cache"}
    assert report["by_key"]["a"]["requests"] == 2 and report["by_route"]["cache"]["cache_hits"] == 1
    # Bounds not given are null (were 0 and 1e18 in the JSON), and the text says what they mean.
    assert (report["since"], report["until"]) == (None, None)
    assert render(report).startswith("Usage from the beginning to now\n")
    around = usage_report(book.db, since=NOW - 60, until=NOW + 60)
    assert (around["since"], around["until"]) == (NOW - 60, NOW + 60) and around["totals"]["requests"] == 3
    later = usage_report(book.db, since=NOW + 1)
    assert later["totals"]["requests"] == 0 and later["until"] is None
    assert "UTC to " in render(later)


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        ("hour", datetime(2026, 11, 23, 12, tzinfo=UTC), datetime(2026, 11, 23, 13, tzinfo=UTC)),
        ("day", datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 24, tzinfo=UTC)),
        ("week", datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)),  # a Monday
        ("month", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
    ],
)
def test_periods_are_utc_calendar_periods(period: str, start: datetime, end: datetime) -> None:
    assert period_bounds(period, NOW) == (start.timestamp(), end.timestamp())
    assert period_bounds("total", NOW) == (0.0, None)


def test_a_deleted_keys_id_is_never_given_to_another_key(tmp_path: Path) -> None:
    book = Book(tmp_path / "l.sqlite")
    book.sync_keys([policy("team-a")])
    assert isinstance(book.create_key(policy("x", source="admin")), KeyPolicy)
    assert book.create_key(KeyPolicy("x", hash_key("sk-other"), source="admin")) == "taken"
    assert book.delete_key("x") and book.delete_key("team-a")
    book.close()
    book = Book(tmp_path / "l.sqlite")  # retired ids stay retired
    assert book.create_key(KeyPolicy("x", hash_key("sk-new"), source="admin")) == "retired"
    assert book.create_key(KeyPolicy("team-a", hash_key("sk-new2"), source="admin")) == "retired"
    book.sync_keys([policy("team-a")])  # the config declares its own ids: it brings its key back
    assert book.lookup(hash_key("sk-team-a")) is not None


def test_cache_hits_and_shared_answers_spend_no_tokens(tmp_path: Path, clock: FakeClock) -> None:
    """A free answer used up `budget_tokens` and `tpm` as if it had been generated: a 200-token budget
    refused the 17th cache hit of one paid answer."""
    book = Book(tmp_path / "l.sqlite", clock=clock)
    book.sync_keys([policy(budget_tokens=200, tpm=200)])
    assert isinstance(reserve(book, "team-a", "paid", usd=0.0, tokens=20), Admitted)
    book.settle(Settle("paid", row("team-a", 0.01, prompt=10, completion=5)))
    for i in range(40):
        rid = f"hit-{i}"
        assert isinstance(reserve(book, "team-a", rid, usd=0.0, tokens=20), Admitted), i
        book.settle(Settle(rid, row("team-a", 0.0, prompt=10, completion=5, cache="HIT" if i % 2 else "SHARED")))
    assert book.spend("team-a").spent_tokens == 15  # the one generated answer


def test_the_tokens_of_attempts_that_didnt_serve_are_spent_in_the_period_and_the_minute(
    tmp_path: Path, clock: FakeClock
) -> None:
    book = Book(tmp_path / "l.sqlite", clock=clock)
    book.sync_keys([policy(budget_tokens=1000, tpm=40)])
    assert isinstance(reserve(book, "team-a", "r1", usd=0.0, tokens=20), Admitted)
    book.settle(Settle("r1", row("team-a", 0.01, prompt=10, completion=5, discarded_tokens=30)))
    assert book.spend("team-a").spent_tokens == 45
    refused = reserve(book, "team-a", "r2", usd=0.0, tokens=1)
    assert isinstance(refused, Refused) and refused.reason == "tpm"


def test_a_ledger_from_before_discarded_tokens_opens_and_settles(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "ledger.sqlite"
    old = sqlite3.connect(path)
    columns = [(n, k) for n, k in REQUEST_COLUMNS if n != "discarded_tokens"]
    old.execute(f"CREATE TABLE requests ({', '.join(f'{n} {k}' for n, k in columns)})")
    old.commit()
    old.close()
    book = Book(path, clock=clock)
    book.sync_keys([policy()])
    book.settle(Settle(None, row("team-a", 0.01, discarded_tokens=3)))
    assert book.spend("team-a").spent_tokens == 18


async def test_a_key_changed_on_one_replica_reaches_another_within_its_lookup_ttl(book: Book) -> None:
    """The admin API changes a key through one replica; another replica holds its cached lookup for
    `lookup_ttl_s` (5 s by default: README, "Keys"), then sees the change: a rotated secret refused, new limits."""
    owner = InProcessOwner(book)
    made = await owner.call(CreateKey(KeyPolicy(id="p", sha256=hash_key("sk-old"), source="admin")))
    assert isinstance(made, KeyPolicy)
    now = FakeClock(0.0)
    other = Accounts(owner=owner, require_keys=True, clock=now)  # the replica that made no change

    async def seen(secret: str) -> KeyPolicy | None:
        return await other.authenticate(Tab(other, "req", "POST", "/v1/chat/completions"), {"x-api-key": secret})

    assert (await seen("sk-old")) == made  # cached from here on
    await owner.call(UpdateKey("p", (("rpm", 7),)))
    await owner.call(RotateKey("p", hash_key("sk-new")))
    now.advance(4.9)
    assert (await seen("sk-old")) == made  # within the TTL: as it was
    now.advance(0.2)
    with pytest.raises(InvalidApiKey):
        await seen("sk-old")
    fresh = await seen("sk-new")
    assert fresh is not None and fresh.rpm == 7 and fresh.id == "p"
