"""Fixtures of the optimizer tests; the universe itself lives in ``optimizer_helpers``."""

from __future__ import annotations

import pytest
from optimizer_helpers import make_market, make_model

from offchain.optimizer.inputs import MarketData, ModelPortfolio


@pytest.fixture
def model() -> ModelPortfolio:
    return make_model()


@pytest.fixture
def market() -> MarketData:
    return make_market()
