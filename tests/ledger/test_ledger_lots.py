"""Tax lots from fills: lot choice, holding period boundary, exactness, idempotency."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offchain.errors import InvalidInput
from offchain.ledger.lots import Fill, TaxLedger
from offchain.universe import WAD

D0 = dt.date(2025, 1, 10)


def buy(ref, units, cash, date=D0, symbol="LCAP"):
    return Fill("acct", symbol, "buy", units * WAD, cash * WAD, date, ref)


def sell(ref, units, cash, date, lot_ids=()):
    return Fill("acct", "LCAP", "sell", units * WAD, cash * WAD, date, ref, tuple(lot_ids))


def test_fifo_by_default_and_exact_gain():
    ledger = TaxLedger()
    ledger.apply(buy("b1", 10, 1_000))                      # 100 per unit
    ledger.apply(buy("b2", 10, 1_500, D0 + dt.timedelta(days=30)))  # 150 per unit
    gains = ledger.apply(sell("s1", 15, 1_800, D0 + dt.timedelta(days=60)))  # 120 per unit
    assert [(g.lot_id, g.units, g.gain) for g in gains] == [
        ("b1", Decimal(10), Decimal(200)), ("b2", Decimal(5), Decimal(-150))]
    assert ledger.holdings("acct") == {"LCAP": 5 * WAD}


def test_chosen_lots_go_first():
    ledger = TaxLedger()
    ledger.apply(buy("b1", 10, 1_000))
    ledger.apply(buy("b2", 10, 1_500))
    gains = ledger.apply(sell("s1", 10, 1_200, D0 + dt.timedelta(days=5), lot_ids=["b2"]))
    assert [(g.lot_id, g.gain) for g in gains] == [("b2", Decimal(-300))]


@pytest.mark.parametrize("days,term", [(365, "short"), (366, "long")])
def test_one_year_boundary(days, term):
    ledger = TaxLedger()
    ledger.apply(buy("b1", 1, 100))
    [gain] = ledger.apply(sell("s1", 1, 150, D0 + dt.timedelta(days=days)))
    assert gain.term == term
    assert ledger.realized_totals("acct")[term] == Decimal(50)


def test_replayed_fill_is_ignored():
    ledger = TaxLedger()
    ledger.apply(buy("b1", 10, 1_000))
    ledger.apply(sell("s1", 4, 480, D0 + dt.timedelta(days=1)))
    assert ledger.apply(sell("s1", 4, 480, D0 + dt.timedelta(days=1))) == []
    assert ledger.holdings("acct") == {"LCAP": 6 * WAD}


def test_overselling_is_refused_and_changes_nothing():
    ledger = TaxLedger()
    ledger.apply(buy("b1", 10, 1_000))
    with pytest.raises(InvalidInput, match=r"fill\[s1\].units: expected at most"):
        ledger.apply(sell("s1", 11, 1_100, D0))
    assert ledger.holdings("acct") == {"LCAP": 10 * WAD} and ledger.realized == []


def test_bad_amounts_name_the_field():
    with pytest.raises(InvalidInput, match="fill.units"):
        TaxLedger().apply(buy("b1", 0, 10))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 50), st.integers(1, 10_000)),
                min_size=1, max_size=30))
def test_units_and_basis_are_conserved(events):
    """Units held = bought - sold, and total basis realized + basis open = cost paid."""
    ledger = TaxLedger()
    bought = sold = 0
    cost = Decimal(0)
    for i, (is_buy, units, cash) in enumerate(events):
        date = D0 + dt.timedelta(days=i)
        if is_buy:
            ledger.apply(buy(f"r{i}", units, cash, date))
            bought += units
            cost += cash
        elif bought - sold >= units:
            ledger.apply(sell(f"r{i}", units, cash, date))
            sold += units
    assert ledger.holdings("acct").get("LCAP", 0) == (bought - sold) * WAD
    open_basis = sum((lot.cost_per_unit * lot.units / WAD for lot in ledger.open_lots("acct")),
                     Decimal(0))
    realized_basis = sum((g.basis for g in ledger.realized), Decimal(0))
    assert abs(open_basis + realized_basis - cost) < Decimal("1e-18")
