"""Shared actors and factories for the contract tests (ape on anvil).

Roles use the same dev-account indices as ``offchain.chain.actors`` so tests, demo and
keeper agree on who is who.
"""

from __future__ import annotations

import pytest

from offchain.chain import actors as roles
from offchain.universe import DAY, WAD, FundKind

US = 840


@pytest.fixture(scope="session")
def admin(accounts):
    return accounts[roles.ADMIN.index]


@pytest.fixture(scope="session")
def attester(accounts):
    return accounts[roles.ATTESTER.index]


@pytest.fixture(scope="session")
def issuer(accounts):
    return accounts[roles.ISSUER_ACTORS["Meridian Funds"].index]


@pytest.fixture(scope="session")
def agent(accounts):
    return accounts[roles.ISSUER_AGENT.index]


@pytest.fixture(scope="session")
def keeper(accounts):
    return accounts[roles.KEEPER.index]


@pytest.fixture(scope="session")
def investor(accounts):
    return accounts[roles.INVESTORS[0].index]


@pytest.fixture(scope="session")
def investor2(accounts):
    return accounts[roles.INVESTORS[1].index]


@pytest.fixture(scope="session")
def outsider(accounts):
    """An address nobody attested."""
    return accounts[25]


@pytest.fixture(scope="module")
def registry(project, admin, attester, chain):
    contract = admin.deploy(project.ProfileRegistry)
    contract.set_attester(attester, True, sender=admin)
    return contract


@pytest.fixture(scope="module")
def verify(registry, attester, chain):
    """Attest an address for a year (the eligible-holder check of FundToken)."""

    def _verify(account, jurisdiction: int = US, days: int = 365):
        registry.attest(account, jurisdiction, chain.pending_timestamp + days * DAY,
                        sender=attester)
        return account

    return _verify


@pytest.fixture(scope="module")
def make_fund(project, admin, issuer, agent, registry):
    """Factory: deploy a FundToken of a kind with its agent set."""

    def _make(kind: FundKind = FundKind.ETF, symbol: str = "LCAP",
              name: str = "Meridian US Large Cap ETF", asset_class: str = "us_equity_large",
              nav: int = 100 * WAD, max_age: int = DAY):
        token = admin.deploy(project.FundToken, name, symbol, int(kind), asset_class, issuer,
                             registry, nav, max_age)
        token.set_agent(agent, sender=issuer)
        return token

    return _make


@pytest.fixture(scope="module")
def fund(make_fund, verify, issuer, investor, investor2):
    verify(issuer)
    verify(investor)
    verify(investor2)
    return make_fund()
