"""``optimize_accounts``: the public entry point of the MyPortfolio optimizer.

Per batch (one model, one market snapshot):

1. The accounts' data is validated in bulk and turned into one stacked problem
   (``ProblemBatch``, ``offchain.optimizer.problem``); bad data skips that account with a
   reason, named field by field as for a single account.
2. All problems are solved together (``offchain.optimizer.solver``), in chunks.
3. Wash sales: selling a loss lot and buying its group on the same day is never proposed. A
   first guess (a few ADMM steps, no polish) holds the loss lots of groups that may be bought;
   every group with loss lots that the guess does not buy is given up today (no purchase) and
   its losses may be realized (tax-loss harvesting, with a non-identical partner standing in
   through the factor model). The solve goes on from the guess's iterates (the decision changes
   bounds only), so the decision costs no second solve.
4. Weights become unit quantities (rounded down, 1e-8 units, so no lot is oversold and cash
   stays at or above its minimum), money becomes exact cents, and every trade gets its reason
   code, on whole columns (``offchain.optimizer.output``): the result is an Arrow trade table
   and a per-proposal summary. Trades below ``Customizations.min_trade_value`` are dropped when
   the rest stays feasible (the no-trade rule; L1 costs already keep a good account untouched).
   ``Proposal`` and ``Trade`` objects, with their reason texts, are made from the tables only
   when read (``BatchResult.proposals``).
"""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from offchain.errors import InvalidInput
from offchain.optimizer.book import AccountBook
from offchain.optimizer.inputs import (
    Account,
    AccountError,
    Customizations,
    HouseholdTrade,
    MarketData,
    ModelPortfolio,
)
from offchain.optimizer.output import (
    DRIFT,
    EXACT,
    FORCED,
    HARVEST,
    IN_MODEL,
    MONEY,
    NEEDS_CASH,
    QUANTITY,
    SUMMARY_SCHEMA,
    TRADE_SCHEMA,
    WASH,
    BatchResult,
    decimals,
    fit,
    fixed,
    mul_round,
    units_of,
)
from offchain.optimizer.problem import (
    AccountProblem,
    ProblemBatch,
    ProblemBuilder,
    Universe,
    build_universe,
    violations,
)
from offchain.optimizer.solver import BatchSolution, BatchSolver, SolveStats

QUANTITY_STEP = Decimal("0.00000001")  # units are traded to 1e-8
CENT = Decimal("0.01")
# Weight units: a solution within this of every constraint is feasible.
FEASIBILITY_TOL = 1e-9
CHUNK = 2500  # accounts solved together
PARALLEL_MIN = 1000  # fewer accounts than this are not worth starting worker processes for
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
    solved: Mapping[str, Solved]
    stats: SolveStats


def optimize_accounts(
    model: ModelPortfolio,
    accounts: Iterable[Account] | AccountBook,
    market: MarketData,
    customizations_by_account: Mapping[str, Customizations] | None = None,
    household_trades: Iterable[HouseholdTrade] = (),
    as_of: dt.date | None = None,
    workers: int = 1,
) -> BatchResult:
    """Propose trades for every account on ``model``.

    ``accounts`` is a list of ``Account``s or an ``AccountBook`` (columnar; its menus are the
    accounts' customizations). ``customizations_by_account`` maps account id to its
    customizations (default: none; with a book, it replaces the menus of the accounts named);
    ``household_trades`` are past trades of every account of the households involved (for wash
    sales); ``as_of`` defaults to the market data's date. Accounts with bad data are returned in
    ``BatchResult.errors`` with the reason, the others get a ``Proposal`` (possibly with no
    trades). Raises ``InvalidInput`` only for data shared by the whole batch (a risk model or cost
    missing for an instrument of the model). ``workers`` > 1 splits the accounts over that many
    processes (spawned), for large batches on a multi-core machine; results keep input order.
    """
    book = _as_book(accounts, customizations_by_account)
    if workers > 1 and len(book) >= PARALLEL_MIN:
        return _run_parallel(model, book, market, list(household_trades), as_of, workers)
    return run_engine(model, book, market, None, household_trades, as_of).result


def _as_book(
    accounts: Iterable[Account] | AccountBook,
    customizations_by_account: Mapping[str, Customizations] | None,
) -> AccountBook:
    """The one input of the engine: an ``AccountBook`` (pydantic accounts are converted)."""
    if isinstance(accounts, AccountBook):
        if customizations_by_account:
            return accounts.with_customizations(customizations_by_account)
        return accounts
    return AccountBook.from_accounts(list(accounts), customizations_by_account or {})


_SHARED: tuple = ()


def _init_worker(shared: tuple) -> None:
    global _SHARED
    _SHARED = shared


def _run_part(bounds: tuple[int, int]) -> BatchResult:
    """A worker's share: its result holds Arrow tables (cheap to pickle), no ``Proposal``."""
    model, book, market, trades, as_of = _SHARED
    part = book.take(np.arange(bounds[0], bounds[1]))
    return run_engine(model, part, market, None, trades, as_of).result


