"""The dashboard in a real headless browser (Debian's Chromium, driven by Playwright).

The gateway runs under uvicorn on a loopback port (fake engine, fake provider, in-process ledger); a
scripted burst goes through it; then the page is opened, asks for the master key, and draws. The test
holds every figure on the page (each element with `data-path`/`data-value`) to the JSON the page itself
fetched, that JSON to what the burst did, the charts' bars to the same counts, and the browser's console
to no errors. The page then refreshes by itself and shows a request made after it first drew.

Chromium: `$CHROMIUM`, or `chromium` on the PATH (`make test` installs Debian's package when it is
missing). Without one the test is skipped, except under CI (`CI` set), where it must run. The screenshot
is saved under the test's temporary directory, and also to `$DASHBOARD_SCREENSHOT` when that is set
(the README's picture: `DASHBOARD_SCREENSHOT=benchmarks/results/dashboard.png`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard_gateway import BURST, BURST_REASONS, MASTER_KEY, TEAM_KEY, burst, dashboard_gateway
from loopback import serving

ROUTES = ("local", "remote", "cache", "failed")


def chromium() -> str:
    """Chromium's executable, or a skip (a failure under CI) that says how to get one."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        why = "no Chromium here: install Debian's `chromium` (make test does) or point $CHROMIUM at one"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return found


def at(document: Any, pointer: str) -> Any:
    """The value at a JSON Pointer (RFC 6901) in `document`."""
    for part in pointer.lstrip("/").split("/") if pointer != "/" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document


async def test_the_page_draws_what_the_endpoint_answers(tmp_path: Path) -> None:
    executable = chromium()
    try:
        from playwright.async_api import async_playwright
    except ImportError:  # the test extras install it
        if os.environ.get("CI"):
            raise
        pytest.skip("playwright is not installed (pip install -e '.[test]')")

    async with dashboard_gateway(tmp_path) as gw, serving(gw.app) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            await burst(gw, http)
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
                try:
                    page = await browser.new_page(viewport={"width": 1440, "height": 900})
                    problems: list[str] = []
                    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                    page.on("pageerror", lambda e: problems.append(str(e)))
                    page.on("requestfailed", lambda r: problems.append(f"{r.url}: {r.failure}"))

                    await page.goto(f"{url}/dashboard?refresh=1")
                    await page.wait_for_selector("#keyform:not([hidden])")  # asks before reading anything
                    await page.fill("#key", MASTER_KEY)
                    async with page.expect_response(lambda r: "/dashboard/data" in r.url) as answer:
                        await page.click("#keyform button")
                    data = await (await answer.value).json()
                    # (functions, not expressions: the page's policy forbids eval, Playwright's too)
                    await page.wait_for_function(
                        "(at) => document.body.dataset.generatedAt === at", arg=str(data["generated_at"])
                    )

                    shown = await figures(page)
                    check_figures(shown, data)
                    await check_charts(page, data)

                    # It refreshes by itself: a request made now shows up without a reload.
                    r = await http.post(
                        "/v1/chat/completions",
                        json={"model": "auto", "messages": [{"role": "user", "content": "One more?"}], "max_tokens": 4},
                        headers={"Authorization": f"Bearer {TEAM_KEY}"},
                    )
                    assert r.status_code == 200
                    total = BURST["requests"] + 1
                    await page.wait_for_function(
                        "(n) => document.querySelector('[data-path=\"/traffic/requests\"]').dataset.value === n",
                        arg=str(total),
                        timeout=10_000,
                    )
                    await page.wait_for_timeout(200)  # let the bars' widths settle before the picture
                    shot = tmp_path / "dashboard.png"
                    await page.screenshot(path=str(shot), full_page=True)
                    assert problems == []
                finally:
                    await browser.close()
    target = os.environ.get("DASHBOARD_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)


async def figures(page: Any) -> list[tuple[str, Any, str]]:
    """Every figure on the page: its JSON Pointer, its value, its text."""
    raw: list[list[str]] = await page.eval_on_selector_all(
        "[data-path]", "nodes => nodes.map(n => [n.dataset.path, n.dataset.value, n.textContent])"
    )
    return [(path, json.loads(value), text) for path, value, text in raw]


def reads_as(text: str, value: Any) -> bool:
    """Whether the page's `text` says `value`, as rounded for people: a count in full, a share in
    percent to a tenth, milliseconds to one (seconds to a hundredth), dollars to three digits."""
    if value is None:
        return text == "–"
    if isinstance(value, list):
        return text == ", ".join(value)
    if text.endswith("%"):
        return abs(float(text[:-1]) / 100 - value) <= 0.0005 + 1e-12
    if text.endswith(" ms"):
        return abs(float(text[:-3]) - value) <= 0.5
    if text.endswith(" s"):
        return abs(float(text[:-2]) * 1000 - value) <= 5
    if "$" in text:
        shown = float(text.replace("−", "-").replace("$", ""))
        return abs(shown - value) <= max(0.005, abs(value) * 0.005)
    return text.replace(",", "") == str(value)


def check_figures(shown: list[tuple[str, Any, str]], data: dict[str, Any]) -> None:
    """Each figure is the endpoint's value at its pointer; the burst's counts are all there."""
    assert len(shown) > 40
    for path, value, text in shown:
        assert value == at(data, path), path
        if "/timeline/" not in path:  # the bars' own text is a tooltip
            assert reads_as(text, value), (path, text, value)
    paths = {path for path, _, _ in shown}
    for route in ROUTES:
        assert f"/traffic/{route}" in paths
    for i in range(len(data["spill_reasons"])):
        assert f"/spill_reasons/{i}/requests" in paths
    for i in range(len(data["ttft"])):
        assert {f"/ttft/{i}/p50_ms", f"/ttft/{i}/p95_ms", f"/ttft/{i}/slo_ms"} <= paths
    for i in range(len(data["spend"]["by_key"])):
        assert {f"/spend/by_key/{i}/cost_usd", f"/spend/by_key/{i}/saved_usd"} <= paths
    assert {"/cache/hit_rate", "/budget/spent_usd", "/budget/cap_usd_per_hour", "/local/0/load/waiting"} <= paths

    t = data["traffic"]
    assert {k: t[k] for k in BURST} == BURST
    assert {r["reason"]: r["requests"] for r in data["spill_reasons"]} == BURST_REASONS
    assert data["cache"]["hits"] == 2 and data["spilling"] == ["auto"]


async def check_charts(page: Any, data: dict[str, Any]) -> None:
    """The per-minute bars add up to the traffic figures, series by series."""
    bars: list[list[str]] = await page.eval_on_selector_all(
        "#timeline rect[data-path]",
        "nodes => nodes.map(n => [n.dataset.path, n.dataset.value, n.getAttribute('height')])",
    )
    sums = dict.fromkeys(ROUTES, 0)
    for path, value, height in bars:
        series = path.rsplit("/", 1)[1]
        sums[series] += int(value)
        assert float(height) > 0
    assert sums == {route: data["traffic"][route] for route in ROUTES}
    # The spill-reason bars and the TTFT bars are drawn, one per row.
    assert await page.locator("#reasons .hbar").count() == len(data["spill_reasons"])
    assert await page.locator("#ttft rect.s-p95").count() == len(data["ttft"])
