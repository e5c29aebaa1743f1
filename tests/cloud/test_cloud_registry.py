"""The commitment computed off chain equals what ProfileRegistry holds (ape on anvil)."""

from __future__ import annotations

import time

import ape
import pytest

from offchain.cloud import crypto
from offchain.cloud.profile import parse_profile, verify_revealed
from offchain.cloud.store import PROFILE_SCOPE, AccessDenied, PassphraseUnlock


@pytest.fixture
def profile_registry(project, accounts):
    return project.ProfileRegistry.deploy(sender=accounts[0])


def test_commitment_matches_the_registry(
    profile_registry, accounts, profile_data, profile_store
):
    owner = accounts[21]
    profile_data["investor"] = owner.address
    vault = profile_store.vault(owner.address, PassphraseUnlock("a long passphrase"))
    first = vault.save_profile(profile_data)
    tx = profile_registry.commit_profile(first.commitment, sender=owner)
    event = tx.decode_logs(profile_registry.ProfileCommitted)[0]
    assert bytes(event.commitment) == first.commitment and event.version == 1
    stored = profile_registry.profile_of(owner.address)
    assert bytes(stored.commitment) == first.commitment and stored.version == 1
    # Anyone holding the revealed profile and salt can check it against the chain.
    assert verify_revealed(first.canonical, first.salt, stored.commitment) == parse_profile(
        profile_data)
    profile_data["investable_assets"] = "600000"
    second = vault.save_profile(profile_data)
    profile_registry.commit_profile(second.commitment, sender=owner)
    stored = profile_registry.profile_of(owner.address)
    assert bytes(stored.commitment) == second.commitment and stored.version == 2
    with pytest.raises(Exception, match="commitment"):
        verify_revealed(first.canonical, first.salt, stored.commitment)


def test_grant_follows_the_onchain_consent(
    profile_registry, accounts, chain, profile_data, profile_store
):
    owner = accounts[21]
    grantee = accounts[22]
    grantee_key = grantee.private_key
    profile_data["investor"] = owner.address
    vault = profile_store.vault(owner.address, PassphraseUnlock("a long passphrase"))
    vault.save_profile(profile_data)
    expiry = int(time.time()) + 86_400
    vault.grant(crypto.public_key_of(grantee_key), expiry)
    profile_registry.grant_consent(grantee.address, PROFILE_SCOPE, expiry, sender=owner)

    def consent(investor, who, scope):
        return profile_registry.has_consent(investor, who, scope)

    assert profile_store.open_shared(owner.address, grantee_key, consent=consent).version == 1
    profile_registry.revoke_consent(grantee.address, PROFILE_SCOPE, sender=owner)
    with pytest.raises(AccessDenied, match="on-chain consent"):
        profile_store.open_shared(owner.address, grantee_key, consent=consent)
    with ape.reverts("profileregistry: no consent"):
        profile_registry.revoke_consent(grantee.address, PROFILE_SCOPE, sender=owner)
