"""Gateway overhead on a remote route: direct, a trivial Ray Serve ingress, ours, LiteLLM's proxy, Portkey's gateway.

    .venv/bin/python -m benchmarks.remote_overhead [--groups tput di ...] [--rounds 3] [--no-profile]
        [--long-streams N [--long-pace T]]

Every target answers the same requests from one fake provider (`orchestrator.testing.provider`, 0 ms to the
first token, no pacing), on loopback:

- **direct**: the fake itself;
- **trivial**: a Ray Serve ingress that only forwards (FastAPI, one shared upstream client, streams passed through
  byte for byte), built by `__serve_build_asgi_app__` exactly like our Gateway: the floor Ray sets. Its client is
  the gateway's own (`orchestrator.providers.factory.http_client`: an `httpx.AsyncClient` on aiohttp), so that
  "ours − trivial" prices our gateway and not a choice of HTTP client (`trivial.py`);
- **ours**: `python -m orchestrator.cli serve --config <temp yaml>` (local model `tiny-random`, idle; no
  embedding model; the `openrouter` preset pointed at the fake), asked for `openrouter/gpt-4o-mini`;
- **LiteLLM**: `litellm --config cfg.yaml --num_workers 1`, one `openai/...` model at the fake, logging turned
  down; installed, pinned, in its own virtualenv (`benchmarks/out/litellm-venv`), not as a project dependency;
- **Portkey**: `node .../@portkey-ai/gateway/build/start-server.js --port=N --headless`, one Node process,
  installed with npm (pinned) into `benchmarks/out/portkey*/`, asked with `x-portkey-provider: openai` and
  `x-portkey-custom-host: <fake>/v1`; two builds of one release that differ in its HTTP server adapter (`portkey.py`
  says why: the one npm resolves today fails every stream).

LiteLLM and Portkey ("the peers") are started once per run and measured in every group with peers; the report
sets ours against each of them (`report.peers_section`: added latency p50/p99, req/s, first chunk, CPU per
request, and the ratios).

Each Ray-hosted target runs in its own process and Ray instance (own `RAY_TMPDIR`). The Ray settings are tried
in groups (`groups.py`): a group starts the trivial ingress and ours with the same settings, side by side with the
fake and the peers (started once), and alternates rounds over all of them, so that the machine's noise hits them
equally; each group is compared within itself. Settings: Serve's proxy; direct ingress (the ingress replica's own
port; ours puts it on server.port; `server.throughput_optimized: false`); Ray's throughput bundle (ours:
`server.throughput_optimized: true`, the default; the trivial ingress gets the same Serve variables); option
groups that change one knob against a reference in the same group; and `gateways` (issue 17, part 3): ours with
one Gateway at its own port, one behind Serve's HAProxy (`server.haproxy`), and two behind it on one port
(`gateway.num_replicas: 2`), each measured at the port its clients use, with the peers.

Per target, per round (`measure.py`): sequential non-stream chat latency (one keep-alive connection, `max_tokens`
8), sequential stream first-content-chunk latency, and requests/s from 32 closed-loop clients for a fixed time;
with `--long-streams N`, also whole streamed answers of N tokens a second from 32 closed-loop clients (the fake then
answers N filler words, cut at each request's `max_tokens`), each stream counted when its usage says every token
came, and its processes' CPU per stream and per token: what a chunk costs each target; with `--long-pace T`,
those tokens come T a second each (the fake paced for that phase only, `POST /_fake/pace`), a network read each as a
live model's do, where unpaced they come several to a read.
Requests carry no `temperature`, so our response cache passes them by; ours also gets cacheable ones that miss
(temperature 0, a new prompt each). CPU seconds per request of each server's processes come from /proc; py-spy
(in the LiteLLM venv) profiles the ingress replicas of one group (`profile.py`).

Prints a report (`report.py`) and saves `benchmarks/results/remote_overhead-<stamp>.{json,md}`, with each server's
log under `benchmarks/out/logs/remote-<stamp>/`. Every process started is stopped at the end, and whatever is left
of its session killed, also on failure or Ctrl-C (`run.py`). (`python -m benchmarks.remote_overhead trivial-serve
...` is the trivial ingress's own process; the benchmark starts it.)
"""
