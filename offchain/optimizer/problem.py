"""From typed inputs to the numeric problem of one account.

The problem, in weights of the account's value after the withdrawal (``V``):

    minimize    k (h + b - A s - m)' S (h + b - A s - m) + t'b + sum_l (tax_l + t_l) s_l
    subject to  0 <= b <= buy_max,  0 <= s_l <= lot_l,  sell_min <= A s <= sell_max,
                (1 + t)'b - (1 - t)'(A s) <= cash budget,
                asset-class min/max on h + b - A s,  short-term gains of s <= budget

with ``b`` buys per instrument, ``s`` sells per lot, ``A`` the lot-to-instrument map, ``S`` the
factor covariance, ``m`` the model (after substitutions and screens), ``t`` one-way costs and
``tax_l`` each lot's tax per unit sold (gain fraction times rate; a harvestable loss is
negative). Customizations and wash sales become bounds. Wash sales make the true problem
combinatorial (harvesting a loss forbids buying its group); the engine decides per group and
the rule here is: a loss counts as a benefit only if nothing of its wash group can be bought.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from offchain.errors import InvalidInput, StaleData
from offchain.optimizer.inputs import (
    Account,
    Customizations,
    HouseholdTrade,
    InstrumentKind,
    MarketData,
    ModelPortfolio,
)

WASH_SALE_DAYS = 30


class AccountDataError(InvalidInput):
    """An account's data cannot be optimized; the account is skipped with this reason."""


@dataclass(frozen=True)
class Universe:
    """What all accounts on one model share: instrument order, covariance, costs, limits."""

    symbols: tuple[str, ...]
    asset_classes: tuple[str, ...]
    cov: np.ndarray  # (n, n) annual covariance of returns
    cost: np.ndarray  # (n,) one-way cost, fraction of traded value
    class_matrix: np.ndarray  # (K, n) 1 where instrument i is in limited asset class k
    class_lo: np.ndarray  # (K,)
    class_hi: np.ndarray  # (K,)
    risk_aversion: float
    prices: np.ndarray  # (n,) float prices, NaN where missing
    stale: frozenset[str]

    @property
    def n(self) -> int:
        return len(self.symbols)


@dataclass
class AccountProblem:
    """One account's problem in weights of ``value`` (cash units, after the withdrawal)."""

    account_id: str
    value: float
    holding: np.ndarray  # (n,) weights held
    model: np.ndarray  # (n,) model weights for this account
    cash: float  # cash weight before the withdrawal
    cash_budget: float  # how much (weight) may be spent net: cash - withdrawal - min cash
    buy_max: np.ndarray  # (n,)
    sell_min: np.ndarray  # (n,)
    sell_max: np.ndarray  # (n,)
    class_lo: np.ndarray  # (K,) limits on the change of each class's weight
    class_hi: np.ndarray  # (K,)
    st_budget: float  # net short-term gain allowed (weight), inf if none
    lot_instrument: np.ndarray  # (L,) instrument index of each lot
    lot_weight: np.ndarray  # (L,) most that may be sold of each lot (weight)
    lot_held: np.ndarray  # (L,) weight held in each lot
    lot_tax: np.ndarray  # (L,) tax per unit of weight sold (negative for a counted loss)
    lot_gain: np.ndarray  # (L,) gain per unit of weight sold (fraction of value sold)
    lot_short: np.ndarray  # (L,) bool, short-term lot
    lot_st_gain: np.ndarray  # (L,) short-term gain per unit sold counted in the budget
    lot_ids: tuple[str, ...]
    notes: list[str] = field(default_factory=list)
    harvestable_groups: frozenset[str] = frozenset()


