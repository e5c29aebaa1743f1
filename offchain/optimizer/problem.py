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
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import repeat
from operator import attrgetter

import numpy as np
import pyarrow as pa

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
    """The numeric problem of one account (see ``ProblemBuilder.build``; same errors), with the
    purchases of ``harvest_groups`` given up so that their losses may be realized."""
    builder = ProblemBuilder(universe, model, market, household_trades, as_of)
    builder.validate(account, custom)
    batch, errors = builder.build_batch([account], [custom])
    if errors:
        raise errors[0][1]
    if harvest_groups:
        mask = np.array([g in harvest_groups for g in builder.group_names])
        batch.harvest(mask[None, :], builder)
    return batch.problem(0)


def _last_day_with(as_of: dt.date, test) -> dt.date:
    """The latest acquisition date d near one year before ``as_of`` with ``test(d)`` true."""
    day = as_of - dt.timedelta(days=360)
    while not test(day):
        day -= dt.timedelta(days=1)
    while test(day + dt.timedelta(days=1)):
        day += dt.timedelta(days=1)
    return day


def _exact_column(values: list[Decimal]) -> pa.Array:
    """``decimal128(38, 18)``, or a wider decimal for the rare value with more decimals (a
    cost basis computed by division, say), so that nothing is rounded."""
    try:
        return pa.array(values, pa.decimal128(38, 18))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        scale = max(18, *(-v.as_tuple().exponent for v in values))
        return pa.array(values, pa.decimal256(76, min(scale, 60)))


