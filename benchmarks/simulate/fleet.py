"""One simulated deployment under one workload and one policy: engines, load board, gateways, remotes.

    engines ──report (every report interval, phase-shifted)──▶ LoadBoard ◀──read (every poll interval)── gateways
                                                                                  │ + rpc delay, then LoadView.update
    arrival ──▶ gateway (round robin) ──policy.plan──▶ routes, tried in order:
        local   a replica chosen by power of two choices on its ongoing count (Serve's router);
                refused (back-pressure, ~40 ms) past max_ongoing + max_queued; given up after the
                route's first-token timeout (ours: patience; else the resilience timeout) and aborted
        remote  429 or a failure with the profile's odds (the next route), else a first token
                after a lognormal TTFT and the answer at the profile's token rate

The board (`LoadBoard`) and views (`LoadView`) are the real classes on the simulated clock.
A request's TTFT is from its arrival to its first token at the client (local: the engine's first
token plus the profile's hop); a failed request (no route left, or the client's timeout) counts
as an infinite TTFT, as the burst benchmark counts it.
"""

from __future__ import annotations

import gc
import heapq
import math
import random
import time
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from benchmarks.simulate.engine import SimEngine
from benchmarks.simulate.events import EventLoop
from benchmarks.simulate.policies import LOCAL_MODEL, GatewayContext, GatewayPolicy, PolicyFactory
from benchmarks.simulate.profiles import EngineProfile, RemoteProfile
from benchmarks.simulate.request import SimRequest
from benchmarks.simulate.workloads import Workload
from orchestrator.scheduling.load import BoardState, LoadBoard, LoadView
from orchestrator.settings import SchedulerSettings

INF = math.inf


@dataclass(frozen=True)
class Fleet:
    """A deployment: local replicas of one engine profile, gateway replicas, remote routes."""

    name: str
    profile: EngineProfile
    replicas: int = 1
    gateways: int = 1
    remotes: tuple[RemoteProfile, ...] = ()
    slo_ms: float = 1000.0
    knobs: SchedulerSettings = field(default_factory=SchedulerSettings)
    report_interval_s: float = 0.1  # local_models.deployment's default
    rpc_ms: float = 2.0  # a board read's round trip
    reject_ms: float = 40.0  # Serve back-pressure seen at the handle (shared/DESIGN.md)
    max_ongoing: int = 64 + 256  # local.max_ongoing_requests + max_queued_requests (config/default.yaml)
    timeout_s: float = 30.0  # resilience.first_token_timeout_s
    client_timeout_s: float = 60.0  # the burst benchmark's client gives up here
    context_length: int = 131072


@dataclass
class RunResult:
    fleet: str
    workload: str
    policy: str
    ttft_ms: array  # type: ignore[type-arg]  # per request; inf: failed
    local: bytearray
    spill: bytearray  # the plan put a remote route first because of load
    cost_usd: array  # type: ignore[type-arg]
    duration_s: float
    wall_s: float
    decisions: int
    events: int
    extra: dict[str, Any] = field(default_factory=dict)
    cpu_s: float = 0.0  # this process's CPU time over the run: the speed on a host shared with other work


class Simulation:
    def __init__(self, fleet: Fleet, workload: Workload, policy: PolicyFactory, seed: int = 0):
        self.fleet = fleet
        self.workload = workload
        self.loop = loop = EventLoop()
        self.rng = rng = random.Random(seed)
        self._getrandbits = rng.getrandbits
        p = fleet.profile
        self.engines = [
            SimEngine(f"replica-{i}", p, loop, random.Random(rng.random()), self._local_first, self._local_finish)
            for i in range(fleet.replicas)
        ]
        self.board = LoadBoard(max_age_s=10 * fleet.report_interval_s, clock=loop.time)
        knobs = fleet.knobs
        self.views: list[LoadView] = []
        self.policies: list[GatewayPolicy] = []
        for _ in range(fleet.gateways):
            view = LoadView(
                _unused_read,
                interval_s=knobs.poll_interval_ms / 1000,
                max_staleness_s=knobs.max_staleness_ms / 1000,
                clock=loop.time,
            )
            self.views.append(view)
            ctx = GatewayContext(loop, view, fleet.remotes, knobs, fleet.slo_ms, fleet.context_length, fleet.timeout_s)
            self.policies.append(policy(ctx))
        n = len(workload)
        self.ttft = array("d", [INF]) * n
        self.local = bytearray(n)
        self.spill = bytearray(n)
        self.cost = array("d", [0.0]) * n
        self.open = 0
        self.decisions = 0
        self.hedges = [0, 0, 0]  # started, answered first (the local attempt given up), called off
        self.hop_s = (p.hop_ms + p.first_token_ms) / 1000
        # Handlers bound once (see events.py).
        self._next = self._next_attempt
        self._timeout = self._local_timeout
        self._remote_ok = self._remote_first
        self._remote_end = self._remote_done
        self._hedge_h = self._hedge
        self._hedge_first_h = self._hedge_first
        self._report_h = self._report
        self._poll_h = self._poll
        self._deliver_h = self._deliver

    # ------------------------------------------------------------------ the board

    def _report(self, i: int) -> None:
        e = self.engines[i]
        self.board.report(LOCAL_MODEL, e.name, e.stats())
        self.loop.at(self.loop.now + self.fleet.report_interval_s, self._report_h, i)

    def _poll(self, g: int) -> None:
        state = self.board.read()
        self.loop.at(self.loop.now + self.fleet.rpc_ms / 1000, self._deliver_h, (g, state))
        self.loop.at(self.loop.now + self.fleet.knobs.poll_interval_ms / 1000, self._poll_h, g)

    def _deliver(self, arg: tuple[int, BoardState]) -> None:
        self.views[arg[0]].update(arg[1])

    # ---------------------------------------------------------------- requests

    def _arrive(self, i: int) -> None:
        w = self.workload
        g = i % self.fleet.gateways
        req = SimRequest(i, self.loop.now, w.prompts[i], w.outputs[i], g)
        self.policies[g].plan(req)
        self.decisions += 1
        if req.spill:
            self.spill[i] = 1
        self.open += 1
        self._next_attempt(req)

    def _next_attempt(self, req: SimRequest) -> None:
        req.attempt += 1
        if req.attempt >= len(req.routes):
            self._fail(req)
            return
        route = req.routes[req.attempt]
        now = self.loop.now
        policy = self.policies[req.gateway]
        if route[0]:
            engines = self.engines
            e = engines[0]
            if len(engines) > 1:  # power of two choices, as Serve's request router
                ia, ib = _two_of(self._getrandbits, len(engines))
                a, b = engines[ia], engines[ib]
                e = a if a.ongoing <= b.ongoing else b
            if e.ongoing >= self.fleet.max_ongoing:
                self.loop.at(now + self.fleet.reject_ms / 1000, self._next, req)
                return
            req.done = policy.attempting(req, route)
            req.attempt_started = now
            e.submit(req)
            timeout = route[2] or self.fleet.client_timeout_s
            self.loop.at(now + timeout, self._timeout, (req, req.attempt))
            if req.hedge_s and req.attempt == 0 and req.hedge_s < timeout:
                self.loop.at(now + req.hedge_s, self._hedge_h, req)
            return
        r = self.fleet.remotes[route[1]]
        req.done = policy.attempting(req, route)
        req.attempt_started = now
        x = self.rng.random()
        if x < r.p_429:
            self._end_attempt(req)
            self.loop.at(now + r.error_ms / 1000, self._next, req)
            return
        ttft = (
            self.rng.lognormvariate(math.log(r.ttft_median_ms), r.ttft_sigma) / 1000
            if r.ttft_sigma
            else r.ttft_median_ms / 1000
        )
        if x < r.p_429 + r.p_fail or (route[2] and ttft > route[2]):
            self._end_attempt(req)
            self.loop.at(now + min(ttft, route[2] or ttft), self._next, req)
            return
        self.loop.at(now + ttft, self._remote_ok, req)

    def _end_attempt(self, req: SimRequest) -> None:
        done, req.done = req.done, None
        if done is not None:
            done()

    def _remote_first(self, req: SimRequest) -> None:
        now = self.loop.now
        route = req.routes[req.attempt]
        r = self.fleet.remotes[route[1]]
        i = req.index
        self.ttft[i] = (now - req.arrival) * 1000
        usd = r.cost_usd(req.prompt, req.output)
        self.cost[i] = usd
        policy = self.policies[req.gateway]
        policy.first_token(req, route, (now - req.attempt_started) * 1000)
        policy.overflowed(req, route, usd)
        self.loop.at(now + req.output / r.tokens_per_s, self._remote_end, req)

    def _remote_done(self, req: SimRequest) -> None:
        self._end_attempt(req)
        self.open -= 1

    def _local_first(self, req: SimRequest) -> None:
        now = self.loop.now + self.hop_s
        i = req.index
        self.ttft[i] = (now - req.arrival) * 1000
        self.local[i] = 1
        self.policies[req.gateway].first_token(req, req.routes[req.attempt], (now - req.attempt_started) * 1000)
        if req.hedge_at >= 0:  # the local first token came first: the hedge is called off
            req.hedge_at = -1.0
            self.hedges[2] += 1
            self.cost[i] += self._hedge_remote(req).cost_usd(req.prompt, 0)  # its prompt, as a provider bills it

    # A hedge: the local attempt has no first token after the plan's hedge time, so the next (remote) route
    # is tried beside it. The first token decides: the remote's aborts the local attempt; the local's calls
    # the remote off (its prompt counted as spent). The race is decided at the engine's first token (its hop
    # to the client not counted: at most the profile's hop in the local attempt's favour). A hedge that gets
    # a 429 or fails is not retried: the local attempt goes on as without one.

    def _hedge_remote(self, req: SimRequest) -> RemoteProfile:
        return self.fleet.remotes[req.routes[1][1]]

    def _hedge(self, req: SimRequest) -> None:
        if req.attempt != 0 or req.first_at >= 0 or req.aborted or len(req.routes) < 2 or req.routes[1][0]:
            return
        r = self._hedge_remote(req)
        x = self.rng.random()
        if x < r.p_429 + r.p_fail:
            return
        ttft = (
            self.rng.lognormvariate(math.log(r.ttft_median_ms), r.ttft_sigma) / 1000
            if r.ttft_sigma
            else r.ttft_median_ms / 1000
        )
        req.hedge_at = self.loop.now + ttft
        self.hedges[0] += 1
        self.loop.at(req.hedge_at, self._hedge_first_h, req)

    def _hedge_first(self, req: SimRequest) -> None:
        if req.hedge_at < 0 or req.attempt != 0:
            return  # called off: the local first token came first
        req.hedge_at = -1.0
        if req.aborted and self.loop.now - req.arrival >= self.fleet.client_timeout_s:
            self._fail(req)  # the local attempt timed out and the hedge came too late for the client
            return
        self.hedges[1] += 1
        if not req.aborted:  # the local attempt still running (not timed out): given up for the hedge
            policy = self.policies[req.gateway]
            policy.gave_up(req, req.routes[0], (self.loop.now - req.attempt_started) * 1000)
            req.engine.abort(req)
            self._end_attempt(req)
        req.attempt = 1
        req.attempt_started += req.hedge_s  # the hedge started then: its own TTFT for the remote's EWMA
        self._remote_first(req)

    def _local_finish(self, req: SimRequest) -> None:
        self._end_attempt(req)
        self.open -= 1

    def _local_timeout(self, arg: tuple[SimRequest, int]) -> None:
        req, attempt = arg
        if req.attempt != attempt or req.first_at >= 0 or req.aborted:
            return
        req.engine.abort(req)
        self._end_attempt(req)
        if req.hedge_at >= 0:
            return  # a hedge in flight goes on alone, as in the gateway's race: its first token serves
        if self.loop.now - req.arrival >= self.fleet.client_timeout_s:
            self._fail(req)
            return
        self._next_attempt(req)

    def _fail(self, req: SimRequest) -> None:
        self.ttft[req.index] = INF
        self.open -= 1

    # ------------------------------------------------------------------ the run

    def run(self, policy_name: str = "") -> RunResult:
        loop, rng, f = self.loop, self.rng, self.fleet
        for i in range(len(self.engines)):
            loop.at(rng.random() * f.report_interval_s, self._report_h, i)
        for g in range(f.gateways):
            loop.at(rng.random() * f.knobs.poll_interval_ms / 1000, self._poll_h, g)
        times = self.workload.times
        heap = loop.heap
        pop = heapq.heappop
        arrive = self._arrive
        events = 0
        # No cyclic garbage collection while it runs, as timeit does: a run makes no reference cycles
        # per request, and thousands of requests in flight made every full collection walk them all
        # (12 % of a 64-replica run).
        collecting = gc.isenabled()
        gc.disable()
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            # The arrivals merged with the heap (`EventLoop.step`, inlined: it runs once an event).
            for i, ta in enumerate(times):
                while heap and heap[0][0] <= ta:
                    t, _, handler, arg = pop(heap)
                    loop.now = t
                    handler(arg)
                    events += 1
                loop.now = ta
                arrive(i)
            while heap and self.open > 0:
                t, _, handler, arg = pop(heap)
                loop.now = t
                handler(arg)
                events += 1
        finally:
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            if collecting:
                gc.enable()
        return RunResult(
            f.name,
            self.workload.name,
            policy_name,
            self.ttft,
            self.local,
            self.spill,
            self.cost,
            self.workload.duration_s,
            wall,
            self.decisions,
            events,
            extra=dict(zip(("hedges", "hedges_won", "hedges_called_off"), self.hedges, strict=True)),
            cpu_s=cpu,
        )