def _run_parallel(model, book, market, trades, as_of, workers) -> BatchResult:
    """Run parts of the batch in worker processes, each sent the inputs once.

    The workers are spawned, not forked: a child forked after Arrow's or BLAS's threads have
    started can deadlock on a lock one of them held.

    Duplicate account ids are found here, across parts; errors come back in the order of
    ``run_engine``'s (by input position, accounts no trade list satisfies last).
    """
    import multiprocessing

    unique, positions, dup_errors = _unique_accounts(book)
    first = {
        account_id: k for account_id, k in zip(unique.account_ids, positions, strict=True)
    }
    shared = (model, unique, market, trades, as_of)
    step = -(-len(unique) // workers)
    bounds = [(k, min(k + step, len(unique))) for k in range(0, len(unique), step)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(bounds), initializer=_init_worker, initargs=(shared,)) as pool:
        parts = pool.map(_run_part, bounds)
    part_errors = [e for part in parts for e in part.errors]
    placed = sorted(
        [(first[e.account_id], e) for e in part_errors if e.field != "constraints"] + dup_errors,
        key=lambda pe: pe[0],
    )
    return BatchResult.concat(
        parts, [e for _, e in placed] + [e for e in part_errors if e.field == "constraints"]
    )


def _unique_accounts(
    book: AccountBook,
) -> tuple[AccountBook, list[int], list[tuple[int, AccountError]]]:
    """The book of the first account of each id with their input positions, and an error (at
    its position) for every later account reusing an id."""
    positions: list[int] = []
    duplicates: list[tuple[int, AccountError]] = []
    seen: set[str] = set()
    for k, account_id in enumerate(book.account_ids):
        if account_id in seen:
            duplicates.append((k, AccountError(account_id=account_id,
                                               field="account_id",
                                               reason="duplicate account id")))
            continue
        seen.add(account_id)
        positions.append(k)
    unique = book.take(positions) if duplicates else book
    return unique, positions, duplicates


def run_engine(
    model: ModelPortfolio,
    accounts: Iterable[Account] | AccountBook,
    market: MarketData,
    customizations_by_account: Mapping[str, Customizations] | None = None,
    household_trades: Iterable[HouseholdTrade] = (),
    as_of: dt.date | None = None,
    solver: BatchSolver | None = None,
) -> EngineRun:
    """``optimize_accounts`` with the numeric detail kept (see ``EngineRun``); same inputs and
    errors.

    The cyclic garbage collector is paused for the batch: it creates many small acyclic
    objects, and with a large book in memory each collection would scan all of it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _run_engine(
            model, accounts, market, customizations_by_account, household_trades, as_of, solver
        )
    finally:
        if enabled:
            gc.enable()


def _run_engine(
    model, accounts, market, customizations_by_account, household_trades, as_of, solver
) -> EngineRun:
    as_of = as_of or market.as_of.date()
    book = _as_book(accounts, customizations_by_account)
    universe = build_universe(model, market)
    solver = solver or _cached_solver(universe)
    builder = ProblemBuilder(universe, model, market, list(household_trades), as_of)
    unique, position, errors = _unique_accounts(book)
    batch, bad = builder.build_batch(unique)
    unique_ids = unique.account_ids
    for k, exc in bad:
        errors.append(
            (
                position[k],
                AccountError(account_id=unique_ids[k], field=exc.field, reason=str(exc)),
            )
        )
    skipped = {k for k, _ in bad}
    rows = [k for k in range(len(unique)) if k not in skipped]
    feasible = _feasible(universe, batch)
    for r in np.flatnonzero(~feasible):
        k = rows[r]
        errors.append(
            (
                position[k],
                AccountError(
                    account_id=unique_ids[k],
                    field="withdrawal",
                    reason=str(_cash_need_error(universe, batch, int(r))),
                ),
            )
        )
    if not feasible.all():
        batch, _ = batch.take(np.flatnonzero(feasible))
        rows = [k for k, ok in zip(rows, feasible, strict=True) if ok]
    errors.sort(key=lambda e: e[0])
    row_menus = [unique.menus[m] for m in unique.menu_index[rows].tolist()]

    sol, stats = _solve_chunked(solver, builder, batch)

    trades, summary = _proposals(universe, model, market, builder, batch, sol, row_menus, as_of)
    final_errors = [e for _, e in errors]
    final_errors += [
        AccountError(
            account_id=batch.account_ids[r],
            field="constraints",
            reason="no trade list satisfies every constraint",
        )
        for r in np.flatnonzero(~sol.solved)
    ]
    return EngineRun(
        BatchResult(trades, summary, final_errors),
        universe,
        _SolvedView(batch, sol),
        stats,
    )


class _SolvedView(Mapping[str, Solved]):
    """``EngineRun.solved``: each solved account's problem and solution, built on access (a
    large batch never pays for per-account objects nobody reads)."""

    def __init__(self, batch: ProblemBatch, sol: BatchSolution) -> None:
        self._batch, self._sol = batch, sol
        self._rows = {batch.account_ids[r]: int(r) for r in np.flatnonzero(sol.solved)}

    def __getitem__(self, account_id: str) -> Solved:
        r = self._rows[account_id]
        lots = slice(int(self._batch.lot_start[r]), int(self._batch.lot_start[r + 1]))
        return Solved(
            self._batch.problem(r),
            self._sol.buys[r].copy(),
            self._sol.sells[lots].copy(),
            bool(self._sol.certified[r]),
        )

    def __iter__(self):
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


_SOLVERS: dict[bytes, BatchSolver] = {}


def _cached_solver(universe: Universe) -> BatchSolver:
    """One solver (and factorization) per distinct risk model, costs and limits."""
    key = b"".join(
        [
            universe.cov.tobytes(),
            universe.cost.tobytes(),
            universe.class_matrix.tobytes(),
            repr(universe.risk_aversion).encode(),
        ]
    )
    solver = _SOLVERS.get(key)
    if solver is None:
        if len(_SOLVERS) > 16:
            _SOLVERS.clear()
        solver = _SOLVERS[key] = BatchSolver(universe)
    solver.u = universe  # prices and staleness may differ; the factorization does not
    return solver


def _solve_chunked(solver: BatchSolver, builder: ProblemBuilder, batch: ProblemBatch):
    """``_solve`` in chunks of ``CHUNK`` accounts: the arrays stay cache-sized, which is
    faster. The chunks' final problems are written back into ``batch``."""
    if len(batch) <= CHUNK:
        return _solve(solver, builder, batch)
    parts: list[BatchSolution] = []
    stats = SolveStats()
    for start in range(0, len(batch), CHUNK):
        rows = np.arange(start, min(start + CHUNK, len(batch)))
        part, lots = batch.take(rows)
        sol, part_stats = _solve(solver, builder, part)
        batch.put(rows, lots, part)
        parts.append(sol)
        stats.iterations = max(stats.iterations, part_stats.iterations)
        stats.certified += part_stats.certified
        stats.fallback += part_stats.fallback
        stats.fallback_ids += part_stats.fallback_ids
    joined = BatchSolution(
        *(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(BatchSolution))
    )
    return joined, stats