def build_universe(model: ModelPortfolio, market: MarketData) -> Universe:
    """Shared arrays of one model.

    Raises ``InvalidInput`` if the market data lacks the risk model or costs of an instrument of
    the model, or if the factor covariance is malformed.
    """
    symbols = tuple(i.symbol for i in model.instruments)
    rm = market.risk_model
    f_cov = np.asarray(rm.factor_covariance, dtype=float)
    if f_cov.ndim != 2 or f_cov.shape[0] != f_cov.shape[1]:
        raise InvalidInput("risk_model.factor_covariance", "a square matrix", f_cov.shape)
    n_f = f_cov.shape[0]
    loadings = np.zeros((len(symbols), n_f))
    spec = np.zeros(len(symbols))
    cost = np.zeros(len(symbols))
    prices = np.full(len(symbols), np.nan)
    stale: set[str] = set()
    for i, sym in enumerate(symbols):
        if sym not in rm.loadings or len(rm.loadings[sym]) != n_f:
            raise InvalidInput(f"risk_model.loadings[{sym}]", f"{n_f} factor loadings", None)
        if sym not in rm.specific_variance or rm.specific_variance[sym] < 0:
            raise InvalidInput(f"risk_model.specific_variance[{sym}]", "a variance >= 0", None)
        if sym not in market.cost_bps or market.cost_bps[sym] < 0:
            raise InvalidInput(f"cost_bps[{sym}]", "a cost >= 0 bps", market.cost_bps.get(sym))
        loadings[i] = rm.loadings[sym]
        spec[i] = rm.specific_variance[sym]
        cost[i] = market.cost_bps[sym] / 1e4
        point = market.prices.get(sym)
        if point is None or point.price <= 0:
            stale.add(sym)
            continue
        if market.as_of - point.timestamp > market.max_price_age or point.timestamp > market.as_of:
            stale.add(sym)
        prices[i] = float(point.price)
    cov = loadings @ f_cov @ loadings.T + np.diag(spec)
    cov = 0.5 * (cov + cov.T)
    classes = tuple(sorted(model.asset_class_limits))
    class_of = [i.asset_class for i in model.instruments]
    class_matrix = np.array([[1.0 if c == k else 0.0 for c in class_of] for k in classes])
    class_matrix = class_matrix.reshape(len(classes), len(symbols))
    lo = np.array([float(model.asset_class_limits[k][0]) for k in classes])
    hi = np.array([float(model.asset_class_limits[k][1]) for k in classes])
    return Universe(
        symbols=symbols,
        asset_classes=classes,
        cov=cov,
        cost=cost,
        class_matrix=class_matrix,
        class_lo=lo,
        class_hi=hi,
        risk_aversion=model.risk_aversion,
        prices=prices,
        stale=frozenset(stale),
    )


def one_year_after(day: dt.date) -> dt.date:
    """The anniversary of ``day`` (Feb 29 -> Feb 28); a lot is long-term after this date."""
    try:
        return day.replace(year=day.year + 1)
    except ValueError:
        return day.replace(year=day.year + 1, day=28)


def is_long_term(acquired: dt.date, as_of: dt.date) -> bool:
    """A lot held more than one year (sold after the anniversary of its purchase) is long-term."""
    return as_of > one_year_after(acquired)


def days_to_long_term(acquired: dt.date, as_of: dt.date) -> int:
    """Days until a lot turns long-term (0 if it already is)."""
    return max(0, (one_year_after(acquired) + dt.timedelta(days=1) - as_of).days)


def wash_windows(
    household_trades: list[HouseholdTrade], household_id: str, as_of: dt.date
) -> tuple[set[str], set[str]]:
    """Symbols whose buying is locked (a loss sale within 30 days before ``as_of``) and symbols
    whose losses may not be harvested (a buy within 30 days before ``as_of``), household-wide.
    """
    no_buy: set[str] = set()
    no_loss_sale: set[str] = set()
    for trade in household_trades:
        if trade.household_id != household_id:
            continue
        age = (as_of - trade.trade_date).days
        if not 0 <= age <= WASH_SALE_DAYS:
            continue
        if trade.side == "sell" and trade.realized_gain is not None and trade.realized_gain < 0:
            no_buy.add(trade.symbol)
        elif trade.side == "buy":
            no_loss_sale.add(trade.symbol)
    return no_buy, no_loss_sale


