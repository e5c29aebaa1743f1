"""The CLI end to end on a local store (chain commands are covered by the registry test)."""

from __future__ import annotations

import json

from click.testing import CliRunner
from cloud_samples import OWNER_KEY  # noqa: I001 - tests/cloud is on sys.path

from offchain.cloud.cli import plan, profile
from offchain.models.cli import models


def test_profile_new_show_plan_and_models(tmp_path, profile_data, monkeypatch):
    monkeypatch.setenv("LIGHTPOOL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LIGHTPOOL_PRIVATE_KEY", OWNER_KEY)
    source = tmp_path / "profile.json"
    source.write_text(json.dumps(profile_data))
    runner = CliRunner()
    result = runner.invoke(profile, ["new", str(source)])
    assert result.exit_code == 0, result.output
    assert "stored profile v1" in result.output
    revealed = tmp_path / "revealed.json"
    result = runner.invoke(profile, ["show", "--reveal", str(revealed)])
    assert result.exit_code == 0 and "commitment" in result.output
    assert json.loads(revealed.read_text())["salt"].startswith("0x")
    result = runner.invoke(plan, ["--save"])
    assert result.exit_code == 0 and "glide path: retire" in result.output
    result = runner.invoke(models, ["menu", str(source)])
    assert result.exit_code == 0 and "model LP-3" in result.output
    profile_data["risk"]["tolerance"] = 9
    source.write_text(json.dumps(profile_data))
    result = runner.invoke(profile, ["new", str(source)])
    assert result.exit_code != 0
    assert "profile.risk.tolerance: expected less than or equal to 5" in result.output
