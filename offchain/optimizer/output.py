"""The optimizer's output: an exact columnar trade table, and ``Proposal``s rendered from it.

``BatchResult.trades`` holds every proposed trade of a batch as one Arrow table (money and
quantities as exact decimals), ``BatchResult.summary`` one row per proposal (gains, tax, costs,
cash after, tracking errors, objectives, notes). ``BatchResult.proposals`` is a sequence of the
usual ``Proposal`` objects, each made from the tables the first time it is read: a batch of
many accounts never pays for objects and reason texts that nobody reads.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from decimal import Context, Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from offchain.errors import InvalidInput
from offchain.optimizer.inputs import AccountError, Proposal, Trade

QUANTITY_STEP = Decimal("0.00000001")
CENT = Decimal("0.01")
QUANTITY = pa.decimal128(38, 18)
MONEY = pa.decimal128(38, 2)
EXACT = Context(prec=100)  # wide enough that products of ledger decimals never round

# Reason flags of a trade (``reason`` column).
FORCED = 1  # sold to bring the position under the position limit
NEEDS_CASH = 2  # the account must raise cash (withdrawal / minimum cash)
IN_MODEL = 4  # the instrument has a model weight > 0 in this account
HARVEST = 8  # a loss lot sold for its tax benefit
WASH = 16  # a loss whose deduction today's purchase of its group disallows

TRADE_SCHEMA = pa.schema(
    [
        ("account_id", pa.dictionary(pa.int32(), pa.string())),
        ("symbol", pa.dictionary(pa.int32(), pa.string())),
        ("side", pa.dictionary(pa.int8(), pa.string())),
        ("lot_id", pa.string()),
        ("quantity", QUANTITY),
        ("value", MONEY),
        ("cost", MONEY),
        ("realized_gain", MONEY),
        ("term", pa.dictionary(pa.int8(), pa.string())),
        ("reason", pa.uint8()),
        ("gap_before", pa.float64()),
        ("gap_after", pa.float64()),
    ]
)
DRIFT = pa.struct([("symbol", pa.string()), ("before", pa.float64()), ("after", pa.float64())])
SUMMARY_SCHEMA = pa.schema(
    [
        ("account_id", pa.string()),
        ("model_id", pa.string()),
        ("as_of", pa.date32()),
        ("trade_count", pa.int32()),
        ("realized_short_term", MONEY),
        ("realized_long_term", MONEY),
        ("tax_cost", MONEY),
        ("transaction_cost", MONEY),
        ("cash_after", MONEY),
        ("tracking_error_before", pa.float64()),
        ("tracking_error_after", pa.float64()),
        ("objective_no_trade", pa.float64()),
        ("objective", pa.float64()),
        ("needs_approval", pa.bool_()),
        ("short_term_rate", pa.float64()),
        ("long_term_rate", pa.float64()),
        ("position_limit", pa.string()),
        ("drift_band", pa.float64()),
        ("notes", pa.list_(pa.string())),
        ("drift", pa.list_(DRIFT)),
    ]
)


# --- exact decimal columns -------------------------------------------------------------------


def decimals(units: np.ndarray, scale: int) -> pa.Array:
    """``units * 10**-scale`` as a ``decimal128(38, scale)`` array (exact, no Python objects)."""
    units = np.ascontiguousarray(units, dtype=np.int64)
    words = np.empty((units.size, 2), dtype=np.int64)
    words[:, 0] = units
    words[:, 1] = units >> 63  # two's complement sign extension to 128 bits
    return pa.Array.from_buffers(
        pa.decimal128(38, scale), units.size, [None, pa.py_buffer(words)]
    )


def units_of(arr: pa.Array, scale: int = 2) -> np.ndarray:
    """The values of a decimal array as int64 counts of ``10**-scale`` (exact; raises
    ``InvalidInput`` if a value does not fit in int64)."""
    arr = arr.cast(pa.decimal128(38, scale))
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n, off = len(arr), arr.offset
    words = np.frombuffer(arr.buffers()[1], dtype=np.int64, count=2 * (n + off))
    words = words[2 * off :].reshape(n, 2)
    lo, hi = words[:, 0], words[:, 1]
    if not np.array_equal(hi, lo >> 63):
        raise InvalidInput("trade amounts", f"amounts below 9.2e18 units of 1e-{scale}", None)
    return lo.copy()


def fit(arr: pa.Array, scales: Sequence[int]) -> pa.Array:
    """``arr`` as the narrowest decimal that holds its values exactly, with the first scale of
    ``scales`` (ascending; else its own) that loses nothing: keeps products within range."""
    own = arr.type.scale
    for scale in [*(s for s in scales if s < own), own]:
        try:
            arr = arr.cast(pa.decimal256(76, scale) if arr.type.bit_width == 256 and scale == own
                           else pa.decimal128(38, scale))
            break
        except pa.ArrowInvalid:
            continue
    top = pc.max(pc.abs(arr)).as_py() if len(arr) else None
    digits = len(str(int(top))) if top is not None else 1
    precision = scale + digits
    if precision <= 38:
        return arr.cast(pa.decimal128(precision, scale))
    if precision > 76:
        raise InvalidInput("quantity", "at most 76 digits", top)
    return arr.cast(pa.decimal256(precision, scale))


def fixed(values: Sequence[Decimal], field: str) -> pa.Array:
    """Exact decimals (prices, fees, rates) as a narrow decimal128 array."""
    scale = max([0, *(-v.as_tuple().exponent for v in values if v.is_finite())])
    if scale > 36:
        raise InvalidInput(field, "at most 36 decimal places", max(values))
    arr = pa.array([v.quantize(Decimal(1).scaleb(-scale), context=EXACT) for v in values],
                   pa.decimal128(38, scale))
    return fit(arr, [scale])


def mul_round(a: pa.Array, b: pa.Array, places: int = 2) -> pa.Array:
    """``a * b`` rounded half-even to ``places`` decimals, exactly (decimal256 where the
    product may need more than 38 digits)."""
    if a.type.precision + b.type.precision + 1 > 38 or 256 in (a.type.bit_width,
                                                              b.type.bit_width):
        a = a.cast(pa.decimal256(a.type.precision, a.type.scale))
        b = b.cast(pa.decimal256(b.type.precision, b.type.scale))
    product = pc.multiply(a, b)
    return pc.round(product, places, round_mode="half_to_even").cast(pa.decimal128(38, places))


# --- the result ------------------------------------------------------------------------------


def _plain(col) -> list:
    """Strings, dates, dictionary values (None for nulls) as a Python list."""
    return [] if len(col) == 0 else col.to_numpy(zero_copy_only=False).tolist()


def _money(col) -> list:
    """A money column (scale 2) as ``Decimal`` cents (None for nulls)."""
    if len(col) == 0:
        return []
    valid = pc.is_valid(col).to_numpy(zero_copy_only=False)
    cents = units_of(pc.fill_null(col, pa.scalar(Decimal(0), col.type)), 2).tolist()
    out = [CENT * x for x in cents]
    if not valid.all():
        for j in np.flatnonzero(~valid).tolist():
            out[j] = None
    return out


def _quantities(col) -> list:
    """Quantities as shown: multiples of 1e-8 with 8 places, finer ones with their own."""
    if len(col) == 0:
        return []
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    steps = col.cast(pa.decimal128(38, 8), safe=False)
    exact = pc.equal(steps.cast(col.type), col).to_numpy(zero_copy_only=False)
    counts = units_of(pc.if_else(pa.array(exact), steps, pa.scalar(Decimal(0), steps.type)), 8)
    out = [QUANTITY_STEP * x for x in counts.tolist()]
    for j in np.flatnonzero(~exact).tolist():
        out[j] = col[j].as_py().normalize()
    return out


def _flat_list(col) -> tuple[list[int], pa.Array]:
    """A list column as (offsets, flat values)."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if isinstance(col, pa.ChunkedArray):  # no chunks at all
        col = pa.array([], col.type)
    flat = col.flatten()
    offsets = col.offsets.to_numpy()
    return (offsets - offsets[0]).tolist(), flat


