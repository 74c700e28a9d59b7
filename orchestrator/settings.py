"""Configuration: one pydantic-settings root, built once at start and passed down.

Sources, highest priority first: constructor arguments, environment variables
(`ORCH_` prefix, `__` between nested names, e.g. `ORCH_LOCAL__MODEL=tiny-random`),
then the YAML file (`config/default.yaml` unless another is given).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "default.yaml"
# A cap on requests in progress past any replica's places (Serve's max_ongoing_requests): a larger one is a typo.
MAX_PARALLEL_REQUESTS = 1_000_000


class Section(BaseModel):
    """A part of the configuration: a key it doesn't know (a typo, a setting of another version) is an
    error that names it, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class ServerSettings(Section):
    """Where the HTTP endpoint listens and how Ray Serve fronts it."""

    host: str = "127.0.0.1"
    port: int = 8000
    # Ray Serve's direct ingress: the Gateway replicas listen on `port` (and the next
    # ports, one per replica) themselves, without the Serve proxy's extra hop; the
    # proxy moves to a free port. Off: the Serve proxy listens on `port`.
    direct_ingress: bool = True
    # Ray Serve's throughput-optimized mode (RAY_SERVE_THROUGHPUT_OPTIMIZED=1, set by runtime.start):
    # user code and the request router on each replica's main event loop, gRPC between
    # deployments, the GC frozen after start-up; direct ingress still as `direct_ingress` says.
    throughput_optimized: bool = True
    # Ray Serve's HAProxy mode (RAY_SERVE_ENABLE_HA_PROXY): one HAProxy per node listens on `port` and
    # spreads requests over the Gateway replicas (least connections), which listen on `port + 1`,
    # `port + 2`, ...: several gateway processes, one port. Needs direct_ingress. Off: each Gateway
    # replica is reached at its own port.
    haproxy: bool = False
    access_log: bool = False
    # Each /v1 request's row (what the ledger keeps) also as one JSON line on the `orchestrator.requests`
    # logger, in the Gateway replicas' logs. Off: a line a request costs the hot path its encoding and Ray's
    # log streaming; the rows are in the ledger either way (`orchestrator report`, /admin/usage).
    request_log: bool = False
    # A request body over this is refused with a 413 before it is read whole.
    max_body_mb: float = Field(default=8.0, gt=0)

    @model_validator(mode="after")
    def _haproxy_fronts_direct_ingress(self) -> ServerSettings:
        if self.haproxy and not self.direct_ingress:
            raise ValueError("server.haproxy needs server.direct_ingress: HAProxy forwards to the replicas' own ports")
        return self


