"""From solutions to the exact result: the trade table and the proposal summary.

Weights become unit quantities (rounded down to 1e-8 units, so that no lot is oversold and
cash never goes below its minimum, checked exactly), money becomes exact cents (int64 where the
products provably fit, Arrow decimals otherwise) and every trade gets its reason code, on whole
columns; ``output`` renders ``Proposal``s from these tables when they are read.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from offchain.optimizer.inputs import Customizations, MarketData, ModelPortfolio
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
    decimals,
    fit,
    fixed,
    mul_round,
    units_of,
)
from offchain.optimizer.problem import ProblemBatch, ProblemBuilder, Universe, violations
from offchain.optimizer.solver import BatchSolution

QUANTITY_STEP = Decimal("0.00000001")  # units are traded to 1e-8
CENT = Decimal("0.01")
# Weight units: a trade list within this of every constraint is feasible.
FEASIBILITY_TOL = 1e-9
_BPS = Decimal(10_000)


def write_tables(
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