def build_account(
    universe: Universe,
    model: ModelPortfolio,
    market: MarketData,
    account: Account,
    custom: Customizations,
    household_trades: list[HouseholdTrade],
    as_of: dt.date,
    harvest_groups: frozenset[str] = frozenset(),
) -> AccountProblem:
    """The numeric problem of one account.

    ``harvest_groups`` are wash groups whose purchases the engine gives up today so that their
    losses can be harvested. Raises ``AccountDataError`` (an ``InvalidInput``) for bad data:
    unknown instrument, stale price of a holding, negative quantity or cash, lots that do not add
    up to the stated holdings, a non-positive account value.
    """
    index = {s: i for i, s in enumerate(universe.symbols)}
    instruments = {i.symbol: i for i in model.instruments}
    n = universe.n
    notes: list[str] = []

    if account.cash < 0:
        raise AccountDataError("cash", "cash >= 0", account.cash)
    for name, amount in (("withdrawal", custom.withdrawal), ("min_cash", custom.min_cash)):
        if amount < 0:
            raise AccountDataError(name, "an amount >= 0", amount)
    units = np.zeros(n)
    unit_sums: dict[str, Decimal] = {}
    for k, lot in enumerate(account.lots):
        where = f"lots[{k}]"
        if lot.symbol not in index:
            raise AccountDataError(f"{where}.symbol", "an instrument of the model", lot.symbol)
        if lot.quantity < 0:
            raise AccountDataError(f"{where}.quantity", "a quantity >= 0", lot.quantity)
        if lot.cost_basis < 0:
            raise AccountDataError(f"{where}.cost_basis", "a cost basis >= 0", lot.cost_basis)
        if lot.acquired > as_of:
            raise AccountDataError(f"{where}.acquired", f"a date <= {as_of}", lot.acquired)
        if lot.symbol in universe.stale and lot.quantity > 0:
            raise AccountDataError(
                f"prices[{lot.symbol}]", "a fresh price for a held instrument", "stale or missing"
            )
        unit_sums[lot.symbol] = unit_sums.get(lot.symbol, Decimal(0)) + lot.quantity
    if len({lot.lot_id for lot in account.lots}) != len(account.lots):
        raise AccountDataError("lots", "unique lot ids", [lot.lot_id for lot in account.lots])
    if account.holdings is not None:
        for sym in set(account.holdings) | set(unit_sums):
            held = account.holdings.get(sym, Decimal(0))
            if held < 0:
                raise AccountDataError(f"holdings[{sym}]", "a quantity >= 0", held)
            if held != unit_sums.get(sym, Decimal(0)):
                raise AccountDataError(
                    f"holdings[{sym}]",
                    f"the sum of its lots ({unit_sums.get(sym, Decimal(0))})",
                    held,
                )
    for sym in (*custom.substitutions.keys(), *custom.substitutions.values()):
        if sym not in index:
            raise AccountDataError(f"substitutions[{sym}]", "an instrument of the model", sym)

    prices = universe.prices
    for lot in account.lots:
        units[index[lot.symbol]] += float(lot.quantity)
    held_value = np.where(units > 0, units * np.nan_to_num(prices), 0.0)
    total = float(account.cash) + float(held_value.sum())
    value = total - float(custom.withdrawal)
    if value <= 0:
        raise AccountDataError("withdrawal", f"less than the account value {total:.2f}", custom.withdrawal)
    holding = held_value / value

    # Model weights for this account: substitutions move a weight, screens drop it.
    target = np.zeros(n)
    for sym, weight in model.security_weights.items():
        target[index[custom.substitutions.get(sym, sym)]] += float(weight)
    screened = {
        s for s in universe.symbols if not all(sc.passes(instruments[s]) for sc in custom.screens)
    }
    for sym in sorted(screened):
        i = index[sym]
        if target[i] > 0:
            peers = [
                index[s]
                for s in universe.symbols
                if instruments[s].asset_class == instruments[sym].asset_class
                and s not in screened
                and target[index[s]] > 0
            ]
            if peers:
                share = target[peers] / target[peers].sum()
                target[peers] += target[i] * share
            notes.append(f"{sym} screened out; its model weight goes to its asset-class peers")
            target[i] = 0.0

    approved = set(model.approved) if model.approved is not None else set(model.security_weights)
    approved |= set(custom.substitutions.values())
    approved -= set(custom.substitutions.keys())
    no_buy_wash, no_loss_wash = wash_windows(household_trades, account.household_id, as_of)
    for lot in account.lots:
        if 0 <= (as_of - lot.acquired).days <= WASH_SALE_DAYS:
            no_loss_wash.add(lot.symbol)

    def group(sym: str) -> str:
        return instruments[sym].wash_group or sym

    no_buy_groups = {group(s) for s in no_buy_wash if s in instruments}
    no_loss_groups = {group(s) for s in no_loss_wash if s in instruments}

    max_w = float(model.max_position_weight)
    buy_max = np.zeros(n)
    for sym, i in index.items():
        reason = None
        if sym not in approved:
            reason = "not approved"
        elif sym in custom.never_buy:
            reason = "never-buy"
        elif sym in screened:
            reason = "screened"
        elif sym in universe.stale:
            reason = "stale price"
            notes.append(f"{sym} not bought: its price is stale")
        elif group(sym) in no_buy_groups:
            reason = "wash sale"
            notes.append(f"{sym} not bought: a household loss sale of its group within 30 days")
        elif group(sym) in harvest_groups:
            reason = "harvest"
        if reason is None:
            room = max(0.0, max_w - holding[i])
            cap = market.capacity.get(sym)
            if cap is not None:
                room = min(room, float(cap) / value)
            buy_max[i] = room

    # Lots: what may be sold and at what tax.
    tax = custom.tax
    lot_instrument, lot_weight, lot_held, lot_tax, lot_gain = [], [], [], [], []
    lot_short, lot_st, lot_ids = [], [], []
    harvestable: set[str] = set()
    for lot in account.lots:
        i = index[lot.symbol]
        if lot.quantity == 0:
            continue
        price = prices[i]
        weight = float(lot.quantity) * price / value
        gain = 1.0 - float(lot.cost_basis) / price
        short = not is_long_term(lot.acquired, as_of)
        rate = tax.short_term_rate if short else tax.long_term_rate
        sellable = weight
        if lot.symbol in custom.never_sell:
            sellable = 0.0
        elif (
            short
            and gain > 0
            and days_to_long_term(lot.acquired, as_of) <= tax.defer_short_term_days
        ):
            sellable = 0.0
        elif gain < 0 and group(lot.symbol) in no_loss_groups:
            sellable = 0.0
        tax_per = rate * gain
        st_gain = gain if short else 0.0
        if gain < 0:
            group_buyable = any(
                buy_max[index[s]] > 0 for s in universe.symbols if group(s) == group(lot.symbol)
            )
            if -gain < tax.loss_harvest_threshold:
                tax_per = 0.0
            elif sellable > 0:
                harvestable.add(group(lot.symbol))
                if group_buyable:
                    tax_per = 0.0
                    st_gain = 0.0
        lot_instrument.append(i)
        lot_weight.append(sellable)
        lot_held.append(weight)
        lot_tax.append(tax_per)
        lot_gain.append(gain)
        lot_short.append(short)
        lot_st.append(st_gain)
        lot_ids.append(lot.lot_id)
    lot_instrument_a = np.array(lot_instrument, dtype=np.int64)
    lot_weight_a = np.array(lot_weight, dtype=float)
    sellable_by = np.bincount(lot_instrument_a, weights=lot_weight_a, minlength=n)
    sell_max = sellable_by.copy()
    for sym, cap in market.capacity.items():
        if sym in index:
            sell_max[index[sym]] = min(sell_max[index[sym]], float(cap) / value)
    sell_min = np.zeros(n)
    for sym, i in index.items():
        excess = holding[i] - max_w
        if excess > 0:
            if excess > sell_max[i]:
                notes.append(
                    f"{sym} stays above the {max_w:.0%} position limit: restrictions or capacity "
                    "allow selling only part of it"
                )
                excess = sell_max[i]
            sell_min[i] = excess

    cash_w = float(account.cash) / value
    cash_budget = cash_w - float(custom.withdrawal) / value - float(custom.min_cash) / value
    cls_now = universe.class_matrix @ holding
    st_budget = (
        float(tax.short_term_gain_budget) / value
        if tax.short_term_gain_budget is not None
        else float("inf")
    )
    if st_budget < 0:
        raise AccountDataError("tax.short_term_gain_budget", "an amount >= 0", st_budget)
    return AccountProblem(
        account_id=account.account_id,
        value=value,
        holding=holding,
        model=target,
        cash=cash_w,
        cash_budget=cash_budget,
        buy_max=buy_max,
        sell_min=sell_min,
        sell_max=sell_max,
        class_lo=universe.class_lo - cls_now,
        class_hi=universe.class_hi - cls_now,
        st_budget=st_budget,
        lot_instrument=lot_instrument_a,
        lot_weight=lot_weight_a,
        lot_held=np.array(lot_held, dtype=float),
        lot_tax=np.array(lot_tax, dtype=float),
        lot_gain=np.array(lot_gain, dtype=float),
        lot_short=np.array(lot_short, dtype=bool),
        lot_st_gain=np.array(lot_st, dtype=float),
        lot_ids=tuple(lot_ids),
        notes=notes,
        harvestable_groups=frozenset(harvestable),
    )


