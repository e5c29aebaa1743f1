"""The columnar input (``AccountBook``) against the pydantic accounts it replaces.

A book made from pydantic accounts, read back from Parquet, or generated in columns
(``make_book``) must give every account the same problem, proposal and error as its pydantic
``Account`` does; malformed tables are refused naming the column.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from optimizer_helpers import AS_OF, make_account, make_market
from test_batch import _assert_same_proposals, _same_problem

from offchain.errors import InvalidInput
from offchain.optimizer import engine
from offchain.optimizer.book import DECIMAL, AccountBook, decimal_floats
from offchain.optimizer.inputs import Account, Customizations, TaxLot, TaxSettings
from offchain.optimizer.problem import ProblemBuilder, build_universe
from offchain.optimizer.synthetic import make_accounts, make_book, make_universe


@pytest.fixture(scope="module")
def synthetic():
    model, market = make_universe(5, 24)
    accounts, customs, trades = make_accounts(model, market, 40, seed=33)
    return model, market, accounts, customs, trades


def _lot(lot_id, symbol, qty, basis="100", days=400) -> TaxLot:
    return TaxLot(
        lot_id=lot_id,
        symbol=symbol,
        quantity=Decimal(qty),
        cost_basis=Decimal(basis),
        acquired=AS_OF - dt.timedelta(days=days),
    )


def _bad_accounts() -> tuple[list[Account], dict[str, Customizations]]:
    good = make_account({"USA": [("400", "90", 800)], "BND": [("250", "100", 800)]}, "0", "good")
    accounts = [
        good,
        make_account({"XYZ": [("1", "1", 10)]}, account_id="unknown"),
        make_account({"USA": [("5", "1", 10), ("-1", "1", 10)]}, account_id="negative"),
        make_account({"USA": [("1", "-1.5", 10)]}, account_id="basis"),
        make_account({"USA": [("1", "1", -3)]}, account_id="future"),
        make_account({"USB": [("1", "1", 10)]}, account_id="stale"),
        make_account({"USA": [("1", "1", 10)]}, cash="-1", account_id="cash"),
        Account(
            account_id="dup-lots",
            household_id="h",
            lots=(_lot("L", "USA", "1"), _lot("L", "BND", "1")),
        ),
        Account(
            account_id="mismatch",
            household_id="h",
            holdings={"USA": Decimal("3"), "BND": Decimal(1)},
            lots=(_lot("M1", "USA", "2"), _lot("M2", "USA", "1"), _lot("M3", "BND", "2")),
        ),
        Account(
            account_id="matches",
            household_id="h",
            holdings={"USA": Decimal("3"), "BND": Decimal(2)},
            lots=(_lot("N1", "USA", "2"), _lot("N2", "USA", "1"), _lot("N3", "BND", "2")),
        ),
        make_account({"USA": [("10", "100", 400)]}, cash="0", account_id="too-much"),
        make_account({"USA": [("10", "100", 400)]}, account_id="budget"),
        make_account({"USA": [("10", "100", 400)]}, account_id="subst"),
    ]
    menus = {
        "too-much": Customizations(withdrawal=Decimal(5_000)),
        "budget": Customizations(tax=TaxSettings(short_term_gain_budget=Decimal(-1))),
        "subst": Customizations(substitutions={"USA": "NOPE"}),
    }
    return accounts, menus


EXPECTED_FIELDS = {
    "unknown": "lots[0].symbol",
    "negative": "lots[1].quantity",
    "basis": "lots[0].cost_basis",
    "future": "lots[0].acquired",
    "stale": "prices[USB]",
    "cash": "cash",
    "dup-lots": "lots",
    "mismatch": "holdings[BND]",
    "too-much": "withdrawal",
    "budget": "tax.short_term_gain_budget",
    "subst": "substitutions[NOPE]",
}


@pytest.mark.parametrize("via_parquet", [False, True])
def test_book_errors_are_the_single_account_errors(model, tmp_path, via_parquet):
    """From pydantic accounts or from Parquet tables (no pydantic source), each bad account is
    skipped with the error it gets alone; the others are built."""
    market = make_market(stale=("USB",))
    accounts, menus = _bad_accounts()
    book = AccountBook.from_accounts(accounts, menus)
    if via_parquet:
        book.write_parquet(tmp_path / "book")
        book = AccountBook.read_parquet(tmp_path / "book")
        assert book.to_accounts() == accounts
    universe = build_universe(model, market)
    builder = ProblemBuilder(universe, model, market, [], AS_OF)
    batch, errors = builder.build_batch(book)
    assert batch.account_ids == ["good", "matches"]
    got = {accounts[k].account_id: exc for k, exc in errors}
    assert {name: exc.field for name, exc in got.items()} == EXPECTED_FIELDS
    for account in accounts:
        if account.account_id not in got:
            continue
        with pytest.raises(InvalidInput) as alone:
            ProblemBuilder(universe, model, market, [], AS_OF).build(
                account, menus.get(account.account_id, Customizations())
            )
        exc = got[account.account_id]
        assert (alone.value.field, str(alone.value)) == (exc.field, str(exc))


def test_make_book_is_make_accounts_in_columns(synthetic):
    model, market, accounts, customs, trades = synthetic
    book, book_trades = make_book(model, market, 40, seed=33)
    assert book_trades == trades
    assert book.to_accounts() == accounts
    assert [book.menu(k) for k in range(len(book))] == [
        customs.get(a.account_id, Customizations()) for a in accounts
    ]
    converted = AccountBook.from_accounts(accounts, customs)
    for name in ("quantity", "cost_basis", "acquired", "lot_id"):
        assert book.lots.column(name).equals(converted.lots.column(name)), name
    assert book.accounts.column("cash").equals(converted.accounts.column("cash"))


def test_a_book_gets_what_its_accounts_get(synthetic):
    model, market, accounts, customs, trades = synthetic
    book, _ = make_book(model, market, 40, seed=33)
    from_list = engine.run_engine(model, accounts, market, customs, trades)
    from_book = engine.run_engine(model, book, market, None, trades)
    _assert_same_proposals(from_list.result.proposals, from_book.result.proposals)
    assert from_list.result.errors == from_book.result.errors
    for account_id, solved in from_book.solved.items():
        _same_problem(solved.problem, from_list.solved[account_id].problem)


def test_a_part_of_a_book_carries_only_its_menus(synthetic):
    model, market, accounts, customs, trades = synthetic
    book, _ = make_book(model, market, 40, seed=33)
    rows = [17, 0, 3]
    part = book.take(rows)
    assert [part.menu(k) for k in range(len(rows))] == [book.menu(r) for r in rows]
    assert len(part.menus) == len({id(book.menu(r)) for r in rows}) < len(book.menus)
    _assert_same_proposals(
        engine.run_engine(model, part, market, None, trades).result.proposals,
        [p for r in rows for p in engine.run_engine(
            model, [accounts[r]], market, customs, trades).result.proposals],
    )


def test_a_cost_basis_with_more_than_18_decimals_is_kept_to_18(model, market):
    basis = Decimal("90.1234567890123456789919159")  # a division result, as the keeper makes
    book = AccountBook.from_accounts([make_account({"USA": [("400", "90", 800)]})])
    lot = book.account(0).lots[0]
    priced = lot.model_copy(update={"cost_basis": basis})
    account = book.account(0).model_copy(update={"lots": (priced,)})
    kept = AccountBook.from_accounts([account]).lots.column("cost_basis")[0].as_py()
    assert kept == Decimal("90.123456789012345679")
    assert engine.optimize_accounts(model, [account], market).errors == ()


def test_customizations_given_with_a_book_replace_its_menus(synthetic):
    model, market, accounts, customs, trades = synthetic
    book, _ = make_book(model, market, 6, seed=33)
    withdraw = Customizations(withdrawal=Decimal(1_000_000_000))
    result = engine.optimize_accounts(
        model, book, market, {accounts[2].account_id: withdraw}, trades
    )
    assert [(e.account_id, e.field) for e in result.errors] == [
        (accounts[2].account_id, "withdrawal")
    ]
    assert book.menu(2) == customs.get(accounts[2].account_id, Customizations())


def test_exact_lots_and_cash_come_from_the_book(synthetic):
    model, market, accounts, customs, trades = synthetic
    book, _ = make_book(model, market, 10, seed=33)
    universe = build_universe(model, market)
    batch, errors = ProblemBuilder(universe, model, market, trades, AS_OF).build_batch(book)
    assert not errors
    lots = {lot.lot_id: lot for a in accounts[:10] for lot in a.lots}
    ks = np.arange(0, batch.lot_ids.size, 3)
    quantity, basis = batch.exact_lots(ks)
    assert quantity.type == basis.type == DECIMAL
    for k, q, b in zip(ks.tolist(), quantity.to_pylist(), basis.to_pylist(), strict=True):
        lot = lots[batch.lot_ids[k]]
        assert (q, b) == (lot.quantity, lot.cost_basis)
        assert (batch.lot_refs[k].quantity, batch.lot_refs[k].cost_basis) == (q, b)
    assert batch.cash_exact == [a.cash for a in accounts[:10]]
    assert batch.advisory.tolist() == [a.mode == "advisory" for a in accounts[:10]]
    part, part_lots = batch.take(np.array([3, 1]))
    assert part.cash_exact == [accounts[3].cash, accounts[1].cash]
    assert part.exact_lots(np.arange(part.lot_ids.size))[0].equals(
        batch.exact_lots(part_lots)[0]
    )


def test_a_value_decimal128_cannot_hold_skips_only_that_account(model, market):
    good = make_account({"USA": [("400", "90", 800)]}, account_id="good")
    fine = make_account({"USA": [("1", "1", 10), ("0.1234567890123456789", "1", 10)]},
                        account_id="fine-grained")
    result = engine.optimize_accounts(model, [good, fine], market)
    assert [p.account_id for p in result.proposals] == ["good"]
    assert [(e.account_id, e.field) for e in result.errors] == [
        ("fine-grained", "lots[1].quantity")
    ]


def test_decimal_floats_are_the_floats_of_the_decimals():
    rng = np.random.default_rng(3)
    values = [
        Decimal(f"{int(m)}.{int(f):018d}") * s
        for m, f, s in zip(
            rng.integers(0, 10**12, 500),
            rng.integers(0, 10**17, 500),
            rng.choice([-1, 1], 500),
            strict=True,
        )
    ] + [Decimal(0), Decimal("-1e-18"), Decimal("1e-18"), Decimal("99999999999999999999")]
    got = decimal_floats(pa.array(values, DECIMAL).slice(1))
    want = np.array([float(v) for v in values[1:]])
    np.testing.assert_allclose(got, want, rtol=4e-16, atol=0)
    assert np.array_equal(np.sign(got), np.sign(want))


def _tables():
    accounts = pa.table(
        {
            "account_id": ["a", "b"],
            "household_id": ["h", "h"],
            "cash": pa.array([Decimal("10"), Decimal("0.5")], DECIMAL),
        }
    )
    lots = pa.table(
        {
            "account": ["b", "a"],
            "symbol": ["USA", "BND"],
            "lot_id": ["1", "2"],
            "quantity": pa.array([Decimal(1), Decimal(2)], pa.decimal128(10, 2)),
            "cost_basis": pa.array([Decimal(1), Decimal(2)], DECIMAL),
            "acquired": pa.array([AS_OF, AS_OF], pa.date32()),
        }
    )
    return accounts, lots


def test_tables_are_normalized():
    accounts, lots = _tables()
    book = AccountBook(accounts, lots)
    assert book.lot_account.tolist() == [0, 1]  # grouped by account, ids resolved
    assert book.account(0).lots[0].symbol == "BND"
    assert book.account(1).mode == "discretionary"
    assert book.menu(0) == Customizations()
    assert book.lots.column("quantity").type == DECIMAL


@pytest.mark.parametrize(
    ("table", "change", "field"),
    [
        ("accounts", lambda t: t.drop_columns(["cash"]), "accounts.cash"),
        ("accounts", lambda t: t.set_column(2, "cash", pa.array([1.0, 2.0])), "accounts.cash"),
        ("accounts", lambda t: t.append_column("mode", pa.array(["advisory", "x"])),
         "accounts.mode[1]"),
        ("accounts", lambda t: t.set_column(0, "account_id", pa.array(["a", None])),
         "accounts.account_id[1]"),
        ("accounts", lambda t: t.set_column(0, "account_id", pa.array(["a", ""])),
         "accounts.account_id[1]"),
        ("accounts", lambda t: t.append_column("menu", pa.array([0, 3])), "accounts.menu[1]"),
        ("lots", lambda t: t.set_column(0, "account", pa.array(["b", "zz"])), "lots.account[1]"),
        ("lots", lambda t: t.set_column(0, "account", pa.array([0, 2])), "lots.account[1]"),
        ("lots", lambda t: t.set_column(5, "acquired", pa.array(["2026-01-01"] * 2)),
         "lots.acquired"),
        ("lots", lambda t: t.set_column(3, "quantity", pa.array([Decimal("1e-19")] * 2)),
         "lots.quantity"),
    ],
)
def test_malformed_tables_are_refused_naming_the_column(table, change, field):
    accounts, lots = _tables()
    if table == "accounts":
        accounts = change(accounts)
    else:
        lots = change(lots)
    with pytest.raises(InvalidInput) as refused:
        AccountBook(accounts, lots, menus=(Customizations(),))
    assert refused.value.field == field


def test_holdings_need_one_row_per_account_and_symbol():
    accounts, lots = _tables()
    holdings = pa.table(
        {
            "account": [0, 0],
            "symbol": ["BND", "BND"],
            "quantity": pa.array([Decimal(1), Decimal(1)], DECIMAL),
        }
    )
    with pytest.raises(InvalidInput) as refused:
        AccountBook(accounts, lots, holdings)
    assert refused.value.field == "holdings"
