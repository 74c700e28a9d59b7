"""The ids the Responses API gives what it makes (responses, items, calls, conversations): a prefix that
says what it is (`resp`, `msg`, `fc`, `conv`, …) and 32 random hex digits."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"
