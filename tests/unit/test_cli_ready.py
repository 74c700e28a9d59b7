"""What `orchestrator serve` says once it is ready."""

from __future__ import annotations

from orchestrator.cli import ready_text

AVAILABILITY = [
    "provider openrouter: available (12 models)",
    "provider groq: unavailable, GROQ_API_KEY is not set",
    "provider anthropic: available (2 models)",
]


def test_the_ready_line_names_the_url_the_models_and_the_providers_it_can_spill_to() -> None:
    text = ready_text("http://127.0.0.1:8000/v1", ["smollm2-135m", "auto"], AVAILABILITY, verbose=False)
    lines = text.splitlines()
    assert lines[0] == "Ready: http://127.0.0.1:8000/v1 (Ctrl-C stops)"
    assert lines[1] == "  models: smollm2-135m, auto"
    assert lines[2].startswith("  remote providers: openrouter, anthropic; engine logs: Ray's session logs")


def test_without_providers_or_a_model_list_it_says_what_to_do() -> None:
    text = ready_text("http://h/v1", None, AVAILABILITY[1:2], verbose=True)
    assert "  models: unknown (no Gateway said; GET /v1/models with a key)" in text
    assert text.endswith("none (set a provider's API key variable to spill)")