_set = object.__setattr__
_SELL_SET = frozenset(Trade.model_fields)
_BUY_SET = _SELL_SET - {"lot_id", "realized_gain", "term"}
_PROPOSAL_SET = frozenset(Proposal.model_fields)


def _trade(symbol, side, quantity, value, cost, lot_id, realized_gain, term, reason) -> Trade:
    """A ``Trade`` from values computed here (no validation: the hot path)."""
    obj = Trade.__new__(Trade)
    _set(obj, "__dict__", {
        "symbol": symbol, "side": side, "quantity": quantity, "value": value, "cost": cost,
        "lot_id": lot_id, "realized_gain": realized_gain, "term": term, "reason": reason,
    })
    _set(obj, "__pydantic_fields_set__", set(_SELL_SET if lot_id is not None else _BUY_SET))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


def _proposal(values: dict) -> Proposal:
    obj = Proposal.__new__(Proposal)
    _set(obj, "__dict__", values)
    _set(obj, "__pydantic_fields_set__", set(_PROPOSAL_SET))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


NO_TRADE_NOTE = "no trades: no change is worth its tax and transaction cost"


class LazyProposals(Sequence[Proposal]):
    """The proposals of a batch, each rendered from the tables when first read (memoized)."""

    def __init__(self, trades: pa.Table, summary: pa.Table) -> None:
        self._trades, self._summary = trades, summary
        self._done: list[Proposal | None] = [None] * summary.num_rows
        self._cols: dict[str, list] | None = None
        self._tcols: dict[str, list] | None = None
        self._start: list[int] = []

    def __len__(self) -> int:
        return len(self._done)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return tuple(self[k] for k in range(*index.indices(len(self))))
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("proposal index out of range")
        p = self._done[index]
        if p is None:
            p = self._done[index] = self._rendered([index])[0]
        return p

    def __iter__(self):
        done, step = self._done, 256
        for start in range(0, len(done), step):
            todo = [k for k in range(start, min(start + step, len(done))) if done[k] is None]
            if todo:
                for k, p in zip(todo, self._rendered(todo), strict=True):
                    done[k] = p
            yield from done[start : start + step]

    def _rendered(self, rows: list[int]) -> list[Proposal]:
        """Render ``rows`` with the cyclic garbage collector paused: the objects made are
        acyclic, and with a large book in memory each collection would scan all of it."""
        enabled = gc.isenabled()
        gc.disable()
        try:
            return [self._render(a) for a in rows]
        finally:
            if enabled:
                gc.enable()

    def __eq__(self, other) -> bool:
        if isinstance(other, Sequence):
            return len(self) == len(other) and all(p == q for p, q in zip(self, other, strict=True))
        return NotImplemented

    def __repr__(self) -> str:
        return f"LazyProposals({len(self)} proposals)"

    def _columns(self) -> None:
        """Every column as Python values, once (numpy routes: Arrow's ``to_pylist`` makes a
        scalar object per value, which costs more than the rendering)."""
        s, t = self._summary, self._trades
        c: dict[str, list] = {}
        for name in ("account_id", "model_id", "position_limit", "as_of"):
            c[name] = _plain(s.column(name))
        for name in ("trade_count", "tracking_error_before", "tracking_error_after",
                     "objective_no_trade", "objective", "needs_approval", "short_term_rate",
                     "long_term_rate", "drift_band"):
            c[name] = s.column(name).to_numpy().tolist()
        for name in ("realized_short_term", "realized_long_term", "tax_cost",
                     "transaction_cost", "cash_after"):
            c[name] = _money(s.column(name))
        notes = _flat_list(s.column("notes"))
        c["notes_at"], c["notes"] = notes[0], _plain(notes[1])
        drift = _flat_list(s.column("drift"))
        c["drift_at"] = drift[0]
        c["drift"] = list(zip(_plain(drift[1].field("symbol")),
                              drift[1].field("before").to_numpy().tolist(),
                              drift[1].field("after").to_numpy().tolist(), strict=True))
        tc: dict[str, list] = {}
        for name in ("symbol", "side", "lot_id", "term"):
            tc[name] = _plain(t.column(name))
        for name in ("reason", "gap_before", "gap_after"):
            tc[name] = t.column(name).to_numpy().tolist()
        for name in ("value", "cost", "realized_gain"):
            tc[name] = _money(t.column(name))
        tc["quantity"] = _quantities(t.column("quantity"))
        self._cols, self._tcols = c, tc
        counts = np.asarray(c["trade_count"], dtype=np.int64)
        self._start = np.concatenate([[0], np.cumsum(counts)]).tolist()

    def _render(self, a: int) -> Proposal:
        if self._cols is None:
            self._columns()
        c, t = self._cols, self._tcols
        rates = {"short": Decimal(repr(c["short_term_rate"][a])),
                 "long": Decimal(repr(c["long_term_rate"][a]))}
        cap = c["position_limit"][a]
        trades = []
        for j in range(self._start[a], self._start[a + 1]):
            sym, flags = t["symbol"][j], t["reason"][j]
            gap_b, gap_a = t["gap_before"][j], t["gap_after"][j]
            qty = t["quantity"][j]
            if t["side"][j] == "sell":
                gain, term = t["realized_gain"][j], t["term"][j]
                head = ""
                if flags & FORCED:
                    head += f"brings {sym} under the {cap} position limit; "
                if flags & NEEDS_CASH:
                    head += "raises cash for the withdrawal / minimum cash; "
                tail = ""
                if gap_b > 0:
                    tail += f"{sym} is {gap_b * 1e4:.0f} bp over its model weight; "
                    if not flags & IN_MODEL:
                        tail += ("not in this account's model (substituted, screened or not "
                                 "approved); ")
                if flags & HARVEST:
                    middle = (f"harvests a {term}-term loss of {-gain} (saves about "
                              f"{(-gain * rates[term]).quantize(CENT)}); ")
                elif flags & WASH:
                    middle = "loss disallowed (wash sale with today's purchase of its group); "
                else:
                    middle = ""
                trades.append(_trade(
                    sym, "sell", qty, t["value"][j], t["cost"][j], t["lot_id"][j], gain, term,
                    f"{head}{middle}{tail}lot picked for least tax per unit ({term}-term, "
                    f"gain {gain})"))
            else:
                if gap_b < 0 and flags & IN_MODEL:
                    reason = (f"{sym} is {-gap_b * 1e4:.0f} bp under its model weight "
                              f"({gap_a * 1e4:+.0f} bp after): closing the gap lowers tracking "
                              "error by more than it costs")
                else:
                    reason = (f"{sym} stands in for exposure the account cannot hold as "
                              "modelled (restricted, screened or wash-sale locked): lowers "
                              "tracking error")
                trades.append(_trade(sym, "buy", qty, t["value"][j], t["cost"][j], None, None,
                                     None, reason))
        notes = c["notes"][c["notes_at"][a] : c["notes_at"][a + 1]]
        band = c["drift_band"][a]
        for sym, before, after in c["drift"][c["drift_at"][a] : c["drift_at"][a + 1]]:
            notes.append(f"{sym} was {before:+.1%} from its model weight "
                         f"(drift band {band:.0%}); after trading {after:+.1%}")
        if not trades:
            notes.append(NO_TRADE_NOTE)
        return _proposal({
            "account_id": c["account_id"][a],
            "model_id": c["model_id"][a],
            "as_of": c["as_of"][a],
            "trades": tuple(trades),
            "realized_short_term": c["realized_short_term"][a],
            "realized_long_term": c["realized_long_term"][a],
            "tax_cost": c["tax_cost"][a],
            "transaction_cost": c["transaction_cost"][a],
            "cash_after": c["cash_after"][a],
            "tracking_error_before": c["tracking_error_before"][a],
            "tracking_error_after": c["tracking_error_after"][a],
            "objective_no_trade": c["objective_no_trade"][a],
            "objective": c["objective"][a],
            "needs_approval": c["needs_approval"][a],
            "notes": tuple(notes),
        })


