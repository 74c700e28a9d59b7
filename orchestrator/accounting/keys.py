"""Virtual keys: how a key looks, how it is stored (its sha256 only), how a request presents it.

A key is `sk-orch-` and 43 URL-safe characters (256 random bits), so a hash
of it is all that ever needs storing: config and the ledger keep
`sha256(key)` and a `KeyPolicy` under a key *id*, the name that logs,
metrics and reports use. A request presents its key the way OpenAI's SDK
sends one (`Authorization: Bearer ...`) or Anthropic's (`x-api-key`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from orchestrator.settings import KeySettings

PREFIX = "sk-orch-"


def new_key() -> str:
    """A fresh random virtual key (shown once, to whoever creates it)."""
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """What is stored in place of `key`: its sha256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def presented(headers: Mapping[str, str]) -> str | None:
    """The key a request carries, or None."""
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def redact(key: str) -> str:
    """What may be shown of a key after its creation: the prefix and last four characters."""
    return f"{key[: len(PREFIX)]}...{key[-4:]}" if len(key) > len(PREFIX) + 8 else "***"


@dataclass(frozen=True)
class KeyPolicy:
    """A key's id and limits, as the edge and the ledger's owner use them (plain data, pickles)."""

    id: str
    sha256: str
    budget_usd: float | None = None
    budget_tokens: int | None = None
    period: str = "month"
    rpm: int | None = None
    tpm: int | None = None
    parallel_requests: int | None = None  # at once, per gateway replica; None: the gateway's default
    models: tuple[str, ...] | None = None
    soft_limit_usd: float | None = None
    soft_limit_tokens: int | None = None
    downgrade_to: str | None = None
    source: str = "config"  # "config" | "admin"
    created: float = 0.0

    @classmethod
    def from_settings(cls, key_id: str, s: KeySettings, *, source: str = "config", created: float = 0.0) -> KeyPolicy:
        return cls(
            id=key_id,
            sha256=s.sha256,
            budget_usd=s.budget_usd,
            budget_tokens=s.budget_tokens,
            period=s.period,
            rpm=s.rpm,
            tpm=s.tpm,
            parallel_requests=s.parallel_requests,
            models=tuple(s.models) if s.models is not None else None,
            soft_limit_usd=s.soft_limit_usd,
            soft_limit_tokens=s.soft_limit_tokens,
            downgrade_to=s.downgrade_to,
            source=source,
            created=created,
        )

    def settings(self) -> KeySettings:
        return KeySettings(
            sha256=self.sha256,
            budget_usd=self.budget_usd,
            budget_tokens=self.budget_tokens,
            period=self.period,  # type: ignore[arg-type]
            rpm=self.rpm,
            tpm=self.tpm,
            parallel_requests=self.parallel_requests,
            models=list(self.models) if self.models is not None else None,
            soft_limit_usd=self.soft_limit_usd,
            soft_limit_tokens=self.soft_limit_tokens,
            downgrade_to=self.downgrade_to,
        )

    @property
    def limited(self) -> bool:
        """Whether admission must ask the ledger's owner (a budget, a rate or a soft limit to check; requests
        in progress are counted by each replica, without it)."""
        limits = (self.budget_usd, self.budget_tokens, self.rpm, self.tpm, self.soft_limit_usd, self.soft_limit_tokens)
        return any(v is not None for v in limits)

    def allows(self, model: str) -> bool:
        return self.models is None or model in self.models

    def public(self) -> dict[str, object]:
        """The policy as the admin API shows it: no hash, no key."""
        s = self.settings().model_dump(exclude={"sha256"})
        return {"id": self.id, "source": self.source, "created": int(self.created), **s}