@dataclass
class ProblemBatch:
    """The problems of many accounts of one universe, stacked (rows ``B``, lots ``L`` in all).

    Row ``a`` holds what ``AccountProblem`` holds for one account; the lots of account ``a`` are
    ``lot_start[a]:lot_start[a + 1]`` of the flat lot arrays, in the account's order (lots of
    quantity 0 left out). ``problem(a)`` is the ``AccountProblem`` of one row.
    """

    account_ids: list[str]
    value: np.ndarray  # (B,) cash units, after the withdrawal
    cash: np.ndarray  # (B,) cash weight before the withdrawal
    cash_budget: np.ndarray  # (B,)
    st_budget: np.ndarray  # (B,) inf where none
    holding: np.ndarray  # (B, n)
    model: np.ndarray  # (B, n)
    buy_max: np.ndarray  # (B, n)
    sell_min: np.ndarray  # (B, n)
    sell_max: np.ndarray  # (B, n)
    sell_cap: np.ndarray  # (B, n)
    over_max: np.ndarray  # (B, n)
    class_lo: np.ndarray  # (B, K)
    class_hi: np.ndarray  # (B, K)
    class_lo_raw: np.ndarray  # (B, K)
    class_hi_raw: np.ndarray  # (B, K)
    harvestable: np.ndarray  # (B, G) bool: wash groups with loss lots held back by the guard
    advisory: np.ndarray  # (B,) bool: advisory account (proposals need approval)
    cash_exact: list[Decimal]  # per row: the account's cash, exact
    lot_start: np.ndarray  # (B + 1,)
    lot_account: np.ndarray  # (L,) row of each lot
    lot_instrument: np.ndarray  # (L,)
    lot_weight: np.ndarray  # (L,)
    lot_full_weight: np.ndarray  # (L,)
    lot_held: np.ndarray  # (L,)
    lot_tax: np.ndarray  # (L,)
    lot_gain: np.ndarray  # (L,)
    lot_short: np.ndarray  # (L,) bool
    lot_st_gain: np.ndarray  # (L,)
    lot_ids: np.ndarray  # (L,) object: lot id strings
    lot_refs: np.ndarray  # (L,) object: the ``TaxLot`` of each lot
    notes: list[list[str]]  # per row: screens, stale prices, wash-sale locks
    harvest_notes: list[str | None]  # per row: the wash-sale trade-off taken, if any
    limit_notes: list[list[str]]  # per row: limits that restrictions make unreachable
    group_names: tuple[str, ...] = ()

    _ROWS = (
        "value",
        "cash",
        "cash_budget",
        "st_budget",
        "holding",
        "model",
        "buy_max",
        "sell_min",
        "sell_max",
        "sell_cap",
        "over_max",
        "class_lo",
        "class_hi",
        "class_lo_raw",
        "class_hi_raw",
        "harvestable",
        "advisory",
    )
    _LOTS = (
        "lot_instrument",
        "lot_weight",
        "lot_full_weight",
        "lot_held",
        "lot_tax",
        "lot_gain",
        "lot_short",
        "lot_st_gain",
        "lot_ids",
        "lot_refs",
    )
    _LISTS = ("account_ids", "cash_exact", "notes", "harvest_notes", "limit_notes")

    def __len__(self) -> int:
        return len(self.account_ids)

    def exact_lots(self, ks: np.ndarray) -> tuple[pa.Array, pa.Array]:
        """Exact quantity and cost basis (``decimal128(38, 18)``) of the flat lots ``ks``."""
        refs = self.lot_refs[ks]
        return (
            _exact_column([r.quantity for r in refs]),
            _exact_column([r.cost_basis for r in refs]),
        )

    def lot_rows(self, rows: np.ndarray) -> np.ndarray:
        """Flat indexes of the lots of ``rows``, row after row."""
        starts, ends = self.lot_start[rows], self.lot_start[rows + 1]
        lens = ends - starts
        offsets = np.repeat(starts - (np.cumsum(lens) - lens), lens)
        return offsets + np.arange(int(lens.sum()))

    def take(self, rows: np.ndarray) -> tuple[ProblemBatch, np.ndarray]:
        """The batch of ``rows`` only, and the flat indexes (here) of its lots."""
        lots = self.lot_rows(rows)
        lens = self.lot_start[rows + 1] - self.lot_start[rows]
        fields = {name: getattr(self, name)[rows] for name in self._ROWS}
        fields.update({name: getattr(self, name)[lots] for name in self._LOTS})
        fields.update({name: [getattr(self, name)[a] for a in rows] for name in self._LISTS})
        part = ProblemBatch(
            lot_start=np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
            lot_account=np.repeat(np.arange(rows.size), lens),
            group_names=self.group_names,
            **fields,
        )
        return part, lots

    def put(self, rows: np.ndarray, lots: np.ndarray, part: ProblemBatch) -> None:
        """Write ``part`` (from ``take(rows)``, then changed) back into ``rows``."""
        for name in self._ROWS:
            getattr(self, name)[rows] = getattr(part, name)
        for name in self._LOTS:
            getattr(self, name)[lots] = getattr(part, name)
        for name in self._LISTS:
            target, source = getattr(self, name), getattr(part, name)
            for k, a in enumerate(rows):
                target[a] = source[k]

    def problem(self, a: int) -> AccountProblem:
        """The ``AccountProblem`` of row ``a`` (copies, so the batch is never aliased)."""
        lots = slice(int(self.lot_start[a]), int(self.lot_start[a + 1]))
        harvest = self.harvest_notes[a]
        return AccountProblem(
            account_id=self.account_ids[a],
            value=float(self.value[a]),
            holding=self.holding[a].copy(),
            model=self.model[a].copy(),
            cash=float(self.cash[a]),
            cash_budget=float(self.cash_budget[a]),
            buy_max=self.buy_max[a].copy(),
            sell_min=self.sell_min[a].copy(),
            sell_max=self.sell_max[a].copy(),
            class_lo=self.class_lo[a].copy(),
            class_hi=self.class_hi[a].copy(),
            st_budget=float(self.st_budget[a]),
            lot_instrument=self.lot_instrument[lots].copy(),
            lot_weight=self.lot_weight[lots].copy(),
            lot_held=self.lot_held[lots].copy(),
            lot_tax=self.lot_tax[lots].copy(),
            lot_gain=self.lot_gain[lots].copy(),
            lot_short=self.lot_short[lots].copy(),
            lot_st_gain=self.lot_st_gain[lots].copy(),
            lot_ids=tuple(self.lot_ids[lots]),
            notes=[*self.notes[a], *([harvest] if harvest else []), *self.limit_notes[a]],
            harvestable_groups=frozenset(
                self.group_names[g] for g in np.flatnonzero(self.harvestable[a])
            ),
            lot_full_weight=self.lot_full_weight[lots].copy(),
            sell_cap=self.sell_cap[a].copy(),
            over_max=self.over_max[a].copy(),
            class_lo_raw=self.class_lo_raw[a].copy(),
            class_hi_raw=self.class_hi_raw[a].copy(),
        )

    def harvest(self, groups: np.ndarray, builder: ProblemBuilder) -> None:
        """Give up today's purchases of the wash ``groups`` (B, G) of each row so that their
        losses may be realized (lifts the wash-sale guard of their loss lots)."""
        self.buy_max = np.where(groups[:, builder.group_of], 0.0, self.buy_max)
        in_group = groups[self.lot_account, builder.group_of[self.lot_instrument]]
        self.lot_weight = np.where(in_group, self.lot_full_weight, self.lot_weight)
        for a in np.flatnonzero(groups.any(axis=1)):
            names = sorted(builder.group_names[g] for g in np.flatnonzero(groups[a]))
            self.harvest_notes[a] = (
                "wash sales: not buying "
                + ", ".join(names)
                + " today so that its losses can be realized"
            )
        builder.apply_limits(self)


