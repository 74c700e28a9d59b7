"""`orchestrator hash-key` and `orchestrator report`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml

from orchestrator.accounting.book import Book, Settle
from orchestrator.accounting.keys import hash_key
from orchestrator.cli import main
from orchestrator.settings import KeySettings


def test_hash_key_prints_config_and_shows_the_key_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hash-key", "team-a"]) == 0
    out, err = capsys.readouterr()
    key = err.split(": ")[-1].strip()
    entry = yaml.safe_load(out)["keys"]["team-a"]
    assert KeySettings(**entry).sha256 == hash_key(key) and key not in out


def test_report_reads_the_ledger_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    ledger = tmp_path / "ledger.sqlite"
    paid = "providers:\n  paid:\n    base_url: http://127.0.0.1:9/v1\n    api_key_env: PAID_KEY\n"
    paid += "    models: {ref: {id: ref}}\n"
    config.write_text(f"ledger:\n  path: {ledger}\n  reference_model: paid/ref\n{paid}models: {{}}\n")
    assert main(["report", "--config", str(config)]) == 1  # nothing recorded yet
    book = Book(ledger)
    for cost, reference in ((0.5, 1.0), (0.0, 0.25)):
        row = {"ts": 1000.0, "key_id": "a", "status": 200, "provider": "p", "route": "remote"}
        book.settle(Settle(None, {**row, "cost_usd": cost, "reference_usd": reference}))
    book.close()
    capsys.readouterr()
    assert main(["report", "--config", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["savings"]["saved_usd"] == pytest.approx(0.75) and report["by_key"]["a"]["requests"] == 2
    assert main(["report", "--config", str(config), "--since", "1h"]) == 0
    assert "saved $0.000000" in capsys.readouterr().out  # nothing in the last hour


@pytest.mark.parametrize("when", ["abc", "nan", "inf", "1e400h", "5x"])
def test_a_time_report_cant_read_is_a_usage_error(when: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each was a traceback (ValueError, OverflowError) after the ledger was opened."""
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--since", when])
    assert exit_.value.code == 2 and "argument --since" in capsys.readouterr().err


def test_report_takes_dates_and_refuses_a_file_that_is_no_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.accounting.cli import parse_when

    assert parse_when("2026-11-30", 0.0) == 1795996800.0 == parse_when("2026-11-30T01:00+01:00", 0.0)
    ledger = tmp_path / "other.sqlite"
    sqlite3.connect(ledger).execute("create table t (x)").connection.commit()
    config = tmp_path / "config.yaml"
    config.write_text(f"ledger:\n  path: {ledger}\n")
    assert main(["report", "--config", str(config), "--since", "2026-11-30"]) == 1
    assert "is not a usage ledger" in capsys.readouterr().err


@pytest.mark.parametrize("key_id", ["", "a b", "x" * 65])
def test_hash_key_refuses_an_id_the_config_cant_hold(key_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["hash-key", key_id])
    assert exit_.value.code == 2 and "argument id" in capsys.readouterr().err
