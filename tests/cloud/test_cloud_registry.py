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


def test_cli_commit_and_verify(profile_registry, accounts, chain, tmp_path, monkeypatch,
                               profile_data):
    import json

    from click.testing import CliRunner

    from offchain.cloud.cli import profile

    owner = accounts[21]
    deployments = tmp_path / "deployments.json"
    deployments.write_text(json.dumps({
        "chain_id": chain.chain_id, "genesis_hash": "0x" + "00" * 32, "block": 0,
        "contracts": {"ProfileRegistry": profile_registry.address}, "tokens": {},
    }))
    monkeypatch.setenv("LIGHTPOOL_RPC_URL", chain.provider.uri)
    monkeypatch.setenv("LIGHTPOOL_DEPLOYMENTS_FILE", str(deployments))
    monkeypatch.setenv("LIGHTPOOL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LIGHTPOOL_PRIVATE_KEY", "0x" + bytes.fromhex(
        owner.private_key.removeprefix("0x")).hex())
    profile_data["investor"] = owner.address
    source = tmp_path / "profile.json"
    source.write_text(json.dumps(profile_data))
    runner = CliRunner()
    assert runner.invoke(profile, ["new", str(source)]).exit_code == 0
    result = runner.invoke(profile, ["commit"])
    assert result.exit_code == 0, result.output
    assert "on-chain version 1" in result.output
    revealed = tmp_path / "revealed.json"
    assert runner.invoke(profile, ["show", "--reveal", str(revealed)]).exit_code == 0
    result = runner.invoke(profile, ["verify", str(revealed), "--investor", owner.address])
    assert result.exit_code == 0, result.output
    assert "verified" in result.output
    body = json.loads(revealed.read_text())
    body["salt"] = "0x" + "11" * 32
    revealed.write_text(json.dumps(body))
    result = runner.invoke(profile, ["verify", str(revealed), "--investor", owner.address])
    assert result.exit_code != 0 and "on-chain commitment" in result.output
