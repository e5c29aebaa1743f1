"""``optimize_accounts``: the public entry point of the MyPortfolio optimizer.

Per batch (one model, one market snapshot):

1. Each account's data is validated and turned into its numeric problem
   (``offchain.optimizer.problem``); bad data skips that account with a reason.
2. All problems are solved together (``offchain.optimizer.solver``), in chunks.
3. Wash sales: selling a loss lot and buying its group on the same day is never proposed. In
   the first pass loss lots of groups that may be bought are held; for every group with loss
   lots that the first pass did not buy, a second pass gives up today's purchases of that group
   and lets its losses be realized (tax-loss harvesting, with a non-identical partner standing
   in through the factor model). The second pass is what is proposed for those accounts.
4. Weights become unit quantities (rounded down, 1e-8 units, so no lot is oversold and cash
   stays at or above its minimum), money becomes ``Decimal`` cents, and every trade gets its
   reason. Trades below ``Customizations.min_trade_value`` are dropped when the rest stays
   feasible (the no-trade rule; L1 costs already keep a good account untouched).
"""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal

import numpy as np

from offchain.errors import InvalidInput
from offchain.optimizer.inputs import (
    Account,
    AccountError,
    BatchResult,
    Customizations,
    HouseholdTrade,
    MarketData,
    ModelPortfolio,
    Proposal,
    Trade,
)
from offchain.optimizer.problem import (
    AccountProblem,
    ProblemBuilder,
    Universe,
    build_universe,
    objective,
    violations,
)
from offchain.optimizer.solver import BatchSolver, SolveStats

QUANTITY_STEP = Decimal("0.00000001")  # units are traded to 1e-8
CENT = Decimal("0.01")
# Weight units: a solution within this of every constraint is feasible.
FEASIBILITY_TOL = 1e-9
CHUNK = 1000  # accounts solved together
_BPS = Decimal(10_000)


@dataclass
class Solved:
    """An account's problem and its solver solution (weights), for tests and benchmarks."""

    problem: AccountProblem
    buys: np.ndarray
    sells: np.ndarray
    certified: bool


@dataclass
class EngineRun:
    """Everything one run produced: the public result plus numeric detail and solver stats."""

    result: BatchResult
    universe: Universe
    solved: dict[str, Solved]
    stats: SolveStats


def optimize_accounts(
    model: ModelPortfolio,
    accounts: Iterable[Account],
    market: MarketData,
    customizations_by_account: Mapping[str, Customizations] | None = None,
    household_trades: Iterable[HouseholdTrade] = (),
    as_of: dt.date | None = None,
    workers: int = 1,
) -> BatchResult:
    """Propose trades for every account on ``model``.

    ``customizations_by_account`` maps account id to its customizations (default: none);
    ``household_trades`` are past trades of every account of the households involved (for wash
    sales); ``as_of`` defaults to the market data's date. Accounts with bad data are returned in
    ``BatchResult.errors`` with the reason, the others get a ``Proposal`` (possibly with no
    trades). Raises ``InvalidInput`` only for data shared by the whole batch (a risk model or cost
    missing for an instrument of the model). ``workers`` > 1 splits the accounts over that many
    processes (fork), for large batches on a multi-core machine; results keep input order.
    """
    accounts = list(accounts)
    if workers > 1 and len(accounts) >= 2 * CHUNK:
        return _run_parallel(model, accounts, market, customizations_by_account,
                             list(household_trades), as_of, workers)
    return run_engine(
        model, accounts, market, customizations_by_account, household_trades, as_of
    ).result


_SHARED: tuple = ()


_TRADE_FIELDS = tuple(Trade.model_fields)
_PROPOSAL_FIELDS = tuple(f for f in Proposal.model_fields if f != "trades")


def _run_part(bounds: tuple[int, int]) -> tuple[list, tuple[AccountError, ...]]:
    """A worker's share, as plain tuples: pickling pydantic objects costs more than solving."""
    model, accounts, market, customs, trades, as_of = _SHARED
    result = run_engine(model, accounts[bounds[0]:bounds[1]], market, customs, trades,
                        as_of).result
    packed = [
        (tuple(getattr(p, f) for f in _PROPOSAL_FIELDS),
         [tuple(getattr(t, f) for f in _TRADE_FIELDS) for t in p.trades])
        for p in result.proposals
    ]
    return packed, result.errors


