"""A simulated vLLM engine replica: continuous batching with chunked prefill, step by step.

Each step takes one token from every decoding sequence and fills the rest of the step's token
budget with prompt chunks (first the requests already admitted, then new ones, FIFO, while a slot
and KV cache are free), as vLLM's v1 scheduler does; its length comes from the `EngineProfile`.
A request whose prompt is done gets its first token at the end of that step and then decodes one
token per step. Decoding is counted, not iterated: the engine keeps one counter of decode steps
and a heap of the counter value at which each sequence ends, so a step costs O(1) plus its
finishing requests, whatever the batch size. A run of pure decode steps (nothing to prefill or
admit) is one event up to the next sequence's end (a *macro step*); a request arriving during it
cuts it at the end of the step in progress, where the request would have been scheduled anyway.
Each step's length still has its own noise in expectation (the run's gets the sum's: sigma/sqrt(m)).

The engine reports what a real replica's `local_models.stats.LoadTracker` reports (the same fields,
windows and percentiles, on the simulated clock), kept incrementally by `stats.WindowedStats`.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable

from benchmarks.simulate.events import EventLoop
from benchmarks.simulate.profiles import EngineProfile
from benchmarks.simulate.request import SimRequest
from benchmarks.simulate.stats import WindowedStats
from local_models.interface import LoadStats
from local_models.stats import PROBE_LONG, PROBE_MIN_S, PROBE_SHORT

_heappop, _heappush = heapq.heappop, heapq.heappush


class SimEngine:
    def __init__(
        self,
        name: str,
        profile: EngineProfile,
        loop: EventLoop,
        rng: random.Random,
        on_first: Callable[[SimRequest], None],
        on_finish: Callable[[SimRequest], None],
    ):
        self.name = name
        self.p = profile
        self.loop = loop
        self._rng = rng
        self._on_first = on_first
        self._on_finish = on_finish
        self.tracker = WindowedStats(loop.time, profile.max_num_seqs)
        # What the real engine's probe at start measures (`VllmEngine.measure_prefill`): the time of a
        # longer prompt over a shorter one's, the step's fixed cost cancelled out; nothing where the
        # difference is too short to tell (a GPU's), as there.
        spent_s = (PROBE_LONG - PROBE_SHORT) * profile.prefill_ms_per_token / 1000
        if spent_s >= PROBE_MIN_S:
            self.tracker.idle_prefill_tokens_per_s = (PROBE_LONG - PROBE_SHORT) / spent_s
        self._waiting: deque[SimRequest] = deque()
        self._prefilling: deque[SimRequest] = deque()
        self._finishing: list[tuple[int, int, SimRequest]] = []  # (decode count at its end, index, request)
        self.n_waiting = 0  # not aborted
        self.running = 0  # admitted: prefilling or decoding
        self.decoding = 0
        self.queued_prompt_tokens = 0  # prompts of requests without a first token (vLLM's get_num_queued_tokens)
        self.ongoing = 0  # requests this replica holds (Serve's ongoing count)
        self._kv_used = 0
        self._k = 0  # decode steps done
        self._busy = False
        self._gen = 0  # scheduled step ends of an older generation were cut short: ignored
        self._macro: tuple[float, float, int] | None = None  # a decode run: (started, one step, steps)
        self._step_end = self._end_of_step  # bound once
        self._noise = profile.step_noise

    # ------------------------------------------------------------------ requests in and out

    def submit(self, req: SimRequest) -> None:
        req.engine = self
        req.left = req.prompt
        req.aborted = False
        req.first_at = -1.0
        self._waiting.append(req)
        self.n_waiting += 1
        self.ongoing += 1
        self.queued_prompt_tokens += req.prompt
        if not self._busy:
            self._start_step()
        elif self._macro is not None:
            self._cut()

    def _cut(self) -> None:
        """End the decode run at the end of the step in progress (a new request waits for that step)."""
        assert self._macro is not None
        started, step, steps = self._macro
        done = int((self.loop.now - started) / step) + 1
        if done >= steps:
            return  # it ends with this step anyway
        self._gen += 1
        self._macro = (started, step, done)
        self.loop.at(started + done * step, self._step_end, (self._gen, 0, done))

    def abort(self, req: SimRequest) -> None:
        """The gateway gave up on `req` before its first token (patience): it leaves the queue."""
        if req.aborted or req.engine is not self:
            return
        req.aborted = True
        self.ongoing -= 1
        self.queued_prompt_tokens -= req.prompt
        if req in self._prefilling:
            self._prefilling.remove(req)
            self._release(req)
        else:
            self.n_waiting -= 1  # it stays in the deque and is skipped when reached

    def _release(self, req: SimRequest) -> None:
        self.running -= 1
        self._kv_used -= req.prompt + req.output

    # ------------------------------------------------------------------------------ steps

    def _start_step(self) -> None:
        p = self.p
        budget = p.max_batched_tokens - self.decoding
        prefill = 0
        for req in self._prefilling:  # admitted earlier, prompt not done
            if budget <= 0:
                break
            take = req.left if req.left < budget else budget
            req.left -= take
            budget -= take
            prefill += take
        waiting = self._waiting
        while waiting and budget > 0 and self.running < p.max_num_seqs:
            req = waiting[0]
            if req.aborted:
                waiting.popleft()
                continue
            need = req.prompt + req.output
            if self._kv_used + need > p.kv_capacity_tokens and self.running > 0:
                break
            waiting.popleft()
            self.n_waiting -= 1
            self.running += 1
            self._kv_used += need
            take = req.left if req.left < budget else budget
            req.left -= take
            budget -= take
            prefill += take
            self._prefilling.append(req)
        if prefill == 0 and self.decoding == 0:
            self._busy = False
            return
        ms = p.step_base_ms + p.step_per_seq_ms * self.decoding + p.prefill_ms_per_token * prefill
        steps = 1
        if prefill == 0:  # pure decode until the next sequence ends, unless a request comes
            steps = self._finishing[0][0] - self._k
        if self._noise:
            ms *= math.exp(self._rng.gauss(0.0, self._noise / math.sqrt(steps)))
        self._busy = True
        self._gen += 1
        self._macro = (self.loop.now, ms / 1000, steps) if steps > 1 else None
        self.loop.at(self.loop.now + steps * ms / 1000, self._step_end, (self._gen, prefill, steps))

    def _end_of_step(self, arg: tuple[int, int, int]) -> None:
        gen, prefill, steps = arg
        if gen != self._gen:
            return
        self._macro = None
        now = self.loop.now
        generated = self.decoding * steps
        finished = 0
        if generated:
            self._k += steps
            k = self._k
            heap = self._finishing
            on_finish = self._on_finish
            while heap and heap[0][0] <= k:
                req = _heappop(heap)[2]
                self.decoding -= 1
                self.running -= 1  # _release, inlined (a step's hot path)
                self._kv_used -= req.prompt + req.output
                self.ongoing -= 1
                finished += 1
                on_finish(req)
        ttfts: list[float] = []
        pre = self._prefilling
        if pre and pre[0].left == 0:
            on_first = self._on_first
            while pre and pre[0].left == 0:
                req = pre.popleft()
                self.queued_prompt_tokens -= req.prompt
                req.first_at = now
                ttfts.append(now - req.attempt_started)
                generated += 1
                if req.output <= 1:
                    self._release(req)
                    self.ongoing -= 1
                    finished += 1
                    on_first(req)
                    self._on_finish(req)
                    continue
                self.decoding += 1
                _heappush(self._finishing, (self._k + req.output - 1, req.index, req))
                on_first(req)
        t = self.tracker
        t.waiting, t.running, t.kv_cache_usage = self.n_waiting, self.running, self._kv_used / self.p.kv_capacity_tokens
        t.record_step(prefill, generated, ttfts, finished, steps)
        self._start_step()

    # ------------------------------------------------------------------------------ load

    def stats(self) -> LoadStats:
        return self.tracker.snapshot(unfinished=self.ongoing, queued_prompt_tokens=self.queued_prompt_tokens)
