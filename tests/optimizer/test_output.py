"""The columnar output: exact money in the trade table, the min-cash guard, lazy proposals."""

from __future__ import annotations

import datetime as dt
import pickle
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, localcontext

import numpy as np
import pyarrow as pa
import pytest
from optimizer_helpers import AS_OF, make_account, make_market, make_model

from offchain.optimizer import engine, trades
from offchain.optimizer.inputs import Account, Customizations, TaxLot
from offchain.optimizer.output import (
    EXACT,
    QUANTITY,
    SUMMARY_SCHEMA,
    TRADE_SCHEMA,
    BatchResult,
    decimals,
    fit,
    mul_round,
    units_of,
)
from offchain.optimizer.synthetic import make_accounts, make_universe

CENT = Decimal("0.01")


@pytest.fixture(scope="module")
def tight_book():
    """Synthetic accounts, a third of them with a minimum cash just under their cash (so that
    rounding would take many below it) and a seventh with a minimum trade value."""
    model, market = make_universe(11, 20)
    accounts, customs, trades = make_accounts(model, market, 90, seed=5)
    customs = dict(customs)
    for k, account in enumerate(accounts):
        c = customs.get(account.account_id, Customizations())
        if k % 3 == 0:
            c = c.model_copy(update={"min_cash": account.cash * Decimal("0.995")})
        if k % 7 == 0:
            c = c.model_copy(update={"min_trade_value": Decimal(300)})
        customs[account.account_id] = c
    result = engine.optimize_accounts(model, accounts, market, customs, trades)
    return model, market, accounts, customs, result


def _exact_cash_after(account: Account, custom: Customizations, proposal) -> Decimal:
    cash = account.cash - custom.withdrawal
    for t in proposal.trades:
        cash += t.value - t.cost if t.side == "sell" else -(t.value + t.cost)
    return cash


def test_rounding_never_takes_cash_below_the_minimum(tight_book):
    _, _, accounts, customs, result = tight_book
    by_id = {a.account_id: a for a in accounts}
    assert len(result.proposals) >= 60
    binding = 0
    for p in result.proposals:
        account, custom = by_id[p.account_id], customs[p.account_id]
        cash = _exact_cash_after(account, custom, p)
        assert cash >= custom.min_cash, p.account_id
        assert p.cash_after == cash.quantize(CENT, rounding=ROUND_DOWN)
        binding += cash - custom.min_cash < Decimal(50)
    assert binding >= 10  # the guard was exercised, not vacuous


def test_trade_money_is_exact(tight_book):
    model, market, accounts, customs, result = tight_book
    lots = {(a.account_id, lot.lot_id): lot for a in accounts for lot in a.lots}
    fee = {s: Decimal(repr(b)) / 10_000 for s, b in market.cost_bps.items()}
    count = 0
    for p in result.proposals:
        st = lt = Decimal(0)
        for t in p.trades:
            price = market.prices[t.symbol].price
            assert t.value == (t.quantity * price).quantize(CENT, rounding=ROUND_HALF_EVEN)
            assert t.cost == (t.value * fee[t.symbol]).quantize(CENT, rounding=ROUND_HALF_EVEN)
            if t.side == "sell":
                lot = lots[(p.account_id, t.lot_id)]
                assert t.quantity <= lot.quantity
                gain = (t.quantity * (price - lot.cost_basis)).quantize(CENT, ROUND_HALF_EVEN)
                assert t.realized_gain == gain
                if t.term == "short":
                    st += gain
                else:
                    lt += gain
            else:
                assert t.quantity == t.quantity.quantize(Decimal("1e-8"))
            count += 1
        assert (p.realized_short_term, p.realized_long_term) == (st, lt)
        assert p.transaction_cost == sum((t.cost for t in p.trades), Decimal(0))
    assert count > 500


def test_the_table_holds_what_the_proposals_say(tight_book):
    _, _, _, _, result = tight_book
    trades, summary = result.trades, result.summary
    assert trades.schema == TRADE_SCHEMA
    assert summary.schema == SUMMARY_SCHEMA
    assert summary.num_rows == len(result.proposals)
    rows = trades.to_pylist()
    flat = [(p.account_id, t) for p in result.proposals for t in p.trades]
    assert len(rows) == len(flat) == sum(summary.column("trade_count").to_pylist())
    for row, (account_id, t) in zip(rows, flat, strict=True):
        assert row["account_id"] == account_id
        for name in ("symbol", "side", "lot_id", "quantity", "value", "cost", "realized_gain",
                     "term"):
            assert row[name] == getattr(t, name), name
    for s, p in zip(summary.to_pylist(), result.proposals, strict=True):
        for name in ("account_id", "realized_short_term", "realized_long_term", "tax_cost",
                     "transaction_cost", "cash_after", "needs_approval"):
            assert s[name] == getattr(p, name), name


