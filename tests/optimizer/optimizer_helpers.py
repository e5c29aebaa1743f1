"""A small hand-made universe and factories for the optimizer tests.

Instruments (all priced 100 so that weights are easy to read):

- ``USA`` S&P 500 ETF and ``USB`` its mutual-fund share class: one wash group (``SP500``),
  ``USB`` is not approved for purchase;
- ``USC`` a total-market ETF: highly correlated, not substantially identical (TLH partner);
- ``INTL`` international equity, ``BND`` bonds, ``ALT1`` a gated alternative.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from offchain.optimizer.inputs import (
    Account,
    Instrument,
    InstrumentKind,
    MarketData,
    ModelPortfolio,
    PricePoint,
    RiskModel,
    TaxLot,
)

AS_OF = dt.date(2026, 11, 20)
NOW = dt.datetime(2026, 11, 20, 21, 0, tzinfo=dt.UTC)


def make_model() -> ModelPortfolio:
    """The test model portfolio (see the module docstring)."""
    etf, mf, alt = InstrumentKind.ETF, InstrumentKind.MUTUAL_FUND, InstrumentKind.ALTERNATIVE
    instruments = (
        Instrument(symbol="USA", kind=etf, asset_class="us_equity", wash_group="SP500",
                   attributes={"esg_score": 6.0}),
        Instrument(symbol="USB", kind=mf, asset_class="us_equity", wash_group="SP500",
                   attributes={"esg_score": 6.0}),
        Instrument(symbol="USC", kind=etf, asset_class="us_equity", wash_group="TOTAL",
                   attributes={"esg_score": 5.5}),
        Instrument(symbol="INTL", kind=etf, asset_class="intl_equity",
                   attributes={"esg_score": 2.0}),
        Instrument(symbol="BND", kind=etf, asset_class="bonds", attributes={"esg_score": 7.0}),
        Instrument(symbol="ALT1", kind=alt, asset_class="alternatives"),
    )
    return ModelPortfolio(
        model_id="test-growth",
        instruments=instruments,
        security_weights={"USA": Decimal("0.40"), "INTL": Decimal("0.25"),
                          "BND": Decimal("0.25"), "ALT1": Decimal("0.08")},
        approved=frozenset({"USA", "USC", "INTL", "BND", "ALT1"}),
        max_position_weight=Decimal("0.45"),
        asset_class_limits={"us_equity": (Decimal("0.30"), Decimal("0.55")),
                            "bonds": (Decimal("0.15"), Decimal("0.35"))},
    )


def make_market(prices: dict[str, str] | None = None, stale: tuple[str, ...] = ()) -> MarketData:
    """Market data for the test universe; ``stale`` symbols have a week-old price."""
    symbols = ["USA", "USB", "USC", "INTL", "BND", "ALT1"]
    prices = prices or {}
    loadings = {
        "USA": (1.0, 0.0, -0.1, 0.0), "USB": (1.0, 0.0, -0.1, 0.0),
        "USC": (1.02, 0.0, -0.1, 0.0), "INTL": (0.8, 0.6, 0.0, 0.0),
        "BND": (0.05, 0.0, 1.0, 0.0), "ALT1": (0.3, 0.0, 0.1, 1.0),
    }
    spec = {"USA": 1e-4, "USB": 1e-4, "USC": 4e-4, "INTL": 4e-4, "BND": 1e-4, "ALT1": 4e-3}
    fvol = (0.16, 0.08, 0.06, 0.06)
    f_cov = tuple(tuple((fvol[i] * fvol[j] if i == j else 0.1 * fvol[i] * fvol[j])
                        for j in range(4)) for i in range(4))
    return MarketData(
        as_of=NOW,
        prices={s: PricePoint(price=Decimal(prices.get(s, "100")),
                              timestamp=NOW - dt.timedelta(days=7 if s in stale else 0, hours=1))
                for s in symbols},
        risk_model=RiskModel(factor_covariance=f_cov, loadings=loadings, specific_variance=spec),
        cost_bps={"USA": 3, "USB": 8, "USC": 3, "INTL": 5, "BND": 3, "ALT1": 80},
        capacity={"ALT1": Decimal(5_000)},
    )


def make_account(
    holdings: dict[str, list[tuple[str, str, int]]],
    cash: str = "2000",
    account_id: str = "acct-1",
    household_id: str = "hh-1",
) -> Account:
    """An account from ``{symbol: [(quantity, basis per unit, days held), ...]}``."""
    lots = []
    for sym, entries in holdings.items():
        for k, (qty, basis, days) in enumerate(entries):
            lots.append(TaxLot(lot_id=f"{account_id}-{sym}-{k}", symbol=sym,
                               quantity=Decimal(qty), cost_basis=Decimal(basis),
                               acquired=AS_OF - dt.timedelta(days=days)))
    return Account(account_id=account_id, household_id=household_id, cash=Decimal(cash),
                   lots=tuple(lots))


def at_model(cash: str = "2000", basis: str = "100") -> Account:
    """An account exactly at the model (value 100,000): 40% USA, 25% INTL, 25% BND, 8% ALT1."""
    return make_account({"USA": [("400", basis, 800)], "INTL": [("250", basis, 800)],
                         "BND": [("250", basis, 800)], "ALT1": [("80", basis, 800)]}, cash=cash)
