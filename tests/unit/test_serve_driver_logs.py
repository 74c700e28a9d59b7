"""What `orchestrator serve` prints of Serve's own lines: its INFO chatter only with --verbose."""

from __future__ import annotations

import logging

import pytest
from ray import serve  # noqa: F401  (configures Serve's logger, as `runtime.start` imports it)

from orchestrator.runtime import quiet_serve_driver

SERVE = logging.getLogger("ray.serve")


@pytest.fixture(autouse=True)
def _restore_level() -> object:
    level = SERVE.level
    yield
    SERVE.setLevel(level)


def test_without_verbose_serves_ready_at_its_proxy_port_line_is_not_printed() -> None:
    quiet_serve_driver(verbose=False)
    assert not SERVE.isEnabledFor(logging.INFO)  # "Application 'orchestrator' is ready at http://...:<proxy>/"
    assert SERVE.isEnabledFor(logging.WARNING)  # Serve's warnings and errors still are


def test_with_verbose_serves_info_lines_are_printed() -> None:
    quiet_serve_driver(verbose=False)
    quiet_serve_driver(verbose=True)
    assert SERVE.isEnabledFor(logging.INFO)
    assert not SERVE.isEnabledFor(logging.DEBUG)
