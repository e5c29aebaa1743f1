"""``AccountBook``: the firm's book of accounts in columnar form (Arrow), as a books-and-records
export gives it, for the optimizer to read without one Python object per tax lot.

Three tables (Parquet or Arrow) and the advisors' menus:

- ``accounts``: ``account_id`` (string), ``household_id`` (string), ``cash``
  (decimal, cash units), optional ``mode`` (``"advisory"`` / ``"discretionary"``, default
  discretionary), ``menu`` (integer index into ``menus``; null = no customization) and
  ``has_holdings`` (bool: the account states its holdings, which its lots must add up to);
- ``lots``: ``account`` (row index into ``accounts``, or an ``account_id``), ``symbol``
  (string or dictionary of strings), ``lot_id`` (string), ``quantity`` and ``cost_basis``
  (decimal: units, cash per unit), ``acquired`` (date32);
- ``holdings`` (optional): ``account``, ``symbol``, ``quantity`` (decimal units), one row per
  account and symbol.

Money and quantities are kept exact as ``decimal128(38, 18)`` (chain balances have 18
decimals); the float views (``quantity_f`` ...) only feed the float problem. Malformed tables
(a missing column, a wrong type, a null, an unknown account) raise ``InvalidInput`` naming the
column. Bad data of one account (negative quantity or cash, duplicate lot ids, lots not adding
up to the holdings) only marks that account ``suspect``: ``ProblemBuilder.build_batch`` then
checks it against its single-account pydantic view (``account(k)``) and skips it with the
same ``AccountError`` as ever.
"""

from __future__ import annotations

import copy
import datetime as dt
import gc
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Context, Decimal
from operator import attrgetter
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import TypeAdapter

from offchain.errors import InvalidInput
from offchain.optimizer.inputs import Account, Customizations, TaxLot
from offchain.optimizer.output import decimals

DECIMAL = pa.decimal128(38, 18)
MODES = ("advisory", "discretionary")
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_LOT_FIELDS = attrgetter("symbol", "quantity", "cost_basis", "acquired", "lot_id")
_WIDE = Context(prec=80)
_STEP = Decimal("1e-18")
_LIMIT = Decimal(10) ** 20
_ONE = Decimal(1)
_MENUS = TypeAdapter(list[Customizations])


class ExactLot(NamedTuple):
    """A lot's exact quantity (units) and cost basis (cash per unit)."""

    quantity: Decimal
    cost_basis: Decimal


class AccountDataError(InvalidInput):
    """An account's data cannot be optimized; the account is skipped with this reason."""


def plain(value: Decimal) -> Decimal:
    """``value`` without the trailing zeros of its 18-decimal storage (``1.500...0`` -> ``1.5``,
    ``100.000...0`` -> ``100``); the same number."""
    return value.quantize(_ONE) if value == value.to_integral_value() else value.normalize()


