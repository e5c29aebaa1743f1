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
   stays at or above its minimum), money becomes ``Decimal`` cents, and every trade gets its
   reason. Trades below ``Customizations.min_trade_value`` are dropped when the rest stays
   feasible (the no-trade rule; L1 costs already keep a good account untouched). Tracking
   errors and objectives are computed for the whole batch at once; ``Decimal`` and ``Trade``
   objects are made only for trades that remain.
"""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal
from typing import NamedTuple

import numpy as np

from offchain.errors import InvalidInput
from offchain.optimizer.book import AccountBook
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
PARALLEL_MIN = 1000  # fewer accounts than this are not worth forking worker processes for
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
    processes (fork), for large batches on a multi-core machine; results keep input order.
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


_TRADE_FIELDS = tuple(Trade.model_fields)
_PROPOSAL_FIELDS = tuple(f for f in Proposal.model_fields if f != "trades")


def _run_part(bounds: tuple[int, int]) -> tuple[list, tuple[AccountError, ...]]:
    """A worker's share, as plain tuples: pickling pydantic objects costs more than solving."""
    model, book, market, trades, as_of = _SHARED
    part = book.take(np.arange(bounds[0], bounds[1]))
    result = run_engine(model, part, market, None, trades, as_of).result
    packed = [
        (
            tuple(getattr(p, f) for f in _PROPOSAL_FIELDS),
            [tuple(getattr(t, f) for f in _TRADE_FIELDS) for t in p.trades],
        )
        for p in result.proposals
    ]
    return packed, result.errors


def _unpack(packed: list) -> list[Proposal]:
    return [
        _construct(
            Proposal,
            **dict(zip(_PROPOSAL_FIELDS, fields, strict=True)),
            trades=tuple(_trade(*t) for t in trades),
        )
        for fields, trades in packed
    ]


def _preload_exact_solver() -> None:
    """Import the exact fallback's modules once, before forking, not in every worker."""
    try:
        import clarabel  # noqa: F401
        import scipy.sparse  # noqa: F401
    except ImportError:
        pass


