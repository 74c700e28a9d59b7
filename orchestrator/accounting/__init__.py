"""Accounting: who may ask, what it may spend, what it cost, and what the local GPU saved.

A sub-package because it is a family that grew past a handful of modules. The
flow and the edge call it through one facade, the request's `Tab` (and the
`Accounts` behind it): authenticate, hold, admit, record; everything else is inside.

    accounts.py      the facade: `Accounts` (keys, admission, settlement, request log, metrics) and `Tab`
    keys.py          virtual keys: format, hashing, per-key policy
    book.py          the ledger's book on sqlite (keys, spend, reservations, windows) and its commands
    actor.py         the book's single owner for every replica: a named Ray actor
    prices.py        prices per provider and model, and one `UsageRecord` per answer
    local_prices.py  the local model's amortized price from its measured throughput
    reports.py       the usage and savings report
    metrics.py       Prometheus metrics
    admin.py         the admin API (keys, usage)
    cli.py           `orchestrator report` and `orchestrator hash-key`
    setup.py         building `Accounts` from settings
    bounded.py       a map bounded by size and age (every per-client map)
    places.py        a key's share of a replica's places (its requests in progress, its open sockets)
"""

from orchestrator.accounting.accounts import Accounts, Tab

__all__ = ["Accounts", "Tab"]