class _Dump(BaseModel):
    model_config = ConfigDict(frozen=True)
    proposals: tuple[Proposal, ...]
    errors: tuple[AccountError, ...]


class BatchResult:
    """Proposals for the accounts that could be optimized and errors for those skipped.

    ``trades`` (one row per trade) and ``summary`` (one row per proposal, in the order of
    ``proposals``) are the exact columnar result (schemas ``TRADE_SCHEMA`` and
    ``SUMMARY_SCHEMA``); ``proposals`` are the same data as ``Proposal`` objects, made when read.
    """

    __slots__ = ("trades", "summary", "proposals", "errors")

    def __init__(self, trades: pa.Table, summary: pa.Table,
                 errors: Sequence[AccountError] = ()) -> None:
        _set(self, "trades", trades)
        _set(self, "summary", summary)
        _set(self, "proposals", LazyProposals(trades, summary))
        _set(self, "errors", tuple(errors))

    def __setattr__(self, name, value):
        raise AttributeError("BatchResult is frozen")

    def __reduce__(self):
        return (BatchResult, (self.trades, self.summary, self.errors))

    def __eq__(self, other) -> bool:
        if not isinstance(other, BatchResult):
            return NotImplemented
        return self.errors == other.errors and self.proposals == other.proposals

    __hash__ = None

    def __repr__(self) -> str:
        return (f"BatchResult({len(self.proposals)} proposals, {self.trades.num_rows} trades, "
                f"{len(self.errors)} errors)")

    def model_dump(self, **kwargs) -> dict:
        """As the former pydantic model's ``model_dump`` (renders every proposal)."""
        return _Dump(proposals=tuple(self.proposals), errors=self.errors).model_dump(**kwargs)

    def model_dump_json(self, **kwargs) -> str:
        """As the former pydantic model's ``model_dump_json`` (renders every proposal)."""
        return _Dump(proposals=tuple(self.proposals), errors=self.errors).model_dump_json(
            **kwargs)

    @classmethod
    def concat(cls, parts: Sequence[BatchResult], errors: Sequence[AccountError]) -> BatchResult:
        """The results of parts of a batch, in order, with ``errors``."""
        trades = pa.concat_tables([p.trades for p in parts]) if parts else empty_trades()
        summary = pa.concat_tables([p.summary for p in parts]) if parts else empty_summary()
        return cls(trades, summary, errors)


def empty_trades() -> pa.Table:
    return TRADE_SCHEMA.empty_table()


def empty_summary() -> pa.Table:
    return SUMMARY_SCHEMA.empty_table()


__all__ = [
    "BatchResult",
    "LazyProposals",
    "SUMMARY_SCHEMA",
    "TRADE_SCHEMA",
    "decimals",
    "fit",
    "fixed",
    "mul_round",
    "units_of",
]
