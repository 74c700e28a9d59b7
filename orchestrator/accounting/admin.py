"""The admin API, guarded by the master key: virtual keys and usage reports.

    POST   /admin/keys              create a key; the answer shows it once (only its hash is kept)
    GET    /admin/keys              every key: its limits and this period's spend (never a key or a hash)
    GET    /admin/keys/{id}         one key, the same way
    PATCH  /admin/keys/{id}         change an admin key's limits (the fields given; null lifts one)
    POST   /admin/keys/{id}/rotate  a new secret for an admin key (shown once); the old one stops working
    DELETE /admin/keys/{id}         revoke a key (config keys come back at the next start: remove them there)
    GET    /admin/usage             usage, spend and savings by key, model, provider and route (?since=&until=)

Config keys are the config's: they change there, not here. A change reaches this replica at once and
every other within the keys' lookup cache (`Accounts`' `lookup_ttl_s`, 5 s), as a revocation does.

The master key comes from the environment variable `ledger.master_key_env`;
without it there is no admin API (every call is a 401). Errors are OpenAI-shaped.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from orchestrator.accounting.accounts import Accounts
from orchestrator.accounting.book import (
    CreateKey,
    DeleteKey,
    GetKey,
    KeySpend,
    LedgerOwner,
    ListKeys,
    Query,
    RotateKey,
    UpdateKey,
)
from orchestrator.accounting.keys import KeyPolicy, hash_key, new_key, presented, same_hash
from orchestrator.accounting.reports import usage_report
from orchestrator.errors import InvalidApiKey, InvalidRequest, NotFound, OrchestratorError
from orchestrator.frontdoors.openai import parse_body
from orchestrator.protocol import finite_number
from orchestrator.settings import MAX_PARALLEL_REQUESTS, KeySettings


class KeyLimits(BaseModel):
    """A key's limits, as `PATCH /admin/keys/{id}` takes them (the fields given change)."""

    model_config = {"extra": "forbid"}

    # Finite, and within what sqlite's INTEGER and REAL hold: a limit is a number, never inf or NaN.
    budget_usd: float | None = Field(default=None, ge=0, le=1e15, allow_inf_nan=False)
    budget_tokens: int | None = Field(default=None, ge=0, le=2**62)
    period: str = Field(default="month", pattern=r"^(hour|day|week|month|total)$")
    rpm: int | None = Field(default=None, ge=1, le=2**62)
    tpm: int | None = Field(default=None, ge=1, le=2**62)
    parallel_requests: int | None = Field(default=None, ge=1, le=MAX_PARALLEL_REQUESTS)
    models: list[str] | None = None
    soft_limit_usd: float | None = Field(default=None, ge=0, le=1e15, allow_inf_nan=False)
    soft_limit_tokens: int | None = Field(default=None, ge=0, le=2**62)
    downgrade_to: str | None = None


