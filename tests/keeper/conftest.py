"""Keeper fixtures: the full demo deployment on ape's anvil, a keeper on a fresh SQLite."""

from __future__ import annotations

import ape
import pytest

from offchain.chain.actors import KEEPER
from offchain.chain.contracts import Platform
from offchain.chain.deploy import deploy_platform
from offchain.chain.tx import Sender
from offchain.cloud.store import ProfileStore
from offchain.keeper.accounts import granted_profiles, mandated_accounts
from offchain.keeper.bot import Keeper
from offchain.keeper.db import make_sessions
from offchain.models.portfolios import ModelStore


@pytest.fixture(scope="module")
def profile_store(tmp_path_factory):
    return str(tmp_path_factory.mktemp("profiles"))


@pytest.fixture(scope="module")
def platform(project, chain, profile_store):
    # deploy_platform takes ape's AccountManager (the demo's), not the test fixture.
    deployments = deploy_platform(project, ape.accounts, chain, profile_store=profile_store)
    return Platform(w3=chain.provider.web3, deployments=deployments)


@pytest.fixture
def make_keeper(platform, tmp_path, profile_store):
    """Factory: a keeper over the test chain that manages the accounts whose profiles were
    shared with it. Same ``db`` name = same database (restarts)."""
    models = ModelStore(str(tmp_path / "models"))

    def _make(db: str = "keeper", wait_s: float = 30.0) -> Keeper:
        sender = Sender(platform.w3, KEEPER.private_key)
        profiles = granted_profiles(platform, KEEPER.private_key, ProfileStore(profile_store),
                                    models)
        return Keeper(platform, make_sessions(f"sqlite:///{tmp_path / db}.db"), models, sender,
                      mandated_accounts(platform, sender.address, profiles), wait_s=wait_s)

    return _make


@pytest.fixture
def close_batch(chain, platform):
    """Mine a block after a batch's close and reveal window."""
    pool = platform.contract("LightPool")

    def _close(batch: int) -> None:
        reveal = pool.functions.reveal_period().call()
        chain.mine(timestamp=pool.functions.batch_close(batch).call() + reveal + 1)

    return _close
