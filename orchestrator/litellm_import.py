"""`orchestrator import-litellm`: a LiteLLM proxy config turned into this project's config.

`convert(parsed)` is pure: a parsed LiteLLM `config.yaml` in, (our settings as a dict, notes) out.
Each note names the key it is about (`model_list[2].litellm_params.rpm`) and says what could not be
mapped and why; `key_lines(text)` gives the YAML line of each such key for the command to print.
No secret value is ever copied: a literal `api_key` or `master_key` becomes a note asking for an
environment variable, and notes never quote a config value other than model names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

ENV_PREFIX = "os.environ/"


@dataclass(frozen=True)
class Preset:
    """What a LiteLLM model prefix becomes here: our provider name, kind, base URL, key variable."""

    name: str
    base_url: str | None  # None: the deployment must give api_base
    api_key_env: str  # the variable LiteLLM itself reads for this provider
    kind: str = "openai"
    quirks: dict[str, Any] | None = None


PRESETS: dict[str, Preset] = {
    "openai": Preset("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    "anthropic": Preset("anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY", kind="anthropic"),
    "openrouter": Preset("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "together_ai": Preset("together", "https://api.together.xyz/v1", "TOGETHERAI_API_KEY"),
    "groq": Preset("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "mistral": Preset(
        "mistral",
        "https://api.mistral.ai/v1",
        "MISTRAL_API_KEY",
        quirks={"stream_usage": False, "tool_call_ids": "alnum9"},
    ),
    "deepseek": Preset(
        "deepseek",
        "https://api.deepseek.com/v1",
        "DEEPSEEK_API_KEY",
        quirks={"max_tokens_ceiling": 8192, "json_schema": False},
    ),
    "fireworks_ai": Preset("fireworks", "https://api.fireworks.ai/inference/v1", "FIREWORKS_AI_API_KEY"),
    "gemini": Preset(
        "gemini",
        "https://generativelanguage.googleapis.com/v1beta/openai",
        "GEMINI_API_KEY",
        quirks={"parallel_tool_calls": False},
    ),
    "hosted_vllm": Preset("vllm", None, "HOSTED_VLLM_API_KEY"),
}

# Deployment keys mapped below; any other key of a deployment or its litellm_params is a note.
_MODEL_INFO = {
    "mode",
    "input_cost_per_token",
    "output_cost_per_token",
    "max_input_tokens",
    "max_tokens",
    "supports_vision",
    "supports_function_calling",
}
_ORDER = {"latency-based-routing": "latency", "cost-based-routing": "price"}


@dataclass(frozen=True)
class Note:
    """One thing that could not be mapped: the LiteLLM key (a dotted path) and why."""

    key: str
    message: str

    def render(self, lines: dict[str, int] | None = None) -> str:
        line, key = None, self.key
        while lines and line is None and key:  # an absent key: its parent's line
            line = lines.get(key)
            key = key[: max(key.rfind("."), key.rfind("["), 0)]
        return f"line {line}: {self.key}: {self.message}" if line else f"{self.key}: {self.message}"


_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env_name(value: Any) -> str | None:
    if isinstance(value, str) and value.strip().startswith(ENV_PREFIX):
        return value.strip()[len(ENV_PREFIX) :] or None
    return None


def _split_model(model: str) -> tuple[str | None, str]:
    """('openai', 'gpt-4o') from 'openai/gpt-4o'; a bare OpenAI/Anthropic name gets its provider."""
    prefix, sep, rest = model.partition("/")
    if sep and (prefix in PRESETS or prefix == "azure"):
        return prefix, rest
    if model.startswith(("gpt-", "o1", "o3", "o4", "text-embedding-", "chatgpt-")):
        return "openai", model
    if model.startswith("claude-"):
        return "anthropic", model
    return (prefix if sep else None), (rest if sep else model)


class _Builder:
    def __init__(self) -> None:
        self.providers: dict[str, dict[str, Any]] = {}
        self.by_identity: dict[tuple[str, str, str], str] = {}
        self.notes: list[Note] = []

    def note(self, key: str, message: str) -> None:
        self.notes.append(Note(key, message))

    def provider(self, preset: Preset, base_url: str, key_env: str) -> str:
        identity = (preset.name, base_url, key_env)
        if identity in self.by_identity:
            return self.by_identity[identity]
        name, n = preset.name, 1
        while name in self.providers:
            n += 1
            name = f"{preset.name}-{n}"
        entry: dict[str, Any] = {"base_url": base_url, "api_key_env": key_env, "models": {}}
        if preset.kind != "openai":
            entry = {"kind": preset.kind, **entry}
        if preset.quirks:
            entry["quirks"] = dict(preset.quirks)
        self.providers[name] = entry
        self.by_identity[identity] = name
        return name

    def deployment(self, i: int, entry: Any) -> tuple[str, str] | None:
        """(alias, route) for one model_list entry, or None (with a note) when it can't map."""
        at = f"model_list[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("litellm_params"), dict):
            self.note(at, "skipped: no litellm_params mapping")
            return None
        alias, params = entry.get("model_name"), entry["litellm_params"]
        model = params.get("model")
        if not isinstance(alias, str) or not alias or not isinstance(model, str) or not model:
            self.note(at, "skipped: model_name and litellm_params.model are required")
            return None
        if "*" in alias or "*" in model:
            self.note(at, "skipped: wildcard routing has no equivalent; list each model under a provider")
            return None
        prefix, model_id = _split_model(model)
        p = f"{at}.litellm_params"
        if not model_id.strip("/ "):
            self.note(f"{p}.model", f"skipped: {model!r} names a provider but no model")
            return None
        api_base = params.get("api_base")
        if prefix == "azure":
            self.note(
                f"{p}.model",
                "skipped: Azure OpenAI is not supported (deployment URLs, api-version and api-key auth); "
                "reach it through an OpenAI-compatible endpoint instead",
            )
            return None
        if prefix is None or prefix not in PRESETS:
            self.note(
                f"{p}.model",
                f"skipped: provider prefix {prefix or '(none)'!r} has no equivalent here "
                "(supported: openai, anthropic and OpenAI-compatible providers)",
            )
            return None
        preset = PRESETS[prefix]
        if api_base is not None and _env_name(api_base):
            self.note(
                f"{p}.api_base",
                f"skipped: the base URL comes from environment variable {_env_name(api_base)}; "
                "our base_url is written in the config: add this deployment by hand",
            )
            return None
        base_url = str(api_base).rstrip("/") if isinstance(api_base, str) and api_base else preset.base_url
        if base_url is None:
            self.note(f"{p}.api_base", "skipped: this provider needs an api_base")
            return None
        if base_url != preset.base_url and preset.base_url is not None:
            # Another server speaking this API: its own name and key variable (never the real provider's key).
            preset = Preset(
                f"{preset.name}-compatible", base_url, f"{preset.name.upper()}_COMPATIBLE_API_KEY", preset.kind
            )
        key = params.get("api_key")
        key_env = _env_name(key)
        if key_env is not None and not _ENV_VAR.match(key_env):
            self.note(f"{p}.api_key", "skipped: the environment variable's name is not one a shell can set")
            return None
        if key_env is None:
            key_env = preset.api_key_env
            if key is not None:
                self.note(
                    f"{p}.api_key",
                    f"a literal key is never copied: put it in the environment variable {key_env} (api_key_env)",
                )
        if key is None and api_base:
            self.note(
                f"{p}.api_key",
                f"none given: a provider is used only while its key variable is set; set {key_env} "
                "(any value for a server without auth)",
            )
        name = self.provider(preset, base_url, key_env)
        remote: dict[str, Any] = {"id": model_id}
        self._model_info(at, entry.get("model_info"), remote)
        held: dict[str, dict[str, Any]] = self.providers[name]["models"]
        # The gateway-side name: the id's last segment (meta-llama/Llama-3 -> Llama-3) unless taken.
        local_name = model_id.rsplit("/", 1)[-1]
        if local_name in held and held[local_name]["id"] != model_id:
            local_name = model_id.replace("/", "-")
        held.setdefault(local_name, remote)
        for k in params:
            if k in ("model", "api_key", "api_base"):
                continue
            self.note(f"{p}.{k}", _param_reason(k))
        for k in entry:
            if k not in ("model_name", "litellm_params", "model_info"):
                self.note(f"{at}.{k}", _param_reason(k))
        return alias, f"{name}/{local_name}"

    def _model_info(self, at: str, info: Any, remote: dict[str, Any]) -> None:
        if not isinstance(info, dict):
            return
        for k, v in info.items():
            key = f"{at}.model_info.{k}"
            if k == "mode" and v in ("chat", "completion", "embedding"):
                remote["kind"] = "embedding" if v == "embedding" else "chat"
            elif k in ("input_cost_per_token", "output_cost_per_token") and isinstance(v, int | float):
                remote[k.replace("cost_per_token", "per_mtok")] = round(float(v) * 1_000_000, 6)
            elif k in ("max_input_tokens", "max_tokens") and isinstance(v, int) and v > 0:
                remote["context_length"] = v
            elif k == "supports_vision" and isinstance(v, bool):
                remote["vision"] = v
            elif k == "supports_function_calling" and isinstance(v, bool):
                remote["tools"] = v
            else:
                self.note(key, "not mapped: no equivalent model field here")


