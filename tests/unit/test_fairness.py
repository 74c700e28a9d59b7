"""The local engine's fair queue between tenants (`local_models.fairness`): smaller tags go first."""

from __future__ import annotations

from local_models.fairness import MAX_REPORTED, MAX_TENANTS, FairQueue, ahead


def test_one_tenant_keeps_its_own_order() -> None:
    q = FairQueue()
    tags = [q.enter("a") for _ in range(5)]
    q.start("a", tags[2])
    tags += [q.enter("a") for _ in range(3)]
    assert tags == sorted(tags) and len(set(tags)) == len(tags)


def test_a_tenant_that_was_idle_goes_before_a_busy_ones_backlog() -> None:
    q = FairQueue()
    backlog = [q.enter("busy") for _ in range(40)]  # 0..39
    for tag in backlog[:32]:  # the engine's 32 slots take the first 32
        q.start("busy", tag)
    newcomer = q.enter("idle")
    assert newcomer < min(backlog[32:])  # first FCFS would have put it after all eight waiting


def test_two_busy_tenants_alternate() -> None:
    q = FairQueue()
    a = [q.enter("a") for _ in range(10)]
    b = [q.enter("b") for _ in range(10)]
    merged = sorted([(t, "a") for t in a] + [(t, "b") for t in b])  # ties: the earlier arrival (a) first
    assert [who for _, who in merged[:6]] == ["a", "b", "a", "b", "a", "b"]


def test_a_tenant_back_after_the_engine_moved_on_starts_from_there() -> None:
    q = FairQueue()
    q.enter("a")
    for tag in [q.enter("b") for _ in range(100)]:
        q.start("b", tag)
    assert q.enter("a") == 99  # not 1: its old place doesn't let it jump what came since


def test_memory_is_bounded_by_tenants_still_queued() -> None:
    q = FairQueue()
    for i in range(3 * MAX_TENANTS):
        q.start(f"t{i}", q.enter(f"t{i}"))
    assert len(q._last) <= MAX_TENANTS


def test_waiting_counts_requests_until_they_start_or_leave() -> None:
    q = FairQueue()
    tags = [q.enter("a") for _ in range(3)] + [q.enter("b")]
    q.start("a", tags[0])
    q.leave("b")  # gone before it started (its client left)
    assert q.waiting() == {"a": 2}
    q.start("a", tags[1])
    q.start("a", tags[2])
    assert q.waiting() == {}


def test_a_report_names_the_tenants_with_most_waiting() -> None:
    q = FairQueue()
    for i in range(MAX_REPORTED + 10):
        for _ in range(1 + (i == 70)):
            q.enter(f"t{i}")
    reported = q.waiting()
    assert len(reported) == MAX_REPORTED and reported["t70"] == 2


def test_what_goes_before_a_tenants_next_request() -> None:
    waiting = {"busy": 40, "other": 2, "third": 1}
    assert ahead(waiting, "idle") == 3  # at most one of each tenant with a request waiting
    assert ahead(waiting, "third") == 1 + 2 + 2
    assert ahead(waiting, "busy") == 43  # everything: it is behind its own backlog
    assert ahead({}, "idle") == 0
