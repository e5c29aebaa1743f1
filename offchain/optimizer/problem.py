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
the rule here is: a loss lot may be sold only if nothing of its wash group can be bought today.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from decimal import Decimal

import numpy as np

from offchain.errors import InvalidInput, StaleData
from offchain.optimizer.inputs import (
    Account,
    Customizations,
    HouseholdTrade,
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
    # Before the wash-sale guard and the limits' relaxation (see ``ProblemBuilder._limits``).
    lot_full_weight: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sell_cap: np.ndarray = field(default_factory=lambda: np.zeros(0))
    over_max: np.ndarray = field(default_factory=lambda: np.zeros(0))
    class_lo_raw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    class_hi_raw: np.ndarray = field(default_factory=lambda: np.zeros(0))


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
    """The numeric problem of one account (see ``ProblemBuilder.build``; same errors)."""
    builder = ProblemBuilder(universe, model, market, household_trades, as_of)
    problem = builder.build(account, custom)
    return builder.with_harvest(problem, harvest_groups) if harvest_groups else problem


def _last_day_with(as_of: dt.date, test) -> dt.date:
    """The latest acquisition date d near one year before ``as_of`` with ``test(d)`` true."""
    day = as_of - dt.timedelta(days=360)
    while not test(day):
        day -= dt.timedelta(days=1)
    while test(day + dt.timedelta(days=1)):
        day += dt.timedelta(days=1)
    return day


class ProblemBuilder:
    """Builds account problems for one model, market and date, caching what accounts share
    (instrument indexes, wash groups, screens, the household trade windows)."""

    def __init__(
        self,
        universe: Universe,
        model: ModelPortfolio,
        market: MarketData,
        household_trades: list[HouseholdTrade],
        as_of: dt.date,
    ) -> None:
        self.u = universe
        self.model = model
        self.market = market
        self.as_of = as_of
        self.index = {s: i for i, s in enumerate(universe.symbols)}
        self.instruments = {i.symbol: i for i in model.instruments}
        groups = [self.instruments[s].wash_group or s for s in universe.symbols]
        self.group_names = sorted(set(groups))
        gid = {g: k for k, g in enumerate(self.group_names)}
        self.group_of = np.array([gid[g] for g in groups], dtype=np.int64)
        self.by_household: dict[str, list[HouseholdTrade]] = {}
        for trade in household_trades:
            self.by_household.setdefault(trade.household_id, []).append(trade)
        self._windows: dict[str, tuple[set[str], set[str]]] = {}
        self._screens: dict[tuple, frozenset[str]] = {}
        self.ordinal = as_of.toordinal()
        # Acquired on or before this date -> long-term today.
        self.long_cutoff = _last_day_with(as_of, lambda d: as_of > one_year_after(d)).toordinal()
        self._defer: dict[int, int] = {}
        self.base_approved = (
            set(model.approved) if model.approved is not None else set(model.security_weights)
        )
        self.model_target = np.zeros(universe.n)
        for sym, weight in model.security_weights.items():
            self.model_target[self.index[sym]] += float(weight)
        self.capacity = np.full(universe.n, np.inf)
        for sym, cap in market.capacity.items():
            if sym in self.index:
                self.capacity[self.index[sym]] = float(cap)

    def _defer_cutoff(self, days: int) -> int:
        """Lots acquired on or before this ordinal turn long-term within ``days`` days."""
        if days not in self._defer:
            as_of = self.as_of
            self._defer[days] = _last_day_with(
                as_of, lambda d: days_to_long_term(d, as_of) <= days
            ).toordinal()
        return self._defer[days]

    def _screened(self, screens: tuple) -> frozenset[str]:
        if screens not in self._screens:
            self._screens[screens] = frozenset(
                s for s in self.u.symbols
                if not all(sc.passes(self.instruments[s]) for sc in screens)
            )
        return self._screens[screens]

    def build(self, account: Account, custom: Customizations) -> AccountProblem:
        """The numeric problem of one account.

        Raises ``AccountDataError`` (an ``InvalidInput``) for bad data: unknown instrument,
        stale price of a holding, negative quantity, cash or cost basis, a lot dated after
        ``as_of``, lots that do not add up to the stated holdings, a withdrawal larger than the
        account.
        """
        u, index, as_of = self.u, self.index, self.as_of
        n = u.n
        notes: list[str] = []
        if account.cash < 0:
            raise AccountDataError("cash", "cash >= 0", account.cash)
        for name, amount in (("withdrawal", custom.withdrawal), ("min_cash", custom.min_cash)):
            if amount < 0:
                raise AccountDataError(name, "an amount >= 0", amount)
        lots = account.lots
        for k, lot in enumerate(lots):
            if lot.symbol not in index:
                raise AccountDataError(f"lots[{k}].symbol", "an instrument of the model",
                                       lot.symbol)
            if lot.quantity < 0:
                raise AccountDataError(f"lots[{k}].quantity", "a quantity >= 0", lot.quantity)
            if lot.cost_basis < 0:
                raise AccountDataError(f"lots[{k}].cost_basis", "a cost basis >= 0",
                                       lot.cost_basis)
            if lot.acquired > as_of:
                raise AccountDataError(f"lots[{k}].acquired", f"a date <= {as_of}", lot.acquired)
            if lot.symbol in u.stale and lot.quantity > 0:
                raise AccountDataError(f"prices[{lot.symbol}]",
                                       "a fresh price for a held instrument", "stale or missing")
        if len({lot.lot_id for lot in lots}) != len(lots):
            raise AccountDataError("lots", "unique lot ids", [lot.lot_id for lot in lots])
        if account.holdings is not None:
            unit_sums: dict[str, Decimal] = {}
            for lot in lots:
                unit_sums[lot.symbol] = unit_sums.get(lot.symbol, Decimal(0)) + lot.quantity
            for sym in set(account.holdings) | set(unit_sums):
                held = account.holdings.get(sym, Decimal(0))
                if held < 0:
                    raise AccountDataError(f"holdings[{sym}]", "a quantity >= 0", held)
                if held != unit_sums.get(sym, Decimal(0)):
                    raise AccountDataError(
                        f"holdings[{sym}]",
                        f"the sum of its lots ({unit_sums.get(sym, Decimal(0))})", held)
        for sym in (*custom.substitutions.keys(), *custom.substitutions.values()):
            if sym not in index:
                raise AccountDataError(f"substitutions[{sym}]", "an instrument of the model", sym)

        lots = tuple(lot for lot in lots if lot.quantity > 0)
        inst = np.array([index[lot.symbol] for lot in lots], dtype=np.int64)
        qty = np.array([float(lot.quantity) for lot in lots])
        basis = np.array([float(lot.cost_basis) for lot in lots])
        acquired = np.array([lot.acquired.toordinal() for lot in lots], dtype=np.int64)
        price = u.prices[inst] if lots else np.zeros(0)
        lot_value = qty * price
        held_value = np.bincount(inst, weights=lot_value, minlength=n)
        total = float(account.cash) + float(held_value.sum())
        value = total - float(custom.withdrawal)
        if value <= 0:
            raise AccountDataError("withdrawal", f"less than the account value {total:.2f}",
                                   custom.withdrawal)
        holding = held_value / value

        # Model weights for this account: substitutions move a weight, screens drop it.
        target = self.model_target.copy()
        for x_sym, y_sym in custom.substitutions.items():
            target[index[y_sym]] += target[index[x_sym]]
            target[index[x_sym]] = 0.0
        screened = self._screened(custom.screens)
        classes = [self.instruments[s].asset_class for s in u.symbols]
        for sym in sorted(screened):
            i = index[sym]
            if target[i] > 0:
                peers = [j for j, s in enumerate(u.symbols) if classes[j] == classes[i]
                         and s not in screened and target[j] > 0]
                where = "its asset-class peers"
                if not peers:
                    peers = [j for j, s in enumerate(u.symbols)
                             if s not in screened and target[j] > 0 and j != i]
                    where = "the rest of the model"
                if peers:
                    target[peers] += target[i] * target[peers] / target[peers].sum()
                notes.append(f"{sym} screened out; its model weight goes to {where}")
                target[i] = 0.0

        approved = (self.base_approved | set(custom.substitutions.values())) - set(
            custom.substitutions)
        no_buy_wash, no_loss_wash = self._household_windows(account.household_id)
        no_loss_wash = set(no_loss_wash)
        recent = acquired >= self.ordinal - WASH_SALE_DAYS
        for k in np.flatnonzero(recent):
            no_loss_wash.add(lots[k].symbol)
        no_buy_groups = {self.group_of[index[s]] for s in no_buy_wash if s in index}
        no_loss_groups = {self.group_of[index[s]] for s in no_loss_wash if s in index}

        max_w = float(self.model.max_position_weight)
        buy_max = np.zeros(n)
        for sym, i in index.items():
            if sym not in approved or sym in custom.never_buy or sym in screened:
                continue
            if sym in u.stale:
                notes.append(f"{sym} not bought: its price is stale")
                continue
            if self.group_of[i] in no_buy_groups:
                notes.append(f"{sym} not bought: wash sale (a household loss sale of its "
                             f"group within {WASH_SALE_DAYS} days)")
                continue
            buy_max[i] = min(max(0.0, max_w - holding[i]), self.capacity[i] / value)

        # Lots: what may be sold and at what tax.
        tax = custom.tax
        gain = 1.0 - basis / price if lots else np.zeros(0)
        short = acquired > self.long_cutoff
        rate = np.where(short, tax.short_term_rate, tax.long_term_rate)
        sellable = lot_value / value
        never_sell = np.array([lot.symbol in custom.never_sell for lot in lots], dtype=bool)
        deferred = short & (gain > 0) & (acquired <= self._defer_cutoff(tax.defer_short_term_days))
        lot_group = self.group_of[inst]
        no_loss_mask = np.zeros(len(self.group_names), dtype=bool)
        no_loss_mask[list(no_loss_groups)] = True
        wash_locked = (gain < 0) & no_loss_mask[lot_group]
        sellable = np.where(never_sell | deferred | wash_locked, 0.0, sellable)
        full_tax = rate * gain
        below_threshold = (gain < 0) & (-gain < tax.loss_harvest_threshold)
        full_tax = np.where(below_threshold, 0.0, rate * gain)
        st_full = np.where(short, gain, 0.0)
        # Wash-sale guard: a loss lot of a group that may be bought today is not sold (a loss
        # sale and a purchase of its group on the same day is a wash sale). The engine lifts the
        # guard group by group (``with_harvest``) where it gives up today's purchases instead.
        group_buyable = np.bincount(self.group_of, weights=buy_max > 0,
                                    minlength=len(self.group_names)) > 0
        loss = (gain < 0) & (sellable > 0)
        full_sellable = sellable
        sellable = np.where(loss & group_buyable[lot_group], 0.0, sellable)
        sell_cap = self.capacity / value
        over_max = np.maximum(holding - max_w, 0.0)
        cash_w = float(account.cash) / value
        cash_budget = cash_w - float(custom.withdrawal) / value - float(custom.min_cash) / value
        cls_now = u.class_matrix @ holding
        class_lo_raw = u.class_lo - cls_now
        class_hi_raw = u.class_hi - cls_now
        st_budget = float("inf")
        if tax.short_term_gain_budget is not None:
            if tax.short_term_gain_budget < 0:
                raise AccountDataError("tax.short_term_gain_budget", "an amount >= 0",
                                       tax.short_term_gain_budget)
            st_budget = float(tax.short_term_gain_budget) / value
        problem = AccountProblem(
            account_id=account.account_id,
            value=value,
            holding=holding,
            model=target,
            cash=cash_w,
            cash_budget=cash_budget,
            buy_max=buy_max,
            sell_min=np.zeros(n),
            sell_max=np.zeros(n),
            class_lo=class_lo_raw,
            class_hi=class_hi_raw,
            st_budget=st_budget,
            lot_instrument=inst,
            lot_weight=sellable,
            lot_held=lot_value / value,
            lot_tax=full_tax,
            lot_gain=gain,
            lot_short=short,
            lot_st_gain=st_full,
            lot_ids=tuple(lot.lot_id for lot in lots),
            notes=notes,
            harvestable_groups=frozenset(
                self.group_names[g] for g in np.unique(lot_group[loss])),
            lot_full_weight=full_sellable,
            sell_cap=sell_cap,
            over_max=over_max,
            class_lo_raw=class_lo_raw,
            class_hi_raw=class_hi_raw,
        )
        return self._limits(problem)

    def _limits(self, p: AccountProblem) -> AccountProblem:
        """Sell bounds and class limits from what may be sold and bought; a limit that the
        restrictions make unreachable today is met as far as allowed (and noted)."""
        u, n = self.u, self.u.n
        sell_max = np.minimum(np.bincount(p.lot_instrument, weights=p.lot_weight, minlength=n),
                              p.sell_cap)
        sell_min = np.minimum(p.over_max, sell_max)
        notes = [x for x in p.notes if "stays" not in x]
        max_w = float(self.model.max_position_weight)
        for i in np.flatnonzero(p.over_max > sell_max + 1e-15):
            notes.append(f"{u.symbols[i]} stays above the {max_w:.0%} position limit: "
                         "restrictions or capacity allow selling only part of it")
        class_lo, class_hi = p.class_lo_raw.copy(), p.class_hi_raw.copy()
        most_sold = -(u.class_matrix @ sell_max)
        most_bought = u.class_matrix @ p.buy_max
        for k, cls in enumerate(u.asset_classes):
            if class_hi[k] < most_sold[k]:
                notes.append(f"{cls} stays above its {u.class_hi[k]:.0%} limit: restrictions "
                             "allow selling only part of it")
                class_hi[k] = most_sold[k]
            if class_lo[k] > most_bought[k]:
                notes.append(f"{cls} stays below its {u.class_lo[k]:.0%} limit: restrictions "
                             "allow buying only part of it")
                class_lo[k] = most_bought[k]
        return replace(p, sell_max=sell_max, sell_min=sell_min, class_lo=class_lo,
                       class_hi=class_hi, notes=notes)

    def _household_windows(self, household_id: str) -> tuple[set[str], set[str]]:
        if household_id not in self._windows:
            self._windows[household_id] = wash_windows(
                self.by_household.get(household_id, []), household_id, self.as_of)
        return self._windows[household_id]

    def with_harvest(self, p: AccountProblem, groups: frozenset[str]) -> AccountProblem:
        """``p`` with the purchases of wash ``groups`` given up so that their losses may be
        realized (lifts the wash-sale guard of their loss lots)."""
        mask = np.zeros(len(self.group_names), dtype=bool)
        mask[[self.group_names.index(g) for g in groups]] = True
        locked = mask[self.group_of]
        in_group = mask[self.group_of[p.lot_instrument]]
        harvested = replace(
            p,
            buy_max=np.where(locked, 0.0, p.buy_max),
            lot_weight=np.where(in_group, p.lot_full_weight, p.lot_weight),
            notes=[*p.notes, "wash sales: not buying " + ", ".join(sorted(groups))
                   + " today so that its losses can be realized"],
        )
        return self._limits(harvested)


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


__all__ = [
    "AccountDataError",
    "AccountProblem",
    "ProblemBuilder",
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
