"""``lightpool optimize`` on a JSON file of accounts."""

from __future__ import annotations

import json

from click.testing import CliRunner
from optimizer_helpers import at_model, make_account, make_market, make_model

from offchain.optimizer.cli import optimize


def _write(tmp_path, accounts):
    data = {"model": json.loads(make_model().model_dump_json()),
            "market": json.loads(make_market().model_dump_json()),
            "accounts": [json.loads(a.model_dump_json()) for a in accounts],
            "as_of": "2026-11-20"}
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps(data))
    return path


def test_optimize_prints_proposals_and_writes_json(tmp_path):
    drifted = make_account({"USA": [("600", "80", 800)]}, cash="30000", account_id="drifted")
    bad = make_account({"XYZ": [("1", "1", 1)]}, account_id="bad")
    path = _write(tmp_path, [at_model(), drifted, bad])
    out = tmp_path / "result.json"
    result = CliRunner().invoke(optimize, ["--accounts", str(path), "--trades",
                                           "--json-out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "drifted" in result.output and "Skipped accounts" in result.output
    saved = json.loads(out.read_text())
    assert {p["account_id"] for p in saved["proposals"]} == {"acct-1", "drifted"}
    assert saved["errors"][0]["account_id"] == "bad"
    by_id = {p["account_id"]: p for p in saved["proposals"]}
    assert by_id["acct-1"]["trades"] == [] and by_id["drifted"]["trades"]


def test_optimize_refuses_invalid_input(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"model": {"model_id": ""}, "market": {}, "accounts": []}))
    result = CliRunner().invoke(optimize, ["--accounts", str(path)])
    assert result.exit_code != 0
    assert "invalid input" in result.output
