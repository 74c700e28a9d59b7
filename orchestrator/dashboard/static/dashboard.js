// The dashboard: reads dashboard/data every few seconds and draws it as SVG and tables.
//
// No framework, no build, nothing fetched from elsewhere. Every figure on the page is an element
// with `data-path` (a JSON Pointer into the document it was drawn from) and `data-value` (that
// value, as JSON), so a test can hold the page to what the endpoint answered.
"use strict";

(function () {
  const KEY_STORE = "orchestrator.dashboard.key";
  const SVG = "http://www.w3.org/2000/svg";
  const SERIES = [
    ["local", "Local"],
    ["remote", "Remote"],
    ["cache", "Cache"],
    ["failed", "Failed"],
  ];
  // What the scheduler's reason codes (the first word of x-route-reason) mean, for the spill chart.
  const REASONS = {
    spill: "local TTFT predicted over the SLO",
    "cold-start": "no local replica ready",
    capability: "the local model lacks a feature",
    context: "the prompt exceeds the local context",
    fallback: "an earlier route failed",
    hedge: "the local model gave no first token in time",
  };
  const params = new URLSearchParams(window.location.search);
  const refreshS = Math.max(1, Number(params.get("refresh")) || 5);
  const minutes = params.get("minutes");
  const keyRequired = document.body.dataset.keyRequired === "true";
  let timer = null;

  // ------------------------------------------------------------------ formatting

  function fmtInt(v) {
    return v == null ? "–" : Math.round(v).toLocaleString("en-US");
  }
  function fmtPct(v) {
    return v == null ? "–" : (v * 100).toFixed(1) + "%";
  }
  function fmtMs(v) {
    if (v == null) return "–";
    return v >= 1000 ? (v / 1000).toFixed(2) + " s" : Math.round(v) + " ms";
  }
  function fmtUsd(v) {
    if (v == null) return "–";
    const sign = v < 0 ? "−" : "";
    const a = Math.abs(v);
    if (a === 0) return "$0";
    if (a >= 1) return sign + "$" + a.toFixed(2);
    return sign + "$" + Number(a.toPrecision(3)).toString();
  }
  function fmtClock(ts) {
    return new Date(ts * 1000).toLocaleTimeString("en-GB", { hour12: false });
  }

  // ------------------------------------------------------------------ DOM helpers

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v != null) node.setAttribute(k, v);
    }
    for (const c of [].concat(children || [])) {
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  function svg(tag, attrs, children) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v != null) node.setAttribute(k, v);
    }
    for (const c of [].concat(children || [])) {
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  // A figure: its text, and what it shows (a JSON Pointer and the value there).
  function figure(tag, path, value, text, cls) {
    return el(tag, { "data-path": path, "data-value": JSON.stringify(value), class: cls }, text);
  }
  function fill(id, ...nodes) {
    document.getElementById(id).replaceChildren(...nodes);
  }
  function empty(text) {
    return el("p", { class: "empty" }, text);
  }
  function swatch(series) {
    return el("span", { class: "swatch s-" + series });
  }

  // ------------------------------------------------------------------ sections

  function kpis(d) {
    const t = d.traffic, c = d.cache, s = d.spend;
    const tile = (label, node, note) => el("div", { class: "kpi" }, [el("div", { class: "label" }, label), node, el("div", { class: "note" }, note || "")]);
    fill(
      "kpis",
      tile("Requests", figure("div", "/traffic/requests", t.requests, fmtInt(t.requests), "value"),
        [figure("span", "/traffic/failed", t.failed, fmtInt(t.failed)), " without an answer"]),
      tile("Served locally", figure("div", "/traffic/local_share", t.local_share, fmtPct(t.local_share), "value v-local"),
        [figure("span", "/traffic/local", t.local, fmtInt(t.local)), " requests"]),
      tile("Spilled", figure("div", "/traffic/spill_share", t.spill_share, fmtPct(t.spill_share), "value v-remote"),
        [figure("span", "/traffic/spilled", t.spilled, fmtInt(t.spilled)), " of ",
          figure("span", "/traffic/remote", t.remote, fmtInt(t.remote)), " remote answers"]),
      tile("Cache hit rate", figure("div", "/cache/hit_rate", c.hit_rate, fmtPct(c.hit_rate), "value v-cache"),
        [figure("span", "/traffic/cache", t.cache, fmtInt(t.cache)), " answered from the cache"]),
      tile("Spend", figure("div", "/spend/cost_usd", s.cost_usd, fmtUsd(s.cost_usd), "value"),
        [figure("span", "/spend/reference_usd", s.reference_usd, fmtUsd(s.reference_usd)),
          " on " + (s.reference_model || "the reference (none set)")]),
      tile("Saved", figure("div", "/spend/saved_usd", s.saved_usd, fmtUsd(s.saved_usd), "value v-saved"),
        "against sending it all to the reference"),
    );
  }

  function timeline(d) {
    fill("timeline-legend", ...SERIES.map(([k, label]) => el("span", { class: "key" }, [swatch(k), label])));
    const slots = d.timeline;
    if (!slots.length) {
      fill("timeline", empty("No request log here (the gateway has no ledger)."));
      return;
    }
    const W = 760, H = 210, left = 40, bottom = 22, top = 8;
    const totals = slots.map((s) => SERIES.reduce((n, [k]) => n + s[k], 0));
    const most = Math.max(1, ...totals);
    const scale = niceMax(most);
    const bw = (W - left) / slots.length;
    const plotH = H - bottom - top;
    const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "timeline", role: "img", "aria-label": "Requests per minute by route" });
    for (const frac of [0, 0.5, 1]) {
      const y = top + plotH * (1 - frac);
      g.append(svg("line", { x1: left, x2: W, y1: y, y2: y, class: "grid" }));
      g.append(svg("text", { x: left - 6, y: y + 4, class: "axis", "text-anchor": "end" }, fmtInt(scale * frac)));
    }
    slots.forEach((s, i) => {
      let y = top + plotH;
      for (const [k] of SERIES) {
        if (!s[k]) continue;
        const h = (s[k] / scale) * plotH;
        y -= h;
        g.append(svg("rect", {
          x: left + i * bw + 1, y: y, width: Math.max(1, bw - 2), height: h, class: "bar s-" + k,
          "data-path": `/timeline/${i}/${k}`, "data-value": JSON.stringify(s[k]),
        }, svg("title", {}, `${fmtClock(s.start)} · ${k}: ${s[k]}`)));
      }
    });
    const n = slots.length;
    for (const i of [0, Math.floor((n - 1) / 2), n - 1]) {
      const ago = n - 1 - i;
      const label = ago === 0 ? "now" : `−${ago} min`;
      const anchor = i === n - 1 ? "end" : i === 0 ? "start" : "middle";
      const x = anchor === "end" ? W : anchor === "start" ? left : left + i * bw + bw / 2;
      g.append(svg("text", { x: x, y: H - 6, class: "axis", "text-anchor": anchor }, label));
    }
    fill("timeline", g);
  }

  function niceMax(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function reasons(d) {
    const rows = d.spill_reasons;
    if (!rows.length) {
      fill("reasons", empty("Nothing spilled in this window."));
      return;
    }
    const most = Math.max(...rows.map((r) => r.requests));
    fill("reasons", el("div", { class: "hbars" }, rows.map((r, i) =>
      el("div", { class: "hbar" }, [
        el("span", { class: "name" }, [r.reason, el("span", { class: "why" }, REASONS[r.reason] || "")]),
        el("span", { class: "track" }, el("span", { class: "fill s-remote", "data-width": r.requests / most })),
        figure("span", `/spill_reasons/${i}/requests`, r.requests, fmtInt(r.requests), "num"),
        figure("span", `/spill_reasons/${i}/share`, r.share, fmtPct(r.share), "num muted"),
      ]))));
  }

  function ttft(d) {
    fill("ttft-legend",
      el("span", { class: "key" }, [swatch("p50"), "p50"]),
      el("span", { class: "key" }, [swatch("p95"), "p95"]),
      el("span", { class: "key" }, [el("span", { class: "swatch s-slo" }), "SLO"]));
    const rows = d.ttft;
    if (!rows.length) {
      fill("ttft", empty("No answer from a model in this window."));
      return;
    }
    const W = 560, row = 46, labelW = 130, numW = 120, H = rows.length * row + 6;
    const plotW = W - labelW - numW;
    const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "ttft", role: "img", "aria-label": "TTFT p50 and p95 against the SLO" });
    rows.forEach((r, i) => {
      const scale = Math.max(r.p95_ms, r.slo_ms || 0) * 1.1 || 1;
      const y = 4 + i * row;
      const x = (v) => labelW + (v / scale) * plotW;
      g.append(svg("text", { x: 0, y: y + 18, class: "label" }, r.model));
      g.append(svg("text", { x: 0, y: y + 34, class: "axis" }, `${fmtInt(r.requests)} answers`));
      g.append(svg("rect", { x: labelW, y: y + 6, width: plotW, height: 28, class: "track" }));
      g.append(svg("rect", { x: labelW, y: y + 6, width: x(r.p95_ms) - labelW, height: 28, class: "bar s-p95" + (r.p95_within_slo === false ? " over" : "") }));
      g.append(svg("rect", { x: labelW, y: y + 6, width: x(r.p50_ms) - labelW, height: 28, class: "bar s-p50" }));
      if (r.slo_ms != null) {
        g.append(svg("line", { x1: x(r.slo_ms), x2: x(r.slo_ms), y1: y + 2, y2: y + 38, class: "slo" }));
      }
      const nums = svg("text", { x: W - numW + 10, y: y + 18, class: "num" });
      const t = (path, v, text) => svg("tspan", { "data-path": path, "data-value": JSON.stringify(v) }, text);
      nums.append(t(`/ttft/${i}/p50_ms`, r.p50_ms, fmtMs(r.p50_ms)), " / ", t(`/ttft/${i}/p95_ms`, r.p95_ms, fmtMs(r.p95_ms)));
      g.append(nums);
      const slo = svg("text", { x: W - numW + 10, y: y + 34, class: "axis" }, "SLO ");
      slo.append(t(`/ttft/${i}/slo_ms`, r.slo_ms, fmtMs(r.slo_ms)));
      g.append(slo);
    });
    fill("ttft", g);
  }

  function local(d) {
    const rows = d.local;
    const nodes = rows.map((m, i) => {
      const head = el("div", { class: "model" }, [el("strong", {}, m.model), el("span", { class: "muted" }, " via " + m.provider)]);
      if (!m.load) return el("div", { class: "engine" }, [head, el("p", { class: "empty" }, m.status)]);
      const p = `/local/${i}/load`;
      const L = m.load;
      const stat = (label, node) => el("div", { class: "stat" }, [node, el("div", { class: "label" }, label)]);
      return el("div", { class: "engine" }, [head, el("div", { class: "stats" }, [
        stat("replicas", figure("div", `${p}/replicas`, L.replicas, fmtInt(L.replicas), "value")),
        stat("waiting", figure("div", `${p}/waiting`, L.waiting, fmtInt(L.waiting), "value")),
        stat("running", el("div", { class: "value" }, [figure("span", `${p}/running`, L.running, fmtInt(L.running)),
          el("span", { class: "of" }, [" / ", figure("span", `${p}/slots`, L.slots, fmtInt(L.slots))])])),
        stat("KV cache", figure("div", `${p}/kv_cache_usage`, L.kv_cache_usage, fmtPct(L.kv_cache_usage), "value")),
      ])]);
    });
    const spilling = d.spilling.length
      ? el("p", { class: "spilling" }, ["Spilling now: ", figure("strong", "/spilling", d.spilling, d.spilling.join(", "))])
      : el("p", { class: "muted" }, "No alias is spilling now.");
    fill("local", ...(nodes.length ? nodes : [empty("No local model.")]), spilling);
  }

  function cache(d) {
    const c = d.cache;
    const R = 44, C = 2 * Math.PI * R;
    const ring = svg("svg", { viewBox: "0 0 120 120", class: "ring", role: "img", "aria-label": "Cache hit rate" }, [
      svg("circle", { cx: 60, cy: 60, r: R, class: "ring-track" }),
      svg("circle", { cx: 60, cy: 60, r: R, class: "ring-fill", "stroke-dasharray": `${(c.hit_rate || 0) * C} ${C}`, transform: "rotate(-90 60 60)" }),
      svg("text", { x: 60, y: 66, "text-anchor": "middle", class: "ring-label" }, fmtPct(c.hit_rate)),
    ]);
    const row = (label, key) => el("tr", {}, [el("td", {}, label), figure("td", `/cache/${key}`, c[key], fmtInt(c[key]), "num")]);
    fill("cache", el("div", { class: "cache" }, [ring, el("table", { class: "mini" }, [
      row("hits", "hits"), row("misses", "misses"), row("joined in flight", "shared"), row("not cacheable", "bypass"),
    ])]));
  }

  function budget(d) {
    const b = d.budget;
    if (b.cap_usd_per_hour == null) {
      fill("budget", el("p", {}, ["No cap (", el("code", {}, "scheduler.overflow_budget_usd_per_hour"), " unset); spent ",
        figure("strong", "/budget/spent_usd", b.spent_usd, b.spent_usd == null ? "unknown (no load board)" : fmtUsd(b.spent_usd)), "."]));
      return;
    }
    const used = b.used_share ? Math.min(1, Math.max(0.01, b.used_share)) : 0; // a spend shows, however small
    fill("budget", el("div", { class: "budget" }, [
      el("div", { class: "meter" + (b.exhausted ? " exhausted" : "") }, el("span", { class: "fill", "data-width": used })),
      el("p", {}, [figure("strong", "/budget/spent_usd", b.spent_usd, fmtUsd(b.spent_usd)), " of ",
        figure("strong", "/budget/cap_usd_per_hour", b.cap_usd_per_hour, fmtUsd(b.cap_usd_per_hour)), " per hour · ",
        figure("span", "/budget/remaining_usd", b.remaining_usd, fmtUsd(b.remaining_usd)), " left"]),
      b.exhausted ? el("p", { class: "error" }, "Spent: spill waits for the local model or gets a 429.") : "",
    ]));
  }

  function breakdown(id, rows, name, base) {
    if (!rows.length) {
      fill(id, empty("No requests in this window."));
      return;
    }
    const head = el("tr", {}, [el("th", {}, name), el("th", { class: "num" }, "requests"), el("th", { class: "num" }, "spend"), el("th", { class: "num" }, "saved")]);
    const body = rows.map((r, i) => el("tr", {}, [
      el("td", { class: "name" }, r[name] === "-" ? `(no ${name})` : r[name]),
      figure("td", `${base}/${i}/requests`, r.requests, fmtInt(r.requests), "num"),
      figure("td", `${base}/${i}/cost_usd`, r.cost_usd, fmtUsd(r.cost_usd), "num"),
      figure("td", `${base}/${i}/saved_usd`, r.saved_usd, fmtUsd(r.saved_usd), "num" + (r.saved_usd < 0 ? " loss" : "")),
    ]));
    fill(id, el("table", { class: "table" }, [el("thead", {}, head), el("tbody", {}, body)]));
  }

  function widths() {
    // Bar lengths as CSSOM properties (the page's policy allows no inline style attributes).
    for (const node of document.querySelectorAll("[data-width]")) {
      node.style.width = (Number(node.dataset.width) * 100).toFixed(1) + "%";
    }
  }

  function render(d) {
    const w = d.window;
    document.getElementById("window-label").textContent = w.slots ? `last ${w.slots} min` : "";
    kpis(d);
    timeline(d);
    reasons(d);
    ttft(d);
    local(d);
    cache(d);
    budget(d);
    breakdown("by-key", d.spend.by_key, "key", "/spend/by_key");
    breakdown("by-model", d.spend.by_model, "model", "/spend/by_model");
    widths();
    const source = w.source === "ledger" ? "every replica's requests (ledger)" : "no ledger: live state only";
    setStatus(`Updated ${fmtClock(d.generated_at)} · ${source} · refreshes every ${refreshS} s`);
    document.body.dataset.generatedAt = String(d.generated_at);
  }

  // ------------------------------------------------------------------ loading

  function setStatus(text, bad) {
    const node = document.getElementById("status");
    node.textContent = text;
    node.classList.toggle("bad", !!bad);
  }

  function askKey(message) {
    clearTimeout(timer);
    document.getElementById("board").hidden = true;
    document.getElementById("keyform").hidden = false;
    document.getElementById("keyerror").textContent = message || "";
    setStatus("The dashboard needs the master key.");
    document.getElementById("key").focus();
  }

  async function load() {
    clearTimeout(timer);
    const key = sessionStorage.getItem(KEY_STORE);
    if (keyRequired && !key) {
      askKey();
      return;
    }
    const headers = key ? { Authorization: "Bearer " + key } : {};
    let answer;
    try {
      const r = await fetch("dashboard/data" + (minutes ? "?minutes=" + encodeURIComponent(minutes) : ""), { headers, cache: "no-store" });
      answer = { status: r.status, body: await r.json() };
    } catch (e) {
      setStatus("The gateway didn't answer (" + e.message + "); retrying.", true);
      timer = setTimeout(load, refreshS * 1000);
      return;
    }
    if (answer.status === 401) {
      sessionStorage.removeItem(KEY_STORE);
      askKey(answer.body.error ? answer.body.error.message : "That key was refused.");
      return;
    }
    if (answer.status !== 200) {
      setStatus((answer.body.error && answer.body.error.message) || "HTTP " + answer.status, true);
      timer = setTimeout(load, refreshS * 1000);
      return;
    }
    document.getElementById("keyform").hidden = true;
    document.getElementById("board").hidden = false;
    render(answer.body);
    timer = setTimeout(load, refreshS * 1000);
  }

  document.getElementById("keyform").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("key");
    const key = input.value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORE, key);
    input.value = "";
    load();
  });

  load();
})();