def _run_parallel(model, book, market, trades, as_of, workers) -> BatchResult:
    """Run parts of the batch in forked processes that inherit the inputs (nothing to send).

    Duplicate account ids are found here, across parts; errors come back in the order of
    ``run_engine``'s (by input position, accounts no trade list satisfies last).
    """
    import multiprocessing

    global _SHARED
    unique, positions, dup_errors = _unique_accounts(book)
    first = {
        account_id: k for account_id, k in zip(unique.account_ids, positions, strict=True)
    }
    _SHARED = (model, unique, market, trades, as_of)
    _preload_exact_solver()
    try:
        step = -(-len(unique) // workers)
        bounds = [(k, min(k + step, len(unique))) for k in range(0, len(unique), step)]
        with multiprocessing.get_context("fork").Pool(len(bounds)) as pool:
            parts = pool.map(_run_part, bounds)
    finally:
        _SHARED = ()
    part_errors = [e for _, errors in parts for e in errors]
    placed = sorted(
        [(first[e.account_id], e) for e in part_errors if e.field != "constraints"] + dup_errors,
        key=lambda pe: pe[0],
    )
    return _construct(
        BatchResult,
        proposals=tuple(p for packed, _ in parts for p in _unpack(packed)),
        errors=tuple([e for _, e in placed] + [e for e in part_errors if e.field == "constraints"]),
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
    # What the proposals read of each account (until they read ``batch.cash_exact`` and
    # ``batch.advisory`` themselves).
    row_accounts = [
        _AccountRow(account_id, cash, "advisory" if advisory else "discretionary")
        for account_id, cash, advisory in zip(
            batch.account_ids, batch.cash_exact, batch.advisory.tolist(), strict=True
        )
    ]

    sol, stats = _solve_chunked(solver, builder, batch)

    proposals = _proposals(
        universe, model, market, builder, batch, sol, row_accounts, row_menus, as_of
    )
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
        BatchResult(proposals=tuple(proposals), errors=tuple(final_errors)),
        universe,
        _SolvedView(batch, sol),
        stats,
    )


class _AccountRow(NamedTuple):
    account_id: str
    cash: Decimal
    mode: str


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
    accounts: list[Account],
    menus: list[Customizations],
    as_of: dt.date,
) -> list[Proposal]:
    """One ``Proposal`` per solved row: weights become units (rounded down to 1e-8 so that no
    lot is oversold and cash never goes negative), money becomes ``Decimal`` cents, every trade
    gets its reason. The numeric parts (tracking errors, objectives) are computed for the whole
    batch at once; only trades are handled one by one."""
    n, b_count = universe.n, len(batch)
    symbols = universe.symbols
    price_f = universe.prices
    prices = [market.prices[s].price if s in market.prices else None for s in symbols]
    fee = [Decimal(repr(market.cost_bps[s])) / _BPS for s in symbols]
    # Units, rounded down to 1e-8, as counts of 1e-8 units (exact Decimals are made only for
    # the trades that remain).
    buys = np.where(sol.solved[:, None], sol.buys, 0.0)
    buy_steps = units_down(
        buys.reshape(-1), np.repeat(batch.value, n), np.tile(np.arange(n), b_count), price_f, prices
    ).reshape(b_count, n)
    whole = sol.sells >= batch.lot_held * (1 - 1e-12)  # the lot's own quantity is sold
    sell_steps = units_down(
        np.where(sol.solved[batch.lot_account] & ~whole, sol.sells, 0.0),
        batch.value[batch.lot_account],
        batch.lot_instrument,
        price_f,
        prices,
    )
    r_b, c_b = np.nonzero(buy_steps > 0)
    buy_at = np.searchsorted(r_b, np.arange(b_count + 1))
    k_s = np.flatnonzero((sell_steps > 0) | (whole & (sol.sells > 0)))
    sell_at = np.searchsorted(batch.lot_account[k_s], np.arange(b_count + 1))
    b_final = np.zeros((b_count, n))
    s_final = np.zeros(batch.lot_account.size)
    gap_before = batch.holding - batch.model
    solved_gap = (
        gap_before
        + sol.buys
        - np.bincount(
            batch.lot_account * n + batch.lot_instrument, weights=sol.sells, minlength=b_count * n
        ).reshape(b_count, n)
    )
    writer = _TradeWriter(universe, model, builder, batch, prices, fee, b_final, s_final, k_s)
    drafts: list[tuple] = [()] * b_count
    c_list, s_list = c_b.tolist(), k_s.tolist()
    buy_counts, sell_counts = buy_steps[r_b, c_b].tolist(), sell_steps[k_s].tolist()
    whole_list = whole[k_s].tolist()
    refs = batch.lot_refs
    scale = Decimal(1).scaleb(-8)
    for a in np.flatnonzero(sol.solved).tolist():
        b0, b1, s0, s1 = buy_at[a], buy_at[a + 1], sell_at[a], sell_at[a + 1]
        account, custom = accounts[a], menus[a]
        if b0 == b1 and s0 == s1:
            drafts[a] = ((), _ZERO, _ZERO, _ZERO, _ZERO, account.cash - custom.withdrawal, ())
            continue
        buy_units = {c_list[j]: Decimal(int(buy_counts[j])) * scale for j in range(b0, b1)}
        sell_units: dict[int, Decimal] = {}
        for j in range(s0, s1):
            k = s_list[j]
            held = refs[k].quantity
            qty = held if whole_list[j] else min(held, Decimal(int(sell_counts[j])) * scale)
            if qty > 0:
                sell_units[k] = qty
        drafts[a] = writer.write(
            a, account, custom, buy_units, sell_units, gap_before[a], solved_gap[a]
        )

    # Tracking errors and objectives, before and after, for every row at once.
    cov, k_risk = universe.cov, universe.risk_aversion
    sold = np.bincount(
        batch.lot_account * n + batch.lot_instrument, weights=s_final, minlength=b_count * n
    ).reshape(b_count, n)
    gap_after = gap_before + b_final - sold
    var_before = np.einsum("bi,ij,bj->b", gap_before, cov, gap_before)
    var_after = np.einsum("bi,ij,bj->b", gap_after, cov, gap_after)
    lot_cost = batch.lot_tax + universe.cost[batch.lot_instrument]
    f1 = (
        k_risk * var_after
        + b_final @ universe.cost
        + np.bincount(batch.lot_account, weights=lot_cost * s_final, minlength=b_count)
    )
    f0 = (k_risk * var_before).tolist()
    f1 = f1.tolist()
    te_before = np.sqrt(np.maximum(var_before, 0.0)).tolist()
    te_after = np.sqrt(np.maximum(var_after, 0.0)).tolist()
    band = float(model.drift_band)
    drifted = np.abs(gap_before) > band
    proposals: list[Proposal] = []
    no_trade_note = "no trades: no change is worth its tax and transaction cost"
    for a in np.flatnonzero(sol.solved).tolist():
        trades, st_gain, lt_gain, tax_cost, tc_total, cash_after, extra = drafts[a]
        harvest = batch.harvest_notes[a]
        notes = [*batch.notes[a], *([harvest] if harvest else []), *batch.limit_notes[a], *extra]
        if drifted[a].any():
            for i in np.flatnonzero(drifted[a]):
                notes.append(
                    f"{symbols[i]} was {gap_before[a, i]:+.1%} from its model weight "
                    f"(drift band {band:.0%}); after trading "
                    f"{solved_gap[a, i]:+.1%}"
                )
        if not trades:
            notes.append(no_trade_note)
        account = accounts[a]
        proposals.append(
            _construct(
                Proposal,
                account_id=account.account_id,
                model_id=model.model_id,
                as_of=as_of,
                trades=trades,
                realized_short_term=st_gain,
                realized_long_term=lt_gain,
                tax_cost=tax_cost.quantize(CENT, rounding=ROUND_HALF_EVEN),
                transaction_cost=tc_total,
                cash_after=cash_after.quantize(CENT, rounding=ROUND_DOWN),
                tracking_error_before=te_before[a],
                tracking_error_after=te_after[a],
                objective_no_trade=f0[a],
                objective=f1[a],
                needs_approval=account.mode == "advisory",
                notes=tuple(notes),
            )
        )
    return proposals


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