def _unpack(packed: list) -> list[Proposal]:
    return [
        _construct(Proposal, **dict(zip(_PROPOSAL_FIELDS, fields, strict=True)),
                   trades=tuple(_construct(Trade, **dict(zip(_TRADE_FIELDS, t, strict=True)))
                                for t in trades))
        for fields, trades in packed
    ]


def _run_parallel(model, accounts, market, customs, trades, as_of, workers) -> BatchResult:
    """Run parts of the batch in forked processes that inherit the inputs (nothing to send)."""
    import multiprocessing

    global _SHARED
    _SHARED = (model, accounts, market, customs, trades, as_of)
    try:
        step = -(-len(accounts) // workers)
        bounds = [(k, min(k + step, len(accounts))) for k in range(0, len(accounts), step)]
        with multiprocessing.get_context("fork").Pool(len(bounds)) as pool:
            parts = pool.map(_run_part, bounds)
    finally:
        _SHARED = ()
    return _construct(
        BatchResult,
        proposals=tuple(p for packed, _ in parts for p in _unpack(packed)),
        errors=tuple(e for _, errors in parts for e in errors),
    )


def run_engine(
    model: ModelPortfolio,
    accounts: Iterable[Account],
    market: MarketData,
    customizations_by_account: Mapping[str, Customizations] | None = None,
    household_trades: Iterable[HouseholdTrade] = (),
    as_of: dt.date | None = None,
    solver: BatchSolver | None = None,
) -> EngineRun:
    """``optimize_accounts`` with the numeric detail kept (see ``EngineRun``); same errors.

    The cyclic garbage collector is paused for the batch: it creates many small acyclic
    objects, and with a large book in memory each collection would scan all of it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _run_engine(model, accounts, market, customizations_by_account, household_trades,
                           as_of, solver)
    finally:
        if enabled:
            gc.enable()


def _run_engine(model, accounts, market, customizations_by_account, household_trades, as_of,
                solver) -> EngineRun:
    as_of = as_of or market.as_of.date()
    customs = dict(customizations_by_account or {})
    trades = list(household_trades)
    universe = build_universe(model, market)
    solver = solver or _cached_solver(universe)
    errors: list[AccountError] = []
    problems: list[AccountProblem] = []
    inputs: dict[str, tuple[Account, Customizations]] = {}
    builder = ProblemBuilder(universe, model, market, trades, as_of)
    for account in accounts:
        custom = customs.get(account.account_id, Customizations())
        if account.account_id in inputs:
            errors.append(AccountError(
                account_id=account.account_id, field="account_id", reason="duplicate account id"))
            continue
        try:
            problem = builder.build(account, custom)
            _check_feasible(universe, problem)
        except InvalidInput as exc:
            errors.append(AccountError(account_id=account.account_id, field=exc.field,
                                       reason=str(exc)))
            continue
        inputs[account.account_id] = (account, custom)
        problems.append(problem)

    solutions, stats = _solve_chunked(solver, problems)
    # Wash sales: a group whose losses are worth harvesting and that the first pass did not buy
    # is not bought today, so its losses count.
    group_names = [builder.group_names[g] for g in builder.group_of]
    second: list[int] = []
    second_problems: list[AccountProblem] = []
    for k, (problem, sol) in enumerate(zip(problems, solutions, strict=True)):
        if not problem.harvestable_groups:
            continue
        if sol is None:  # e.g. a withdrawal that only loss lots can fund
            harvest = problem.harvestable_groups
        else:
            bought = {group_names[i] for i in np.flatnonzero(sol.buys > 1e-12)}
            harvest = frozenset(problem.harvestable_groups - bought)
        if not harvest:
            continue
        second.append(k)
        second_problems.append(builder.with_harvest(problem, harvest))
    if second_problems:
        solutions2, stats2 = _solve_chunked(solver, second_problems)
        stats.iterations = max(stats.iterations, stats2.iterations)
        stats.certified += stats2.certified
        stats.fallback += stats2.fallback
        stats.fallback_ids += stats2.fallback_ids
        for k, problem, sol in zip(second, second_problems, solutions2, strict=True):
            problems[k], solutions[k] = problem, sol

    proposals: list[Proposal] = []
    solved: dict[str, Solved] = {}
    for problem, sol in zip(problems, solutions, strict=True):
        account, custom = inputs[problem.account_id]
        if sol is None:
            errors.append(AccountError(account_id=problem.account_id, field="constraints",
                                       reason="no trade list satisfies every constraint"))
            continue
        solved[problem.account_id] = Solved(problem, sol.buys, sol.sells, sol.certified)
        proposals.append(
            _proposal(universe, model, market, account, custom, problem, sol.buys, sol.sells,
                      as_of)
        )
    return EngineRun(BatchResult(proposals=tuple(proposals), errors=tuple(errors)), universe,
                     solved, stats)


_SOLVERS: dict[bytes, BatchSolver] = {}


def _cached_solver(universe: Universe) -> BatchSolver:
    """One solver (and factorization) per distinct risk model, costs and limits."""
    key = b"".join([universe.cov.tobytes(), universe.cost.tobytes(),
                    universe.class_matrix.tobytes(), repr(universe.risk_aversion).encode()])
    solver = _SOLVERS.get(key)
    if solver is None:
        if len(_SOLVERS) > 16:
            _SOLVERS.clear()
        solver = _SOLVERS[key] = BatchSolver(universe)
    solver.u = universe  # prices and staleness may differ; the factorization does not
    return solver


def _solve_chunked(solver: BatchSolver, problems: list[AccountProblem]):
    """Solve in chunks of ``CHUNK`` accounts: the arrays stay cache-sized, which is faster."""
    solutions: list = []
    stats = SolveStats()
    for start in range(0, len(problems), CHUNK):
        part, part_stats = solver.solve(problems[start:start + CHUNK])
        solutions += part
        stats.iterations = max(stats.iterations, part_stats.iterations)
        stats.certified += part_stats.certified
        stats.fallback += part_stats.fallback
        stats.fallback_ids += part_stats.fallback_ids
    return solutions, stats


def _check_feasible(universe: Universe, p: AccountProblem) -> None:
    """Reject accounts whose cash needs no sale can meet (the exact check is the solver's).

    Raises ``InvalidInput`` on field ``withdrawal``.
    """
    sellable = np.minimum(np.bincount(p.lot_instrument, weights=p.lot_full_weight,
                                      minlength=universe.n), p.sell_cap)
    raise_max = float((1 - universe.cost) @ sellable)
    if p.cash_budget + raise_max < -FEASIBILITY_TOL:
        raise InvalidInput(
            "withdrawal",
            "cash needs that the sellable lots can meet",
            f"{-p.cash_budget * p.value:.2f} to raise, at most {raise_max * p.value:.2f} sellable",
        )


def _proposal(
    universe: Universe,
    model: ModelPortfolio,
    market: MarketData,
    account: Account,
    custom: Customizations,
    p: AccountProblem,
    buys: np.ndarray,
    sells: np.ndarray,
    as_of: dt.date,
) -> Proposal:
    value = Decimal(repr(p.value))
    lots = {lot.lot_id: lot for lot in account.lots}
    prices = {s: market.prices[s].price for s in universe.symbols if s in market.prices}
    notes = list(p.notes)
    sold = np.bincount(p.lot_instrument, weights=sells, minlength=universe.n)
    gap_before = p.holding - p.model
    gap_after = gap_before + buys - sold
    needs_cash = p.cash_budget < 0

    # Weights to units, rounded down so that no lot is oversold and cash never goes negative.
    buy_units: dict[int, Decimal] = {}
    for i in np.flatnonzero(buys > 0):
        sym = universe.symbols[i]
        qty = (Decimal(repr(float(buys[i]))) * value / prices[sym]).quantize(
            QUANTITY_STEP, rounding=ROUND_DOWN)
        if qty > 0:
            buy_units[i] = qty
    sell_units: dict[int, Decimal] = {}
    for k in np.flatnonzero(sells > 0):
        lot = lots[p.lot_ids[k]]
        if sells[k] >= p.lot_held[k] * (1 - 1e-12):
            qty = lot.quantity
        else:
            qty = min(lot.quantity, (Decimal(repr(float(sells[k]))) * value / prices[lot.symbol])
                      .quantize(QUANTITY_STEP, rounding=ROUND_DOWN))
        if qty > 0:
            sell_units[k] = qty

    # Minimum trade value: drop dust trades if the rest stays feasible.
    if custom.min_trade_value > 0:
        keep_b = {i: q for i, q in buy_units.items()
                  if q * prices[universe.symbols[i]] >= custom.min_trade_value}
        keep_s = {k: q for k, q in sell_units.items()
                  if q * prices[lots[p.lot_ids[k]].symbol] >= custom.min_trade_value}
        if len(keep_b) + len(keep_s) < len(buy_units) + len(sell_units):
            b2, s2 = _weights(universe, p, keep_b, keep_s, prices, lots)
            if max(violations(universe, p, b2, s2).values()) <= FEASIBILITY_TOL:
                dropped = len(buy_units) + len(sell_units) - len(keep_b) - len(keep_s)
                notes.append(f"{dropped} trade(s) under {custom.min_trade_value} dropped")
                buy_units, sell_units = keep_b, keep_s

    # Cash units of every trade, once: (value, cost) in cents.
    bps = {s: Decimal(repr(market.cost_bps[s])) for s in prices}

    def value_cost(sym: str, qty: Decimal) -> tuple[Decimal, Decimal]:
        v = (qty * prices[sym]).quantize(CENT, rounding=ROUND_HALF_EVEN)
        return v, (v * bps[sym] / _BPS).quantize(CENT, rounding=ROUND_HALF_EVEN)

    buy_vc = {i: value_cost(universe.symbols[i], q) for i, q in buy_units.items()}
    sell_vc = {k: value_cost(lots[p.lot_ids[k]].symbol, q) for k, q in sell_units.items()}
    cash_after = (account.cash - custom.withdrawal
                  + sum((v - c for v, c in sell_vc.values()), Decimal(0))
                  - sum((v + c for v, c in buy_vc.values()), Decimal(0)))
    # Rounding (units down, costs to the cent) must never take cash below the minimum: trim
    # the largest buys by the shortfall.
    for i in sorted(buy_units, key=lambda i: -buy_vc[i][0]):
        short = custom.min_cash - cash_after
        if short <= 0:
            break
        sym = universe.symbols[i]
        cut = (short * 2 / prices[sym]).quantize(QUANTITY_STEP, rounding=ROUND_UP) + QUANTITY_STEP
        v, c = buy_vc.pop(i)
        cash_after += v + c
        buy_units[i] = max(Decimal(0), buy_units[i] - cut)
        if buy_units[i] == 0:
            del buy_units[i]
        else:
            buy_vc[i] = value_cost(sym, buy_units[i])
            cash_after -= sum(buy_vc[i])

    b_final, s_final = _weights(universe, p, buy_units, sell_units, prices, lots)
    groups = {i.symbol: i.wash_group or i.symbol for i in model.instruments}
    bought_groups = {groups[universe.symbols[i]] for i in buy_units}
    trades: list[Trade] = []
    st_gain = lt_gain = tax_cost = tc_total = Decimal(0)
    # Python scalars once: numpy scalar access and formatting dominate per-trade work.
    gap_b, gap_a = gap_before.tolist(), gap_after.tolist()
    forced, target = p.sell_min.tolist(), p.model.tolist()
    lot_tax, lot_short, lot_inst = p.lot_tax.tolist(), p.lot_short.tolist(), \
        p.lot_instrument.tolist()
    rate_of = {"short": Decimal(repr(custom.tax.short_term_rate)),
               "long": Decimal(repr(custom.tax.long_term_rate))}
    cap_text = f"{model.max_position_weight:.0%}"
    for k, qty in sorted(sell_units.items(), key=lambda kv: p.lot_ids[kv[0]]):
        lot = lots[p.lot_ids[k]]
        sym = lot.symbol
        i = lot_inst[k]
        price = prices[sym]
        trade_value, cost = sell_vc[k]
        gain = (qty * (price - lot.cost_basis)).quantize(CENT, rounding=ROUND_HALF_EVEN)
        term = "short" if lot_short[k] else "long"
        rate = rate_of[term]
        disallowed = gain < 0 and groups[sym] in bought_groups
        if term == "short":
            st_gain += gain
        else:
            lt_gain += gain
        if not disallowed:
            tax_cost += gain * rate
        tc_total += cost
        why = []
        if forced[i] > 0:
            why.append(f"brings {sym} under the {cap_text} position limit")
        if needs_cash:
            why.append("raises cash for the withdrawal / minimum cash")
        if lot_tax[k] < 0:
            why.append(f"harvests a {term}-term loss of {-gain} (saves about "
                       f"{(-gain * rate).quantize(CENT)})")
        elif disallowed:
            why.append("loss disallowed (wash sale with today's purchase of its group)")
        if gap_b[i] > 0:
            why.append(f"{sym} is {gap_b[i] * 1e4:.0f} bp over its model weight")
            if target[i] == 0:
                why.append("not in this account's model (substituted, screened or not approved)")
        why.append(f"lot picked for least tax per unit ({term}-term, gain {gain})")
        trades.append(_construct(Trade, symbol=sym, side="sell", quantity=qty,
                                 value=trade_value, cost=cost, lot_id=lot.lot_id,
                                 realized_gain=gain, term=term, reason="; ".join(why)))
    for i, qty in sorted(buy_units.items()):
        sym = universe.symbols[i]
        trade_value, cost = buy_vc[i]
        tc_total += cost
        if gap_b[i] < 0 and target[i] > 0:
            reason = (f"{sym} is {-gap_b[i] * 1e4:.0f} bp under its model weight "
                      f"({gap_a[i] * 1e4:+.0f} bp after): closing the gap lowers tracking "
                      "error by more than it costs")
        else:
            reason = (f"{sym} stands in for exposure the account cannot hold as modelled "
                      "(restricted, screened or wash-sale locked): lowers tracking error")
        trades.append(_construct(Trade, symbol=sym, side="buy", quantity=qty, value=trade_value,
                                 cost=cost, reason=reason))
    te_before = float(np.sqrt(max(0.0, gap_before @ universe.cov @ gap_before)))
    d_after = p.holding + b_final - np.bincount(p.lot_instrument, weights=s_final,
                                                minlength=universe.n) - p.model
    te_after = float(np.sqrt(max(0.0, d_after @ universe.cov @ d_after)))
    f0 = objective(universe, p, np.zeros(universe.n), np.zeros(p.lot_instrument.size))
    f1 = objective(universe, p, b_final, s_final)
    band = float(model.drift_band)
    for i in np.flatnonzero(np.abs(gap_before) > band):
        notes.append(f"{universe.symbols[i]} was {gap_before[i]:+.1%} from its model weight "
                     f"(drift band {band:.0%}); after trading {gap_after[i]:+.1%}")
    if not trades:
        notes.append("no trades: no change is worth its tax and transaction cost")
    return Proposal(
        account_id=account.account_id,
        model_id=model.model_id,
        as_of=as_of,
        trades=tuple(trades),
        realized_short_term=st_gain,
        realized_long_term=lt_gain,
        tax_cost=tax_cost.quantize(CENT, rounding=ROUND_HALF_EVEN),
        transaction_cost=tc_total,
        cash_after=cash_after.quantize(CENT, rounding=ROUND_DOWN),
        tracking_error_before=te_before,
        tracking_error_after=te_after,
        objective_no_trade=f0,
        objective=f1,
        needs_approval=account.mode == "advisory",
        notes=tuple(notes),
    )


def _weights(universe, p, buy_units, sell_units, prices, lots):
    """Weights of unit trades (inverse of the rounding above)."""
    buys = np.zeros(universe.n)
    sells = np.zeros(p.lot_instrument.size)
    for i, qty in buy_units.items():
        buys[i] = float(qty * prices[universe.symbols[i]]) / p.value
    for k, qty in sell_units.items():
        sells[k] = min(p.lot_weight[k], float(qty * prices[lots[p.lot_ids[k]].symbol]) / p.value)
    return buys, sells


_DEFAULTS: dict[type, dict] = {}


def _construct(cls, **values):
    """A pydantic model from values this module computed and already trusts.

    Same semantics as ``cls.model_construct`` (no validation) without its per-call overhead,
    which dominated proposals with dozens of lot trades.
    """
    obj = cls.__new__(cls)
    defaults = _DEFAULTS.get(cls)
    if defaults is None:
        defaults = _DEFAULTS[cls] = {name: f.default for name, f in cls.model_fields.items()}
    data = {**defaults, **values}
    object.__setattr__(obj, "__dict__", data)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj
