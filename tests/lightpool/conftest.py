"""LightPool fixtures: a cash token, a pool with one listed ETF market, funded investors.

Builds on the shared actors of ``tests/conftest.py`` (admin, issuer, keeper, investors).
"""

from __future__ import annotations

import pytest

from offchain.chain.lightpool import Leg
from offchain.universe import DAY, WAD, FundKind

# Batch cadence of the test pool: 10-minute batches, 1-minute reveal window.
BATCH = 600
REVEAL = 60
# Market terms: one-cent ticks, 0.01 unit minimum, limits within 10% of NAV.
TICK = WAD // 100
MIN_QTY = WAD // 100
BAND = 1_000
NAV = 100 * WAD
# Opening positions of each funded investor.
CASH0 = 100_000 * WAD
UNITS0 = 500 * WAD
DISCRETIONARY = 2  # ProfileRegistry MandateMode.DISCRETIONARY (flag value)
ADVISORY = 1


def leg(market, is_buy: bool, quantity: int, price: int) -> Leg:
    """A leg for ``market`` (contract or address)."""
    return Leg(market=str(getattr(market, "address", market)), is_buy=is_buy,
               quantity=quantity, limit_price=price)


def legs(*items: Leg) -> list[tuple]:
    """ABI tuples for ``place``."""
    return [item.as_tuple() for item in items]


def to_clear(chain, pool, batch: int) -> None:
    """Move time to when ``batch`` may clear (after its close and reveal window)."""
    chain.mine(timestamp=pool.batch_close(batch) + REVEAL)


def to_reveal(chain, pool, batch: int) -> None:
    """Move time into ``batch``'s reveal window."""
    chain.mine(timestamp=pool.batch_close(batch) + 1)


@pytest.fixture(scope="module")
def cash(make_fund, verify, issuer):
    verify(issuer)
    return make_fund(kind=FundKind.CASH, symbol="USDL", name="LightPool USD",
                     asset_class="cash", nav=WAD, max_age=92 * DAY)


@pytest.fixture(scope="module")
def clearing_math(project, admin):
    return admin.deploy(project.ClearingMath)


@pytest.fixture(scope="module")
def make_pool(project, admin, registry, clearing_math):
    def _make(cash_token, batch: int = BATCH, reveal: int = REVEAL):
        return admin.deploy(project.LightPool, cash_token, registry, clearing_math, batch, reveal)

    return _make


@pytest.fixture(scope="module")
def connect(admin, issuer):
    """Allow-list and authorise the pool on a token; list it when it is a fund."""

    def _connect(pool, token, cash_token=None, tick=TICK, min_qty=MIN_QTY, band=BAND):
        token.set_allowlisted(pool, True, sender=issuer)
        if cash_token is not None:
            token.set_minter(pool, True, sender=issuer)
            pool.list_market(token, tick, min_qty, band, sender=admin)
        return token

    return _connect


@pytest.fixture(scope="module")
def pool(make_pool, connect, cash, fund):
    contract = make_pool(cash)
    connect(contract, cash)
    connect(contract, fund, cash)
    return contract


@pytest.fixture(scope="module")
def fund_account(pool, cash, fund, issuer):
    """Mint, approve and deposit opening positions for an account."""

    def _fund(account, cash_amount: int = CASH0, units: int = UNITS0, deposit: bool = True):
        for token, amount in ((cash, cash_amount), (fund, units)):
            if amount:
                token.mint(account, amount, sender=issuer)
                token.approve(pool, 2**256 - 1, sender=account)
                if deposit:
                    pool.deposit(token, amount, sender=account)
        return account

    return _fund


@pytest.fixture(scope="module")
def funded(fund_account, investor, investor2, verify):
    verify(investor)
    verify(investor2)
    fund_account(investor)
    fund_account(investor2)
    return investor, investor2


@pytest.fixture(scope="module")
def mandate(registry, keeper, chain):
    """Grant a discretionary mandate from an investor to the keeper."""

    def _grant(investor, instruments, max_turnover=10**6 * WAD, period=7 * DAY,
               deviation_bps=500, annual_fee=0, days=365, mode=DISCRETIONARY):
        registry.grant_mandate(keeper, mode, list(instruments), max_turnover, period,
                               deviation_bps, annual_fee, chain.pending_timestamp + days * DAY,
                               sender=investor)

    return _grant