def _solve(
    solver: BatchSolver, builder: ProblemBuilder, batch: ProblemBatch
) -> tuple[BatchSolution, SolveStats]:
    """Decide the wash-sale groups, then solve ``batch`` (changed in place to the problem
    solved).

    A group with losses worth harvesting is given up today (not bought, so its losses count)
    if a first guess, with those losses held back, does not buy it: ``polish_every`` ADMM
    steps, from which the solve goes on (the decision changes bounds only). An account that
    then cannot be solved (e.g. a withdrawal only loss lots can fund) gives up every group
    with harvestable losses.
    """
    state = solver.guess(batch)
    bought = np.zeros_like(batch.harvestable)
    r_b, c_b = np.nonzero(state.buys > 1e-12)
    bought[r_b, builder.group_of[c_b]] = True
    harvest = batch.harvestable & ~bought
    if harvest.any():
        batch.harvest(harvest, builder)
    sol, stats = solver.solve(batch, state=state)
    stuck = np.flatnonzero(~sol.solved & (batch.harvestable & ~harvest).any(axis=1))
    if stuck.size:
        part, lots = batch.take(stuck)
        part.harvest(part.harvestable, builder)
        sol2, stats2 = solver.solve(part, sol.net[stuck], sol.st_multiplier[stuck])
        batch.put(stuck, lots, part)
        for name in ("buys", "net", "st_multiplier", "solved", "certified"):
            getattr(sol, name)[stuck] = getattr(sol2, name)
        sol.sells[lots] = sol2.sells
        stats.certified += stats2.certified
        stats.fallback += stats2.fallback
        stats.fallback_ids += stats2.fallback_ids
    return sol, stats


def _raisable(universe: Universe, batch: ProblemBatch) -> np.ndarray:
    """Most cash (weight) each row can raise by selling, before wash-sale guards."""
    n, b_count = universe.n, len(batch)
    sellable = np.bincount(
        batch.lot_account * n + batch.lot_instrument,
        weights=batch.lot_full_weight,
        minlength=b_count * n,
    )
    sellable = np.minimum(sellable.reshape(b_count, n), batch.sell_cap)
    return sellable @ (1 - universe.cost)


def _feasible(universe: Universe, batch: ProblemBatch) -> np.ndarray:
    """Rows whose cash needs some sale can meet (the exact check is the solver's)."""
    return batch.cash_budget + _raisable(universe, batch) >= -FEASIBILITY_TOL


def _cash_need_error(universe: Universe, batch: ProblemBatch, r: int) -> InvalidInput:
    raise_max = float(_raisable(universe, batch)[r])
    value = float(batch.value[r])
    return InvalidInput(
        "withdrawal",
        "cash needs that the sellable lots can meet",
        f"{-batch.cash_budget[r] * value:.2f} to raise, at most {raise_max * value:.2f} sellable",
    )