def _two_of(getrandbits: Callable[[int], int], n: int) -> tuple[int, int]:
    """The indices `random.Random.sample(range(n), 2)` picks, from the same draws (so a seeded run is
    unchanged), at a fraction of its cost: it runs for every local attempt on a fleet."""
    k = n.bit_length()  # Random._randbelow_with_getrandbits(n)
    i = getrandbits(k)
    while i >= n:
        i = getrandbits(k)
    if n <= 21:  # sample's pool method: the second draw is below n - 1, and index i then holds the last
        m = n - 1
        k = m.bit_length()
        j = getrandbits(k)
        while j >= m:
            j = getrandbits(k)
        return i, (n - 1 if j == i else j)
    j = i  # sample's set method: draw again until it differs
    while j == i:
        j = getrandbits(k)
        while j >= n:
            j = getrandbits(k)
    return i, j


async def _unused_read(overflow: Mapping[str, int]) -> BoardState:
    """Never called: the simulation feeds every view itself (`LoadView.update`)."""
    raise NotImplementedError


def simulate(fleet: Fleet, workload: Workload, policy: PolicyFactory, name: str = "", seed: int = 0) -> RunResult:
    return Simulation(fleet, workload, policy, seed).run(name)


def with_knobs(fleet: Fleet, **changes: Any) -> Fleet:
    return replace(fleet, knobs=fleet.knobs.model_copy(update=changes))


def capacity_rps(profile: EngineProfile, sizes: Workload, seconds: float = 120.0, seed: int = 0) -> float:
    """One replica's completions per second in a closed loop of `profile.capacity_concurrency` streams,
    with the request sizes of `sizes` (cycled): the capacity C the burst benchmark measures."""
    loop = EventLoop()
    done = [0]
    warm = seconds / 4
    k = [0]

    def submit() -> None:
        j = k[0] % len(sizes)
        k[0] += 1
        req = SimRequest(k[0], loop.now, sizes.prompts[j], sizes.outputs[j], 0)
        req.attempt_started = loop.now
        engine.submit(req)

    def finished(req: SimRequest) -> None:
        if loop.now >= warm:
            done[0] += 1
        submit()

    engine = SimEngine("capacity", profile, loop, random.Random(seed), lambda r: None, finished)
    for _ in range(profile.capacity_concurrency):
        submit()
    while loop.heap and loop.next_time() < seconds:
        loop.step()
    return done[0] / (seconds - warm)