def decimal_floats(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A ``decimal128`` column as float64 (to within an ulp or two; for the float problem only).

    Reads the 128-bit integers directly: several times faster than Arrow's cast.
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if len(array) == 0:
        return np.zeros(0)
    words = np.frombuffer(array.buffers()[1], dtype="<i8")
    words = words[2 * array.offset : 2 * (array.offset + len(array))]
    lo, hi = words[0::2].view(np.uint64), words[1::2]
    neg = hi < 0
    if neg.any():  # magnitude of a two's-complement int128
        lo = np.where(neg, ~lo + np.uint64(1), lo)
        hi = np.where(neg, ~hi + (lo == 0), hi)
    magnitude = hi.astype(float) * 2.0**64 + lo.astype(float)
    scale = 10.0**array.type.scale
    return np.where(neg, -magnitude, magnitude) / scale


def _fits(value: Decimal) -> bool:
    """Whether ``value`` is exact in ``decimal128(38, 18)``."""
    return (
        value.is_finite() and abs(value) < _LIMIT and value.quantize(_STEP, context=_WIDE) == value
    )


def _column(table: pa.Table, where: str, name: str, required: bool = True) -> pa.Array | None:
    if name not in table.column_names:
        if required:
            raise InvalidInput(f"{where}.{name}", "a column of that name", table.column_names)
        return None
    column = table.column(name).combine_chunks()
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise InvalidInput(f"{where}.{name}[{row}]", "a value (no nulls)", None)
    return column


def _strings(table: pa.Table, where: str, name: str, required: bool = True) -> pa.Array | None:
    column = _column(table, where, name, required)
    if column is None:
        return None
    if pa.types.is_dictionary(column.type) and pa.types.is_string(column.type.value_type):
        column = column.cast(pa.string())
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise InvalidInput(f"{where}.{name}", "a string column", str(column.type))
    column = column.cast(pa.string())
    empty = pc.equal(pc.utf8_length(column), 0)
    if pc.any(empty).as_py():
        row = int(np.flatnonzero(empty.to_numpy(zero_copy_only=False))[0])
        raise InvalidInput(f"{where}.{name}[{row}]", "a non-empty string", "")
    return column


def _decimals(table: pa.Table, where: str, name: str) -> pa.Array:
    column = _column(table, where, name)
    if not (pa.types.is_decimal(column.type) or pa.types.is_integer(column.type)):
        raise InvalidInput(f"{where}.{name}", "a decimal (or integer) column", str(column.type))
    try:
        return column.cast(DECIMAL)
    except pa.ArrowInvalid as exc:
        raise InvalidInput(
            f"{where}.{name}", "values exact in decimal128(38, 18)", str(exc)
        ) from None


def _account_rows(column: pa.Array, where: str, ids: pa.Array) -> np.ndarray:
    """An ``account`` column (row indexes or account ids) as row indexes into ``accounts``."""
    if pa.types.is_integer(column.type):
        rows = column.to_numpy().astype(np.int64)
    elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        rows = pc.index_in(column, value_set=ids).to_numpy(zero_copy_only=False)
        rows = np.where(np.isnan(rows.astype(float)), -1, rows).astype(np.int64)
    else:
        raise InvalidInput(f"{where}.account", "row indexes or account ids", str(column.type))
    bad = (rows < 0) | (rows >= len(ids))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InvalidInput(f"{where}.account[{row}]", "an account of the book", column[row].as_py())
    return rows


class AccountBook:
    """Accounts, their tax lots and (optionally) stated holdings, as Arrow tables, plus the
    menus (``Customizations``) the accounts point to. See the module docstring for the columns.

    Raises ``InvalidInput`` naming the column for a malformed table. ``errors`` holds, per
    account row, a value ``from_accounts`` could not store exactly (that account is skipped).
    """

    def __init__(
        self,
        accounts: pa.Table,
        lots: pa.Table,
        holdings: pa.Table | None = None,
        menus: Sequence[Customizations] = (),
        *,
        _source: Sequence[Account] | None = None,
        _errors: Mapping[int, AccountDataError] | None = None,
    ) -> None:
        self.menus: tuple[Customizations, ...] = tuple(menus)
        self._source = list(_source) if _source is not None else None
        # The source's lots in book order (``from_accounts`` keeps each account's order).
        self._source_lots: list[TaxLot] | None = (
            [lot for a in self._source for lot in a.lots] if self._source is not None else None
        )
        self.errors: dict[int, AccountDataError] = dict(_errors or {})
        self._cash_exact: list[Decimal] | None = None
        self._normalize_accounts(accounts, holdings is not None)
        self._normalize_lots(lots)
        self._normalize_holdings(holdings)
        self._find_suspects()

    # -- construction ---------------------------------------------------------------------

    def _normalize_accounts(self, table: pa.Table, has_holdings_table: bool) -> None:
        ids = _strings(table, "accounts", "account_id")
        households = _strings(table, "accounts", "household_id")
        cash = _decimals(table, "accounts", "cash")
        count = len(ids)
        mode = _strings(table, "accounts", "mode", required=False)
        if mode is None:
            mode = pa.array(["discretionary"] * count, pa.string())
        not_a_mode = pc.invert(pc.is_in(mode, value_set=pa.array(MODES)))
        if pc.any(not_a_mode).as_py():
            row = int(np.flatnonzero(not_a_mode.to_numpy(zero_copy_only=False))[0])
            raise InvalidInput(f"accounts.mode[{row}]", " or ".join(MODES), mode[row].as_py())
        if "menu" in table.column_names:
            menu_col = table.column("menu").combine_chunks()
            if not pa.types.is_integer(menu_col.type):
                raise InvalidInput("accounts.menu", "an integer column", str(menu_col.type))
            menu = menu_col.to_numpy(zero_copy_only=False)
            menu = np.where(_is_null(menu), -1, menu).astype(np.int64)
            bad = (menu < -1) | (menu >= len(self.menus))
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise InvalidInput(
                    f"accounts.menu[{row}]",
                    f"an index of menus (0..{len(self.menus) - 1})",
                    int(menu[row]),
                )
        else:
            menu = np.full(count, -1, np.int64)
        if (menu < 0).any():  # no customization: the default menu
            self.menus = (*self.menus, Customizations())
            menu = np.where(menu < 0, len(self.menus) - 1, menu)
        if "has_holdings" in table.column_names:
            flag = _column(table, "accounts", "has_holdings")
            if not pa.types.is_boolean(flag.type):
                raise InvalidInput("accounts.has_holdings", "a bool column", str(flag.type))
            self.has_holdings = flag.to_numpy(zero_copy_only=False).astype(bool)
        else:  # an export with a holdings table states the holdings of every account
            self.has_holdings = np.full(count, has_holdings_table, dtype=bool)
        households_dict = households.dictionary_encode()
        self.accounts = pa.table(
            {
                "account_id": ids,
                "household_id": households,
                "mode": mode,
                "cash": cash,
                "menu": pa.array(menu, pa.int32()),
                "has_holdings": pa.array(self.has_holdings),
            }
        )
        self.count = count
        self.account_ids: list[str] = ids.to_pylist()
        self.household_code = households_dict.indices.to_numpy().astype(np.int64)
        self.household_names: list[str] = households_dict.dictionary.to_pylist()
        self.advisory = pc.equal(mode, "advisory").to_numpy(zero_copy_only=False).astype(bool)
        self.menu_index = menu
        self.cash_f = decimal_floats(cash)

    def _normalize_lots(self, table: pa.Table) -> None:
        account = _column(table, "lots", "account")
        rows = _account_rows(account, "lots", self.accounts.column("account_id").combine_chunks())
        symbol = _column(table, "lots", "symbol")
        if pa.types.is_dictionary(symbol.type):
            symbol = symbol.cast(pa.string())
        if not pa.types.is_string(symbol.type) and not pa.types.is_large_string(symbol.type):
            raise InvalidInput("lots.symbol", "a string (or dictionary) column", str(symbol.type))
        symbol = symbol.cast(pa.string()).dictionary_encode()
        lot_id = _strings(table, "lots", "lot_id")
        quantity = _decimals(table, "lots", "quantity")
        basis = _decimals(table, "lots", "cost_basis")
        acquired = _column(table, "lots", "acquired")
        if pa.types.is_date64(acquired.type):
            acquired = acquired.cast(pa.date32())
        if not pa.types.is_date32(acquired.type):
            raise InvalidInput("lots.acquired", "a date32 column", str(acquired.type))
        lots = pa.table(
            {
                "account": pa.array(rows, pa.int32()),
                "symbol": symbol,
                "lot_id": lot_id,
                "quantity": quantity,
                "cost_basis": basis,
                "acquired": acquired,
            }
        )
        if rows.size and (np.diff(rows) < 0).any():  # group by account, keeping each order
            order = np.argsort(rows, kind="stable")
            lots = lots.take(pa.array(order))
            rows = rows[order]
        self.lots = lots.combine_chunks()
        self.lot_account = rows
        self.lot_start = np.concatenate(
            [[0], np.cumsum(np.bincount(rows, minlength=self.count))]
        ).astype(np.int64)
        sym = self.lots.column("symbol").chunk(0) if len(self.lots) else symbol
        self.symbols: list[str] = sym.dictionary.to_pylist()
        self.lot_symbol = sym.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        self.quantity_f = decimal_floats(self.lots.column("quantity"))
        self.cost_basis_f = decimal_floats(self.lots.column("cost_basis"))
        days = self.lots.column("acquired").combine_chunks().cast(pa.int32())
        self.acquired_ordinal = (
            days.to_numpy(zero_copy_only=False).astype(np.int64) + _EPOCH_ORDINAL
        )
        self.lot_ids = self.lots.column("lot_id").to_numpy()

    def _normalize_holdings(self, table: pa.Table | None) -> None:
        if table is None and self.has_holdings.any():  # stated, and nothing is held
            table = pa.table(
                {
                    "account": pa.array([], pa.int32()),
                    "symbol": pa.array([], pa.string()),
                    "quantity": pa.array([], DECIMAL),
                }
            )
        if table is None:
            self.holdings = None
            return
        account = _column(table, "holdings", "account")
        rows = _account_rows(
            account, "holdings", self.accounts.column("account_id").combine_chunks()
        )
        symbol = _strings(table, "holdings", "symbol")
        quantity = _decimals(table, "holdings", "quantity")
        holdings = pa.table(
            {"account": pa.array(rows, pa.int32()), "symbol": symbol, "quantity": quantity}
        )
        pairs = holdings.group_by(["account", "symbol"]).aggregate([("quantity", "count")])
        if len(pairs) != len(holdings):
            raise InvalidInput("holdings", "one row per account and symbol", None)
        order = np.argsort(rows, kind="stable")
        self.holdings = holdings.take(pa.array(order)).combine_chunks()
        self.holding_start = np.concatenate(
            [[0], np.cumsum(np.bincount(rows, minlength=self.count))]
        ).astype(np.int64)

    def _find_suspects(self) -> None:
        """Accounts whose data break a rule that needs no model: negative cash, quantity or
        cost basis, duplicate lot ids, stated holdings their lots do not add up to."""
        bad_lot = (self.quantity_f < 0) | (self.cost_basis_f < 0)
        suspect = np.bincount(self.lot_account, weights=bad_lot, minlength=self.count) > 0
        suspect |= self.cash_f < 0
        lots = self.lots
        if len(lots) and pc.count_distinct(lots.column("lot_id")).as_py() != len(lots):
            counts = lots.group_by(["account", "lot_id"]).aggregate([("lot_id", "count")])
            dup = pc.greater(counts.column("lot_id_count"), 1)
            suspect[counts.column("account").filter(dup).to_numpy()] = True
        if self.holdings is not None:
            stated = self.has_holdings
            held = self.holdings.filter(
                pa.array(stated[self.holdings.column("account").to_numpy()])
            )
            suspect[
                held.column("account").filter(pc.less(held.column("quantity"), 0)).to_numpy()
            ] = True
            mine = lots.filter(pa.array(stated[self.lot_account])) if len(lots) else lots
            summed = (
                pa.table(
                    {
                        "account": mine.column("account"),
                        "symbol": mine.column("symbol").cast(pa.string()),
                        "quantity": mine.column("quantity"),
                    }
                )
                .group_by(["account", "symbol"])
                .aggregate([("quantity", "sum")])
            )
            both = summed.join(held, keys=["account", "symbol"], join_type="full outer")
            lots_sum = pc.fill_null(both.column("quantity_sum").cast(DECIMAL), Decimal(0))
            stated_qty = pc.fill_null(both.column("quantity"), Decimal(0))
            differ = pc.not_equal(lots_sum, stated_qty)
            suspect[both.column("account").filter(differ).to_numpy()] = True
        for row in self.errors:
            suspect[row] = True
        self.suspect = suspect

    # -- conversions ----------------------------------------------------------------------

    @classmethod
    def from_accounts(
        cls,
        accounts: Sequence[Account],
        customizations: Mapping[str, Customizations] | Sequence[Customizations] | None = None,
    ) -> AccountBook:
        """The book of pydantic ``accounts``; ``customizations`` maps an account id to its menu
        or lists one menu per account (default: none). A value that ``decimal128(38, 18)`` cannot
        hold exactly (more than 18 decimals or 20 digits) skips that account (``errors``)."""
        enabled = gc.isenabled()
        gc.disable()  # many small acyclic objects: a collection would scan the whole book
        try:
            return cls._from_accounts(list(accounts), customizations)
        finally:
            if enabled:
                gc.enable()

    @classmethod
    def _from_accounts(
        cls,
        accounts: list[Account],
        customizations: Mapping[str, Customizations] | Sequence[Customizations] | None,
    ) -> AccountBook:
        count = len(accounts)
        menus: list[Customizations] = []
        seen: dict[int, int] = {}
        if customizations is None:
            chosen: Sequence[Customizations | None] = [None] * count
        elif isinstance(customizations, Mapping):
            chosen = [customizations.get(a.account_id) for a in accounts]
        else:
            chosen = list(customizations)
            if len(chosen) != count:
                raise InvalidInput("customizations", f"{count} menus, one per account", len(chosen))
        menu = np.full(count, -1, np.int64)
        for k, custom in enumerate(chosen):
            if custom is not None:
                menu[k] = seen.setdefault(id(custom), len(menus))
                if menu[k] == len(menus):
                    menus.append(custom)
        lot_lists = [a.lots for a in accounts]
        per_account = np.fromiter(map(len, lot_lists), np.int64, count)
        flat = [lot for lots in lot_lists for lot in lots]
        rows = list(map(_LOT_FIELDS, flat))
        syms, qtys, bases, acqs, ids = zip(*rows, strict=True) if rows else ((),) * 5
        lot_account = np.repeat(np.arange(count), per_account)
        first_lot = np.concatenate([[0], np.cumsum(per_account)])
        errors: dict[int, AccountDataError] = {}

        def exact(values, owner, field, per_unit=False):
            try:
                return pa.array(values, DECIMAL)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                values = list(values)
                for j, value in enumerate(values):
                    if per_unit and value.is_finite() and abs(value) < _LIMIT:
                        # A price per unit computed by division (a cost basis): kept to 18
                        # decimals, half-even; a realized gain moves by < 1e-18 x quantity.
                        values[j] = value.quantize(_STEP, rounding=ROUND_HALF_EVEN, context=_WIDE)
                    elif not _fits(value):
                        errors.setdefault(
                            int(owner(j)),
                            AccountDataError(
                                field(j),
                                "a number with at most 18 decimals and 20 digits before the point",
                                value,
                            ),
                        )
                        values[j] = Decimal(0)
                return pa.array(values, DECIMAL)

        def lot_field(name):
            return lambda j: f"lots[{j - first_lot[lot_account[j]]}].{name}"

        quantity = exact(qtys, lambda j: lot_account[j], lot_field("quantity"))
        basis = exact(bases, lambda j: lot_account[j], lot_field("cost_basis"), per_unit=True)
        cash = exact([a.cash for a in accounts], lambda j: j, lambda j: "cash")
        stated = [(k, a.holdings) for k, a in enumerate(accounts) if a.holdings is not None]
        holdings = None
        if stated:
            h_rows = [(k, sym, qty) for k, h in stated for sym, qty in h.items()]
            h_acc, h_sym, h_qty = zip(*h_rows, strict=True) if h_rows else ((), (), ())
            holdings = pa.table(
                {
                    "account": pa.array(h_acc, pa.int32()),
                    "symbol": pa.array(h_sym, pa.string()),
                    "quantity": exact(h_qty, lambda j: h_acc[j], lambda j: f"holdings[{h_sym[j]}]"),
                }
            )
        has_holdings = np.zeros(count, dtype=bool)
        has_holdings[[k for k, _ in stated]] = True
        accounts_table = pa.table(
            {
                "account_id": pa.array([a.account_id for a in accounts], pa.string()),
                "household_id": pa.array([a.household_id for a in accounts], pa.string()),
                "mode": pa.array([a.mode for a in accounts], pa.string()),
                "cash": cash,
                "menu": pa.array(np.where(menu < 0, None, menu).tolist(), pa.int32()),
                "has_holdings": pa.array(has_holdings),
            }
        )
        lots_table = pa.table(
            {
                "account": pa.array(lot_account, pa.int32()),
                "symbol": pa.array(syms, pa.string()).dictionary_encode(),
                "lot_id": pa.array(ids, pa.string()),
                "quantity": quantity,
                "cost_basis": basis,
                "acquired": pa.array(acqs, pa.date32()),
            }
        )
        return cls(accounts_table, lots_table, holdings, menus, _source=accounts, _errors=errors)

    def account(self, k: int) -> Account:
        """The pydantic view of account row ``k`` (the very ``Account`` given to
        ``from_accounts``, if that is where the book came from)."""
        if self._source is not None:
            return self._source[k]
        row = self.accounts.slice(k, 1).to_pylist()[0]
        lots = self.lots.slice(self.lot_start[k], self.lot_start[k + 1] - self.lot_start[k])
        holdings = None
        if self.has_holdings[k]:
            start, end = self.holding_start[k], self.holding_start[k + 1]
            part = self.holdings.slice(start, end - start).to_pylist() if self.holdings else []
            holdings = {h["symbol"]: plain(h["quantity"]) for h in part}
        return Account(
            account_id=row["account_id"],
            household_id=row["household_id"],
            mode=row["mode"],
            cash=plain(row["cash"]),
            lots=tuple(
                TaxLot(
                    lot_id=lot["lot_id"],
                    symbol=lot["symbol"],
                    quantity=plain(lot["quantity"]),
                    cost_basis=plain(lot["cost_basis"]),
                    acquired=lot["acquired"],
                )
                for lot in lots.to_pylist()
            ),
            holdings=holdings,
        )

    def to_accounts(self) -> list[Account]:
        """Every account's pydantic view, in row order."""
        return [self.account(k) for k in range(self.count)]

    def menu(self, k: int) -> Customizations:
        """The customizations of account row ``k``."""
        return self.menus[self.menu_index[k]]

    def customizations(self) -> dict[str, Customizations]:
        """Account id -> customizations (the first row of an id wins), as ``optimize_accounts``
        takes them with a list of accounts."""
        out: dict[str, Customizations] = {}
        for account_id, m in zip(self.account_ids, self.menu_index.tolist(), strict=True):
            out.setdefault(account_id, self.menus[m])
        return out

    @property
    def cash_exact(self) -> list[Decimal]:
        """Each account's cash, exact (read once, on first use)."""
        if self._cash_exact is None:
            if self._source is not None:
                self._cash_exact = [a.cash for a in self._source]
            else:
                self._cash_exact = [plain(c) for c in self.accounts.column("cash").to_pylist()]
        return self._cash_exact

    def lot(self, row: int) -> ExactLot | TaxLot:
        """Lot ``row`` of ``lots`` with its exact ``quantity`` and ``cost_basis`` (the very
        ``TaxLot``, if the book came from pydantic accounts)."""
        if self._source_lots is not None:
            return self._source_lots[row]
        row = int(row)
        return ExactLot(
            plain(self.lots.column("quantity")[row].as_py()),
            plain(self.lots.column("cost_basis")[row].as_py()),
        )

    def take(self, rows: Sequence[int] | np.ndarray) -> AccountBook:
        """The book of account ``rows`` only, in that order (menus shared)."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.lot_start[rows], self.lot_start[rows + 1]
        lens = ends - starts
        lot_rows = np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()))
        lots = self.lots.take(pa.array(lot_rows, pa.int64())).set_column(
            0, "account", pa.array(np.repeat(np.arange(rows.size), lens), pa.int32())
        )
        holdings = None
        if self.holdings is not None:
            new_row = np.full(self.count, -1, np.int64)
            new_row[rows] = np.arange(rows.size)
            mapped = new_row[self.holdings.column("account").to_numpy()]
            keep = mapped >= 0
            holdings = self.holdings.filter(pa.array(keep)).set_column(
                0, "account", pa.array(mapped[keep], pa.int32())
            )
        errors = {}
        for new, old in enumerate(rows.tolist()):
            if old in self.errors:
                errors[new] = self.errors[old]
        # Only the menus these accounts use travel with them (a one-account book of a large
        # firm would otherwise carry, and plan, every advisor's menu).
        menu = self.menu_index[rows]
        used, new_menu = np.unique(menu[menu >= 0], return_inverse=True)
        remapped = np.full(rows.size, -1, np.int64)
        remapped[menu >= 0] = new_menu
        accounts = self.accounts.take(pa.array(rows))
        accounts = accounts.set_column(
            accounts.column_names.index("menu"),
            "menu",
            pa.array(np.where(remapped < 0, None, remapped).tolist(), pa.int32()),
        )
        return AccountBook(
            accounts,
            lots,
            holdings,
            [self.menus[m] for m in used.tolist()],
            _source=[self._source[r] for r in rows.tolist()] if self._source is not None else None,
            _errors=errors,
        )

    def with_customizations(self, customizations: Mapping[str, Customizations]) -> AccountBook:
        """This book with the accounts named in ``customizations`` given those menus instead."""
        menus = list(self.menus)
        seen: dict[int, int] = {}
        menu = self.menu_index.copy()
        for k, account_id in enumerate(self.account_ids):
            custom = customizations.get(account_id)
            if custom is not None:
                menu[k] = seen.setdefault(id(custom), len(menus))
                if menu[k] == len(menus):
                    menus.append(custom)
        book = copy.copy(self)
        book.menus = tuple(menus)
        book.menu_index = menu
        book.accounts = self.accounts.set_column(
            self.accounts.column_names.index("menu"), "menu", pa.array(menu, pa.int32())
        )
        return book

    # -- files ----------------------------------------------------------------------------

    def write_parquet(self, directory: str | Path) -> None:
        """Write ``accounts.parquet``, ``lots.parquet``, ``holdings.parquet`` (if any) and
        ``menus.json`` into ``directory`` (created if missing)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.accounts, directory / "accounts.parquet")
        pq.write_table(self.lots, directory / "lots.parquet")
        if self.holdings is not None:
            pq.write_table(self.holdings, directory / "holdings.parquet")
        (directory / "menus.json").write_bytes(_MENUS.dump_json(list(self.menus)))

    @classmethod
    def read_parquet(cls, directory: str | Path) -> AccountBook:
        """The book ``write_parquet`` (or an export with the same files) left in ``directory``.

        Raises ``InvalidInput`` for a missing file or a malformed table or menu."""
        directory = Path(directory)
        for name in ("accounts.parquet", "lots.parquet"):
            if not (directory / name).is_file():
                raise InvalidInput(str(directory / name), "an existing Parquet file", None)
        holdings_path = directory / "holdings.parquet"
        menus_path = directory / "menus.json"
        menus: list[Customizations] = []
        if menus_path.is_file():
            try:
                menus = _MENUS.validate_json(menus_path.read_bytes())
            except ValueError as exc:
                raise InvalidInput(
                    str(menus_path), "a JSON list of Customizations", str(exc)
                ) from None
        return cls(
            pq.read_table(directory / "accounts.parquet"),
            pq.read_table(directory / "lots.parquet"),
            pq.read_table(holdings_path) if holdings_path.is_file() else None,
            menus,
        )

    def __len__(self) -> int:
        return self.count


def _is_null(values: np.ndarray) -> np.ndarray:
    """Null entries of a column read with ``to_numpy(zero_copy_only=False)`` (None or NaN)."""
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind == "O":
        return np.array([v is None for v in values], dtype=bool)
    return np.zeros(values.shape, dtype=bool)


__all__ = ["DECIMAL", "AccountBook", "AccountDataError", "ExactLot", "decimal_floats", "plain"]


def exact_decimals(rounded: np.ndarray, places: int) -> pa.Array:
    """Floats already rounded to ``places`` decimals (``round`` / ``np.round``) as the exact
    decimals ``Decimal(repr(x))`` they stand for, in ``decimal128(38, 18)``: a column of an
    ``AccountBook`` built from float data without one ``Decimal`` per value."""
    scaled = rounded * 10.0**places
    units = np.rint(scaled)
    # A value already rounded scales to within far less than half a step of its integer; any
    # other (not rounded as promised) is converted by Decimal itself.
    for j in np.flatnonzero(np.abs(scaled - units) > 1e-3):
        units[j] = float(Decimal(repr(float(rounded[j]))).scaleb(places))
    return decimals(units.astype(np.int64), places).cast(DECIMAL)
