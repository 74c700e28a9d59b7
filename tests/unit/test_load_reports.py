"""A local replica's load reports: every interval while its figures change, a heartbeat while they don't."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from local_models.deployment import _report
from orchestrator.scheduling.load import LoadBoard
from orchestrator.testing.engine import FakeEngine


class Engine:
    """Figures the test sets; each `stats()` carries a new time, as a real engine's does."""

    def __init__(self) -> None:
        self.waiting = 0
        self._fake = FakeEngine("small")

    def info(self) -> Any:
        return self._fake.info()

    def stats(self) -> Any:
        return self._fake.stats() | {"waiting": self.waiting, "updated_at": time.time()}


async def _first_report(board: Board) -> None:
    """Until the reporter is running (it first names its replica, which imports Ray's Serve)."""
    while not board.reports:
        await asyncio.sleep(0.005)


async def _reported(board: Board, waiting: int) -> None:
    while not board.reports or board.reports[-1] != waiting:
        await asyncio.sleep(0.002)


class Board:
    """The real board behind calls that are counted."""

    def __init__(self) -> None:
        self.board = LoadBoard(max_age_s=0.2)
        self.reports: list[int] = []
        self.report = SimpleNamespace(remote=self._report)
        self.describe = SimpleNamespace(remote=self._describe)

    async def _report(self, model: str, replica: str, stats: Any) -> int:
        self.reports.append(stats["waiting"])
        return self.board.report(model, replica, stats)

    async def _describe(self, model: str, info: Any) -> None:
        self.board.describe(model, info)


async def test_an_idle_replica_reports_at_its_heartbeat_and_a_change_within_one_interval() -> None:
    engine, board = Engine(), Board()
    task = asyncio.create_task(_report(board, "small", engine, 0.01, heartbeat_s=0.05))  # type: ignore[arg-type]
    try:
        await _first_report(board)
        await asyncio.sleep(0.3)  # idle: ~30 intervals, ~6 heartbeats
        idle = len(board.reports)
        assert 2 <= idle <= 10
        # The board never lost it: its report is always younger than the board's max age.
        assert board.board.read()["models"]["small"]["replicas"] == 1
        for n in range(1, 6):  # busy: every change is on the board within about an interval
            engine.waiting = n
            await asyncio.wait_for(_reported(board, n), 1.0)
        assert list(dict.fromkeys(board.reports[idle:])) == [1, 2, 3, 4, 5]  # each once (a heartbeat may repeat one)
        assert board.board.read()["models"]["small"]["waiting"] == 5
    finally:
        task.cancel()


async def test_a_report_the_board_missed_is_sent_again_at_the_next_interval() -> None:
    engine, board = Engine(), Board()
    calls = 0
    real = board._report

    async def flaky(model: str, replica: str, stats: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("board restarting")
        return await real(model, replica, stats)

    board.report = SimpleNamespace(remote=flaky)
    task = asyncio.create_task(_report(board, "small", engine, 0.01, heartbeat_s=10.0))  # type: ignore[arg-type]
    try:
        await _first_report(board)
        await asyncio.sleep(0.05)
        assert board.reports == [0] and calls == 2  # the unchanged figures went again after the failure, then no more
    finally:
        task.cancel()
