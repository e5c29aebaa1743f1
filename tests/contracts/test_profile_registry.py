"""ProfileRegistry: one test that each external function works, one that it refuses."""

from __future__ import annotations

import ape
import pytest
from eth_utils import keccak

from offchain.universe import DAY

ADVISORY, DISCRETIONARY = 1, 2
WAD = 10**18
SCOPE = keccak(b"profile")


def test_commit_profile_versions(registry, investor, chain):
    first = keccak(b"profile v1" + b"salt")
    tx = registry.commit_profile(first, sender=investor)
    [log] = tx.decode_logs(registry.ProfileCommitted)
    assert log.investor == investor and log.commitment == first and log.version == 1
    second = keccak(b"profile v2" + b"salt")
    registry.commit_profile(second, sender=investor)
    stored = registry.profile_of(investor)
    assert stored.commitment == second and stored.version == 2
    assert stored.updated_at == chain.blocks.head.timestamp


def test_commit_profile_refuses_empty(registry, investor):
    with ape.reverts("profileregistry: empty commitment"):
        registry.commit_profile(b"\x00" * 32, sender=investor)


def test_only_the_investor_writes_their_commitment(registry, investor, investor2):
    registry.commit_profile(keccak(b"mine"), sender=investor)
    registry.commit_profile(keccak(b"theirs"), sender=investor2)
    assert registry.profile_of(investor).commitment == keccak(b"mine")


def test_set_attester(registry, admin, accounts):
    tx = registry.set_attester(accounts[20], True, sender=admin)
    assert registry.is_attester(accounts[20])
    assert tx.decode_logs(registry.AttesterSet)[0].allowed


def test_set_attester_admin_only(registry, investor):
    with ape.reverts("ownable: caller is not the owner"):
        registry.set_attester(investor, True, sender=investor)


def test_attest_and_is_verified(registry, attester, investor, chain):
    expiry = chain.pending_timestamp + 30 * DAY
    tx = registry.attest(investor, 250, expiry, sender=attester)
    [log] = tx.decode_logs(registry.IdentityAttested)
    assert log.investor == investor and log.jurisdiction == 250 and log.expiry == expiry
    assert registry.is_verified(investor)
    assert registry.jurisdiction_of(investor) == 250
    chain.pending_timestamp = expiry + 1
    chain.mine()
    assert not registry.is_verified(investor)
    assert registry.jurisdiction_of(investor) == 0


def test_attest_refuses(registry, attester, investor, outsider, chain):
    future = chain.pending_timestamp + DAY
    with ape.reverts("profileregistry: not an attester"):
        registry.attest(investor, 840, future, sender=outsider)
    with ape.reverts("profileregistry: bad jurisdiction"):
        registry.attest(investor, 0, future, sender=attester)
    with ape.reverts("profileregistry: bad jurisdiction"):
        registry.attest(investor, 1000, future, sender=attester)
    with ape.reverts("profileregistry: expiry in the past"):
        registry.attest(investor, 840, chain.pending_timestamp - 1, sender=attester)


def test_removed_attester_stops_counting(registry, admin, attester, investor, verify):
    verify(investor)
    registry.set_attester(attester, False, sender=admin)
    assert not registry.is_verified(investor)


def test_revoke_attestation(registry, attester, admin, investor, investor2, verify):
    verify(investor)
    verify(investor2)
    tx = registry.revoke_attestation(investor, sender=attester)
    assert tx.decode_logs(registry.AttestationRevoked)[0].by == attester
    assert not registry.is_verified(investor)
    registry.revoke_attestation(investor2, sender=admin)
    assert not registry.is_verified(investor2)


def test_revoke_attestation_refuses(registry, investor, investor2, verify):
    with ape.reverts("profileregistry: no attestation"):
        registry.revoke_attestation(investor, sender=investor)
    verify(investor)
    with ape.reverts("profileregistry: access is denied"):
        registry.revoke_attestation(investor, sender=investor2)


@pytest.fixture
def tokens(accounts):
    return [accounts[27].address, accounts[28].address]


def test_grant_mandate(registry, investor, keeper, tokens, chain, outsider):
    expiry = chain.pending_timestamp + 90 * DAY
    tx = registry.grant_mandate(keeper, DISCRETIONARY, tokens, 50_000 * WAD, 30 * DAY, 200,
                                1_200 * WAD, expiry, sender=investor)
    [log] = tx.decode_logs(registry.MandateGranted)
    assert log.keeper == keeper and log.mode == DISCRETIONARY and log.annual_fee == 1_200 * WAD
    mandate = registry.mandate_of(investor, keeper)
    assert mandate.max_turnover == 50_000 * WAD and mandate.max_deviation_bps == 200
    assert registry.is_mandate_active(investor, keeper)
    assert registry.is_instrument_allowed(investor, keeper, tokens[0])
    assert not registry.is_instrument_allowed(investor, keeper, outsider)