@dataclass(frozen=True)
class _Plan:
    """What an account's customizations (restrictions, screens, substitutions) mean per
    instrument; shared by every account with the same menu choices."""

    target: np.ndarray  # (n,) model weights after substitutions and screens
    buy_ok: np.ndarray  # (n,) approved, not never-buy, not screened
    never_sell: np.ndarray  # (n,)
    notes: tuple[str, ...]
    error: AccountDataError | None = None


_INF = float("inf")


class ProblemBuilder:
    """Builds account problems for one model, market and date, caching what accounts share
    (instrument indexes, wash groups, customization plans, the household trade windows)."""

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
        self.group_names = tuple(sorted(set(groups)))
        gid = {g: k for k, g in enumerate(self.group_names)}
        self.group_of = np.array([gid[g] for g in groups], dtype=np.int64)
        self.by_household: dict[str, list[HouseholdTrade]] = {}
        for trade in household_trades:
            self.by_household.setdefault(trade.household_id, []).append(trade)
        self._windows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._screens: dict[tuple, frozenset[str]] = {}
        self._plans: dict[tuple, _Plan] = {}
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
        self.stale = np.array([s in universe.stale for s in universe.symbols], dtype=bool)
        self.max_w = float(model.max_position_weight)

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
                s
                for s in self.u.symbols
                if not all(sc.passes(self.instruments[s]) for sc in screens)
            )
        return self._screens[screens]

    def _plan(self, custom: Customizations) -> _Plan:
        """The per-instrument meaning of ``custom``'s menu choices (cached by their values)."""
        key = (
            custom.never_buy,
            custom.never_sell,
            custom.screens,
            tuple(custom.substitutions.items()),
        )
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._make_plan(custom)
        return plan

    def _make_plan(self, custom: Customizations) -> _Plan:
        u, index = self.u, self.index
        n = u.n
        for sym in (*custom.substitutions.keys(), *custom.substitutions.values()):
            if sym not in index:
                return _Plan(
                    np.zeros(n),
                    np.zeros(n, bool),
                    np.zeros(n, bool),
                    (),
                    AccountDataError(f"substitutions[{sym}]", "an instrument of the model", sym),
                )
        notes: list[str] = []
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
                peers = [
                    j
                    for j, s in enumerate(u.symbols)
                    if classes[j] == classes[i] and s not in screened and target[j] > 0
                ]
                where = "its asset-class peers"
                if not peers:
                    peers = [
                        j
                        for j, s in enumerate(u.symbols)
                        if s not in screened and target[j] > 0 and j != i
                    ]
                    where = "the rest of the model"
                if peers:
                    target[peers] += target[i] * target[peers] / target[peers].sum()
                notes.append(f"{sym} screened out; its model weight goes to {where}")
                target[i] = 0.0
        approved = (self.base_approved | set(custom.substitutions.values())) - set(
            custom.substitutions
        )
        buy_ok = np.array(
            [s in approved and s not in custom.never_buy and s not in screened for s in u.symbols],
            dtype=bool,
        )
        never_sell = np.array([s in custom.never_sell for s in u.symbols], dtype=bool)
        return _Plan(target, buy_ok, never_sell, tuple(notes))

    def validate(self, account: Account, custom: Customizations) -> None:
        """Check one account's data, lot by lot (``build_batch`` checks in bulk and calls this
        for the accounts it flags, to name the first offending field).

        Raises ``AccountDataError`` (an ``InvalidInput``) for bad data: unknown instrument,
        stale price of a holding, negative quantity, cash or cost basis, a lot dated after
        ``as_of``, lots that do not add up to the stated holdings, an unknown substitution.
        """
        index, as_of, stale = self.index, self.as_of, self.u.stale
        if account.cash < 0:
            raise AccountDataError("cash", "cash >= 0", account.cash)
        for name, amount in (("withdrawal", custom.withdrawal), ("min_cash", custom.min_cash)):
            if amount < 0:
                raise AccountDataError(name, "an amount >= 0", amount)
        lots = account.lots
        for k, lot in enumerate(lots):
            if lot.symbol not in index:
                raise AccountDataError(
                    f"lots[{k}].symbol", "an instrument of the model", lot.symbol
                )
            if lot.quantity < 0:
                raise AccountDataError(f"lots[{k}].quantity", "a quantity >= 0", lot.quantity)
            if lot.cost_basis < 0:
                raise AccountDataError(f"lots[{k}].cost_basis", "a cost basis >= 0", lot.cost_basis)
            if lot.acquired > as_of:
                raise AccountDataError(f"lots[{k}].acquired", f"a date <= {as_of}", lot.acquired)
            if lot.symbol in stale and lot.quantity > 0:
                raise AccountDataError(
                    f"prices[{lot.symbol}]",
                    "a fresh price for a held instrument",
                    "stale or missing",
                )
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
                        f"the sum of its lots ({unit_sums.get(sym, Decimal(0))})",
                        held,
                    )
        error = self._plan(custom).error
        if error is not None:
            raise error

    def build(self, account: Account, custom: Customizations) -> AccountProblem:
        """The numeric problem of one account.

        Raises ``AccountDataError`` (an ``InvalidInput``) for bad data: unknown instrument,
        stale price of a holding, negative quantity, cash or cost basis, a lot dated after
        ``as_of``, lots that do not add up to the stated holdings, a withdrawal larger than the
        account, a negative short-term gains budget.
        """
        batch, errors = self.build_batch([account], [custom])
        if errors:
            raise errors[0][1]
        return batch.problem(0)

    def build_batch(
        self, accounts: Sequence[Account], customs: Sequence[Customizations]
    ) -> tuple[ProblemBatch, list[tuple[int, AccountDataError]]]:
        """The problems of many accounts at once, in numpy (``customs[k]`` is the menu of
        ``accounts[k]``).

        Returns the batch of the accounts whose data is good, in input order, and for each
        other account its position in ``accounts`` and the error that skips it (the same
        errors as ``build``). Raises nothing for bad account data.
        """
        u, n = self.u, self.u.n
        count = len(accounts)
        plans = [self._plan(c) for c in customs]
        lot_lists = [a.lots for a in accounts]
        per_account = np.fromiter(map(len, lot_lists), np.int64, count)
        flat = [lot for lots in lot_lists for lot in lots]
        total = len(flat)
        rows = list(map(_LOT_FIELDS, flat))
        syms, qtys, bases, acqs, ids = zip(*rows, strict=True) if rows else ((),) * 5
        inst = np.fromiter(map(self.index.get, syms, repeat(-1, total)), np.int64, total)
        qty = np.fromiter(map(float, qtys), float, total)
        basis = np.fromiter(map(float, bases), float, total)
        acquired = np.fromiter(map(dt.date.toordinal, acqs), np.int64, total)
        lot_account = np.repeat(np.arange(count), per_account)
        cash = np.fromiter((float(a.cash) for a in accounts), float, count)
        withdrawal = np.fromiter((float(c.withdrawal) for c in customs), float, count)
        min_cash = np.fromiter((float(c.min_cash) for c in customs), float, count)

        # Bulk checks; flagged accounts are checked one by one to name the offending field.
        known = inst >= 0
        bad_lot = ~known | (qty < 0) | (basis < 0) | (acquired > self.ordinal)
        bad_lot |= known & self.stale[np.where(known, inst, 0)] & (qty > 0)
        flagged = np.bincount(lot_account, weights=bad_lot, minlength=count) > 0
        flagged |= (cash < 0) | (withdrawal < 0) | (min_cash < 0)
        flagged |= np.fromiter(
            (
                a.holdings is not None or p.error is not None
                for a, p in zip(accounts, plans, strict=True)
            ),
            bool,
            count,
        )
        if len(set(ids)) != total:
            flagged |= np.fromiter(
                (len({lot.lot_id for lot in lots}) != len(lots) for lots in lot_lists), bool, count
            )
        errors: list[tuple[int, AccountDataError]] = []
        skip = np.zeros(count, dtype=bool)
        for a in np.flatnonzero(flagged):
            try:
                self.validate(accounts[a], customs[a])
            except AccountDataError as exc:
                errors.append((int(a), exc))
                skip[a] = True
        price = u.prices[np.where(known, inst, 0)]
        lot_value = np.where(known & ~skip[lot_account] & (qty > 0), qty * price, 0.0)
        held_total = np.bincount(lot_account, weights=lot_value, minlength=count)
        value = cash + held_total - withdrawal
        for a in np.flatnonzero(~skip & (value <= 0)):
            total_value = float(cash[a] + held_total[a])
            errors.append(
                (
                    int(a),
                    AccountDataError(
                        "withdrawal",
                        f"less than the account value {total_value:.2f}",
                        customs[a].withdrawal,
                    ),
                )
            )
            skip[a] = True
        budgets = [c.tax.short_term_gain_budget for c in customs]
        for a in np.flatnonzero(~skip):
            if budgets[a] is not None and budgets[a] < 0:
                errors.append(
                    (
                        int(a),
                        AccountDataError(
                            "tax.short_term_gain_budget", "an amount >= 0", budgets[a]
                        ),
                    )
                )
                skip[a] = True
        errors.sort(key=lambda e: e[0])

        keep = np.flatnonzero(~skip)
        b_count = keep.size
        new_row = np.cumsum(~skip) - 1
        lot_keep = ~skip[lot_account] & (qty > 0)
        inst, qty, basis, acquired = (
            inst[lot_keep],
            qty[lot_keep],
            basis[lot_keep],
            acquired[lot_keep],
        )
        lot_value, price = lot_value[lot_keep], price[lot_keep]
        lot_ids = np.array(ids, dtype=object)[lot_keep] if total else np.zeros(0, object)
        lot_refs = np.fromiter(flat, dtype=object, count=total)[lot_keep]
        lot_account = new_row[lot_account[lot_keep]]
        lot_start = np.concatenate([[0], np.cumsum(np.bincount(lot_account, minlength=b_count))])
        value, cash, withdrawal, min_cash = (
            value[keep],
            cash[keep],
            withdrawal[keep],
            min_cash[keep],
        )
        kept_customs = [customs[a] for a in keep]
        kept_plans = [plans[a] for a in keep]
        cell = lot_account * n + inst
        held_value = np.bincount(cell, weights=lot_value, minlength=b_count * n).reshape(b_count, n)
        holding = held_value / value[:, None]
        plan_ids: dict[int, int] = {}
        plan_of = np.fromiter(
            (plan_ids.setdefault(id(p), len(plan_ids)) for p in kept_plans), np.int64, b_count
        )
        unique_plans = list({id(p): p for p in kept_plans}.values())
        target = (
            np.stack([p.target for p in unique_plans])[plan_of] if b_count else np.zeros((0, n))
        )
        buy_ok = (
            np.stack([p.buy_ok for p in unique_plans])[plan_of]
            if b_count
            else np.zeros((0, n), bool)
        )
        never_sell_mat = (
            np.stack([p.never_sell for p in unique_plans]) if b_count else np.zeros((0, n), bool)
        )

        # Wash sales, household-wide, and this account's own recent purchases.
        n_groups = len(self.group_names)
        windows = [self._household_windows(accounts[a].household_id) for a in keep]
        no_buy = np.array([w[0] for w in windows], dtype=bool).reshape(b_count, n_groups)
        no_loss = np.array([w[1] for w in windows], dtype=bool).reshape(b_count, n_groups)
        recent = acquired >= self.ordinal - WASH_SALE_DAYS
        no_loss[lot_account[recent], self.group_of[inst[recent]]] = True
        wash_locked_buy = no_buy[:, self.group_of]
        buyable = buy_ok & ~self.stale[None, :] & ~wash_locked_buy
        room = np.minimum(np.maximum(0.0, self.max_w - holding), self.capacity / value[:, None])
        buy_max = np.where(buyable, room, 0.0)
        notes = [list(p.notes) for p in kept_plans]
        for a in np.flatnonzero((buy_ok & (self.stale[None, :] | wash_locked_buy)).any(axis=1)):
            for i in np.flatnonzero(buy_ok[a] & (self.stale | wash_locked_buy[a])):
                sym = u.symbols[i]
                if self.stale[i]:
                    notes[a].append(f"{sym} not bought: its price is stale")
                else:
                    notes[a].append(
                        f"{sym} not bought: wash sale (a household loss sale of its "
                        f"group within {WASH_SALE_DAYS} days)"
                    )

        # Lots: what may be sold and at what tax.
        taxes = [c.tax for c in kept_customs]
        st_rate = np.fromiter((t.short_term_rate for t in taxes), float, b_count)
        lt_rate = np.fromiter((t.long_term_rate for t in taxes), float, b_count)
        threshold = np.fromiter((t.loss_harvest_threshold for t in taxes), float, b_count)
        defer = np.fromiter(
            (self._defer_cutoff(t.defer_short_term_days) for t in taxes), np.int64, b_count
        )
        gain = 1.0 - basis / price
        short = acquired > self.long_cutoff
        rate = np.where(short, st_rate[lot_account], lt_rate[lot_account])
        sellable = lot_value / value[lot_account]
        never_sell = never_sell_mat[plan_of[lot_account], inst] if inst.size else np.zeros(0, bool)
        deferred = short & (gain > 0) & (acquired <= defer[lot_account])
        lot_group = self.group_of[inst]
        wash_locked = (gain < 0) & no_loss[lot_account, lot_group]
        sellable = np.where(never_sell | deferred | wash_locked, 0.0, sellable)
        below_threshold = (gain < 0) & (-gain < threshold[lot_account])
        full_tax = np.where(below_threshold, 0.0, rate * gain)
        st_full = np.where(short, gain, 0.0)
        # Wash-sale guard: a loss lot of a group that may be bought today is not sold (a loss
        # sale and a purchase of its group on the same day is a wash sale). The engine lifts the
        # guard group by group (``ProblemBatch.harvest``) where it gives up today's purchases.
        group_buyable = np.zeros((b_count, n_groups), dtype=bool)
        rows_b, cols_b = np.nonzero(buy_max > 0)
        group_buyable[rows_b, self.group_of[cols_b]] = True
        loss = (gain < 0) & (sellable > 0)
        harvestable = np.zeros((b_count, n_groups), dtype=bool)
        harvestable[lot_account[loss], lot_group[loss]] = True
        full_sellable = sellable
        sellable = np.where(loss & group_buyable[lot_account, lot_group], 0.0, sellable)
        cash_w = cash / value
        cls_now = holding @ u.class_matrix.T
        st_budget = (
            np.fromiter(
                (_INF if b is None else float(b) for b in (budgets[a] for a in keep)),
                float,
                b_count,
            )
            / value
        )
        batch = ProblemBatch(
            account_ids=[accounts[a].account_id for a in keep],
            value=value,
            cash=cash_w,
            cash_budget=cash_w - withdrawal / value - min_cash / value,
            st_budget=st_budget,
            holding=holding,
            model=target,
            buy_max=buy_max,
            sell_min=np.zeros((b_count, n)),
            sell_max=np.zeros((b_count, n)),
            sell_cap=np.broadcast_to(self.capacity, (b_count, n)) / value[:, None],
            over_max=np.maximum(holding - self.max_w, 0.0),
            class_lo=u.class_lo - cls_now,
            class_hi=u.class_hi - cls_now,
            class_lo_raw=u.class_lo - cls_now,
            class_hi_raw=u.class_hi - cls_now,
            harvestable=harvestable,
            advisory=np.array([accounts[a].mode == "advisory" for a in keep], dtype=bool),
            cash_exact=[accounts[a].cash for a in keep],
            lot_start=lot_start.astype(np.int64),
            lot_account=lot_account,
            lot_instrument=inst,
            lot_weight=sellable,
            lot_full_weight=full_sellable,
            lot_held=lot_value / value[lot_account],
            lot_tax=full_tax,
            lot_gain=gain,
            lot_short=short,
            lot_st_gain=st_full,
            lot_ids=lot_ids,
            lot_refs=lot_refs,
            notes=notes,
            harvest_notes=[None] * b_count,
            limit_notes=[[] for _ in range(b_count)],
            group_names=self.group_names,
        )
        self.apply_limits(batch)
        return batch, errors

    def apply_limits(self, batch: ProblemBatch) -> None:
        """Sell bounds and class limits from what may be sold and bought; a limit that the
        restrictions make unreachable today is met as far as allowed (and noted)."""
        u, n = self.u, self.u.n
        b_count = len(batch)
        sold = np.bincount(
            batch.lot_account * n + batch.lot_instrument,
            weights=batch.lot_weight,
            minlength=b_count * n,
        ).reshape(b_count, n)
        batch.sell_max = np.minimum(sold, batch.sell_cap)
        batch.sell_min = np.minimum(batch.over_max, batch.sell_max)
        stays = batch.over_max > batch.sell_max + 1e-15
        most_sold = -(batch.sell_max @ u.class_matrix.T)
        most_bought = batch.buy_max @ u.class_matrix.T
        over_hi = batch.class_hi_raw < most_sold
        under_lo = batch.class_lo_raw > most_bought
        batch.class_hi = np.where(over_hi, most_sold, batch.class_hi_raw)
        batch.class_lo = np.where(under_lo, most_bought, batch.class_lo_raw)
        flagged = stays.any(axis=1) | over_hi.any(axis=1) | under_lo.any(axis=1)
        for a in range(b_count):
            if batch.limit_notes[a] or flagged[a]:
                batch.limit_notes[a] = self._limit_notes(stays[a], over_hi[a], under_lo[a])

    def _limit_notes(self, stays, over_hi, under_lo) -> list[str]:
        u = self.u
        notes = [
            f"{u.symbols[i]} stays above the {self.max_w:.0%} position limit: restrictions "
            "or capacity allow selling only part of it"
            for i in np.flatnonzero(stays)
        ]
        for k, cls in enumerate(u.asset_classes):
            if over_hi[k]:
                notes.append(
                    f"{cls} stays above its {u.class_hi[k]:.0%} limit: restrictions "
                    "allow selling only part of it"
                )
            if under_lo[k]:
                notes.append(
                    f"{cls} stays below its {u.class_lo[k]:.0%} limit: restrictions "
                    "allow buying only part of it"
                )
        return notes

    def _household_windows(self, household_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Wash groups a household may not buy today, and groups whose losses it may not
        harvest (see ``wash_windows``), as masks over ``group_names``."""
        masks = self._windows.get(household_id)
        if masks is None:
            no_buy, no_loss = wash_windows(
                self.by_household.get(household_id, []), household_id, self.as_of
            )
            buy_mask = np.zeros(len(self.group_names), dtype=bool)
            loss_mask = np.zeros(len(self.group_names), dtype=bool)
            for sym in no_buy:
                if sym in self.index:
                    buy_mask[self.group_of[self.index[sym]]] = True
            for sym in no_loss:
                if sym in self.index:
                    loss_mask[self.group_of[self.index[sym]]] = True
            masks = self._windows[household_id] = (buy_mask, loss_mask)
        return masks


_LOT_FIELDS = attrgetter("symbol", "quantity", "cost_basis", "acquired", "lot_id")


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
    "ProblemBatch",
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