class EngineSettings(Section):
    """One local vLLM engine, served as a `LocalModel` deployment."""

    model: str | None = None  # a catalog name or a local HF model directory
    served_name: str | None = None  # defaults to the catalog name / directory name
    max_model_len: int = 2048
    kv_cache_gib: float = 1.0
    max_num_seqs: int = 32
    dtype: str = "float32"  # the CPU engine's, as config/default.yaml has it; "auto" (the model's) on a GPU
    startup_timeout_s: float = 600.0
    # After the first token (sent at once), deltas are coalesced for this long before
    # crossing to the gateway: fewer, larger stream items cost far less CPU per token.
    stream_interval_ms: float = 20.0
    num_replicas: int = 1
    # Ray Serve autoscaling_config (min_replicas, max_replicas, target_ongoing_requests, ...);
    # set, it replaces num_replicas. The scheduler spills while new replicas start.
    autoscaling: dict[str, Any] | None = None
    num_cpus: float = 0.0  # Ray logical CPUs per replica; the engine threads are vLLM's
    num_gpus: float = 0.0
    # Ray custom resources per replica, e.g. {local_model: 1}: replicas go only to nodes offering them.
    resources: dict[str, float] = Field(default_factory=dict)
    max_ongoing_requests: int = 64
    max_queued_requests: int = 256
    engine_args: dict[str, Any] = Field(default_factory=dict)  # passed to vLLM as is

    @field_validator("autoscaling")
    @classmethod
    def _serve_autoscaling(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """Checked by Serve's own model now, not when the deployment first scales (a typo'd field, min > max)."""
        if value is not None:
            from ray.serve.config import AutoscalingConfig

            if unknown := sorted(set(value) - set(AutoscalingConfig.model_fields)):
                raise ValueError(f"not fields of Serve's autoscaling_config: {', '.join(unknown)}")
            AutoscalingConfig(**value)
        return value


class LocalModelSettings(EngineSettings):
    """The local generation model."""

    model: str = "smollm2-135m"  # required: every deployment serves a local model (remote-only is an alias's choice)
    # vLLM's tool-call parser for the model's own tool-call format (hermes for Qwen2.5, llama3_json,
    # mistral, ...): with it the model decides by itself whether to call a tool (tool_choice "auto").
    # None: the catalog's, if any; tool_choice "required" or a named function work without one.
    tool_parser: str | None = None
    # vLLM's reasoning parser for a model that thinks aloud (deepseek_r1 for R1-distills, qwen3, ...):
    # with it the local answer's reasoning is `reasoning_content`, as a remote reasoning model's is.
    # None: the catalog's, if any; without one the model's thinking stays in its content.
    reasoning_parser: str | None = None


def served_name(section: EngineSettings) -> str:
    """The name a local model serves under: as configured, else its catalog or directory name."""
    model = section.model
    assert model is not None
    if section.served_name:
        return section.served_name
    return Path(model).name if "/" in model else model


class EmbeddingSettings(EngineSettings):
    """An optional local embedding model (vLLM's pooling runner); None serves none."""

    model: str | None = None
    max_model_len: int = 512
    kv_cache_gib: float = 0.25


class GatewaySettings(Section):
    """The ingress deployment."""

    num_replicas: int = 1
    max_ongoing_requests: int = 512
    # HTTP requests one key may have in progress at once on a replica, for keys that set no
    # `parallel_requests`; None: a quarter of `max_ongoing_requests` (no key alone takes the replica).
    parallel_requests_per_key: int | None = Field(default=None, ge=1, le=MAX_PARALLEL_REQUESTS)
    num_cpus: float = 0.0
    # Ray custom resources per replica, e.g. {gateway: 1}: replicas go only to nodes offering them.
    resources: dict[str, float] = Field(default_factory=dict)
    # At most this many replicas on one node (Serve's max_replicas_per_node); None: no limit.
    max_replicas_per_node: int | None = Field(default=None, ge=1)


class RemoteModel(Section):
    """One model of a provider: its id there, its prices, what it can do."""

    id: str  # the provider's own model id
    kind: Literal["chat", "embedding"] = "chat"  # chat: chat + text completions
    input_per_mtok: float = 0.0  # dollars per million input tokens
    output_per_mtok: float = 0.0
    cached_input_per_mtok: float | None = None  # prompt tokens read from the provider's prompt cache (None: input's)
    # Prompt tokens written to it (Anthropic's `cache_creation_input_tokens`: 1.25 x input for its 5-minute
    # cache); None: the input price.
    cache_write_per_mtok: float | None = None
    tools: bool = True
    vision: bool = False
    json_schema: bool = True
    context_length: int = 128_000
    same_weights_as: str | None = None  # e.g. the local model it is a hosted copy of


class QuirkSettings(Section):
    """Known departures from OpenAI's API (see `providers.openai_compat.Quirks`)."""

    max_tokens_ceiling: int | None = None
    parallel_tool_calls: bool = True
    stream_usage: bool = True
    json_schema: bool = True
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    tool_call_ids: Literal["any", "alnum9"] = "any"  # alnum9: Mistral's 9-character ids


class ProviderSettings(Section):
    """A pay-per-token provider. Unavailable (and said so at start) when its key is unset."""

    kind: Literal["openai", "anthropic"] = "openai"
    base_url: str
    api_key_env: str  # the environment variable holding the key; the key itself is never in config
    headers: dict[str, str] = Field(default_factory=dict)
    models: dict[str, RemoteModel] = Field(default_factory=dict)  # key: the gateway-side name
    quirks: QuirkSettings = Field(default_factory=QuirkSettings)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        """An http(s) URL with a host: anything else failed every request, or the gateway's start."""
        try:
            url = httpx.URL(value)
        except (httpx.InvalidURL, TypeError):
            raise ValueError("not a URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("not an http(s) URL with a host")
        return value


class ResilienceSettings(Section):
    """Retries, timeouts and circuit breakers for every route."""

    attempts: int = 2
    backoff_base_s: float = 0.2
    backoff_max_s: float = 5.0
    connect_timeout_s: float = 5.0
    first_token_timeout_s: float = 30.0
    idle_timeout_s: float = 60.0
    deadline_s: float = 120.0  # the whole request, retries included, up to its first token
    # A whole (non-stream) answer's generation after its first token (the openai SDK's own default timeout:
    # a client still waiting past it has gone); a stream's is its client's to end.
    answer_timeout_s: float = Field(default=600.0, gt=0)
    breaker_threshold: int = 3  # failures of distinct requests that open a provider's circuit
    breaker_cooldown_s: float = 30.0
    breaker_window_s: float = 60.0  # failures further apart than this don't add up


class CacheSettings(Section):
    """The response cache on local disk (one per node, shared by its gateway replicas)."""

    enabled: bool = True
    mode: Literal["auto", "always", "never"] = "auto"  # auto: temperature 0 or an explicit seed
    ttl_s: float = Field(default=3600.0, ge=0, le=10 * 365 * 86400)
    size_limit_mb: int = 1024
    directory: Path | None = None  # default: <data_dir>/response-cache
    # Entries and in-flight requests are each key's own; true shares them between keys (one tenant).
    shared: bool = False


class KeySettings(Section):
    """One virtual key: its sha256 (never the key itself) and its limits.

    `orchestrator hash-key` makes a key and prints its hash. Budgets count
    per `period` (calendar periods in UTC; `total` never resets). Past a soft
    limit, a request for another model is served by `downgrade_to` instead of
    being refused (the response says so in `x-budget-downgrade`).
    """

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    budget_usd: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    budget_tokens: Annotated[int, Field(ge=0)] | None = None
    period: Literal["hour", "day", "week", "month", "total"] = "month"
    rpm: Annotated[int, Field(ge=1)] | None = None  # requests per minute (none at all: leave `models` empty)
    tpm: Annotated[int, Field(ge=1)] | None = None  # tokens (prompt + completion) per minute
    # HTTP requests in progress at once on one gateway replica; None: `gateway.parallel_requests_per_key`.
    parallel_requests: Annotated[int, Field(ge=1, le=MAX_PARALLEL_REQUESTS)] | None = None
    models: list[str] | None = None  # models/aliases this key may use; None: all
    soft_limit_usd: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    soft_limit_tokens: Annotated[int, Field(ge=0)] | None = None
    downgrade_to: str | None = None  # the cheaper model/alias served past the soft limit


class LedgerSettings(Section):
    """Usage, budgets and reports: one owner for every gateway replica."""

    # The environment variable holding the admin master key (guards /admin/*); unset: no admin API.
    master_key_env: str = "ORCHESTRATOR_MASTER_KEY"
    # The variable holding a key that may read /metrics (a scraper's Bearer token) besides the master
    # key. Once keys are required, /metrics takes one of the two; set, it is required even on an open endpoint.
    metrics_key_env: str = "ORCHESTRATOR_METRICS_KEY"
    path: Path | None = None  # the usage database; default <data_dir>/ledger.sqlite
    # "actor": one named Ray actor owns the ledger (every replica, every node); "process": in-process (tests, tools).
    owner: Literal["actor", "process"] = "actor"
    # Savings are measured against sending everything here ("provider/model", a preset model).
    reference_model: str | None = None
    # The local model's amortized cost: the GPU's price per hour over its measured throughput
    # (decode tokens/s from the engine's stats), never below these floors.
    gpu_price_per_hour: float = 0.0
    min_decode_tokens_per_s: float = 50.0
    min_prefill_tokens_per_s: float = 500.0
    reservation_ttl_s: float = 900.0  # a reservation never settled (a lost replica) is released after this


class ResponsesSettings(Section):
    """Stored responses (`/v1/responses` with `store`, read back by id or `previous_response_id`)."""

    # "actor": one named Ray actor keeps them (every replica, every node reads the same); "process": in-process.
    owner: Literal["actor", "process"] = "actor"
    directory: Path | None = None  # default: <data_dir>/responses (on the actor's node)
    ttl_days: float = Field(default=30.0, gt=0, le=3650)  # as OpenAI keeps them
    size_limit_mb: int = Field(default=1024, ge=1)  # the oldest go first past this


class ConversationsSettings(Section):
    """Stored conversations (`/v1/conversations`, a response's `conversation`): kept as the stored
    responses are (`responses.owner`, `ttl_days` from the last change, `size_limit_mb`), in their own directory."""

    directory: Path | None = None  # default: <data_dir>/conversations (on the actor's node)
    max_items: int = Field(default=1000, ge=1)  # items one conversation may hold (more: a 400)
    max_mb: float = Field(default=16.0, gt=0)  # its items' size, as JSON (more: a 400)


class RuleSettings(Section):
    """Route matching requests for an alias to another alias; every condition given must hold."""

    use: str  # the alias to use instead
    name: str = ""
    min_prompt_tokens: int | None = None
    max_prompt_tokens: int | None = None
    pattern: str | None = None  # a regular expression searched in the request's text
    tags: dict[str, str] = Field(default_factory=dict)  # request metadata / x-tags that must match

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:  # not a ValueError: pydantic would let it through as a traceback
                raise ValueError(f"not a regular expression: {e}") from None
        return v


class ModelRouting(Section):
    """A client-facing model name (an alias): its routes in order, and how to choose among them."""

    routes: list[str]  # "provider/model", or a local model's name
    ttft_slo_ms: float | None = None  # time-to-first-token target; None: scheduler.ttft_slo_ms
    order: Literal["listed", "price", "latency"] = "listed"  # how spill routes rank after same-weights hosts
    rules: list[RuleSettings] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _bare_list(cls, v: Any) -> Any:
        return {"routes": v} if isinstance(v, list) else v


class SchedulerSettings(Section):
    """The overflow scheduler (see orchestrator/scheduling/policy.py)."""

    # Default time-to-first-token target; per alias: models.<name>.ttft_slo_ms, per request: x-ttft-slo-ms.
    ttft_slo_ms: float = Field(default=1000.0, gt=0)
    # Local while the predicted (typical) TTFT is within headroom x SLO: the SLO bounds the tail (and
    # the hedge, below, catches what the prediction missed). 0.65 with the hedge at 0.55 since 2026-12-01
    # (0.6 and no hedge before): more local and as much within the SLO in the simulator's fleets and the
    # real burst (benchmarks/README.md, "Simulator": "The hedge"). For GPU fleets; the embedded default
    # (config/default.yaml: a CPU engine, one gateway) sets 0.8 (benchmarks/README.md, "Headroom on the CPU engine").
    headroom: float = 0.65
    hysteresis: float = 0.0  # once spilling, back to local only below (1 - hysteresis) x that
    # Under load, how much a prompt's size moves its line: a local request's predicted wait (its TTFT but
    # its own step and prefill) counts (prompt / typical prompt) ** size_bias times, within 0.9 x SLO for a short
    # one and at most twice for a long one; 0: one line for every size. 1 since 2026-12-03: 2-16 points
    # more local at the same SLO attainment in the simulator's GPU fleets, the same on the CPU engine
    # (benchmarks/README.md, "A ceiling for the verdicts, and a line by the prompt's size").
    size_bias: float = Field(default=1.0, ge=0, le=8)
    same_weights_first: bool = True  # spill first to hosts of the local model's open weights
    overflow_budget_usd_per_hour: float | None = None  # spend cap for load spill; None: no cap
    # With keys, the most of that cap one key may spend in the hour: one key's spill (a backlog of its own, or
    # a tight x-ttft-slo-ms on every request) leaves the rest of the budget to the others.
    overflow_budget_key_share: float = Field(default=0.5, gt=0, le=1)
    budget_max_wait_ms: float = 30_000.0  # budget spent: wait locally at most this long, else 429
    prefill_tokens_per_s: float = 2000.0  # the local prefill speed where the engine reports none of its own
    # A local attempt with remote routes behind it gives up after this many SLOs without a first
    # token (a wrong prediction costs a fall-over, not a missed budget).
    local_patience: float = 3.0
    # A local attempt with remote routes behind it and no first token after this fraction of the SLO
    # gets a remote attempt beside it (a hedge): the first to answer serves, the other is cancelled.
    # None: no hedge (the local attempt waits out its patience, then falls over).
    hedge_at: float | None = Field(default=0.55, gt=0)
    idle_step_ms: float = 20.0  # a step of an idle engine, until measured
    min_finish_rate: float = 0.5  # requests/s assumed to free slots when none finished lately
    poll_interval_ms: float = 100.0  # how often gateways read the load board
    # Older: replica reports dropped, a gateway's read stale (used 10x as long). An idle engine reports its
    # unchanged load every quarter of it; a gateway without plans for a second reads every half of it.
    max_staleness_ms: float = 1000.0


class TelemetrySettings(Section):
    """OpenTelemetry traces and GenAI metrics over OTLP/HTTP: off unless an endpoint is given here or
    in the standard OTEL_EXPORTER_OTLP_ENDPOINT (or its per-signal _TRACES_ / _METRICS_) variables."""

    # The collector's base URL (e.g. http://localhost:4318; traces go to <it>/v1/traces, metrics to /v1/metrics).
    otlp_endpoint: str | None = None
    capture_content: bool = False  # prompts and answers in spans; never by default
    service_name: str = "burst-orchestrator"
    metric_interval_s: float = Field(default=60.0, gt=0)  # how often the GenAI metrics are exported


class RaySettings(Section):
    num_cpus: int | None = None  # None: let Ray count the machine's cores
    address: str | None = None  # an existing cluster; None starts a local one


class Settings(BaseSettings):
    """The root of all configuration."""

    model_config = SettingsConfigDict(
        env_prefix="ORCH_",
        env_nested_delimiter="__",
        # No file of its own: `load_settings` binds the one file (default.yaml or --config), and settings
        # validated again (`model_validate`, on every node) must not have another file's entries merged in.
        yaml_file=None,
        extra="forbid",
    )

    data_dir: Path = Path("~/.cache/burst-orchestrator")
    server: ServerSettings = Field(default_factory=ServerSettings)
    local: LocalModelSettings = Field(default_factory=LocalModelSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    # Client-facing model names (aliases) -> ordered routes ("provider/model-name", or the local
    # model's name), as a bare list or with an SLO, an order and rules (`ModelRouting`).
    models: dict[str, ModelRouting] = Field(default_factory=dict)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    responses: ResponsesSettings = Field(default_factory=ResponsesSettings)
    conversations: ConversationsSettings = Field(default_factory=ConversationsSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    # Virtual keys by id (the id appears in logs and reports; the key never does). None: the endpoint is open.
    keys: dict[str, KeySettings] = Field(default_factory=dict)

    @field_validator("keys")
    @classmethod
    def _one_id_a_key(cls, keys: dict[str, KeySettings]) -> dict[str, KeySettings]:
        """Two ids with one hash were one key whose limits were the last id's (the other's silently gone)."""
        seen: dict[str, str] = {}
        for key_id, key in keys.items():
            if (first := seen.setdefault(key.sha256, key_id)) != key_id:
                raise ValueError(f"keys.{key_id}.sha256 is the same key as keys.{first}")
        return keys

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        # Ray workers run in other directories: never pass a relative path on.
        return v.expanduser().resolve()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Settings from `config` (default: config/default.yaml), env and `overrides`."""
    path = Path(config) if config is not None else DEFAULT_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    bound = type("Settings", (Settings,), {"model_config": {**Settings.model_config, "yaml_file": str(path)}})
    # Hand back the plain class so the object pickles by reference across Ray.
    settings = Settings.model_validate(bound(**overrides).model_dump())
    if problems := unknown_names(settings):
        raise UnknownNames(problems)
    return settings


class UnknownNames(ValueError):
    """Names in the configuration that name nothing configured (each problem a line)."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def unknown_names(settings: Settings) -> list[str]:
    """Every name the configuration uses must name something configured: a typo is an error, not a route
    quietly dropped as if its provider had no key (that one is only unavailable, and logged), a rule that
    never applies, or a key limited to a model nobody serves.

    - a `provider/model` route names a configured provider and one of its models; a bare route is a local
      model's and may name one not configured now (`ORCH_LOCAL__MODEL=...` under the default aliases):
      dropped and logged, as before;
    - a rule's `use`, a key's `models` and `downgrade_to` name an alias, a `provider/model` or a local model;
    - `ledger.reference_model` names a `provider/model`.
    """
    problems = []
    routes = {f"{p}/{m}" for p, provider in settings.providers.items() for m in provider.models}
    routes |= {served_name(s) for s in (settings.local, settings.embedding) if s.model is not None}
    known = routes | set(settings.models)
    for alias, routing in settings.models.items():
        for i, route in enumerate(routing.routes):
            provider, slash, model = route.partition("/")
            where = f"models.{alias}.routes[{i}]: {route!r}"
            if not slash:
                continue
            if provider not in settings.providers:
                problems.append(f"{where} names no provider {provider!r} ({', '.join(sorted(settings.providers))})")
            elif model not in settings.providers[provider].models:
                known_models = ", ".join(sorted(settings.providers[provider].models))
                problems.append(f"{where}: providers.{provider}.models has no {model!r} ({known_models})")
        for i, rule in enumerate(routing.rules):
            if rule.use not in known:
                problems.append(f"models.{alias}.rules[{i}].use: {rule.use!r} names no alias, route or local model")
    for key_id, key in settings.keys.items():
        for i, name in enumerate(key.models or []):
            if name not in known:
                problems.append(f"keys.{key_id}.models[{i}]: {name!r} names no alias, route or local model")
        if key.downgrade_to is not None and key.downgrade_to not in known:
            problems.append(f"keys.{key_id}.downgrade_to: {key.downgrade_to!r} names no alias, route or local model")
    reference = settings.ledger.reference_model
    if reference is not None and ("/" not in reference or reference not in routes):
        problems.append(f"ledger.reference_model: {reference!r} names no configured provider/model")
    return problems
