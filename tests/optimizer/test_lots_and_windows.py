"""Lot math, holding periods and the wash-sale windows on both sides."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from optimizer_helpers import AS_OF, make_account

from offchain.optimizer import optimize_accounts
from offchain.optimizer.inputs import Customizations, HouseholdTrade, TaxSettings
from offchain.optimizer.problem import days_to_long_term, is_long_term, wash_windows


@pytest.mark.parametrize(
    ("acquired", "as_of", "long"),
    [
        (dt.date(2025, 11, 20), dt.date(2026, 11, 20), False),  # exactly one year: short
        (dt.date(2025, 11, 19), dt.date(2026, 11, 20), True),  # one year and a day: long
        (dt.date(2024, 2, 29), dt.date(2025, 2, 28), False),  # leap day anniversary
        (dt.date(2024, 2, 29), dt.date(2025, 3, 1), True),
        (dt.date(2026, 11, 20), dt.date(2026, 11, 20), False),
    ],
)
def test_one_year_boundary(acquired, as_of, long):
    assert is_long_term(acquired, as_of) is long


def test_days_to_long_term_counts_down_to_the_first_long_day():
    acquired = dt.date(2025, 12, 1)
    assert days_to_long_term(acquired, dt.date(2026, 11, 20)) == 12
    assert is_long_term(acquired, dt.date(2026, 11, 20) + dt.timedelta(days=12))
    assert not is_long_term(acquired, dt.date(2026, 11, 20) + dt.timedelta(days=11))
    assert days_to_long_term(dt.date(2020, 1, 1), dt.date(2026, 11, 20)) == 0


def _sell(days_ago: int, gain: str, symbol: str = "USA", household: str = "hh-1"):
    return HouseholdTrade(household_id=household, account_id="other", symbol=symbol,
                          side="sell", quantity=Decimal(10),
                          trade_date=AS_OF - dt.timedelta(days=days_ago),
                          realized_gain=Decimal(gain))


def _buy(days_ago: int, symbol: str = "USA", household: str = "hh-1"):
    return HouseholdTrade(household_id=household, account_id="other", symbol=symbol,
                          side="buy", quantity=Decimal(10),
                          trade_date=AS_OF - dt.timedelta(days=days_ago))


def test_wash_windows_are_30_days_inclusive_and_household_wide():
    trades = [_sell(30, "-5"), _sell(31, "-5", "INTL"), _sell(3, "5", "BND"), _buy(30, "BND"),
              _buy(31, "ALT1"), _sell(1, "-5", "USC", household="hh-2")]
    no_buy, no_loss = wash_windows(trades, "hh-1", AS_OF)
    assert no_buy == {"USA"}  # INTL is 31 days old, BND was a gain, USC another household
    assert no_loss == {"BND"}  # ALT1 bought 31 days ago


def _underweight_usa():
    """USA far under the model, lots of cash: the optimizer wants to buy US equity."""
    return make_account({"INTL": [("250", "100", 800)], "BND": [("250", "100", 800)],
                         "ALT1": [("80", "100", 800)]}, cash="42000")


def _bought(proposal):
    return {t.symbol for t in proposal.trades if t.side == "buy"}


def test_no_purchase_of_the_group_within_30_days_after_a_loss_sale(model, market):
    locked = optimize_accounts(model, [_underweight_usa()], market, household_trades=[
        _sell(30, "-100", "USB")]).proposals[0]
    # USB's loss sale locks the whole SP500 group (USA); USC, not identical, stands in.
    assert "USA" not in _bought(locked) and "USB" not in _bought(locked)
    assert "USC" in _bought(locked)
    assert any("wash sale" in note for note in locked.notes)
    free = optimize_accounts(model, [_underweight_usa()], market, household_trades=[
        _sell(31, "-100", "USB")]).proposals[0]
    assert "USA" in _bought(free)


def _usa_at_a_loss(days_held: int = 800):
    return make_account({"USA": [("400", "150", days_held)], "INTL": [("250", "100", 800)],
                         "BND": [("250", "100", 800)], "ALT1": [("80", "100", 800)]})


def test_losses_are_harvested_and_the_group_is_not_bought_back(model, market):
    proposal = optimize_accounts(model, [_usa_at_a_loss()], market).proposals[0]
    sells = [t for t in proposal.trades if t.side == "sell" and t.symbol == "USA"]
    assert sells and all(t.realized_gain < 0 for t in sells)
    assert not _bought(proposal) & {"USA", "USB"}
    assert "USC" in _bought(proposal)
    assert proposal.tax_cost < 0
    all_sells = [t for t in proposal.trades if t.side == "sell"]
    assert proposal.realized_long_term == sum(t.realized_gain for t in all_sells)


def test_no_loss_harvest_of_an_instrument_bought_within_30_days(model, market):
    for days, harvested in ((30, False), (31, True)):
        proposal = optimize_accounts(model, [_usa_at_a_loss()], market, household_trades=[
            _buy(days, "USB")]).proposals[0]
        sold = any(t.symbol == "USA" and t.side == "sell" for t in proposal.trades)
        assert sold is harvested, days


def test_a_lot_bought_in_the_last_30_days_is_not_sold_at_a_loss(model, market):
    recent = make_account({"USA": [("400", "150", 10)], "INTL": [("250", "100", 800)],
                           "BND": [("250", "100", 800)], "ALT1": [("80", "100", 800)]})
    proposal = optimize_accounts(model, [recent], market).proposals[0]
    assert not [t for t in proposal.trades if t.symbol == "USA" and t.side == "sell"]


def test_loss_below_threshold_is_not_harvested(model, market):
    small = make_account({"USA": [("400", "102", 800)], "INTL": [("250", "100", 800)],
                          "BND": [("250", "100", 800)], "ALT1": [("80", "100", 800)]})
    custom = {"acct-1": Customizations(tax=TaxSettings(loss_harvest_threshold=0.05))}
    proposal = optimize_accounts(model, [small], market, custom).proposals[0]
    assert proposal.trades == ()


def test_short_term_gain_close_to_long_term_is_deferred(model, market):
    # USA 60% of the account, every lot a short-term gain turning long-term in 20 days.
    heavy = make_account({"USA": [("600", "50", 346)], "BND": [("200", "100", 800)]},
                         cash="20000")
    defer = {"acct-1": Customizations(tax=TaxSettings(defer_short_term_days=31))}
    proposal = optimize_accounts(model, [heavy], market, defer).proposals[0]
    assert not [t for t in proposal.trades if t.symbol == "USA" and t.side == "sell"]
    assert any("position limit" in n for n in proposal.notes)  # cannot get under 45 % today
    allow = {"acct-1": Customizations(tax=TaxSettings(defer_short_term_days=0))}
    proposal = optimize_accounts(model, [heavy], market, allow).proposals[0]
    sells = [t for t in proposal.trades if t.symbol == "USA" and t.side == "sell"]
    assert sells and all(t.term == "short" for t in sells)


def test_lots_are_sold_cheapest_tax_first(model, market):
    # Same instrument, three lots: a loss, a long-term gain and a short-term gain.
    acct = make_account({"USA": [("300", "130", 800), ("300", "60", 900), ("300", "60", 100)]},
                        cash="10000")
    proposal = optimize_accounts(model, [acct], market).proposals[0]
    sold = {t.lot_id: t.quantity for t in proposal.trades if t.side == "sell"}
    assert sold.get("acct-1-USA-0") == Decimal(300)  # the loss lot goes entirely
    if "acct-1-USA-2" in sold:  # short-term only once long-term is exhausted
        assert sold.get("acct-1-USA-1") == Decimal(300)