class _TradeWriter:
    """Turns one account's unit trades into ``Trade`` objects with their reasons, and records
    the final weights (after rounding and trimming) in ``b_final`` / ``s_final``."""

    def __init__(
        self, universe, model, builder, batch, prices, fee, b_final, s_final, sold
    ) -> None:
        self.u, self.builder, self.batch = universe, builder, batch
        # Per lot that may be sold: (instrument, short-term, harvested loss, lot id, most
        # that may be sold), as Python values (numpy scalars cost more one at a time).
        self.lot_info = dict(
            zip(
                sold.tolist(),
                zip(
                    batch.lot_instrument[sold].tolist(),
                    batch.lot_short[sold].tolist(),
                    (batch.lot_tax[sold] < 0).tolist(),
                    batch.lot_ids[sold].tolist(),
                    batch.lot_weight[sold].tolist(),
                    strict=True,
                ),
                strict=True,
            )
        )
        self.prices, self.fee = prices, fee
        self.b_final, self.s_final = b_final, s_final
        self.groups = builder.group_of.tolist()
        self.cap_text = f"{model.max_position_weight:.0%}"
        self.rates: dict[tuple[float, float], dict[bool, tuple[str, Decimal]]] = {}

    def _value_cost(self, i: int, qty: Decimal) -> tuple[Decimal, Decimal]:
        v = (qty * self.prices[i]).quantize(CENT, rounding=ROUND_HALF_EVEN)
        return v, (v * self.fee[i]).quantize(CENT, rounding=ROUND_HALF_EVEN)

    def write(self, a, account, custom, buy_units, sell_units, gap_before, solved_gap):
        """``(trades, ST gain, LT gain, tax cost, cost, cash after, notes)`` of row ``a``."""
        batch, prices, u = self.batch, self.prices, self.u
        notes: list[str] = []
        if custom.min_trade_value > 0:
            buy_units, sell_units = self._drop_dust(a, custom, buy_units, sell_units, notes)
        value_cost, info = self._value_cost, self.lot_info
        buy_vc = {i: value_cost(i, q) for i, q in buy_units.items()}
        sell_vc = {k: value_cost(info[k][0], q) for k, q in sell_units.items()}
        cash_after = (
            account.cash
            - custom.withdrawal
            + sum([v - c for v, c in sell_vc.values()], _ZERO)
            - sum([v + c for v, c in buy_vc.values()], _ZERO)
        )
        # Rounding (units down, costs to the cent) must never take cash below the minimum:
        # trim the largest buys by the shortfall.
        if cash_after < custom.min_cash:
            for i in sorted(buy_units, key=lambda i: -buy_vc[i][0]):
                short = custom.min_cash - cash_after
                if short <= 0:
                    break
                cut = (short * 2 / prices[i]).quantize(
                    QUANTITY_STEP, rounding=ROUND_UP
                ) + QUANTITY_STEP
                v, c = buy_vc.pop(i)
                cash_after += v + c
                buy_units[i] = max(_ZERO, buy_units[i] - cut)
                if buy_units[i] == 0:
                    del buy_units[i]
                else:
                    buy_vc[i] = value_cost(i, buy_units[i])
                    cash_after -= sum(buy_vc[i])
        # No buy left to trim (a cash need met by sales alone): sell a little more of the
        # largest sales, within their lots.
        if cash_after < custom.min_cash:
            refs = batch.lot_refs
            for k in sorted(sell_units, key=lambda k: -sell_vc[k][0]):
                short = custom.min_cash - cash_after
                if short <= 0:
                    break
                i = info[k][0]
                more = (short * 2 / prices[i]).quantize(
                    QUANTITY_STEP, rounding=ROUND_UP
                ) + QUANTITY_STEP
                qty = min(refs[k].quantity, sell_units[k] + more)
                if qty > sell_units[k]:
                    v, c = sell_vc[k]
                    sell_units[k], sell_vc[k] = qty, value_cost(i, qty)
                    cash_after += sell_vc[k][0] - sell_vc[k][1] - (v - c)
        value = float(batch.value[a])
        b_row = self.b_final[a]
        for i, qty in buy_units.items():
            b_row[i] = float(qty * prices[i]) / value
        s_final = self.s_final
        for k, qty in sell_units.items():
            i, _, _, _, most = info[k]
            s_final[k] = min(most, float(qty * prices[i]) / value)

        groups, symbols = self.groups, u.symbols
        bought_groups = {groups[i] for i in buy_units}
        gap_b = gap_before.tolist()
        target = batch.model[a].tolist()
        forced = batch.sell_min[a].tolist()
        needs_cash = batch.cash_budget[a] < 0
        rate_key = (custom.tax.short_term_rate, custom.tax.long_term_rate)
        rate_of = self.rates.get(rate_key)
        if rate_of is None:
            rate_of = self.rates[rate_key] = {
                True: ("short", Decimal(repr(rate_key[0]))),
                False: ("long", Decimal(repr(rate_key[1]))),
            }
        why_of: dict[int, tuple[str, str]] = {}
        trades: list[Trade] = []
        st_gain = lt_gain = tax_cost = tc_total = _ZERO
        refs = batch.lot_refs
        for k in sorted(sell_units, key=lambda k: info[k][3]):
            qty = sell_units[k]
            i, is_short, harvested, lot_id, _ = info[k]
            trade_value, cost = sell_vc[k]
            gain = (qty * (prices[i] - refs[k].cost_basis)).quantize(CENT, rounding=ROUND_HALF_EVEN)
            term, rate = rate_of[is_short]
            disallowed = gain < 0 and groups[i] in bought_groups
            if is_short:
                st_gain += gain
            else:
                lt_gain += gain
            if not disallowed:
                tax_cost += gain * rate
            tc_total += cost
            why = why_of.get(i)
            if why is None:
                why = why_of[i] = self._sell_reasons(
                    i, symbols[i], forced[i], needs_cash, gap_b[i], target[i]
                )
            if harvested:
                middle = (
                    f"harvests a {term}-term loss of {-gain} (saves about "
                    f"{(-gain * rate).quantize(CENT)}); "
                )
            elif disallowed:
                middle = "loss disallowed (wash sale with today's purchase of its group); "
            else:
                middle = ""
            trades.append(
                _trade(
                    symbols[i],
                    "sell",
                    qty,
                    trade_value,
                    cost,
                    lot_id,
                    gain,
                    term,
                    f"{why[0]}{middle}{why[1]}lot picked for least tax per unit ({term}-term, "
                    f"gain {gain})",
                )
            )
        gap_a = solved_gap.tolist() if buy_units else gap_b
        for i in sorted(buy_units):
            sym = symbols[i]
            trade_value, cost = buy_vc[i]
            tc_total += cost
            if gap_b[i] < 0 and target[i] > 0:
                reason = (
                    f"{sym} is {-gap_b[i] * 1e4:.0f} bp under its model weight "
                    f"({gap_a[i] * 1e4:+.0f} bp after): closing the gap lowers tracking "
                    "error by more than it costs"
                )
            else:
                reason = (
                    f"{sym} stands in for exposure the account cannot hold as modelled "
                    "(restricted, screened or wash-sale locked): lowers tracking error"
                )
            trades.append(
                _trade(sym, "buy", buy_units[i], trade_value, cost, None, None, None, reason)
            )
        return tuple(trades), st_gain, lt_gain, tax_cost, tc_total, cash_after, notes

    def _sell_reasons(self, i, sym, forced, needs_cash, gap, target) -> tuple[str, str]:
        """The reasons shared by every lot sold of instrument ``i``: before and after the lot's
        own (the tax it realizes)."""
        head = []
        if forced > 0:
            head.append(f"brings {sym} under the {self.cap_text} position limit; ")
        if needs_cash:
            head.append("raises cash for the withdrawal / minimum cash; ")
        tail = []
        if gap > 0:
            tail.append(f"{sym} is {gap * 1e4:.0f} bp over its model weight; ")
            if target == 0:
                tail.append("not in this account's model (substituted, screened or not approved); ")
        return "".join(head), "".join(tail)

    def _drop_dust(self, a, custom, buy_units, sell_units, notes):
        """Trades worth less than ``min_trade_value`` dropped, if the rest stays feasible."""
        batch, prices, u = self.batch, self.prices, self.u
        lot_inst = batch.lot_instrument
        keep_b = {i: q for i, q in buy_units.items() if q * prices[i] >= custom.min_trade_value}
        keep_s = {
            k: q for k, q in sell_units.items() if q * prices[lot_inst[k]] >= custom.min_trade_value
        }
        if len(keep_b) + len(keep_s) == len(buy_units) + len(sell_units):
            return buy_units, sell_units
        p = batch.problem(a)
        first = int(batch.lot_start[a])
        value = float(batch.value[a])
        buys = np.zeros(u.n)
        sells = np.zeros(len(p.lot_ids))
        for i, qty in keep_b.items():
            buys[i] = float(qty * prices[i]) / value
        for k, qty in keep_s.items():
            sells[k - first] = min(
                p.lot_weight[k - first], float(qty * prices[lot_inst[k]]) / value
            )
        if max(violations(u, p, buys, sells).values()) > FEASIBILITY_TOL:
            return buy_units, sell_units
        dropped = len(buy_units) + len(sell_units) - len(keep_b) - len(keep_s)
        notes.append(f"{dropped} trade(s) under {custom.min_trade_value} dropped")
        return keep_b, keep_s


_SELL_SET = frozenset(Trade.model_fields)
_BUY_SET = _SELL_SET - {"lot_id", "realized_gain", "term"}
_set = object.__setattr__


def _trade(symbol, side, quantity, value, cost, lot_id, realized_gain, term, reason) -> Trade:
    """A ``Trade`` from values computed here (as ``_construct``, specialised: the hot path)."""
    obj = Trade.__new__(Trade)
    _set(
        obj,
        "__dict__",
        {
            "symbol": symbol,
            "side": side,
            "quantity": quantity,
            "value": value,
            "cost": cost,
            "lot_id": lot_id,
            "realized_gain": realized_gain,
            "term": term,
            "reason": reason,
        },
    )
    _set(obj, "__pydantic_fields_set__", set(_SELL_SET if lot_id is not None else _BUY_SET))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


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