def objective(universe: Universe, p: AccountProblem, buys: np.ndarray, sells: np.ndarray) -> float:
    """The objective (fraction of account value) of buys per instrument and sells per lot."""
    net = p.holding + buys - np.bincount(p.lot_instrument, weights=sells, minlength=universe.n)
    d = net - p.model
    risk = universe.risk_aversion * float(d @ universe.cov @ d)
    return (
        risk
        + float(universe.cost @ buys)
        + float((p.lot_tax + universe.cost[p.lot_instrument]) @ sells)
    )


def violations(
    universe: Universe, p: AccountProblem, buys: np.ndarray, sells: np.ndarray
) -> dict[str, float]:
    """How far (weight) each constraint is broken by a solution; 0 everywhere if feasible."""
    sold = np.bincount(p.lot_instrument, weights=sells, minlength=universe.n)
    change = buys - sold
    spend = float((1 + universe.cost) @ buys - (1 - universe.cost) @ sold)
    cls = universe.class_matrix @ change
    st = float(p.lot_st_gain @ sells) if p.lot_st_gain.size else 0.0
    return {
        "buy_negative": float(max(0.0, -buys.min(initial=0.0))),
        "buy_max": float(max(0.0, (buys - p.buy_max).max(initial=0.0))),
        "sell_negative": float(max(0.0, -sells.min(initial=0.0))),
        "sell_lot": float(max(0.0, (sells - p.lot_weight).max(initial=0.0))),
        "sell_min": float(max(0.0, (p.sell_min - sold).max(initial=0.0))),
        "sell_max": float(max(0.0, (sold - p.sell_max).max(initial=0.0))),
        "cash": max(0.0, spend - p.cash_budget),
        "class_lo": float(max(0.0, (p.class_lo - cls).max(initial=0.0))),
        "class_hi": float(max(0.0, (cls - p.class_hi).max(initial=0.0))),
        "st_budget": max(0.0, st - p.st_budget),
    }


def is_alternative(model: ModelPortfolio, symbol: str) -> bool:
    """Whether ``symbol`` is an alternative fund (costlier, possibly gated)."""
    return any(i.symbol == symbol and i.kind is InstrumentKind.ALTERNATIVE for i in model.instruments)


__all__ = [
    "AccountDataError",
    "AccountProblem",
    "StaleData",
    "Universe",
    "build_account",
    "build_universe",
    "days_to_long_term",
    "is_long_term",
    "objective",
    "one_year_after",
    "violations",
    "wash_windows",
]
