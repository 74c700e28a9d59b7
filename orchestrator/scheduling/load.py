"""The local engines' load, as every gateway replica sees it.

    LocalModel replica ──report(every 100 ms)──▶ LoadBoard ◀──read(every 100 ms)── Gateway replica (LoadView)

Each `LocalModel` replica pushes its engine's `LoadStats` to the one
`LoadBoard` (a small Serve deployment); each gateway replica polls the board
for the aggregate across replicas (`aggregate`, pure), so what a gateway sees
is at most about two poll intervals old. (An idle engine's unchanged figures
go at a slower heartbeat, and a gateway that planned nothing for a second
polls less often until its next plan: each call costs a few CPU milliseconds
across Serve, Ray and both ends, and an idle deployment made thirty a second;
a change, or a plan, brings the interval back.) Between reads a gateway adds what it
sent to the local model itself since the snapshot was taken (`LoadView`),
so a burst arriving at one gateway within one poll interval is not planned
against an empty queue. When the board can't be read in time (a host too busy
to poll, a board restarting), the last snapshot stays in use for up to ten
times the freshness limit, marked `stale_s`, with every send since added: a
burst that starves the poll is still seen in this gateway's own traffic,
rather than planned blind. Reports older than `max_age_s` are dropped: a replica
that stopped reporting (removed by autoscaling, crashed) stops counting, and
a board with no fresh report says there is no ready local replica.

The board also keeps the overflow spend of the last hour, reported by every
gateway, for the scheduler's burst budget: in all and by tenant (a key's
share of the budget is capped, so one key's spill leaves the rest to others).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from operator import itemgetter
from typing import Any, NotRequired, TypedDict, TypeVar

from local_models.interface import LoadStats, ModelInfo

log = logging.getLogger(__name__)

HOUR_S = 3600.0
STALE_HORIZON = 10  # a view's last snapshot, past its freshness, is used for up to this many freshness limits
QUIET_POLLS = 10  # polls in a row that no plan used before a gateway polls less often (a second, at 100 ms)
T = TypeVar("T")


@dataclass(frozen=True)
class LoadSnapshot:
    """One local model's load, summed over its ready replicas."""

    replicas: int
    slots: int  # requests the replicas run at once, together
    waiting: int
    running: int
    queued_prompt_tokens: int
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    finished_per_s: float
    prefill_capacity_tokens_per_s: float | None  # the slowest replica's best observed prefill speed
    step_ms: float | None  # the upper-quartile replica's median step: a new request's first step
    recent_ttft_ms: float | None  # the upper-quartile replica's recent TTFT p90, as the engines measured it
    kv_cache_usage: float  # the fullest replica's
    taken_at: float  # the oldest report's time (time.time())
    sent: int = 0  # requests this gateway sent since `taken_at` that are still running (LoadView)
    sent_prompt_tokens: int = 0
    stale_s: float = 0.0  # past the view's freshness: the board was last read this long ago (LoadView)
    # Requests not yet started, by tenant, summed over the replicas (the engines queue tenants fairly:
    # local_models/fairness.py); None: not reported (none waiting, or engines first come, first served).
    waiting_by_tenant: Mapping[str, int] | None = None
    # The requests in flight on the replica `recent_ttft_ms` is from, on average while it measured that
    # (None: not reported).
    recent_ttft_in_flight: float | None = None


