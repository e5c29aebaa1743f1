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
   code, on whole columns (``offchain.optimizer.trades``): the result is an Arrow trade table
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

import numpy as np

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
    BatchResult,
)
from offchain.optimizer.problem import (
    AccountProblem,
    ProblemBatch,
    ProblemBuilder,
    Universe,
    build_universe,
)
from offchain.optimizer.solver import BatchSolution, BatchSolver, SolveStats
from offchain.optimizer.trades import FEASIBILITY_TOL, write_tables

CHUNK = 2500  # accounts solved together
PARALLEL_MIN = 1000  # fewer accounts than this are not worth starting worker processes for


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

    trades, summary = write_tables(universe, model, market, builder, batch, sol, row_menus, as_of)
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
