"""Fixtures of the MyFinancialCloud tests: a valid profile, wallet keys, a local store."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from cloud_samples import OWNER_KEY, VALID_PROFILE  # noqa: E402 - tests/cloud on path

from offchain.cloud.store import ProfileStore, WalletUnlock


@pytest.fixture
def profile_data() -> dict[str, Any]:
    """A fresh deep copy of a valid profile document (plain JSON types)."""
    return copy.deepcopy(VALID_PROFILE)


@pytest.fixture
def profile_store(tmp_path) -> ProfileStore:
    """A store in a temporary local folder (the default backend)."""
    return ProfileStore(str(tmp_path / "profiles"))


@pytest.fixture(scope="session")
def owner_unlock() -> WalletUnlock:
    return WalletUnlock.from_private_key(OWNER_KEY)