def _param_reason(k: str) -> str:
    if k in ("rpm", "tpm"):
        return "not mapped: no per-deployment rate limit here (per-key rpm/tpm live under keys:)"
    if k in ("timeout", "stream_timeout", "max_retries"):
        return "not mapped: timeouts and retries are global here (resilience:)"
    if k in ("api_version", "organization", "aws_region_name", "vertex_project", "vertex_location"):
        return "not mapped: a provider-specific setting with no equivalent"
    return "not mapped: no per-deployment default request parameters here"


def convert(config: Any) -> tuple[dict[str, Any], list[Note]]:
    """Our settings dict and the notes for what could not be mapped, from a parsed LiteLLM config."""
    b = _Builder()
    if not isinstance(config, dict):
        raise ValueError("a LiteLLM config is a YAML mapping (model_list, router_settings, ...)")
    out: dict[str, Any] = {}
    aliases: dict[str, list[str]] = {}
    first: dict[str, int] = {}  # an alias's first model_list index
    model_list = config.get("model_list") or []
    if not isinstance(model_list, list):
        b.note("model_list", "skipped: not a list")
        model_list = []
    for i, entry in enumerate(model_list):
        got = b.deployment(i, entry)
        if got is not None:
            first.setdefault(got[0], i)
            routes = aliases.setdefault(got[0], [])
            if got[1] not in routes:
                routes.append(got[1])
    for alias, routes in aliases.items():
        if len(routes) > 1:
            b.note(
                f"model_list[{first[alias]}].model_name",
                f"{alias}: LiteLLM load-balances a group's deployments; here its routes are tried in the order "
                "listed (set models.<name>.order: price or latency to rank them)",
            )
    models: dict[str, dict[str, Any]] = {a: {"routes": list(r)} for a, r in aliases.items()}
    resilience: dict[str, Any] = {}
    cache: dict[str, Any] = {}

    router = config.get("router_settings") or {}
    litellm = config.get("litellm_settings") or {}
    general = config.get("general_settings") or {}
    for section, value in (("router_settings", router), ("litellm_settings", litellm), ("general_settings", general)):
        if not isinstance(value, dict):
            b.note(section, "skipped: not a mapping")
    router = router if isinstance(router, dict) else {}
    litellm = litellm if isinstance(litellm, dict) else {}
    general = general if isinstance(general, dict) else {}

    for section, values in (("router_settings", router), ("litellm_settings", litellm)):
        for k, v in values.items():
            key = f"{section}.{k}"
            if k == "fallbacks":
                _fallbacks(b, key, v, aliases, models)
            elif k == "num_retries" and isinstance(v, int) and v >= 0:
                resilience["attempts"] = v + 1
                b.note(key, "mapped to resilience.attempts (passes over an alias's routes, the first included)")
            elif k in ("timeout", "request_timeout") and isinstance(v, int | float) and v > 0:
                resilience["deadline_s"] = float(v)
            elif k == "allowed_fails" and isinstance(v, int) and v > 0:
                resilience["breaker_threshold"] = v
            elif k == "cooldown_time" and isinstance(v, int | float) and v > 0:
                resilience["breaker_cooldown_s"] = float(v)
            elif k == "routing_strategy" and v in _ORDER:
                for m in models.values():
                    m["order"] = _ORDER[v]
            elif k == "routing_strategy":
                b.note(key, "not mapped: routes are tried in order (order: listed | price | latency), not spread")
            elif section == "litellm_settings" and k == "cache":
                if v is False:
                    cache["enabled"] = False
                elif v is True:
                    cache["enabled"] = True
                    b.note(
                        key,
                        "LiteLLM caches every identical request; here cache.mode auto caches only reproducible "
                        "ones (temperature 0 or a seed): set cache.mode: always to match",
                    )
                else:
                    b.note(key, "skipped: expected true or false")
            elif section == "litellm_settings" and k == "cache_params":
                _cache_params(b, key, v, cache)
            elif k in ("redis_host", "redis_port", "redis_password", "redis_url"):
                b.note(key, "not mapped: gateways share their load and spend through Ray here, not Redis")
            elif k in ("context_window_fallbacks", "content_policy_fallbacks", "default_fallbacks"):
                b.note(
                    key,
                    "not mapped: only plain fallbacks map; route long prompts with models.<name>.rules "
                    "(min_prompt_tokens, use)",
                )
            else:
                b.note(key, "not mapped: no equivalent setting here")

    for k, v in general.items():
        key = f"general_settings.{k}"
        if k == "master_key":
            env = _env_name(v)
            if env:
                out["ledger"] = {"master_key_env": env}
            else:
                b.note(
                    key,
                    "a literal master key is never copied: put it in the environment variable "
                    "ORCHESTRATOR_MASTER_KEY (ledger.master_key_env)",
                )
        elif k == "database_url":
            b.note(key, "not mapped: usage and keys live in a local sqlite ledger (ledger.path)")
        else:
            b.note(key, "not mapped: no equivalent setting here")

    env_vars = config.get("environment_variables")
    if isinstance(env_vars, dict):
        for k in env_vars:
            b.note(f"environment_variables.{k}", "not copied (values may be secrets): set it in the environment")
    for k in config:
        if k not in ("model_list", "router_settings", "litellm_settings", "general_settings", "environment_variables"):
            b.note(str(k), "not mapped: no equivalent section here")

    if b.providers:
        out["providers"] = b.providers
    if models:
        out["models"] = {a: (m["routes"] if set(m) == {"routes"} else m) for a, m in models.items()}
    if resilience:
        out["resilience"] = resilience
    if cache:
        out["cache"] = cache
    return out, b.notes