class NewKey(KeyLimits):
    """What `POST /admin/keys` takes: an id and the key's limits (all optional)."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")


class AdminDisabled(OrchestratorError):
    status_code = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


def check_master_key(accounts: Accounts, headers: Mapping[str, str], what: str) -> None:
    """401 unless `headers` present the master key (`what` is disabled without one configured)."""
    if accounts.master_key_sha256 is None:
        raise AdminDisabled(f"{what} is disabled: no master key is configured.")
    key = presented(headers)
    if key is None:
        raise InvalidApiKey(f"{what} needs the master key (Authorization: Bearer ..., or x-api-key).")
    if not same_hash(hash_key(key), accounts.master_key_sha256):
        raise InvalidApiKey("Incorrect master key provided.")


def add_admin_routes(app: FastAPI, accounts: Accounts) -> None:
    admin = AdminApi(accounts)
    app.add_api_route("/admin/keys", admin.create_key, methods=["POST"])
    app.add_api_route("/admin/keys", admin.list_keys, methods=["GET"])
    app.add_api_route("/admin/keys/{key_id}", admin.get_key, methods=["GET"])
    app.add_api_route("/admin/keys/{key_id}", admin.update_key, methods=["PATCH"])
    app.add_api_route("/admin/keys/{key_id}/rotate", admin.rotate_key, methods=["POST"])
    app.add_api_route("/admin/keys/{key_id}", admin.delete_key, methods=["DELETE"])
    app.add_api_route("/admin/usage", admin.usage, methods=["GET"])


class AdminApi:
    """The admin routes over one gateway's accounts; every one needs the master key."""

    def __init__(self, accounts: Accounts):
        self._accounts = accounts

    def _owner(self, request: Request) -> LedgerOwner:
        """The ledger's owner, once the request showed the master key."""
        accounts = self._accounts
        if accounts.owner is None:
            raise AdminDisabled("The admin API is disabled: no master key is configured.")
        check_master_key(accounts, request.headers, "The admin API")
        accounts.flush()  # this replica's settlements first: what it answered counts in what it shows
        return accounts.owner

    def _check_models(self, spec: KeyLimits) -> None:
        named = [(f"models[{i}]", m) for i, m in enumerate(spec.models or [])] + [("downgrade_to", spec.downgrade_to)]
        for field, model in named:
            if model is not None and not self._accounts.serves(model):
                message = f"Invalid value for '{field}': no model '{model[:100]}' is served."  # a long one cut
                raise InvalidRequest(message, param=field, code="invalid_value")

    async def create_key(self, request: Request) -> Response:
        owner = self._owner(request)
        spec = parse_body(await request.body(), NewKey)  # the front doors' JSON parse, naming the field
        self._check_models(spec)
        key = new_key()
        settings = KeySettings(sha256=hash_key(key), **spec.model_dump(exclude={"id"}))
        policy = KeyPolicy.from_settings(spec.id, settings, source="admin", created=time.time())
        made = await owner.call(CreateKey(policy))
        if made == "taken":
            raise InvalidRequest(f"A key with id '{spec.id}' already exists.", param="id", code="key_exists")
        if made == "retired":
            raise InvalidRequest(
                f"A key with id '{spec.id}' existed and was deleted; an id is never given to another key (its "
                "spend, requests and stored responses stay its own). Choose another id.",
                param="id",
                code="key_exists",
            )
        self._accounts.forget(policy.sha256)
        return JSONResponse({**policy.public(), "key": key}, status_code=201)

    async def list_keys(self, request: Request) -> Response:
        listed = await self._owner(request).call(ListKeys())
        data = [{**k.public(), "spend": _spend(s)} for k, s in listed]
        return JSONResponse({"object": "list", "data": data})

    async def get_key(self, key_id: str, request: Request) -> Response:
        found = await self._owner(request).call(GetKey(key_id))
        if found is None:
            raise NotFound(f"No key with id '{key_id}'.", param="id")
        k, spend = found
        return JSONResponse({**k.public(), "spend": _spend(spend)})

    async def update_key(self, key_id: str, request: Request) -> Response:
        owner = self._owner(request)
        spec = parse_body(await request.body(), KeyLimits)
        self._check_models(spec)
        given = spec.model_dump(include=spec.model_fields_set)
        if "models" in given and given["models"] is not None:
            given["models"] = tuple(given["models"])
        updated = _admins_only(key_id, await owner.call(UpdateKey(key_id, tuple(given.items()))), "change")
        self._accounts.forget(updated.sha256)
        return JSONResponse(updated.public())

    async def rotate_key(self, key_id: str, request: Request) -> Response:
        owner = self._owner(request)
        key = new_key()
        rotated = await owner.call(RotateKey(key_id, hash_key(key)))
        if rotated == "taken":  # 256 random bits met another key's: never, but not silently
            raise InvalidRequest("The new key collided with another; rotate again.", code="key_exists")
        updated = _admins_only(key_id, rotated, "rotate")
        self._accounts.forget()  # the old secret, refused here from now
        return JSONResponse({**updated.public(), "key": key})

    async def delete_key(self, key_id: str, request: Request) -> Response:
        if not await self._owner(request).call(DeleteKey(key_id)):
            raise NotFound(f"No key with id '{key_id}'.", param="id")
        self._accounts.forget()
        return JSONResponse({"id": key_id, "object": "key", "deleted": True})

    async def usage(self, request: Request) -> Response:
        owner = self._owner(request)
        since, until = _float(request, "since"), _float(request, "until")
        reference = self._accounts.reference_model
        report: dict[str, Any] = await owner.call(
            Query(functools.partial(usage_report, since=since, until=until, reference_model=reference))
        )
        return JSONResponse(report)


def _admins_only(key_id: str, outcome: KeyPolicy | str, what: str) -> KeyPolicy:
    """The key an update or rotation made, or the error of why not."""
    if isinstance(outcome, KeyPolicy):
        return outcome
    if outcome == "missing":
        raise NotFound(f"No key with id '{key_id}'.", param="id")
    raise InvalidRequest(
        f"The key '{key_id}' is defined in the config (its `keys` section): {what} it there; the admin API "
        "changes the keys it made.",
        param="id",
        code="key_from_config",
    )


def _spend(s: KeySpend) -> dict[str, Any]:
    return {
        "period_start": int(s.period_start),
        "usd": s.spent_usd,
        "tokens": s.spent_tokens,
        "reserved_usd": s.reserved_usd,
        "reserved_tokens": s.reserved_tokens,
    }


def _float(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    value = finite_number(raw)
    if value is None:
        raise InvalidRequest(f"'{name}' must be a Unix time in seconds.", param=name)
    return value
