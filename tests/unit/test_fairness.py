"""The local engine's fair queue between tenants (`local_models.fairness`): smaller tags go first."""

from __future__ import annotations

from local_models.fairness import MAX_TENANTS, FairQueue


def test_one_tenant_keeps_its_own_order() -> None:
    q = FairQueue()
    tags = [q.tag("a") for _ in range(5)]
    q.started(tags[2])
    tags += [q.tag("a") for _ in range(3)]
    assert tags == sorted(tags) and len(set(tags)) == len(tags)


def test_a_tenant_that_was_idle_goes_before_a_busy_ones_backlog() -> None:
    q = FairQueue()
    backlog = [q.tag("busy") for _ in range(40)]  # 0..39
    for tag in backlog[:32]:  # the engine's 32 slots take the first 32
        q.started(tag)
    newcomer = q.tag("idle")
    assert newcomer < min(backlog[32:])  # first FCFS would have put it after all eight waiting


def test_two_busy_tenants_alternate() -> None:
    q = FairQueue()
    a = [q.tag("a") for _ in range(10)]
    b = [q.tag("b") for _ in range(10)]
    merged = sorted([(t, "a") for t in a] + [(t, "b") for t in b])  # ties: the earlier arrival (a) first
    assert [who for _, who in merged[:6]] == ["a", "b", "a", "b", "a", "b"]


def test_a_tenant_back_after_the_engine_moved_on_starts_from_there() -> None:
    q = FairQueue()
    q.tag("a")
    for tag in [q.tag("b") for _ in range(100)]:
        q.started(tag)
    assert q.tag("a") == 99  # not 1: its old place doesn't let it jump what came since


def test_memory_is_bounded_by_tenants_still_queued() -> None:
    q = FairQueue()
    for i in range(3 * MAX_TENANTS):
        q.started(q.tag(f"t{i}"))
    assert len(q._last) <= MAX_TENANTS
