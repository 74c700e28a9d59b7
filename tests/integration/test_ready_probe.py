"""What `orchestrator serve`'s ready line asks of the endpoint it started, over a real socket: the keyed
gateway (a master key set, as `make serve` with ORCHESTRATOR_MASTER_KEY runs it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from dashboard_gateway import MASTER_KEY, dashboard_gateway
from loopback import serving

from orchestrator.cli import health_problem, ready_text


async def test_the_probe_asks_what_answers_without_a_key(tmp_path: Path) -> None:
    """`GET /v1/models` refuses the master key (it asks no model), so a ready line that listed models by it
    said "it needs a key" whenever keys were required; `/health` answers, and the models come from the Gateway
    (`runtime.served_models`, tests/e2e)."""
    async with dashboard_gateway(tmp_path) as gw, serving(gw.app) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            refused = await http.get("/v1/models", headers={"Authorization": f"Bearer {MASTER_KEY}"})
        assert refused.status_code == 401 and "can't ask models" in refused.json()["error"]["message"]
        assert await asyncio.to_thread(health_problem, url + "/v1") is None
    gone = await asyncio.to_thread(health_problem, url + "/v1", 2.0)  # nothing listens there any more
    assert gone is not None and gone.startswith(f"GET {url}/health: ConnectError")
    text = ready_text(url + "/v1", ["auto"], [], verbose=True, problem=gone)
    assert text.startswith(f"Started, but {url}/v1 does not answer (GET {url}/health: ConnectError")
