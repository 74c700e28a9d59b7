"""Keys, budgets and metrics on the real deployment (Ray Serve, the ledger's named actor), via the openai client."""

from __future__ import annotations

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

# As configured in conftest.py (not imported: two conftest modules share that name).
LEDGER_KEYS = {"small": "sk-orch-e2e-small-budget", "big": "sk-orch-e2e-big-budget"}
MASTER = "sk-e2e-master"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_one_key_is_refused_at_its_budget_the_other_keeps_working(base_url: str) -> None:
    with (
        openai.OpenAI(base_url=base_url, api_key=LEDGER_KEYS["small"], max_retries=0, timeout=60) as small,
        openai.OpenAI(base_url=base_url, api_key=LEDGER_KEYS["big"], max_retries=0, timeout=60) as big,
        openai.OpenAI(base_url=base_url, api_key="sk-orch-wrong", max_retries=0, timeout=60) as wrong,
    ):
        _budgets(base_url, small, big, wrong)


def _budgets(base_url: str, small: openai.OpenAI, big: openai.OpenAI, wrong: openai.OpenAI) -> None:
    refused = None
    for _ in range(20):
        try:
            small.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, max_tokens=10)  # type: ignore[arg-type]
        except openai.RateLimitError as e:
            refused = e
            break
    assert refused is not None and refused.code == "insufficient_quota"
    reply = big.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, max_tokens=10)  # type: ignore[arg-type]
    assert reply.choices[0].message.content
    with pytest.raises(openai.AuthenticationError) as e:
        wrong.models.list()
    assert e.value.code == "invalid_api_key"

    root = base_url.removesuffix("/v1")
    master = {"Authorization": f"Bearer {MASTER}"}
    keys = {k["id"]: k for k in httpx.get(f"{root}/admin/keys", headers=master).json()["data"]}
    assert keys["small"]["spend"]["tokens"] >= 60 and keys["big"]["spend"]["tokens"] > 0
    usage = httpx.get(f"{root}/admin/usage", headers=master).json()
    assert usage["by_key"]["small"]["errors"] >= 1 and usage["savings"]["reference_model"] == "openrouter/gpt-4o-mini"


def test_metrics_scrape_in_prometheus_text_format(base_url: str, client: openai.OpenAI) -> None:
    reply = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=5,
    )
    # One request id (Serve's, which the request's log line carries too), never Serve's and the gateway's both.
    assert len(reply.http_response.headers.get_list("x-request-id")) == 1
    assert float(reply.headers["x-gateway-overhead-ms"]) >= 0
    r = httpx.get(base_url.removesuffix("/v1") + "/metrics", headers={"Authorization": f"Bearer {MASTER}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(r.text)}
    assert {"orchestrator_requests", "orchestrator_ttft_seconds", "orchestrator_local_queue_depth"} <= names
    assert "orchestrator_route_decisions" in names and "orchestrator_gateway_overhead_seconds" in names


def test_with_request_log_each_request_is_a_json_line_in_the_gateways_log(client: openai.OpenAI) -> None:
    """`server.request_log: true` (as conftest.py starts the app): the README's promised line. Before, under
    Serve, the logger stopped at a worker's WARNING and no line was ever written."""
    import glob
    import json
    import os
    import time

    reply = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=5,
    )
    request_id = reply.headers["x-request-id"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for path in glob.glob(os.environ.get("RAY_TMPDIR", "/tmp/ray") + "/**/logs/**/*", recursive=True):
            try:
                with open(path, errors="replace") as f:
                    lines = [line for line in f if request_id in line and line.lstrip().startswith("{")]
            except (IsADirectoryError, PermissionError):
                continue
            if lines:
                row = json.loads(lines[0])
                assert row["status"] == 200 and row["ingress_request_id"] == request_id
                assert "sk-" not in lines[0]  # the key id, never the key
                return
        time.sleep(0.5)
    raise AssertionError(f"no JSON line with {request_id} in the Ray session's logs (RAY_TMPDIR)")