def aggregate(reports: Mapping[str, LoadStats], now: float, max_age_s: float) -> LoadSnapshot:
    """The sum of the fresh reports; stale ones (their replica is gone or stuck) don't count."""
    fresh = [r for r in reports.values() if now - r["updated_at"] <= max_age_s]
    # One pass for the counts, extremes and lists (a board read at 64 replicas took ~40 us in nine
    # passes); the rates are summed by `sum` as before, so every figure is the same to the bit.
    slots = waiting = running = queued = 0
    steps: list[float] = []
    ttfts: list[tuple[float, float | None]] = []
    prefills: list[float] = []
    kv: float | None = None
    taken_at: float | None = None
    by_tenant: dict[str, int] | None = None
    for r in fresh:
        slots += r["max_num_seqs"]
        waiting += r["waiting"]
        running += r["running"]
        queued += r["queued_prompt_tokens"]
        if (step := r["step_ms"]) is not None:
            steps.append(step)
        if (ttft := r.get("ttft_p90_ms")) is not None:
            ttfts.append((ttft, r.get("ttft_in_flight")))
        if prefill := r.get("prefill_capacity_tokens_per_s"):
            prefills.append(prefill)
        if kv is None or r["kv_cache_usage"] > kv:  # the first of the largest, as max() takes it
            kv = r["kv_cache_usage"]
        if taken_at is None or r["updated_at"] < taken_at:  # the first of the oldest, as min() takes it
            taken_at = r["updated_at"]
        if tenants := r.get("waiting_by_tenant"):
            if by_tenant is None:
                by_tenant = dict(tenants)
            else:
                for tenant, n in tenants.items():
                    by_tenant[tenant] = by_tenant.get(tenant, 0) + n
    return LoadSnapshot(
        replicas=len(fresh),
        slots=slots,
        waiting=waiting,
        running=running,
        queued_prompt_tokens=queued,
        prefill_tokens_per_s=sum([r["prefill_tokens_per_s"] for r in fresh]),
        decode_tokens_per_s=sum([r["decode_tokens_per_s"] for r in fresh]),
        finished_per_s=sum([r["finished_per_s"] for r in fresh]),
        prefill_capacity_tokens_per_s=min(prefills) if prefills else None,
        step_ms=_upper_quartile(steps, key=float),
        recent_ttft_ms=upper[0] if (upper := _upper_quartile(ttfts, key=itemgetter(0))) is not None else None,
        recent_ttft_in_flight=upper[1] if upper is not None else None,
        kv_cache_usage=kv if kv is not None else 0.0,
        taken_at=taken_at if taken_at is not None else now,
        waiting_by_tenant=by_tenant,
    )