def test_proposals_are_rendered_once_on_access(tight_book):
    _, _, _, _, result = tight_book
    proposals = result.proposals
    first = proposals[0]
    assert proposals[0] is first
    assert proposals[-1] is proposals[len(proposals) - 1]
    assert proposals[1:3] == (proposals[1], proposals[2])
    assert list(proposals) == [proposals[k] for k in range(len(proposals))]
    with pytest.raises(IndexError):
        proposals[len(proposals)]
    with pytest.raises(AttributeError):
        result.errors = ()
    again = pickle.loads(pickle.dumps(result.trades)), pickle.loads(pickle.dumps(result.summary))
    assert list(BatchResult(*again).proposals) == list(proposals)
    copy = pickle.loads(pickle.dumps(result))  # what a worker process sends back
    assert copy == result and list(copy.proposals) == list(proposals)
    assert '"proposals"' in result.model_dump_json()


def test_whole_lot_of_18_decimals_is_sold_exactly_and_needs_approval():
    qty = Decimal("30.141592653589793238")  # finer than the 1e-8 trade step
    # A loss, out of the model: sold whole. The basis has more decimals than a ledger keeps
    # (a division result, as the keeper computes it): the book keeps it to 18 decimals, which
    # moves the gain by less than 1e-16 of a cent here.
    basis = Decimal("150.1234567890123456789919159")
    lot = TaxLot(lot_id="fine", symbol="USB", quantity=qty, cost_basis=basis,
                 acquired=AS_OF - dt.timedelta(days=800))
    base = make_account({"USA": [("400", "100", 800)], "INTL": [("250", "100", 800)],
                         "BND": [("250", "100", 800)]}, cash="2000")
    account = base.model_copy(update={"lots": (*base.lots, lot), "mode": "advisory"})
    model, market = make_model(), make_market()
    result = engine.optimize_accounts(model, [account], market)
    (p,) = result.proposals
    assert p.needs_approval
    (t,) = [t for t in p.trades if t.lot_id == "fine"]
    price = market.prices["USB"].price
    assert t.quantity == qty
    assert t.value == (qty * price).quantize(CENT, rounding=ROUND_HALF_EVEN)
    assert t.realized_gain == (qty * (price - basis)).quantize(CENT, rounding=ROUND_HALF_EVEN)
    assert result.trades.column("quantity").to_pylist()[
        result.trades.column("lot_id").to_pylist().index("fine")] == qty


def test_decimal_columns_round_trip_and_round_half_even():
    units = np.array([0, 1, -1, 123456789, -(2**62), 2**62], dtype=np.int64)
    arr = decimals(units, 2)
    assert arr.to_pylist()[:4] == [Decimal("0.00"), Decimal("0.01"), Decimal("-0.01"),
                                   Decimal("1234567.89")]
    assert np.array_equal(units_of(arr), units)
    qty = pa.array([Decimal("0.005"), Decimal("0.015"), Decimal("-0.025"),
                    Decimal("1.234567890123456789")], QUANTITY)
    one = pa.array([Decimal(1)] * 4, pa.decimal128(5, 0))
    got = mul_round(fit(qty, (8, 18)), one).to_pylist()
    want = [q.quantize(CENT, rounding=ROUND_HALF_EVEN) for q in qty.to_pylist()]
    assert got == want == [Decimal("0.00"), Decimal("0.02"), Decimal("-0.02"), Decimal("1.23")]
    # Wide operands take the decimal256 path and stay exact.
    big = pa.array([Decimal("12345678901.123456789012345678")], QUANTITY)
    price = pa.array([Decimal("98765.432109876543210987")], QUANTITY)
    got = mul_round(fit(big, (8, 18)), fit(price, (8, 18))).to_pylist()[0]
    with localcontext() as ctx:
        ctx.prec = 100
        exact = big[0].as_py() * price[0].as_py()
    assert got == exact.quantize(CENT, rounding=ROUND_HALF_EVEN)
    assert fit(pa.array([Decimal("1.5")], QUANTITY), (0, 2, 18)).type == pa.decimal128(3, 2)


def test_integer_division_rounds_half_even_like_decimal():
    rng = np.random.default_rng(3)
    for d in (10, 10**6, 10**12):
        ties = np.array([0, 1, 2, 3, -1, -2, -3]) * d + d // 2
        x = np.concatenate([rng.integers(-(2**62), 2**62, 5000), ties, ties + 1, ties - 1,
                            -ties, -ties + 1])
        got = trades._div_half_even(x, d)
        want = [int((Decimal(int(v)) / d).quantize(Decimal(1), ROUND_HALF_EVEN, context=EXACT))
                for v in x]
        assert got.tolist() == want
    assert trades._fits(np.array([2**31, 2**32]), np.array([2**31, 2**31])).tolist() == [
        True, False]
