"""Profile model, canonical serialization, commitment; malformed profiles are refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from eth_utils import keccak

from offchain.cloud.profile import (
    canonical_bytes,
    commitment,
    new_salt,
    parse_profile,
    verify_revealed,
)
from offchain.errors import InvalidInput


def test_round_trip_through_canonical_bytes(profile_data):
    profile = parse_profile(profile_data)
    again = parse_profile(canonical_bytes(profile))
    assert again == profile
    assert canonical_bytes(again) == canonical_bytes(profile)


def test_canonical_form_is_sorted_compact_and_float_free(profile_data):
    text = canonical_bytes(parse_profile(profile_data)).decode()
    assert " " not in text.replace("retire", "")
    assert json.loads(text) == json.loads(json.dumps(json.loads(text), sort_keys=True))
    assert '"investable_assets":"500000"' in text
    assert '"max_illiquid_fraction":"0.15"' in text


def test_equivalent_documents_have_the_same_bytes(profile_data):
    variant = json.loads(json.dumps(profile_data))
    variant["investable_assets"] = "500000.000"
    variant["investor"] = variant["investor"].lower()
    variant["explicit"]["themes"] = ["green_energy", "green_energy"]
    variant["tax"]["income_rate"] = 0.32
    assert canonical_bytes(parse_profile(variant)) == canonical_bytes(parse_profile(profile_data))


def test_commitment_is_keccak_of_canonical_and_salt(profile_data):
    profile = parse_profile(profile_data)
    salt = new_salt()
    assert commitment(profile, salt) == keccak(canonical_bytes(profile) + salt)
    assert commitment(profile, salt) != commitment(profile, new_salt())


def test_verify_revealed_refuses_other_salt_and_non_canonical_bytes(profile_data):
    profile = parse_profile(profile_data)
    salt = new_salt()
    onchain = commitment(profile, salt)
    assert verify_revealed(canonical_bytes(profile), salt, onchain) == profile
    with pytest.raises(InvalidInput, match="commitment"):
        verify_revealed(canonical_bytes(profile), new_salt(), onchain)
    pretty = json.dumps(json.loads(canonical_bytes(profile)), indent=1).encode()
    with pytest.raises(InvalidInput, match="canonical"):
        verify_revealed(pretty, salt, onchain)


def _set(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    document = json.loads(json.dumps(base))
    node: Any = document
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if value is _DELETE:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return document


_DELETE = object()

MALFORMED = [
    ("schema", "lightpool.profile/2", "profile.schema", "schema id"),
    ("investor", "0x1234", "profile.investor", "20-byte hex address"),
    ("investor", _DELETE, "profile.investor", "Field required"),
    ("as_of", "2026-13-01", "profile.as_of", "date"),
    ("investable_assets", "-1", "profile.investable_assets", "greater than or equal to 0"),
    ("investable_assets", "abc", "profile.investable_assets", "decimal"),
    ("risk.capacity", 0, "profile.risk.capacity", "greater than or equal to 1"),
    ("risk.tolerance", 6, "profile.risk.tolerance", "less than or equal to 5"),
    ("risk.horizon_years", 0, "profile.risk.horizon_years", "greater than or equal to 1"),
    ("goals.0.amount", "0", "profile.goals[0].amount", "positive USD amount"),
    ("goals.0.target_date", "2020-01-01", "profile.goals[0].target_date", "after as_of"),
    ("goals.0.priority", "urgent", "profile.goals[0].priority", "essential"),
    ("goals.1.name", "retire", "profile.goals", "unique"),
    ("goals.0.name", "", "profile.goals[0].name", "at least 1 character"),
    ("explicit.exclusions", ["crypto"], "profile.explicit.exclusions[0]", "structured_products"),
    ("explicit.themes", ["space"], "profile.explicit.themes[0]", "green_energy"),
    ("tax.account_type", "offshore", "profile.tax.account_type", "taxable"),
    ("tax.income_rate", "0.9", "profile.tax.income_rate", "between 0 and 0.6"),
    ("tax.long_term_gains_rate", "1.5", "profile.tax.long_term_gains_rate", "less than"),
    ("liquidity.max_illiquid_fraction", "1.2", "profile.liquidity.max_illiquid_fraction",
     "less than or equal to 1"),
    ("liquidity.emergency_reserve", "900000", "profile.liquidity.emergency_reserve",
     "at most investable_assets"),
    ("service_mode", "robo", "profile.service_mode", "advisory"),
    ("nickname", "Bob", "profile.nickname", "Extra inputs"),
    ("implicit", {"risk_aversion": "3", "risk_aversion_low": "4", "risk_aversion_high": "5",
                  "observations": 3}, "profile.implicit", "risk_aversion_low <= risk_aversion"),
    ("explicit.exclusions", ["alternatives"], "profile.liquidity.max_illiquid_fraction",
     "0 when alternatives are excluded"),
]


@pytest.mark.parametrize(("path", "value", "field", "expected"), MALFORMED,
                         ids=[f"{m[0]}={m[1]!r}"[:40] for m in MALFORMED])
def test_malformed_profile_is_refused_and_nothing_written(
    path, value, field, expected, profile_data, profile_store, owner_unlock
):
    document = _set(profile_data, path, value)
    with pytest.raises(InvalidInput) as error:
        parse_profile(document)
    assert error.value.field == field
    assert expected.lower() in error.value.expected.lower()
    vault = profile_store.vault(profile_data["investor"], owner_unlock)
    with pytest.raises(InvalidInput):
        vault.save_profile(document)
    assert not profile_store.fs.exists(profile_store.root)


def test_malformed_json_text_is_refused():
    with pytest.raises(InvalidInput, match="profile: expected a JSON object"):
        parse_profile(b"{not json")