def test_regrant_drops_old_instruments(registry, investor, keeper, tokens, chain):
    expiry = chain.pending_timestamp + DAY
    registry.grant_mandate(keeper, ADVISORY, tokens, 0, DAY, 100, 0, expiry, sender=investor)
    registry.grant_mandate(keeper, ADVISORY, tokens[1:], 0, DAY, 100, 0, expiry, sender=investor)
    assert not registry.is_instrument_allowed(investor, keeper, tokens[0])
    assert registry.is_instrument_allowed(investor, keeper, tokens[1])


@pytest.mark.parametrize(
    "change,message",
    [
        ({"mode": 3}, "profileregistry: bad mode"),
        ({"mode": 0}, "profileregistry: bad mode"),
        ({"instruments": []}, "profileregistry: no instruments"),
        ({"period": 0}, "profileregistry: zero turnover period"),
        ({"deviation": 10_001}, "profileregistry: deviation above 100%"),
        ({"expiry": 0}, "profileregistry: expiry in the past"),
        ({"keeper": "self"}, "profileregistry: bad keeper"),
    ],
)
def test_grant_mandate_refuses(registry, investor, keeper, tokens, chain, change, message):
    args = {"keeper": keeper, "mode": DISCRETIONARY, "instruments": tokens, "period": DAY,
            "deviation": 100, "expiry": chain.pending_timestamp + DAY} | change
    if args["keeper"] == "self":
        args["keeper"] = investor
    with ape.reverts(message):
        registry.grant_mandate(args["keeper"], args["mode"], args["instruments"], 0,
                               args["period"], args["deviation"], 0, args["expiry"],
                               sender=investor)


def test_revoke_mandate_is_instant(registry, investor, keeper, tokens, chain):
    registry.grant_mandate(keeper, DISCRETIONARY, tokens, 0, DAY, 100, 0,
                           chain.pending_timestamp + DAY, sender=investor)
    tx = registry.revoke_mandate(keeper, sender=investor)
    assert tx.decode_logs(registry.MandateRevoked)[0].keeper == keeper
    assert not registry.is_mandate_active(investor, keeper)
    assert not registry.is_instrument_allowed(investor, keeper, tokens[0])


def test_revoke_mandate_refuses_when_none(registry, investor, keeper):
    with ape.reverts("profileregistry: no mandate"):
        registry.revoke_mandate(keeper, sender=investor)


def test_mandate_expires(registry, investor, keeper, tokens, chain):
    expiry = chain.pending_timestamp + DAY
    registry.grant_mandate(keeper, DISCRETIONARY, tokens, 0, DAY, 100, 0, expiry,
                           sender=investor)
    chain.pending_timestamp = expiry + 1
    chain.mine()
    assert not registry.is_mandate_active(investor, keeper)
    assert not registry.is_instrument_allowed(investor, keeper, tokens[0])


def test_grant_and_revoke_consent(registry, investor, keeper, chain):
    expiry = chain.pending_timestamp + DAY
    tx = registry.grant_consent(keeper, SCOPE, expiry, sender=investor)
    [log] = tx.decode_logs(registry.ConsentGranted)
    assert log.grantee == keeper and log.scope == SCOPE and log.expiry == expiry
    assert registry.has_consent(investor, keeper, SCOPE)
    assert not registry.has_consent(investor, keeper, keccak(b"tax"))
    tx = registry.revoke_consent(keeper, SCOPE, sender=investor)
    assert tx.decode_logs(registry.ConsentRevoked)[0].grantee == keeper
    assert not registry.has_consent(investor, keeper, SCOPE)


def test_consent_refuses(registry, investor, keeper, chain):
    future = chain.pending_timestamp + DAY
    with ape.reverts("profileregistry: bad grantee"):
        registry.grant_consent(investor, SCOPE, future, sender=investor)
    with ape.reverts("profileregistry: empty scope"):
        registry.grant_consent(keeper, b"\x00" * 32, future, sender=investor)
    with ape.reverts("profileregistry: expiry in the past"):
        registry.grant_consent(keeper, SCOPE, 1, sender=investor)
    with ape.reverts("profileregistry: no consent"):
        registry.revoke_consent(keeper, SCOPE, sender=investor)