def _upper_quartile(values: list[T], key: Callable[[T], float]) -> T | None:
    """The replica at the upper quartile by `key` (the slowest of up to four): what a request
    that Serve spreads over the replicas meets, pessimistically. The slowest of many is an outlier: at 64
    replicas the worst one's TTFT p90 kept a fleet 20 to 30 points less local than the same load on
    8 (benchmarks/simulate; benchmarks/README.md)."""
    if not values:
        return None
    return sorted(values, key=key)[(3 * len(values)) // 4]


class BoardState(TypedDict):
    """What a gateway reads from the board: plain data, crosses Ray."""

    models: dict[str, dict[str, Any]]  # model -> LoadSnapshot fields
    overflow_spent_usd: float  # over the last hour, every gateway together
    overflow_spent_by_tenant: NotRequired[dict[str, float]]  # the same by tenant, those that spent in the hour
    read_at: float


class LoadBoard:
    """The one place where local load and overflow spend meet (a Serve deployment, one replica)."""

    def __init__(self, max_age_s: float = 1.0, clock: Callable[[], float] = time.time):
        self._max_age_s = max_age_s
        self._clock = clock
        self._reports: dict[str, dict[str, LoadStats]] = {}
        self._spend: deque[tuple[float, float, str]] = deque()
        self._spent = 0.0
        self._spent_by: dict[str, float] = {}
        self._overflow: dict[str, tuple[float, Mapping[str, int]]] = {}  # gateway -> (told at, in flight by model)
        self._described: dict[str, ModelInfo] = {}

    def describe(self, model: str, info: ModelInfo) -> None:
        """What a replica of `model` serves (its `info()`), told once as it starts."""
        self._described[model] = info

    def described(self, model: str) -> ModelInfo | None:
        """What `model` serves, as a replica last told it; None before any replica did.

        A gateway starting while the model has no replica (scaled to zero, all restarting) builds its
        pipeline from this instead of waiting for one: its other routes serve meanwhile."""
        return self._described.get(model)

    def report(self, model: str, replica: str, stats: LoadStats) -> int:
        """A replica's load; the answer is the demand it doesn't see: requests every gateway spilled
        from `model` for load and still has in flight (what Serve's autoscaler is told, see
        `orchestrator.scheduling.autoscale`)."""
        self._reports.setdefault(model, {})[replica] = stats
        return self.overflow_in_flight(model)

    def overflow_in_flight(self, model: str) -> int:
        if not self._overflow:  # no gateway has told any (every report asks)
            return 0
        now = self._clock()
        for gateway in [g for g, (at, _) in self._overflow.items() if now - at > 10 * self._max_age_s]:
            del self._overflow[gateway]  # a gateway that stopped reading is gone
        return sum(counts.get(model, 0) for _, counts in self._overflow.values())

    def spent(self, by_tenant: Mapping[str, float]) -> None:
        """Overflow spend a gateway made, by tenant."""
        now = self._clock()
        for tenant, usd in by_tenant.items():
            self._spend.append((now, usd, tenant))
            self._spent += usd
            self._spent_by[tenant] = self._spent_by.get(tenant, 0.0) + usd

    def read(self, gateway: str | None = None, overflow: Mapping[str, int] | None = None) -> BoardState:
        """The aggregate; a gateway reading says what it has in flight elsewhere, spilled from each model."""
        now = self._clock()
        if gateway is not None:
            self._overflow[gateway] = (now, dict(overflow or {}))
        while self._spend and self._spend[0][0] < now - HOUR_S:
            _, usd, tenant = self._spend.popleft()
            self._spent -= usd
            left = self._spent_by.pop(tenant, 0.0) - usd
            if left > 1e-12:  # a tenant whose spend all left the hour is gone from the figures
                self._spent_by[tenant] = left
        models = {}
        for model, reports in self._reports.items():
            for replica in [r for r, s in reports.items() if now - s["updated_at"] > 10 * self._max_age_s]:
                del reports[replica]  # long gone
            models[model] = aggregate(reports, now, self._max_age_s).__dict__
        return BoardState(
            models=models,
            overflow_spent_usd=max(0.0, self._spent),
            overflow_spent_by_tenant=dict(self._spent_by),
            read_at=now,
        )


class _Since:
    """A view's sends in flight made after `taken_at` (a snapshot's), and their prompt tokens."""

    __slots__ = ("taken_at", "count", "tokens")

    def __init__(self, taken_at: float):
        self.taken_at = taken_at
        self.count = 0
        self.tokens = 0


class LoadView:
    """A gateway replica's view of the board, corrected by what it sent since.

    `run()` polls the board; `snapshot(model)` is the last aggregate plus this
    gateway's own local dispatches made after it was taken, or None when the
    board hasn't been read recently (the scheduler then keeps the configured
    order rather than guess). A gateway that has planned nothing for a second
    (every plan reads the snapshots) and has nothing spilled in flight polls
    less and less often, down to twice per freshness limit; the next plan wakes
    the poller at once. Each poll is a Serve call costing the gateway, the
    board and Ray a few milliseconds of CPU together.
    """

    def __init__(
        self,
        read: Callable[[Mapping[str, int]], Awaitable[BoardState]],
        *,
        report: Callable[[Mapping[str, float]], Awaitable[None]] | None = None,
        wake: Callable[[str], Awaitable[object]] | None = None,
        interval_s: float = 0.1,
        max_staleness_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ):
        self._read = read
        self._interval_s = interval_s
        self._max_staleness_s = max_staleness_s
        self._clock = clock
        self._state: BoardState | None = None
        self._snapshots: dict[str, LoadSnapshot | None] = {}  # `_state`'s figures by model, made once per read
        # In flight, by model: send number -> (sent at, prompt tokens), in the order sent (a dict: an
        # answer ends its entry in O(1), and a walk back from the newest sees the sends since a snapshot).
        self._sent: dict[str, dict[int, tuple[float, int]]] = {}
        self._sends = 0
        # By model, once a plan has used `_state`'s figures: its sends still in flight that those figures
        # don't count, kept as sends start and end (a plan then walks none of them).
        self._since: dict[str, _Since] = {}
        # Spent here and not yet on the board (counted in `overflow_spent_usd`), by tenant; and of that, what
        # no report carries yet.
        self._unreported: dict[str, float] = {}
        self._unsent: dict[str, float] = {}
        self._reserved: dict[str, float] = {}  # by tenant: what its spills in flight may cost (`reserve`)
        self._report = report
        self._reporting: asyncio.Task[None] | None = None
        self._wake = wake
        self._waking: dict[str, asyncio.Task[object]] = {}
        self._overflow: dict[str, int] = {}  # requests spilled from each local model for load, in flight
        self._used = False  # a plan read a snapshot since the last poll
        self._dozing = False  # the poller waits longer than an interval: `_rouse` ends the wait
        self._rouse = asyncio.Event()

    def update(self, state: BoardState) -> None:
        self._state = state
        self._snapshots = {}
        self._since = {}

    async def poll_once(self) -> None:
        """Read the board, telling it what this gateway has spilled and still runs (see `overflowing`)."""
        self.update(await self._read({m: n for m, n in self._overflow.items() if n}))

    async def run(self) -> None:
        """Poll forever (a background task of the gateway replica): every interval while plans use
        the figures or spilled requests are in flight; after `QUIET_POLLS` polls in a row that no
        plan used, at doubling intervals up to half the freshness limit, until a plan reads a
        snapshot (`snapshot` wakes it)."""
        failing = False
        quiet = 0  # polls in a row that no plan used
        longest = max(self._interval_s, self._max_staleness_s / 2)
        while True:
            self._used = False
            try:
                await self.poll_once()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as e:  # keep polling; staleness makes the scheduler fall back
                if not failing:
                    log.warning("load board unreachable (%s: %s); planning without load data", type(e).__name__, e)
                failing = True
            # A second of polls no plan used (not a gap between requests of light traffic), then doubling.
            delay = min(self._interval_s * 2 ** max(0, quiet - QUIET_POLLS + 1), longest)
            if delay > self._interval_s:
                self._rouse.clear()
                self._dozing = True
                try:
                    await asyncio.wait_for(self._rouse.wait(), delay)
                except TimeoutError:
                    pass
                finally:
                    self._dozing = False
            else:
                await asyncio.sleep(delay)
            quiet = 0 if self._used or any(self._overflow.values()) else min(quiet + 1, QUIET_POLLS + 16)

    def sent(self, model: str, prompt_tokens: int) -> Callable[[], None]:
        """This gateway just sent a request to the local `model`; call the result when it ends.

        Until it ends, and unless a newer snapshot already counts it, it adds to the load."""
        self._sends += 1
        key = self._sends
        pending = self._sent.get(model)
        if pending is None:
            pending = self._sent[model] = {}
        at = self._clock()
        pending[key] = (at, prompt_tokens)
        since = self._since.get(model)
        if since is not None and at > since.taken_at:
            since.count += 1
            since.tokens += prompt_tokens

        def done() -> None:
            entry = pending.pop(key, None)
            if entry is not None and (since := self._since.get(model)) is not None and entry[0] > since.taken_at:
                since.count -= 1
                since.tokens -= entry[1]

        return done

    def overflowing(self, model: str) -> Callable[[], None]:
        """A request that wanted the local `model` runs elsewhere because the model was too busy; call
        the result when it ends. Until then it is demand the model's replicas don't see: the board
        passes it on to them, and they to Serve's autoscaler."""
        self._overflow[model] = self._overflow.get(model, 0) + 1
        ended = False

        def done() -> None:
            nonlocal ended
            if not ended:
                ended = True
                self._overflow[model] -= 1

        return done

    def reserve(self, tenant: str, usd: float) -> Callable[[], None]:
        """What a spill just planned may cost `tenant`, counted as spent (`overflow_spent_usd`) until the
        result is called (once its own cost is counted), so spills planned at once can't all pass a budget
        that each alone was within: their costs are known only as they end."""
        self._reserved[tenant] = self._reserved.get(tenant, 0.0) + usd
        ended = False

        def release() -> None:
            nonlocal ended
            if not ended:
                ended = True
                left = self._reserved.pop(tenant, 0.0) - usd
                if left > 1e-12:
                    self._reserved[tenant] = left

        return release

    def snapshot(self, model: str, *, planning: bool = True) -> LoadSnapshot | None:
        """The board's last figures for `model` with this gateway's sends since; None when there are none,
        or when the board was last read more than ten freshness limits ago. A read that is not for a
        plan (`planning=False`: the local price's figures, once a second) doesn't keep the poller up."""
        if planning and not self._used:
            self._used = True
            if self._dozing:
                self._rouse.set()
        state = self._state
        if state is None:
            return None
        age = self._clock() - state["read_at"]
        if age > STALE_HORIZON * self._max_staleness_s:
            return None
        if model in self._snapshots:
            snap = self._snapshots[model]
        else:  # the board's figures, made into a snapshot once per read rather than once per plan
            raw = state["models"].get(model)
            snap = self._snapshots[model] = None if raw is None else LoadSnapshot(**raw)
        if snap is None:
            return None
        stale = age > self._max_staleness_s
        since = self._since.get(model)
        if since is None:  # the first plan on these figures: count the sends they miss, then keep the count
            # Sends are kept in the order they happen, so those after the snapshot are at the end: walking
            # back to the first older one costs what was sent since, not every request still in flight (a
            # gateway at fleet scale has thousands; benchmarks/simulate measured the scan at ~45 us a plan).
            since = self._since[model] = _Since(snap.taken_at)
            pending = self._sent.get(model)
            if pending:
                taken_at = snap.taken_at
                for at, prompt_tokens in reversed(pending.values()):
                    if at <= taken_at:
                        break
                    since.count += 1
                    since.tokens += prompt_tokens
        count, tokens = since.count, since.tokens
        if not count and not stale:
            return snap
        # As `dataclasses.replace` would, at a seventh of its cost (a plan makes one; benchmarks/simulate).
        changed = object.__new__(LoadSnapshot)
        fields = changed.__dict__
        fields.update(snap.__dict__)
        if stale:
            fields["stale_s"] = age
        if count:
            fields["sent"] = count
            fields["sent_prompt_tokens"] = tokens
        return changed

    def wanted(self, model: str) -> None:
        """A request would have gone to the local `model`, but no replica of it is ready.

        Serve's autoscaler sees only the requests that reach a deployment, and with none ready
        the scheduler sends every request elsewhere: scaled to zero (`min_replicas: 0`), the model
        would never come back. So ask its deployment for an answer (`wake`): a call waiting at a
        handle is demand Serve's autoscaler counts, and from zero it starts a replica. One call
        in flight per model at a time; once a replica reports, the scheduler sends it traffic.
        """
        if self._wake is None or model in self._waking:
            return
        task = asyncio.get_running_loop().create_task(self._ask(self._wake, model))
        self._waking[model] = task
        task.add_done_callback(partial(self._woken, model))

    @staticmethod
    async def _ask(wake: Callable[[str], Awaitable[object]], model: str) -> object:
        return await wake(model)  # a Serve response is awaitable, not a coroutine a task can run

    def _woken(self, model: str, task: asyncio.Task[object]) -> None:
        self._waking.pop(model, None)
        if not task.cancelled() and (e := task.exception()) is not None:
            log.warning("could not ask the local model %s for a replica (%s: %s)", model, type(e).__name__, e)

    def spending(self, usd: float, tenant: str = "open") -> None:
        """Overflow spend of this gateway for `tenant`: counted here at once, and reported to the board.

        The first spend after a quiet spell is reported at once; while spending goes on, what
        comes meanwhile goes in one report per poll interval. A report is a call to the board, and
        during a burst every spilled request spends: one call each was the board's busiest work
        (and the gateway's) exactly when the gateway had the most to do."""
        self._unreported[tenant] = self._unreported.get(tenant, 0.0) + usd
        self._unsent[tenant] = self._unsent.get(tenant, 0.0) + usd
        if self._report is not None and self._reporting is None:
            self._reporting = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        assert self._report is not None
        loop = asyncio.get_running_loop()
        try:
            while by_tenant := self._unsent:
                self._unsent = {}
                began = loop.time()
                try:
                    await self._report(by_tenant)
                except Exception as e:  # kept counted here; the board's hourly figure misses it
                    log.warning("could not report overflow spend to the load board (%s: %s)", type(e).__name__, e)
                else:
                    for tenant, usd in by_tenant.items():
                        left = self._unreported.pop(tenant, 0.0) - usd
                        if left > 1e-12:
                            self._unreported[tenant] = left
                await asyncio.sleep(max(0.0, began + self._interval_s - loop.time()))
        finally:
            self._reporting = None

    def overflow_spent_usd(self, tenant: str | None = None, *, held: bool = True) -> float | None:
        """The hour's overflow spend, every gateway's (as the board last said) and this one's since, with
        what this one's spills in flight may cost (`reserve`) unless not `held`; of `tenant` only where
        given. None before the board was read."""
        if self._state is None:
            return None
        if tenant is None:
            spent = self._state["overflow_spent_usd"] + sum(self._unreported.values())
            return spent + sum(self._reserved.values()) if held else spent
        spent = self._state.get("overflow_spent_by_tenant", {}).get(tenant, 0.0) + self._unreported.get(tenant, 0.0)
        return spent + self._reserved.get(tenant, 0.0) if held else spent