def _fallbacks(
    b: _Builder, key: str, value: Any, aliases: dict[str, list[str]], models: dict[str, dict[str, Any]]
) -> None:
    """`[{gpt-4: [gpt-3.5-turbo, claude]}]`: the fallback aliases' routes appended to the alias's."""
    if not isinstance(value, list):
        b.note(key, "skipped: expected a list of {model_name: [fallback model_names]}")
        return
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            b.note(f"{key}[{i}]", "skipped: expected {model_name: [fallback model_names]}")
            continue
        for alias, targets in item.items():
            at = f"{key}[{i}].{alias}"
            if alias not in models:
                b.note(at, "skipped: no model_list entry with this model_name was imported")
                continue
            for target in targets if isinstance(targets, list) else [targets]:
                if target not in aliases:
                    b.note(at, f"fallback {target!r} skipped: no model_list entry with this model_name was imported")
                    continue
                routes = models[alias]["routes"]
                routes.extend(r for r in aliases[target] if r not in routes)


def _cache_params(b: _Builder, key: str, value: Any, cache: dict[str, Any]) -> None:
    if not isinstance(value, dict):
        b.note(key, "skipped: not a mapping")
        return
    for k, v in value.items():
        at = f"{key}.{k}"
        if k == "type" and v in ("local", "disk"):
            continue
        if k == "type":
            b.note(at, "not mapped: the cache here is a disk cache on each gateway's node (cache.directory)")
        elif k == "ttl" and isinstance(v, int | float) and v >= 0:
            cache["ttl_s"] = float(v)
        elif k == "mode" and v == "default_off":
            b.note(at, "not mapped: no per-request opt-in; cache.mode auto caches reproducible requests")
        elif k == "disk_cache_dir" and isinstance(v, str):
            cache["directory"] = v
        else:
            b.note(at, "not mapped: no equivalent cache setting here")


def key_lines(text: str) -> dict[str, int]:
    """The 1-based line of each key path (as the notes spell them) in a LiteLLM YAML text."""
    lines: dict[str, int] = {}
    seen: set[int] = set()  # each node once: an alias is not walked again (an alias bomb, or one in itself)

    def walk(node: yaml.Node, path: str) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                sub = f"{path}.{k.value}" if path else str(k.value)
                lines.setdefault(sub, k.start_mark.line + 1)
                walk(v, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                sub = f"{path}[{i}]"
                lines.setdefault(sub, v.start_mark.line + 1)
                walk(v, sub)

    root = yaml.compose(text)
    if root is not None:
        walk(root, "")
    return lines


def render(settings: dict[str, Any], source: str) -> str:
    """The YAML config text, with a header saying where it came from."""
    head = (
        f"# Imported from the LiteLLM config {source} by `orchestrator import-litellm`.\n"
        "# Keys stay in the environment (api_key_env); the local model keeps its default (local:):\n"
        "# add its name to an alias's routes to serve it first and spill to these providers.\n"
    )
    return head + yaml.safe_dump(settings, sort_keys=False, default_flow_style=False, width=120)
