"""Encrypted store: round trips, deterministic wallet key, errors, grants and revocation."""

from __future__ import annotations

import json
import time

import pytest
from cloud_samples import GRANTEE_KEY, OTHER_KEY  # noqa: I001 - tests/cloud is on sys.path

from offchain.cloud import crypto
from offchain.cloud.store import (
    AccessDenied,
    PassphraseUnlock,
    ProfileStore,
    WalletUnlock,
    WrongKey,
)


def test_wallet_round_trip_and_every_version_kept(profile_store, profile_data, owner_unlock):
    vault = profile_store.vault(profile_data["investor"], owner_unlock)
    first = vault.save_profile(profile_data)
    profile_data["investable_assets"] = "650000"
    second = vault.save_profile(profile_data)
    assert vault.versions() == [1, 2]
    # A new session with the same wallet re-derives the same key.
    reopened = profile_store.vault(profile_data["investor"], WalletUnlock.from_private_key(
        "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"))
    assert reopened.load_profile(1).profile == first.profile
    assert reopened.load_profile().profile == second.profile
    assert reopened.load_profile(1).commitment == first.commitment
    assert str(reopened.load_profile().profile.investable_assets) == "650000"


def test_unlock_signature_is_deterministic(owner_unlock):
    again = WalletUnlock.from_private_key(
        "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
    assert again.signature == owner_unlock.signature


def test_passphrase_round_trip_and_wrong_passphrase(profile_store, profile_data):
    vault = profile_store.vault(profile_data["investor"], PassphraseUnlock("correct horse"))
    saved = vault.save_profile(profile_data)
    again = profile_store.vault(profile_data["investor"], PassphraseUnlock("correct horse"))
    assert again.load_profile().profile == saved.profile
    with pytest.raises(WrongKey, match="does not open"):
        profile_store.vault(profile_data["investor"], PassphraseUnlock("wrong horse"))


def test_wrong_wallet_is_a_clear_error(profile_store, profile_data, owner_unlock):
    profile_store.vault(profile_data["investor"], owner_unlock).save_profile(profile_data)
    with pytest.raises(WrongKey, match="made by"):
        profile_store.vault(profile_data["investor"], WalletUnlock.from_private_key(OTHER_KEY))


def test_modified_blob_is_detected(profile_store, profile_data, owner_unlock):
    vault = profile_store.vault(profile_data["investor"], owner_unlock)
    vault.save_profile(profile_data)
    path = f"{profile_store.root}/{vault.investor}/profile/v000001.json"
    envelope = json.loads(profile_store.fs.cat_file(path))
    flipped = envelope["ciphertext"][:-2] + ("00" if envelope["ciphertext"][-2:] != "00" else "01")
    profile_store.fs.pipe_file(path, json.dumps({**envelope, "ciphertext": flipped}).encode())
    with pytest.raises(crypto.DecryptionFailed, match="authentication failed"):
        vault.load_profile(1)
    profile_store.fs.pipe_file(path, json.dumps({**envelope, "version": 2}).encode())
    with pytest.raises(crypto.DecryptionFailed, match="modified"):
        vault.load_profile(1)


def test_modified_metadata_is_detected(profile_store, profile_data, owner_unlock):
    vault = profile_store.vault(profile_data["investor"], owner_unlock)
    vault.save_profile(profile_data)
    path = f"{profile_store.root}/{vault.investor}/meta.json"
    meta = json.loads(profile_store.fs.cat_file(path))
    profile_store.fs.pipe_file(path, json.dumps({**meta, "epoch": 7}).encode())
    with pytest.raises(crypto.DecryptionFailed, match="MAC"):
        profile_store.vault(profile_data["investor"], owner_unlock)


def test_any_fsspec_url(profile_data, owner_unlock):
    store = ProfileStore("memory://lightpool-test-store")
    vault = store.vault(profile_data["investor"], owner_unlock)
    saved = vault.save_profile(profile_data)
    assert store.vault(profile_data["investor"], owner_unlock).load_profile() == saved
    store.fs.rm(store.root, recursive=True)


def test_grant_opens_only_for_its_grantee(profile_store, profile_data, owner_unlock):
    vault = profile_store.vault(profile_data["investor"], owner_unlock)
    saved = vault.save_profile(profile_data)
    vault.grant(crypto.public_key_of(GRANTEE_KEY), int(time.time()) + 3600)
    shared = profile_store.open_shared(vault.investor, GRANTEE_KEY)
    assert shared.profile == saved.profile and shared.commitment == saved.commitment
    with pytest.raises(AccessDenied, match="holds no grant"):
        profile_store.open_shared(vault.investor, OTHER_KEY)
    # The on-chain consent check is consulted when given.
    with pytest.raises(AccessDenied, match="on-chain consent"):
        profile_store.open_shared(vault.investor, GRANTEE_KEY, consent=lambda *_: False)


def test_revocation_rotates_the_key_for_new_versions(profile_store, profile_data, owner_unlock):
    vault = profile_store.vault(profile_data["investor"], owner_unlock)
    vault.save_profile(profile_data)
    vault.grant(crypto.public_key_of(GRANTEE_KEY), int(time.time()) + 3600)
    vault.grant(crypto.public_key_of(OTHER_KEY), int(time.time()) + 3600)
    assert vault.revoke(crypto.address_of_public_key(crypto.public_key_of(GRANTEE_KEY))) == 2
    profile_data["investable_assets"] = "700000"
    vault.save_profile(profile_data)
    with pytest.raises(AccessDenied):
        profile_store.open_shared(vault.investor, GRANTEE_KEY, version=2)
    assert str(profile_store.open_shared(vault.investor, OTHER_KEY, version=2)
               .profile.investable_assets) == "700000"
    # The owner still opens every version after the rotation.
    reopened = profile_store.vault(profile_data["investor"], owner_unlock)
    assert reopened.epoch == 2 and reopened.load_profile(1).version == 1


def test_ecies_wrong_recipient_fails():
    blob = crypto.ecies_encrypt(crypto.public_key_of(GRANTEE_KEY), b"data key", b"aad")
    assert crypto.ecies_decrypt(GRANTEE_KEY, blob, b"aad", "t") == b"data key"
    with pytest.raises(crypto.DecryptionFailed):
        crypto.ecies_decrypt(OTHER_KEY, blob, b"aad", "t")
