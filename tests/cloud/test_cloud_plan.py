"""Wealth plan: allocation rules, glide paths, recomputation; malformed plans refused."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from offchain.cloud.plan import build_plan, explain_change, load_cma, parse_cma, parse_plan
from offchain.cloud.profile import parse_profile
from offchain.errors import InvalidInput


@pytest.fixture(scope="module")
def base_plan():
    from cloud_samples import VALID_PROFILE

    return build_plan(parse_profile(VALID_PROFILE))


def test_cma_has_a_source_for_every_figure_and_a_valid_correlation():
    cma = load_cma()
    for assumption in cma.asset_classes.values():
        assert cma.sources[assumption.source]
    assert np.linalg.eigvalsh(cma.correlation()).min() > 0


def test_plan_respects_the_profile(base_plan):
    cma = load_cma()
    assert sum(base_plan.allocation.values()) == 1
    illiquid = sum(w for n, w in base_plan.allocation.items() if cma.asset_classes[n].illiquid)
    assert illiquid <= Decimal("0.15")
    assert base_plan.allocation["cash"] >= Decimal("0.04")
    assert [g.goal for g in base_plan.goals] == ["retire", "house"]
    house = base_plan.goals[1].glide_path
    assert house[0].equity >= house[-1].equity and house[-1].alternatives == 0
    assert parse_plan(base_plan.model_dump(mode="json", by_alias=True)) == base_plan


def test_plan_is_recomputed_and_explained_when_the_profile_changes(profile_data, base_plan):
    old_profile = parse_profile(profile_data)
    profile_data["implicit"] = {"risk_aversion": "12", "risk_aversion_low": "9",
                                "risk_aversion_high": "15", "observations": 9}
    profile_data["explicit"]["exclusions"] = ["alternatives"]
    profile_data["liquidity"]["max_illiquid_fraction"] = "0"
    new_profile = parse_profile(profile_data)
    new_plan = build_plan(new_profile)
    assert new_plan.groups()["equity"] < base_plan.groups()["equity"]
    assert new_plan.groups()["alternatives"] == 0
    lines = explain_change(base_plan, new_plan, old_profile, new_profile)
    assert any("Risk aversion moved from 4.00 (questionnaire) to 12.00" in x for x in lines)
    assert any("learned from 9" in x for x in new_plan.explanation)


def _mutate(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(document))
    node = out
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    key: Any = int(parts[-1]) if parts[-1].isdigit() else parts[-1]
    node[key] = value
    return out


MALFORMED_PLANS = [
    ("schema", "lightpool.plan/0", "plan.schema", "schema id"),
    ("investor", 42, "plan.investor", "string"),
    ("profile_as_of", "yesterday", "plan.profile_as_of", "date"),
    ("risk_aversion", "0", "plan.risk_aversion", "greater than 0"),
    ("risk_aversion", "500", "plan.risk_aversion", "less than or equal to 100"),
    ("risk_aversion_source", "guess", "plan.risk_aversion_source", "learned"),
    ("illiquid_cap", "1.5", "plan.illiquid_cap", "less than or equal to 1"),
    ("cash_floor", "-0.1", "plan.cash_floor", "greater than or equal to 0"),
    ("allocation", {}, "plan.allocation", "at least 1 item"),
    ("allocation.crypto", "0.1", "plan.allocation.crypto", "asset class of the CMA"),
    ("allocation.cash", "0.9", "plan.allocation", "summing to 1"),
    ("allocation.cash", "-0.2", "plan.allocation.cash", "between 0 and 1"),
    ("cash_floor", "0.5", "plan.allocation.cash", "at least cash_floor"),
    ("illiquid_cap", "0", "plan.allocation", "alternatives at most illiquid_cap"),
    ("expected_return", "2", "plan.expected_return", "less than or equal to 1"),
    ("volatility", "-0.01", "plan.volatility", "greater than or equal to 0"),
    ("explanation", [], "plan.explanation", "at least 1 item"),
    ("goals.0.goal", "", "plan.goals[0].goal", "at least 1 character"),
    ("goals.0.amount", "0", "plan.goals[0].amount", "greater than 0"),
    ("goals.0.funding_probability", "1.2", "plan.goals[0].funding_probability",
     "less than or equal to 1"),
    ("goals.0.glide_path", [], "plan.goals[0].glide_path", "at least 1 item"),
    ("goals.0.glide_path.0.years_to_goal", -1, "plan.goals[0].glide_path[0].years_to_goal",
     "greater than or equal to 0"),
    ("goals.0.glide_path.1.years_to_goal", 99, "plan.goals[0].glide_path[1].years_to_goal",
     "less than or equal to 80"),
    ("goals.0.glide_path.1.years_to_goal", 20, "plan.goals[0].glide_path", "strictly decreasing"),
    ("goals.0.glide_path.0.equity", "0.9", "plan.goals[0].glide_path[0]", "summing to 1"),
    ("goals.1.goal", "retire", "plan.goals", "unique goal names"),
    ("surprise", True, "plan.surprise", "Extra inputs"),
]


@pytest.mark.parametrize(("path", "value", "field", "expected"), MALFORMED_PLANS,
                         ids=[f"{m[0]}={m[1]!r}"[:40] for m in MALFORMED_PLANS])
def test_malformed_plan_is_refused_and_nothing_written(
    path, value, field, expected, base_plan, profile_store, owner_unlock
):
    from offchain.cloud.plan import store_plan

    document = _mutate(base_plan.model_dump(mode="json", by_alias=True), path, value)
    with pytest.raises(InvalidInput) as error:
        parse_plan(document)
    assert error.value.field == field
    assert expected.lower() in error.value.expected.lower()
    vault = profile_store.vault(base_plan.investor, owner_unlock)
    with pytest.raises(InvalidInput):
        store_plan(vault, document)
    assert vault.versions("plan") == []
    assert not profile_store.fs.exists(profile_store.root)


def test_valid_plan_is_stored_encrypted(base_plan, profile_store, owner_unlock):
    from offchain.cloud.plan import store_plan

    vault = profile_store.vault(base_plan.investor, owner_unlock)
    assert store_plan(vault, base_plan.model_dump(mode="json", by_alias=True)) == 1
    assert parse_plan(vault.load_document("plan")) == base_plan


MALFORMED_CMA = [
    ("schema", "lightpool.cma/9", "cma.schema", "lightpool.cma/1"),
    ("asset_classes.cash.volatility", "-1", "cma.asset_classes.cash.volatility",
     "greater than or equal to 0"),
    ("asset_classes.cash.group", "crypto", "cma.asset_classes.cash.group", "one of"),
    ("asset_classes.cash.source", "blog", "cma.asset_classes.cash.source", "a key of sources"),
    ("asset_classes.private_equity.expected_return", "0.9",
     "cma.asset_classes.private_equity.expected_return", "less than or equal to 0.3"),
    ("correlation_model.loadings.cash", ["0.9", "0.9", "0", "0", "0"],
     "cma.correlation_model.loadings.cash", "sum of squares below 1"),
    ("correlation_model.loadings.cash", ["0"], "cma.correlation_model.loadings.cash",
     "5 loadings"),
]


@pytest.mark.parametrize(("path", "value", "field", "expected"), MALFORMED_CMA,
                         ids=[m[0] for m in MALFORMED_CMA])
def test_malformed_capital_market_assumptions_are_refused(path, value, field, expected):
    from offchain.cloud.plan import CMA_FILE

    document = _mutate(json.loads(CMA_FILE.read_text()), path, value)
    with pytest.raises(InvalidInput) as error:
        parse_cma(document)
    assert error.value.field == field
    assert expected.lower() in error.value.expected.lower()
