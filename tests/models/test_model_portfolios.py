"""Model portfolios: seeded line-up, versioned edits, 20+ malformed models refused, menu."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from offchain.cloud.profile import parse_profile
from offchain.errors import InvalidInput
from offchain.models.menu import account_setup
from offchain.models.portfolios import DEFAULT_MODELS, ModelStore, parse_model
from offchain.optimizer.inputs import Customizations, ModelPortfolio


@pytest.fixture
def model_store(tmp_path) -> ModelStore:
    store = ModelStore(str(tmp_path / "models"))
    store.ensure_seeded()
    return store


@pytest.fixture
def lp3() -> dict[str, Any]:
    return json.loads(DEFAULT_MODELS.read_text())["models"][2]


PROFILE = {
    "investor": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "as_of": "2026-01-01",
    "investable_assets": "500000", "risk": {"capacity": 4, "tolerance": 3, "horizon_years": 20},
    "explicit": {"exclusions": ["structured_products", "alternatives"],
                 "themes": ["green_energy"]},
    "tax": {"account_type": "taxable", "income_rate": "0.35", "long_term_gains_rate": "0.15"},
    "liquidity": {"emergency_reserve": "20000", "max_illiquid_fraction": "0"},
    "service_mode": "discretionary",
}


def test_seeded_line_up_covers_every_category(model_store):
    assert model_store.model_ids() == ["LP-1", "LP-2", "LP-3", "LP-4", "LP-5"]
    for category in range(1, 6):
        model = model_store.for_category(category).model
        optimizer_model = model.to_optimizer()
        assert isinstance(optimizer_model, ModelPortfolio)
        cash = model.asset_class_targets["cash"]
        assert sum(optimizer_model.security_weights.values()) + cash == 1


def test_edits_are_versioned_with_author_and_time(model_store, lp3):
    lp3["asset_class_targets"]["cash"] = "0.03"
    lp3["asset_class_targets"]["us_bonds_aggregate"] = "0.24"
    lp3["securities"]["AGGB"] = "0.24"
    stored = model_store.edit(lp3, "ipc-chair", "raise cash")
    assert stored.version == 2 and stored.author == "ipc-chair"
    history = model_store.history("LP-3")
    assert [v.version for v in history] == [1, 2]
    assert history[0].model.asset_class_targets["cash"] == Decimal("0.02")
    assert model_store.get("LP-3").model.asset_class_targets["cash"] == Decimal("0.03")
    assert history[1].edited_at >= history[0].edited_at


def _mutate(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(document))
    node = out
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[part]
    if value is _DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return out


_DELETE = object()

MALFORMED_MODELS = [
    ("model_id", "lp 3", "model.model_id", "pattern"),
    ("name", "", "model.name", "at least 1 character"),
    ("risk_category", 6, "model.risk_category", "less than or equal to 5"),
    ("risk_category", 0, "model.risk_category", "greater than or equal to 1"),
    ("securities.XXXX", "0.01", "model.securities.XXXX", "fund symbol of the demo universe"),
    ("securities.USDL", "0.02", "model.securities.USDL", "fund symbol of the demo universe"),
    ("securities.LCAP", "0", "model.securities.LCAP", "weight in (0, 1]"),
    ("securities.LCAP", "0.3", "model.asset_class_targets.us_equity_large",
     "securities summing to the target"),
    ("securities.BALX", "0.01", "model.securities.BALX", "asset class with a target"),
    ("asset_class_targets.cash", "0.5", "model.asset_class_targets", "summing to 1"),
    ("asset_class_targets.gold", "0", "model.asset_class_targets.gold",
     "asset class of the universe"),
    ("asset_class_targets.cash", "-0.02", "model.asset_class_targets.cash", "between 0 and 1"),
    ("approved", ["LCAP"], "model.securities.AGGB", "approved product"),
    ("approved", ["LCAP", "AGGB", "TIPS", "MUNI", "HYLD", "SCAP", "DIVI", "DXUS", "EMEQ",
                  "REIT", "PEQ", "PCRD", "ZZZ"], "model.approved", "fund symbols"),
    ("drift_bands.cash", _DELETE, "model.drift_bands.cash", "band for every targeted class"),
    ("drift_bands.cash", "0", "model.drift_bands.cash", "band in (0, 0.25]"),
    ("drift_bands.real_estate", "0.01", "model.drift_bands.real_estate", "class that has a target"),
    ("compliance.max_position_weight", "0.2", "model.securities.AGGB",
     "at most compliance.max_position_weight"),
    ("compliance.max_alternatives", "0.01", "model.securities", "alternatives at most"),
    ("compliance.max_issuer_weight", "0.3", "model.securities", "max_issuer_weight"),
    ("compliance.min_cash", "0.05", "model.asset_class_targets.cash", "at least compliance.min"),
    ("compliance.max_position_weight", "1.5", "model.compliance.max_position_weight",
     "less than or equal to 1"),
    ("compliance", _DELETE, "model.compliance", "Field required"),
    ("owner", "me", "model.owner", "Extra inputs"),
]


@pytest.mark.parametrize(("path", "value", "field", "expected"), MALFORMED_MODELS,
                         ids=[f"{m[0]}={m[1]!r}"[:40] for m in MALFORMED_MODELS])
def test_malformed_model_is_refused_and_nothing_written(
    path, value, field, expected, lp3, model_store
):
    document = _mutate(lp3, path, value)
    with pytest.raises(InvalidInput) as error:
        parse_model(document)
    assert error.value.field == field
    assert expected.lower() in error.value.expected.lower()
    before = {m: model_store.versions(m) for m in model_store.model_ids()}
    with pytest.raises(InvalidInput):
        model_store.edit(document, "ipc-chair")
    assert {m: model_store.versions(m) for m in model_store.model_ids()} == before


def test_edit_without_author_is_refused(model_store, lp3):
    with pytest.raises(InvalidInput, match="author"):
        model_store.edit(lp3, "  ")
    assert model_store.versions("LP-3") == [1]


def test_menu_maps_a_profile_to_the_optimizer_types(model_store):
    setup = account_setup(parse_profile(PROFILE), model_store)
    assert setup.risk_category == 3 and setup.model.model_id == "LP-3"
    assert isinstance(setup.customizations, Customizations)
    custom = setup.customizations
    assert {"PEQ", "PCRD", "PRE", "INFR"} <= custom.never_buy
    assert [s.attribute for s in custom.screens] == ["structured"]
    assert custom.substitutions == {"SCAP": "CLEN", "AGGB": "MUNI"}
    assert {"CLEN", "MUNI"} <= setup.model.approved
    assert custom.min_cash == Decimal("20000")
    assert custom.tax.short_term_rate == pytest.approx(0.35)


def test_menu_caps_by_capacity_and_learned_risk(model_store):
    learned = {**PROFILE, "implicit": {"risk_aversion": "1.2", "risk_aversion_low": "0.9",
                                       "risk_aversion_high": "1.6", "observations": 8}}
    assert account_setup(parse_profile(learned), model_store).risk_category == 4
    cautious = {**learned, "risk": {"capacity": 2, "tolerance": 5, "horizon_years": 20}}
    setup = account_setup(parse_profile(cautious), model_store)
    assert setup.risk_category == 2 and "capped by risk capacity 2" in setup.reasons
