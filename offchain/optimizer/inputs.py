"""Typed inputs and outputs of the MyPortfolio optimizer.

Money and quantities at this boundary are ``Decimal`` (never floats in a ledger); prices are
cash units per fund unit; weights are fractions of account value (``0.05`` = 5 %); rates are
fractions (``0.37`` = 37 %); transaction costs are basis points of traded value.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InstrumentKind(StrEnum):
    """What a fund token is. Cash is not an instrument here: it is the account's cash."""

    ETF = "etf"
    MUTUAL_FUND = "mutual_fund"
    ALTERNATIVE = "alternative"


class Instrument(_Frozen):
    """One tradable fund.

    ``wash_group`` names the set of substantially identical instruments for wash-sale rules
    (instruments with no group are only identical to themselves). ``attributes`` feed ESG/SRI
    screens (e.g. ``{"esg_score": 7.1, "tobacco": False}``).
    """

    symbol: str = Field(min_length=1)
    kind: InstrumentKind
    asset_class: str = Field(min_length=1)
    wash_group: str | None = None
    attributes: dict[str, float | bool | str] = Field(default_factory=dict)


class ModelPortfolio(_Frozen):
    """The IPC's model: security weights, approved products and compliance limits.

    ``security_weights`` are target weights of account value; what is left to 1 is the cash
    target. ``approved`` lists the instruments that may be bought (defaults to the model's
    holdings plus instruments named by substitutions). ``max_position_weight`` caps every
    position after trading; ``asset_class_limits`` maps an asset class to ``(min, max)`` weight.
    ``drift_band`` is the absolute weight drift tolerated by the plain band rebalancer and
    reported per position. ``risk_aversion`` (per unit of annual tracking variance) converts
    tracking error into the objective's units (fractions of account value).
    """

    model_id: str = Field(min_length=1)
    instruments: tuple[Instrument, ...]
    security_weights: dict[str, Decimal]
    approved: frozenset[str] | None = None
    max_position_weight: Decimal = Decimal("0.35")
    asset_class_limits: dict[str, tuple[Decimal, Decimal]] = Field(default_factory=dict)
    drift_band: Decimal = Decimal("0.03")
    risk_aversion: float = Field(default=20.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> ModelPortfolio:
        from offchain.errors import InvalidInput

        symbols = [i.symbol for i in self.instruments]
        if len(set(symbols)) != len(symbols):
            raise InvalidInput("instruments", "unique symbols", symbols)
        for sym, weight in self.security_weights.items():
            if sym not in symbols:
                raise InvalidInput(f"security_weights[{sym}]", "a symbol of instruments", sym)
            if weight < 0:
                raise InvalidInput(f"security_weights[{sym}]", "a weight >= 0", weight)
        total = sum(self.security_weights.values(), Decimal(0))
        if total > 1:
            raise InvalidInput("security_weights", "weights summing to <= 1", total)
        for cls, (lo, hi) in self.asset_class_limits.items():
            if not 0 <= lo <= hi <= 1:
                raise InvalidInput(f"asset_class_limits[{cls}]", "0 <= min <= max <= 1", (lo, hi))
        return self

    def asset_class_targets(self) -> dict[str, Decimal]:
        """Target weight per asset class, summed from the security weights."""
        by_symbol = {i.symbol: i.asset_class for i in self.instruments}
        out: dict[str, Decimal] = {}
        for sym, weight in self.security_weights.items():
            out[by_symbol[sym]] = out.get(by_symbol[sym], Decimal(0)) + weight
        return out


class TaxLot(_Frozen):
    """A tax lot: ``quantity`` units bought on ``acquired`` at ``cost_basis`` cash per unit."""

    lot_id: str = Field(min_length=1)
    symbol: str
    quantity: Decimal
    cost_basis: Decimal
    acquired: dt.date


class Account(_Frozen):
    """An account's lots and cash (cash units). ``holdings`` (units per symbol) is optional; if
    given, the lots of each symbol must add up to it exactly."""

    account_id: str = Field(min_length=1)
    household_id: str = Field(min_length=1)
    mode: Literal["advisory", "discretionary"] = "discretionary"
    cash: Decimal = Decimal(0)
    lots: tuple[TaxLot, ...] = ()
    holdings: dict[str, Decimal] | None = None


class PricePoint(_Frozen):
    """A price or NAV (cash units per unit) and when it was published (timezone-aware)."""

    price: Decimal
    timestamp: dt.datetime


class RiskModel(_Frozen):
    """A factor risk model in annual units: ``cov = B F B' + diag(specific_variance)``.

    ``loadings[symbol]`` is the row of B (one entry per factor); ``factor_covariance`` is F.
    """

    factor_covariance: tuple[tuple[float, ...], ...]
    loadings: dict[str, tuple[float, ...]]
    specific_variance: dict[str, float]


class MarketData(_Frozen):
    """Prices, risk model and trading costs as of ``as_of``.

    ``cost_bps`` is the one-way cost of trading each instrument, in basis points of traded value.
    ``capacity`` caps the value (cash units) one account may buy or sell of a gated instrument
    today. Prices older than ``max_price_age`` at ``as_of`` are stale.
    """

    as_of: dt.datetime
    prices: dict[str, PricePoint]
    risk_model: RiskModel
    cost_bps: dict[str, float]
    capacity: dict[str, Decimal] = Field(default_factory=dict)
    max_price_age: dt.timedelta = dt.timedelta(days=3)


class Screen(_Frozen):
    """An ESG/SRI screen: an instrument passes if ``attributes[attribute] <op> value``.

    Instruments without the attribute pass (screens exclude on known data only).
    """

    attribute: str
    op: Literal["==", "!=", ">=", "<=", ">", "<"]
    value: float | bool | str

    def passes(self, instrument: Instrument) -> bool:
        """Whether ``instrument`` passes this screen."""
        if self.attribute not in instrument.attributes:
            return True
        got = instrument.attributes[self.attribute]
        try:
            return {
                "==": got == self.value,
                "!=": got != self.value,
                ">=": got >= self.value,  # type: ignore[operator]
                "<=": got <= self.value,  # type: ignore[operator]
                ">": got > self.value,  # type: ignore[operator]
                "<": got < self.value,  # type: ignore[operator]
            }[self.op]
        except TypeError:
            return False


class TaxSettings(_Frozen):
    """Tax settings. Rates are fractions. ``short_term_gain_budget`` caps the net short-term gain
    (cash units) realized today (``None`` = no cap). A loss is harvested for its tax benefit only
    if it is at least ``loss_harvest_threshold`` of the lot's value. A short-term gain is not
    realized within ``defer_short_term_days`` days of turning long-term."""

    short_term_rate: float = Field(default=0.37, ge=0, le=1)
    long_term_rate: float = Field(default=0.20, ge=0, le=1)
    short_term_gain_budget: Decimal | None = None
    loss_harvest_threshold: float = Field(default=0.05, ge=0, le=1)
    defer_short_term_days: int = Field(default=31, ge=0, le=365)


class Customizations(_Frozen):
    """The advisor's menu for one account.

    ``substitutions`` maps a model symbol X to the symbol Y held instead. ``withdrawal`` (cash
    units) must be raised today and ``min_cash`` kept after it. Trades worth less than
    ``min_trade_value`` (cash units) are dropped when that keeps the proposal feasible.
    """

    never_buy: frozenset[str] = frozenset()
    never_sell: frozenset[str] = frozenset()
    screens: tuple[Screen, ...] = ()
    substitutions: dict[str, str] = Field(default_factory=dict)
    tax: TaxSettings = TaxSettings()
    withdrawal: Decimal = Decimal(0)
    min_cash: Decimal = Decimal(0)
    min_trade_value: Decimal = Decimal(0)


class HouseholdTrade(_Frozen):
    """A past trade of any account of a household. ``realized_gain`` (cash units) is set on
    sells; a negative value is a realized loss (it opens a 30-day no-buy window)."""

    household_id: str
    account_id: str
    symbol: str
    side: Literal["buy", "sell"]
    quantity: Decimal
    trade_date: dt.date
    realized_gain: Decimal | None = None


class Trade(_Frozen):
    """One proposed trade: buys per instrument, sells per lot (``lot_id``).

    ``quantity`` in units, ``value`` and ``cost`` in cash units; ``realized_gain`` (sells only)
    in cash units with its ``term``; ``reason`` explains it in words.
    """

    symbol: str
    side: Literal["buy", "sell"]
    quantity: Decimal
    value: Decimal
    cost: Decimal
    lot_id: str | None = None
    realized_gain: Decimal | None = None
    term: Literal["short", "long"] | None = None
    reason: str


class Proposal(_Frozen):
    """The optimizer's proposal for one account and its explanation.

    Money in cash units (Decimal). ``tax_cost`` is the estimated tax of the realized gains
    (negative = a saving from harvested losses); tracking errors are annual, as fractions.
    ``objective_*`` are the optimizer's objective (fractions of account value) with no trade,
    and with these trades. ``needs_approval`` is set for advisory accounts.
    """

    account_id: str
    model_id: str
    as_of: dt.date
    trades: tuple[Trade, ...]
    realized_short_term: Decimal
    realized_long_term: Decimal
    tax_cost: Decimal
    transaction_cost: Decimal
    cash_after: Decimal
    tracking_error_before: float
    tracking_error_after: float
    objective_no_trade: float
    objective: float
    needs_approval: bool
    notes: tuple[str, ...] = ()


class AccountError(_Frozen):
    """Why one account was skipped: the offending ``field`` and a readable ``reason``."""

    account_id: str
    field: str
    reason: str
