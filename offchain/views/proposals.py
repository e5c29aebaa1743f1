"""Rebalance proposals for the demo investors, computed from chain state by the optimizer.

Positions come from chain (the single source of truth); each position is one tax lot at
the universe's opening NAV, acquired when the deployment finished (the ledger module will
replace this with lots rebuilt from fills). The model is the latest model of the investor's
risk category in the IPC's :class:`ModelStore`. The risk model maps each instrument to its
asset class's capital-market assumptions (volatility and factor loadings).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

import numpy as np

from offchain.chain.contracts import Platform
from offchain.chain.seed import DEMO_INVESTORS, DemoInvestor
from offchain.cloud.plan import load_cma
from offchain.models.portfolios import ModelStore, ModelVersion, with_held
from offchain.optimizer.engine import optimize_accounts
from offchain.optimizer.inputs import (
    Account,
    AccountError,
    Customizations,
    MarketData,
    PricePoint,
    Proposal,
    RiskModel,
    TaxLot,
)
from offchain.universe import BY_SYMBOL, CASH_SYMBOL, FundKind
from offchain.views.chain import Holding, TokenState, holdings, token_states

# Idiosyncratic variance added to each fund on top of its asset class (annual, fraction^2).
FUND_SPECIFIC_VARIANCE = 0.0004
# Largest NAV age the optimizer accepts; the chain's own per-token max age is checked first.
MAX_PRICE_AGE = dt.timedelta(days=92)
# Classes the CMA has no figure for, as a blend of classes it has (a balanced fund is 60/40).
BLENDS = {"multi_asset_balanced": {"us_equity_large": 0.6, "us_bonds_aggregate": 0.4}}


@dataclass(frozen=True)
class DataFlag:
    """A bad-data flag for the overlay manager: what is wrong, with which instrument."""

    symbol: str
    problem: str
    detail: str


@dataclass(frozen=True)
class AccountView:
    """One demo investor's account: positions, model and the optimizer's answer."""

    investor: DemoInvestor
    model: ModelVersion
    positions: list[Holding]
    proposal: Proposal | None
    error: AccountError | None

    @property
    def mode(self) -> str:
        return "discretionary" if self.investor.discretionary else "advisory"


def demo_investor(address: str) -> DemoInvestor | None:
    """The demo investor with wallet ``address`` (case-insensitive), or None."""
    for investor in DEMO_INVESTORS:
        if investor.actor.address.lower() == address.lower():
            return investor
    return None


@lru_cache(maxsize=1)
def risk_model() -> RiskModel:
    """A factor risk model over the universe's funds from the CMA's asset-class assumptions:
    loadings ``vol * b`` on orthonormal factors, specific variance ``vol^2 (1 - |b|^2)`` plus
    a small per-fund term, so funds of one class are close but not identical substitutes.
    Classes without an assumption are blends (``BLENDS``) of classes with one."""
    cma = load_cma()
    n_factors = len(cma.correlation_model.factors)
    loadings: dict[str, tuple[float, ...]] = {}
    specific: dict[str, float] = {}
    for symbol, item in BY_SYMBOL.items():
        if item.kind == FundKind.CASH:
            continue
        row = np.zeros(n_factors)
        variance = FUND_SPECIFIC_VARIANCE
        for name, share in BLENDS.get(item.asset_class, {item.asset_class: 1.0}).items():
            vol = float(cma.asset_classes[name].volatility)
            b = np.array([float(x) for x in cma.correlation_model.loadings[name]])
            row += share * vol * b
            variance += share * share * vol * vol * (1.0 - float(b @ b))
        loadings[symbol] = tuple(float(v) for v in row)
        specific[symbol] = variance
    identity = tuple(tuple(1.0 if i == j else 0.0 for j in range(n_factors))
                     for i in range(n_factors))
    return RiskModel(factor_covariance=identity, loadings=loadings, specific_variance=specific)


def market_data(states: list[TokenState], as_of: dt.datetime) -> MarketData:
    """Prices from chain NAVs; instruments whose NAV is stale on chain get no price, so an
    account holding or targeting them is refused with the reason instead of traded."""
    prices = {s.symbol: PricePoint(price=s.nav, timestamp=s.nav_time)
              for s in states if s.known and not s.nav_stale and s.symbol != CASH_SYMBOL}
    costs = {s: float(i.cost_bps) for s, i in BY_SYMBOL.items() if i.kind != FundKind.CASH}
    return MarketData(as_of=as_of, prices=prices, risk_model=risk_model(), cost_bps=costs,
                      max_price_age=MAX_PRICE_AGE)


def data_flags(states: list[TokenState]) -> list[DataFlag]:
    """Stale NAVs (per the token's own max age on chain) and tokens the universe lacks."""
    flags = []
    for s in states:
        if not s.known:
            flags.append(DataFlag(s.symbol, "unknown instrument",
                                  f"{s.address} is deployed but not in the instrument universe"))
        if s.nav_stale:
            flags.append(DataFlag(s.symbol, "stale NAV",
                                  f"last NAV {s.nav} struck {s.nav_time:%Y-%m-%d %H:%M} UTC "
                                  "is older than the token's max age"))
    return flags


def account_view(platform: Platform, investor: DemoInvestor, store: ModelStore,
                 states: list[TokenState] | None = None) -> AccountView:
    """Positions from chain, the model of the investor's risk category and the proposal."""
    states = states if states is not None else token_states(platform)
    chosen = store.for_category(investor.risk_category)
    positions = holdings(platform, investor.actor.address)
    latest = platform.w3.eth.get_block("latest")
    as_of = dt.datetime.fromtimestamp(latest["timestamp"], dt.UTC)
    deployed = platform.w3.eth.get_block(min(platform.deployments.block, latest["number"]))
    acquired = dt.datetime.fromtimestamp(deployed["timestamp"], dt.UTC).date()

    unknown = [h.symbol for h in positions if h.symbol not in BY_SYMBOL]
    if unknown:
        refused = AccountError(account_id=investor.actor.address, field="holdings",
                             reason=f"unknown instrument(s) {', '.join(unknown)}")
        return AccountView(investor, chosen, positions, None, refused)

    cash = sum((h.units for h in positions if h.symbol == CASH_SYMBOL), Decimal(0))
    funds = [h for h in positions if h.symbol != CASH_SYMBOL]
    lots = tuple(TaxLot(lot_id=f"{h.symbol}-opening", symbol=h.symbol, quantity=h.units,
                        cost_basis=BY_SYMBOL[h.symbol].nav, acquired=acquired) for h in funds)
    account = Account(account_id=investor.actor.address, household_id=investor.actor.name,
                      mode="discretionary" if investor.discretionary else "advisory",
                      cash=cash, lots=lots)
    model = with_held(chosen.model.to_optimizer(), (h.symbol for h in funds))
    result = optimize_accounts(model, [account], market_data(states, as_of),
                               {account.account_id: Customizations()}, as_of=as_of.date())
    proposal = result.proposals[0] if result.proposals else None
    error = result.errors[0] if result.errors else None
    return AccountView(investor, chosen, positions, proposal, error)


def approval_queue(platform: Platform, store: ModelStore) -> list[AccountView]:
    """Every demo investor's account view, discretionary accounts first (the overlay
    manager approves those; advisory ones wait for the investor's signature)."""
    states = token_states(platform)
    views = [account_view(platform, inv, store, states) for inv in DEMO_INVESTORS]
    return sorted(views, key=lambda v: not v.investor.discretionary)


def target_weights(view: AccountView) -> dict[str, Decimal]:
    """The model's asset-class targets (cash included), fractions."""
    return dict(view.model.model.asset_class_targets)