def _proposals(
    universe: Universe,
    model: ModelPortfolio,
    market: MarketData,
    builder: ProblemBuilder,
    batch: ProblemBatch,
    sol: BatchSolution,
    menus: list[Customizations],
    as_of: dt.date,
) -> tuple[pa.Table, pa.Table]:
    """The trade table and the proposal summary of every solved row (``output``'s schemas).

    Weights become units (rounded down to 1e-8 so that no lot is oversold and cash never goes
    below its minimum), money becomes exact cents, every trade gets its reason code; all of it
    on whole columns (numpy and Arrow decimals). Only accounts that set ``min_trade_value``
    and the few whose cash the rounding would take below ``min_cash`` are handled one by one.
    """
    n, b_count = universe.n, len(batch)
    symbols = universe.symbols
    price_f = universe.prices
    prices = [market.prices[s].price if s in market.prices else None for s in symbols]
    fees = [Decimal(repr(market.cost_bps[s])) / _BPS for s in symbols]
    # Units, rounded down to 1e-8, as counts of 1e-8 units.
    buys = np.where(sol.solved[:, None], sol.buys, 0.0).reshape(-1)
    cells = np.flatnonzero(buys > 0)
    buy_steps = np.zeros(b_count * n)
    buy_steps[cells] = units_down(buys[cells], batch.value[cells // n], cells % n, price_f, prices)
    buy_steps = buy_steps.reshape(b_count, n)
    whole = sol.sells >= batch.lot_held * (1 - 1e-12)  # the lot's own quantity is sold
    part = np.flatnonzero(sol.solved[batch.lot_account] & ~whole & (sol.sells > 0))
    sell_steps = np.zeros(sol.sells.size)
    sell_steps[part] = units_down(
        sol.sells[part],
        batch.value[batch.lot_account[part]],
        batch.lot_instrument[part],
        price_f,
        prices,
    )
    r_b, c_b = np.nonzero(buy_steps > 0)
    k_s = np.flatnonzero(
        sol.solved[batch.lot_account] & ((sell_steps > 0) | (whole & (sol.sells > 0)))
    )
    book = _TradeBook(universe, batch, menus, prices, fees, k_s, sell_steps[k_s], whole[k_s],
                      r_b, c_b, buy_steps[r_b, c_b])
    dust_notes: dict[int, str] = {}
    for a in np.flatnonzero(sol.solved).tolist():
        if menus[a].min_trade_value > 0:
            note = book.drop_dust(a, menus[a])
            if note:
                dust_notes[a] = note
    book.price_all()
    book.guard_min_cash(menus)

    # Final weights, wash-sale flags, gains and costs per row, all at once.
    t = book.final()
    row, inst, sell = t["row"], t["inst"], t["sell"]
    lots = k_s[t["lot"][sell]]
    b_final = np.zeros((b_count, n))
    s_final = np.zeros(batch.lot_account.size)
    traded = t["qty_f"] * price_f[inst] / batch.value[row]
    b_final[row[~sell], inst[~sell]] = traded[~sell]
    s_final[lots] = np.minimum(batch.lot_weight[lots], traded[sell])
    bought = np.zeros((b_count, len(builder.group_names)), dtype=bool)
    bought[row[~sell], builder.group_of[inst[~sell]]] = True
    gain_c = t["gain_c"]
    sell_rows = row[sell]
    disallowed = (gain_c[sell] < 0) & bought[sell_rows, builder.group_of[inst[sell]]]
    short = batch.lot_short[lots]
    harvested = batch.lot_tax[lots] < 0
    st, lt, st_taxed, lt_taxed, tc = (np.zeros(b_count, np.int64) for _ in range(5))
    g = gain_c[sell]
    np.add.at(st, sell_rows[short], g[short])
    np.add.at(lt, sell_rows[~short], g[~short])
    taxed = ~disallowed
    np.add.at(st_taxed, sell_rows[short & taxed], g[short & taxed])
    np.add.at(lt_taxed, sell_rows[~short & taxed], g[~short & taxed])
    np.add.at(tc, row, t["cost_c"])

    # Tracking errors and objectives, before and after, for every row at once.
    gap_before = batch.holding - batch.model
    solved_gap = (
        gap_before
        + sol.buys
        - np.bincount(
            batch.lot_account * n + batch.lot_instrument, weights=sol.sells, minlength=b_count * n
        ).reshape(b_count, n)
    )
    cov, k_risk = universe.cov, universe.risk_aversion
    sold = np.bincount(
        batch.lot_account * n + batch.lot_instrument, weights=s_final, minlength=b_count * n
    ).reshape(b_count, n)
    gap_after = gap_before + b_final - sold
    var_before = np.sum((gap_before @ cov) * gap_before, axis=1)
    var_after = np.sum((gap_after @ cov) * gap_after, axis=1)
    lot_cost = batch.lot_tax + universe.cost[batch.lot_instrument]
    f1 = (
        k_risk * var_after
        + b_final @ universe.cost
        + np.bincount(batch.lot_account, weights=lot_cost * s_final, minlength=b_count)
    )
    f0 = k_risk * var_before

    # The trade table.
    rows = np.flatnonzero(sol.solved)
    position = np.cumsum(sol.solved) - 1
    ids = pa.array([batch.account_ids[a] for a in rows.tolist()], pa.string())
    flags = np.where(batch.model[row, inst] > 0, IN_MODEL, 0)
    sell_flags = np.where(batch.sell_min[sell_rows, inst[sell]] > 0, FORCED, 0)
    sell_flags |= np.where(batch.cash_budget[sell_rows] < 0, NEEDS_CASH, 0)
    sell_flags |= np.where(harvested, HARVEST, 0) | np.where(disallowed, WASH, 0)
    flags[sell] |= sell_flags
    term = np.zeros(row.size, np.int8)
    term[sell] = np.where(short, 0, 1)
    sell_pa = pa.array(sell)
    trades = pa.Table.from_arrays(
        [
            pa.DictionaryArray.from_arrays(pa.array(position[row].astype(np.int32)), ids),
            pa.DictionaryArray.from_arrays(
                pa.array(inst.astype(np.int32)), pa.array(symbols, pa.string())
            ),
            pa.DictionaryArray.from_arrays(pa.array(sell.astype(np.int8)), _SIDES),
            book.ids_pa.take(pa.array(t["lot"], mask=~sell)),
            t["qty"].cast(QUANTITY),
            decimals(t["value_c"], 2),
            decimals(t["cost_c"], 2),
            pc.if_else(sell_pa, decimals(gain_c, 2), pa.scalar(None, MONEY)),
            pa.DictionaryArray.from_arrays(pa.array(term, mask=~sell), _TERMS),
            pa.array(flags.astype(np.uint8)),
            pa.array(gap_before[row, inst]),
            pa.array(solved_gap[row, inst]),
        ],
        schema=TRADE_SCHEMA,
    )

    # The summary, one row per solved row.
    st_rate = np.array([m.tax.short_term_rate for m in menus], dtype=float)[rows]
    lt_rate = np.array([m.tax.long_term_rate for m in menus], dtype=float)[rows]
    tax = pc.add(_times_rate(st_taxed[rows], st_rate), _times_rate(lt_taxed[rows], lt_rate))
    tax = pc.round(tax, 2, round_mode="half_to_even").cast(MONEY)
    cash_after = pc.round(book.cash_after(rows), 2, round_mode="towards_zero").cast(MONEY)
    band = float(model.drift_band)
    drifted = (np.abs(gap_before) > band) & sol.solved[:, None]
    d_row, d_inst = np.nonzero(drifted)
    drift = pa.ListArray.from_arrays(
        pa.array(np.searchsorted(d_row, np.append(rows, b_count)).astype(np.int32)),
        pa.StructArray.from_arrays(
            [
                pa.array([symbols[i] for i in d_inst.tolist()], pa.string()),
                pa.array(gap_before[d_row, d_inst]),
                pa.array(solved_gap[d_row, d_inst]),
            ],
            fields=list(DRIFT),
        ),
    )
    notes = []
    for a in rows.tolist():
        harvest = batch.harvest_notes[a]
        extra = dust_notes.get(a)
        notes.append(
            [*batch.notes[a], *([harvest] if harvest else []), *batch.limit_notes[a],
             *([extra] if extra else [])]
        )
    count = rows.size
    summary = pa.Table.from_arrays(
        [
            ids,
            pa.array([model.model_id] * count, pa.string()),
            pa.array([as_of] * count, pa.date32()),
            pa.array(np.bincount(position[row], minlength=count).astype(np.int32)),
            decimals(st[rows], 2),
            decimals(lt[rows], 2),
            tax,
            decimals(tc[rows], 2),
            cash_after,
            pa.array(np.sqrt(np.maximum(var_before, 0.0))[rows]),
            pa.array(np.sqrt(np.maximum(var_after, 0.0))[rows]),
            pa.array(f0[rows]),
            pa.array(f1[rows]),
            pa.array(batch.advisory[rows]),
            pa.array(st_rate),
            pa.array(lt_rate),
            pa.array([f"{model.max_position_weight:.0%}"] * count, pa.string()),
            pa.array(np.full(count, band)),
            pa.array(notes, pa.list_(pa.string())),
            drift,
        ],
        schema=SUMMARY_SCHEMA,
    )
    return trades, summary


_SIDES = pa.array(["buy", "sell"], pa.string())
_TERMS = pa.array(["short", "long"], pa.string())


def _times_rate(cents: np.ndarray, rates: np.ndarray) -> pa.Array:
    """``cents / 100 * Decimal(repr(rate))`` per row, exact (decimal256)."""
    uniq, inverse = np.unique(rates, return_inverse=True)
    exact = fixed([Decimal(repr(float(r))) for r in uniq], "tax rate").take(pa.array(inverse))
    exact = exact.cast(pa.decimal256(exact.type.precision, exact.type.scale))
    return pc.multiply(decimals(cents, 2).cast(pa.decimal256(20, 2)), exact)


_ZERO = Decimal(0)


def units_down(
    weights: np.ndarray,
    values: np.ndarray,
    inst: np.ndarray,
    price_f: np.ndarray,
    prices: list[Decimal | None],
) -> np.ndarray:
    """Units bought or sold for ``weights`` of account ``values`` of instruments ``inst``,
    rounded down to 1e-8 units, as counts of 1e-8 units (floats holding integers).

    The definition is exact: ``floor(Decimal(repr(w)) * Decimal(repr(v)) / price / 1e-8)``;
    it is computed in floats and redone in ``Decimal`` wherever float rounding could land on
    the other side of a step. Weights <= 0 give 0.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        raw = weights * values / price_f[inst] * 1e8
    raw = np.where(weights > 0, np.nan_to_num(raw), 0.0)
    steps = np.floor(raw)
    close = (weights > 0) & (np.abs(raw - np.round(raw)) < np.maximum(1e-6, raw * 2e-15))
    for j in np.flatnonzero(close):
        exact = (
            Decimal(repr(float(weights[j]))) * Decimal(repr(float(values[j]))) / prices[inst[j]]
        ).quantize(QUANTITY_STEP, rounding=ROUND_DOWN)
        steps[j] = float(exact.scaleb(8))
    return steps


def _fits(a: np.ndarray, b) -> np.ndarray:
    """Where the int64 product ``a * b`` is certainly exact (|a b| <= 2**62, checked in floats
    whose relative error is far below the factor 2 of margin)."""
    return np.abs(np.asarray(a, float)) * np.abs(np.asarray(b, float)) <= 2.0**62


def _scaled(exact: pa.Array, approx: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """``exact`` (decimals) as int64 counts of ``10**-scale``, and where that is exact: rounded
    from the floats ``approx`` and checked against ``exact``."""
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = np.round(approx * 10.0**scale)
    fits = np.abs(scaled) < 2.0**62
    units = np.where(fits, scaled, 0).astype(np.int64)
    if not len(exact):
        return units, fits
    same = pc.equal(decimals(units, scale).cast(exact.type), exact)
    return units, fits & same.to_numpy(zero_copy_only=False)


def _div_half_even(x: np.ndarray, d: int) -> np.ndarray:
    """``x / d`` rounded half-even, exactly, for int64 ``x`` and 0 < ``d`` < 2**62."""
    q, r = np.divmod(x, d)
    up = (2 * r > d) | ((2 * r == d) & (q % 2 == 1))
    return q + up


class _TradeBook:
    """The candidate trades of a batch as flat columns, in proposal order (row by row: sells
    by lot id, then buys by instrument): row, instrument, side, sold lot (index into ``k_s``),
    quantity as a count of 1e-8 units or the whole lot, and whether the trade is kept.

    Money is exact: value = quantity x price and cost = value x fee, each rounded half-even to
    the cent, realized gain = quantity x (price - cost basis) rounded half-even to the cent,
    computed with Arrow decimals on whole columns and held as int64 cents.
    """

    def __init__(self, universe, batch, menus, prices, fees, k_s, sell_steps, sell_whole,
                 r_b, c_b, buy_steps) -> None:
        self.u, self.batch, self.prices, self.fees = universe, batch, prices, fees
        self.menus, self.k_s = menus, k_s
        self._base: pa.Array | None = None
        self.price_pa = fixed([p if p is not None else _ZERO for p in prices], "prices")
        self.fee_pa = fixed(fees, "cost_bps")
        self.lot_qty, self.lot_basis = batch.exact_lots(k_s)
        self.lot_qty_f = self.lot_qty.cast(pa.float64()).to_numpy(zero_copy_only=False)
        self._integers()
        n_s, n_b = k_s.size, r_b.size
        row = np.concatenate([batch.lot_account[k_s], r_b]).astype(np.int64)
        sell = np.concatenate([np.ones(n_s, bool), np.zeros(n_b, bool)])
        inst = np.concatenate([batch.lot_instrument[k_s], c_b]).astype(np.int64)
        lot = np.concatenate([np.arange(n_s), np.full(n_b, -1)]).astype(np.int64)
        steps = np.concatenate([sell_steps, buy_steps]).astype(np.int64)
        whole = np.concatenate([sell_whole, np.zeros(n_b, bool)])
        # A partial sale of at least the lot is the whole lot.
        partial = np.flatnonzero(~sell_whole)
        steps_p = sell_steps[partial].astype(np.int64)
        whole[partial[self.lot_q8_ok[partial] & (steps_p >= self.lot_q8[partial])]] = True
        fine = np.flatnonzero(~self.lot_q8_ok[partial])  # lots finer than 1e-8
        if fine.size:
            over = pc.greater_equal(
                decimals(steps_p[fine], 8).cast(QUANTITY),
                self.lot_qty.take(pa.array(partial[fine])),
            )
            whole[partial[fine[over.to_numpy(zero_copy_only=False)]]] = True
        # Proposal order: lots sorted by id within a row.
        self.ids_pa = pa.array(batch.lot_ids[k_s], pa.string())
        rank = np.arange(n_s + n_b)
        if n_s > 1:
            by_id = pc.sort_indices(
                pa.table({"row": row[:n_s], "id": self.ids_pa}),
                sort_keys=[("row", "ascending"), ("id", "ascending")],
            ).to_numpy()
            rank[by_id] = np.arange(n_s)
        order = np.lexsort((rank, ~sell, row))
        self.row, self.sell, self.inst, self.lot = row[order], sell[order], inst[order], lot[order]
        self.steps, self.whole = steps[order], whole[order]
        self.keep = np.ones(order.size, bool)
        self.start = np.searchsorted(self.row, np.arange(len(batch) + 1))
        self.value_c = self.cost_c = self.gain_c = np.zeros(order.size, np.int64)

    # -- exact quantities and money ----------------------------------------------------------

    def qty(self, idx: np.ndarray) -> pa.Array:
        """Exact quantities of trades ``idx`` (decimal, as narrow as exact)."""
        units = decimals(self.steps[idx], 8)
        whole = self.whole[idx]
        if not whole.any():
            return fit(units, (8,))
        lot_qty = self.lot_qty.take(pa.array(np.where(whole, self.lot[idx], 0)))
        return fit(pc.if_else(pa.array(whole), lot_qty, units.cast(QUANTITY)), (8, 18))

    def _integers(self) -> None:
        """The exact integers of the fast path: prices, fees, lot quantities and cost bases
        as int64 counts of ``10**-scale`` (None where a scale would not fit int64)."""
        sp, sf = self.price_pa.type.scale, self.fee_pa.type.scale
        self.p_int = units_of(self.price_pa, sp) if sp <= 12 else None
        self.f_int = units_of(self.fee_pa, sf) if sf <= 17 else None
        self.sp, self.sf = sp, sf
        self.fee_f = np.array([float(f) for f in self.fees])  # correctly rounded
        # Lot quantities that are multiples of 1e-8, as counts of 1e-8 (guessed from floats,
        # then checked exactly).
        self.lot_q8, self.lot_q8_ok = _scaled(self.lot_qty, self.lot_qty_f, 8)
        # Cost bases at the smallest of a few scales that holds them all.
        self.b_int, self.sb = None, 0
        basis_f = self.lot_basis.cast(pa.float64()).to_numpy(zero_copy_only=False)
        for sb in (2, 4, 6, 8):
            scaled = basis_f * 10.0**sb
            if np.abs(scaled - np.round(scaled)).max(initial=0.0) > 1e-3:
                continue
            b_int, exact = _scaled(self.lot_basis, basis_f, sb)
            if exact.all():
                self.b_int, self.sb = b_int, sb
                break

    def _q8(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Quantities of trades ``idx`` as counts of 1e-8, and where that is exact."""
        q8 = self.steps[idx].copy()
        ok = np.ones(idx.size, bool)
        whole = self.whole[idx]
        lots = self.lot[idx][whole]
        q8[whole] = self.lot_q8[lots]
        ok[whole] = self.lot_q8_ok[lots]
        return q8, ok

    def money(self, idx: np.ndarray):
        """(value, cost, realized gain) in int64 cents of trades ``idx`` (gain 0 for buys).

        In int64 where the products provably fit (the common case), else in Arrow decimals;
        the same exact definition either way.
        """
        value_c = np.zeros(idx.size, np.int64)
        cost_c = np.zeros(idx.size, np.int64)
        gain_c = np.zeros(idx.size, np.int64)
        done = np.zeros(idx.size, bool)
        if self.p_int is not None and idx.size:
            q8, ok = self._q8(idx)
            inst = self.inst[idx]
            price = self.p_int[inst]
            ok &= _fits(q8, price)
            v = _div_half_even(np.where(ok, q8 * price, 0), 10 ** (6 + self.sp))
            if self.f_int is not None:
                fee = self.f_int[inst]
                ok &= _fits(v, fee)
                c = _div_half_even(np.where(ok, v * fee, 0), 10**self.sf)
            else:
                # Fees of many digits: cents x fee in floats (one rounding of exact operands:
                # relative error < 3e-16) is rounded right unless within 1e-15 of a half cent;
                # those few (and exact ties) take the decimal path.
                vf = v.astype(float)
                cf = vf * self.fee_f[inst]
                ok &= (np.abs(vf) < 2.0**52) & (
                    np.abs(cf - np.floor(cf) - 0.5) > np.abs(cf) * 1e-15
                )
                c = np.rint(cf).astype(np.int64)
            sell = self.sell[idx]
            if sell.any():
                if self.b_int is None:
                    ok &= ~sell
                else:
                    sg = max(self.sp, self.sb)
                    at = np.flatnonzero(sell)
                    p_g = price[at] * 10 ** (sg - self.sp)
                    b_g = self.b_int[self.lot[idx][at]] * 10 ** (sg - self.sb)
                    diff = p_g - b_g
                    good = ok[at] & _fits(q8[at], diff) & _fits(price[at], 10 ** (sg - self.sp))
                    good &= _fits(self.b_int[self.lot[idx][at]], 10 ** (sg - self.sb))
                    g = _div_half_even(np.where(good, q8[at] * diff, 0), 10 ** (6 + sg))
                    gain_c[at] = g
                    ok[at] &= good
            value_c, cost_c, done = np.where(ok, v, 0), np.where(ok, c, 0), ok
        rest = np.flatnonzero(~done)
        if rest.size:
            v, c, g = self._money_decimal(idx[rest])
            value_c[rest], cost_c[rest], gain_c[rest] = v, c, g
        return value_c, cost_c, gain_c

    def _money_decimal(self, idx: np.ndarray):
        """``money`` in Arrow decimals (any size and scale)."""
        qty = self.qty(idx)
        inst = pa.array(self.inst[idx])
        price = self.price_pa.take(inst)
        value = mul_round(qty, price)
        cost = mul_round(fit(value, (2,)), self.fee_pa.take(inst))
        gain_c = np.zeros(idx.size, np.int64)
        sell = self.sell[idx]
        if sell.any():
            at = pa.array(np.flatnonzero(sell))
            basis = self.lot_basis.take(pa.array(self.lot[idx][sell]))
            per_unit = fit(pc.subtract(price.take(at), fit(basis, (8, 18))), (8, 18))
            gain_c[sell] = units_of(mul_round(qty.take(at), per_unit))
        return units_of(value), units_of(cost), gain_c

    def price_all(self) -> None:
        """Money of every candidate trade."""
        idx = np.arange(self.row.size)
        self.value_c, self.cost_c, self.gain_c = self.money(idx)

    def flows(self) -> np.ndarray:
        """Net cash (cents) of each row's kept trades: sells bring value - cost, buys take
        value + cost."""
        flow = np.where(self.sell, self.value_c - self.cost_c, -(self.value_c + self.cost_c))
        out = np.zeros(len(self.batch), np.int64)
        np.add.at(out, self.row[self.keep], flow[self.keep])
        return out

    def cash_after(self, rows: np.ndarray) -> pa.Array:
        """Exact cash after trading of ``rows``: cash - withdrawal + net flows."""
        if self._base is None:
            base = fit(pa.array(self.batch.cash_exact, QUANTITY), (18,))
            withdrawals = [m.withdrawal for m in self.menus]
            if any(withdrawals):
                base = fit(pc.subtract(base, fit(pa.array(withdrawals, QUANTITY), (18,))), (18,))
            self._base = base
        flows = fit(decimals(self.flows()[rows], 2), (2,))
        return pc.add(self._base.take(pa.array(rows)), flows)

    # -- the rules applied account by account (few accounts) -------------------------------

    def _exact(self, j: int) -> Decimal:
        if self.whole[j]:
            return self.lot_qty[int(self.lot[j])].as_py()
        return Decimal(int(self.steps[j])).scaleb(-8)

    def _value_cost(self, i: int, qty: Decimal) -> tuple[Decimal, Decimal]:
        v = EXACT.multiply(qty, self.prices[i]).quantize(CENT, rounding=ROUND_HALF_EVEN)
        return v, EXACT.multiply(v, self.fees[i]).quantize(CENT, rounding=ROUND_HALF_EVEN)

    def _set_qty(self, j: int, qty: Decimal) -> None:
        if self.sell[j] and qty == self._exact_lot(j):
            self.whole[j] = True
        else:
            self.whole[j] = False
            self.steps[j] = int(qty.scaleb(8))

    def _exact_lot(self, j: int) -> Decimal:
        return self.lot_qty[int(self.lot[j])].as_py()

    def drop_dust(self, a: int, custom: Customizations) -> str | None:
        """Drop row ``a``'s trades worth less than ``min_trade_value`` if the rest stays
        feasible; the note saying so, or None."""
        batch, u = self.batch, self.u
        js = [j for j in range(self.start[a], self.start[a + 1]) if self.keep[j]]
        qty = {j: self._exact(j) for j in js}
        small = [j for j in js
                 if EXACT.multiply(qty[j], self.prices[self.inst[j]]) < custom.min_trade_value]
        if not small:
            return None
        p = batch.problem(a)
        first = int(batch.lot_start[a])
        value = float(batch.value[a])
        buys = np.zeros(u.n)
        sells = np.zeros(len(p.lot_ids))
        for j in js:
            if j in small:
                continue
            worth = float(EXACT.multiply(qty[j], self.prices[self.inst[j]])) / value
            if self.sell[j]:
                k = int(self.k_s[self.lot[j]]) - first
                sells[k] = min(p.lot_weight[k], worth)
            else:
                buys[self.inst[j]] = worth
        if max(violations(u, p, buys, sells).values()) > FEASIBILITY_TOL:
            return None
        self.keep[small] = False
        return f"{len(small)} trade(s) under {custom.min_trade_value} dropped"

    def guard_min_cash(self, menus: list[Customizations]) -> None:
        """Rounding (units down, money to the cent) must never take cash below the minimum.

        Cash after trading is checked exactly for every row at once; a row that falls short
        gets its largest buys trimmed by the shortfall and, with no buy left to trim, a little
        more of its largest sales sold, within their lots.
        """
        rows = np.flatnonzero(self.start[1:] > self.start[:-1])
        if not rows.size:
            return
        after = self.cash_after(rows)
        floor = fit(pa.array([menus[a].min_cash for a in rows.tolist()], QUANTITY), (18,))
        short = pc.less(after, floor).to_numpy(zero_copy_only=False)
        changed = []
        for r in np.flatnonzero(short).tolist():
            a = int(rows[r])
            cash = after[r].as_py()
            self._trim(a, menus[a], cash)
            changed.append(np.arange(self.start[a], self.start[a + 1]))
        if changed:
            idx = np.concatenate(changed)
            v, c, g = self.money(idx)
            self.value_c[idx], self.cost_c[idx], self.gain_c[idx] = v, c, g

    def _trim(self, a: int, custom: Customizations, cash_after: Decimal) -> None:
        js = [j for j in range(self.start[a], self.start[a + 1]) if self.keep[j]]
        cents = Decimal(1).scaleb(-2)
        vc = {j: (Decimal(int(self.value_c[j])) * cents, Decimal(int(self.cost_c[j])) * cents)
              for j in js}
        buys = [j for j in js if not self.sell[j]]
        for j in sorted(buys, key=lambda j: (-vc[j][0], self.inst[j])):
            short = custom.min_cash - cash_after
            if short <= 0:
                break
            i = int(self.inst[j])
            cut = EXACT.divide(short * 2, self.prices[i]).quantize(
                QUANTITY_STEP, rounding=ROUND_UP) + QUANTITY_STEP
            v, c = vc.pop(j)
            cash_after += v + c
            left = max(_ZERO, self._exact(j) - cut)
            if left == 0:
                self.keep[j] = False
            else:
                self._set_qty(j, left)
                v, c = self._value_cost(i, left)
                cash_after -= v + c
        sells = [j for j in js if self.sell[j]]
        for j in sorted(sells, key=lambda j: (-vc[j][0], self.lot[j])):
            short = custom.min_cash - cash_after
            if short <= 0:
                break
            i = int(self.inst[j])
            more = EXACT.divide(short * 2, self.prices[i]).quantize(
                QUANTITY_STEP, rounding=ROUND_UP) + QUANTITY_STEP
            now = self._exact(j)
            qty = min(self._exact_lot(j), now + more)
            if qty > now:
                v, c = vc[j]
                self._set_qty(j, qty)
                v2, c2 = self._value_cost(i, qty)
                cash_after += v2 - c2 - (v - c)

    def final(self) -> dict[str, np.ndarray | pa.Array]:
        """The kept trades: their columns, exact quantities (and as floats) and money."""
        idx = np.flatnonzero(self.keep)
        q8, exact = self._q8(idx)
        qty = decimals(q8, 8) if exact.all() else self.qty(idx)
        whole = self.whole[idx]
        qty_f = self.steps[idx] * 1e-8
        qty_f[whole] = self.lot_qty_f[self.lot[idx][whole]]
        return {
            "row": self.row[idx], "inst": self.inst[idx], "sell": self.sell[idx],
            "lot": self.lot[idx], "qty": qty, "qty_f": qty_f, "value_c": self.value_c[idx],
            "cost_c": self.cost_c[idx], "gain_c": self.gain_c[idx],
        }
