"""LightPool: a basket's buys funded by the same basket's sells in the same batch.

When a basket's buys lock more cash than its owner has free, the issuers of the funds it sells
advance the difference from their cash reserve (sells in leg order, each up to its proceeds at
its limit). At settlement each issuer is repaid from the sale first, then in unsold units at
the seller's limit. A funding sell must be of a fund its issuer redeems in LightPool, not a
gated alternative, with its limit at or below the redemption price NAV x (1 - fee).

Here the issuer redeems ``fund`` at 99 (NAV 100, fee 1%); ``other`` is a second ETF.
"""

from __future__ import annotations

import ape
import pytest

from offchain.chain.lightpool import Basket, advance_allocation, advance_repayment
from offchain.universe import DAY, WAD, FundKind

from .conftest import NAV, TICK, leg, legs, to_clear

P = NAV
REDEEM = 99 * WAD  # the issuer's redemption price in `fund`: NAV x (1 - 1%)
FEE_BPS = 100


@pytest.fixture(scope="module")
def other(pool, cash, make_fund, connect):
    return connect(pool, make_fund(symbol="OTHR", max_age=31 * DAY), cash)


@pytest.fixture(scope="module")
def alt(pool, cash, make_fund, connect, issuer):
    token = connect(pool, make_fund(kind=FundKind.ALTERNATIVE, symbol="PEQ", max_age=31 * DAY),
                    cash)
    token.set_liquidity_terms(91 * DAY, 500, sender=issuer)
    pool.set_issuer_liquidity(token, FEE_BPS, 0, 1_000 * WAD, sender=issuer)
    return token


@pytest.fixture
def world(pool, cash, fund, other, alt, funded, investor, investor2, issuer, chain):
    """Fresh NAVs, the issuer redeeming `fund` at 99, `investor` with no free cash and
    units of every fund, `investor2` with cash and `other` units to sell."""
    chain.mine(timestamp=chain.pending_timestamp + 2)
    for token in (fund, other, alt):
        if token.nav_timestamp() < chain.pending_timestamp - 1:
            token.publish_nav(NAV, chain.pending_timestamp - 1, sender=issuer)
    pool.set_issuer_liquidity(fund, FEE_BPS, 0, 1_000 * WAD, sender=issuer)
    for who in (investor, investor2):
        for token in (other, alt):
            token.mint(who, 50 * WAD, sender=issuer)
            token.approve(pool, 2**256 - 1, sender=who)
            pool.deposit(token, 50 * WAD, sender=who)
    free = pool.balance_of(cash, investor)
    if free:
        pool.withdraw(cash, free, sender=investor)
    return investor, investor2


def set_reserve(pool, cash, issuer, amount):
    """Make the issuer's free cash (its reserve) exactly `amount`."""
    held = pool.balance_of(cash, issuer)
    if held > amount:
        pool.withdraw(cash, held - amount, sender=issuer)
    elif held < amount:
        cash.mint(issuer, amount - held, sender=issuer)
        cash.approve(pool, 2**256 - 1, sender=issuer)
        pool.deposit(cash, amount - held, sender=issuer)


def place(pool, owner, *items, sender=None):
    tx = pool.place(legs(*items), sender=sender or owner)
    [first, *_] = tx.decode_logs(pool.OrderPlaced)
    return tx, first.basket_id, Basket(owner=str(owner), batch=first.batch, legs=tuple(items))


def clear_all(pool, batch, chain, keeper, *books):
    """Clear each (market, buy ticks, sell ticks) of `batch`."""
    to_clear(chain, pool, batch)
    for market, buys, sells in books:
        pool.clear(market, batch, buys, sells, sender=keeper)


def test_sells_fund_buys_and_repay_from_the_sale(pool, cash, fund, other, world, issuer, keeper,
                                                 chain):
    investor, investor2 = world
    set_reserve(pool, cash, issuer, 10_000 * WAD)
    sell, buy = leg(fund, False, 10 * WAD, REDEEM), leg(other, True, 9 * WAD, P)
    units_before = pool.balance_of(fund, investor)
    other_before = pool.balance_of(other, investor)
    tx, basket_id, basket = place(pool, investor, sell, buy)
    # No free cash: the issuer of `fund` advances the buy's 900 against the sell.
    [advanced] = tx.decode_logs(pool.Advanced)
    assert (advanced.basket_id, advanced.market, advanced.issuer, advanced.index,
            advanced.amount) == (basket_id, fund, issuer, 0, 900 * WAD)
    assert pool.basket_advance(basket_id) == 900 * WAD
    assert pool.balance_of(cash, issuer) == 9_100 * WAD
    assert pool.balance_of(cash, investor) == 0
    assert pool.balance_of(fund, investor) == units_before - 10 * WAD
    # Counterparties: investor2 buys the `fund` units at NAV and sells `other`.
    place(pool, investor2, leg(fund, True, 10 * WAD, P), leg(other, False, 9 * WAD, P))
    clear_all(pool, basket.batch, chain, keeper,
              (fund, [P // TICK], [REDEEM // TICK]), (other, [P // TICK], [P // TICK]))
    assert pool.clearing_of(fund, basket.batch).price == P
    tx = pool.settle(basket_id, basket.as_tuple(), sender=keeper)
    # The sale brought 1,000; 900 repays the issuer, 100 is the investor's.
    [repaid] = tx.decode_logs(pool.AdvanceRepaid)
    assert (repaid.index, repaid.issuer, repaid.cash, repaid.units) == (0, issuer, 900 * WAD, 0)
    assert pool.balance_of(cash, issuer) == 10_000 * WAD
    assert pool.balance_of(cash, investor) == 100 * WAD
    assert pool.balance_of(other, investor) == other_before + 9 * WAD
    assert pool.basket_advance(basket_id) == 0 and pool.basket_hash(basket_id) == b"\x00" * 32


def test_unsold_units_repay_the_rest(pool, cash, fund, other, world, issuer, keeper, chain):
    """The sale fills 4 of 10 units: its 396 repay the issuer first, the rest of the 900
    advance is paid in unsold units at the seller's limit (99), rounded up."""
    investor, investor2 = world
    set_reserve(pool, cash, issuer, 900 * WAD)  # all of it advanced: no redemption left
    sell, buy = leg(fund, False, 10 * WAD, REDEEM), leg(other, True, 9 * WAD, P)
    fund_before = pool.balance_of(fund, investor)
    other_before = pool.balance_of(other, investor)
    issuer_units = pool.balance_of(fund, issuer)
    _, basket_id, basket = place(pool, investor, sell, buy)
    assert pool.balance_of(cash, issuer) == 0
    place(pool, investor2, leg(fund, True, 4 * WAD, P), leg(other, False, 9 * WAD, P))
    clear_all(pool, basket.batch, chain, keeper,
              (fund, [P // TICK], [REDEEM // TICK]), (other, [P // TICK], [P // TICK]))
    record = pool.clearing_of(fund, basket.batch)
    assert record.price == REDEEM and (record.sell_num, record.sell_den) == (4 * WAD, 10 * WAD)
    tx = pool.settle(basket_id, basket.as_tuple(), sender=investor)
    [fill] = [f for f in tx.decode_logs(pool.Filled) if f.index == 0]
    assert (fill.filled, fill.cash) == (4 * WAD, 396 * WAD)
    [repaid] = tx.decode_logs(pool.AdvanceRepaid)
    units = -(-(900 - 396) * WAD * WAD // REDEEM)  # 5.0909... units, rounded up
    assert (repaid.cash, repaid.units) == (396 * WAD, units)
    assert advance_repayment(sell, 900 * WAD, 4 * WAD, 396 * WAD) == (396 * WAD, units)
    # The issuer paid 900 for 396 of cash and `units` units: never above its 99 bid.
    assert pool.balance_of(cash, issuer) == 396 * WAD
    assert pool.balance_of(fund, issuer) == issuer_units + units
    assert units * REDEEM // WAD >= (900 - 396) * WAD
    # 10 units locked, 4 sold, `units` to the issuer: the rest is the investor's again.
    assert pool.balance_of(fund, investor) == fund_before - 4 * WAD - units
    assert pool.balance_of(other, investor) == other_before + 9 * WAD
    assert pool.balance_of(cash, investor) == 0


def test_void_market_repays_in_units(pool, cash, fund, other, world, issuer, keeper, chain):
    """The sold fund's NAV goes stale and its batch is void: the buy still fills in
    `other`, and the issuer takes ceil(900 / 99) units for its advance."""
    investor, investor2 = world
    set_reserve(pool, cash, issuer, 5_000 * WAD)
    sell, buy = leg(fund, False, 10 * WAD, REDEEM), leg(other, True, 9 * WAD, P)
    fund_before = pool.balance_of(fund, investor)
    _, basket_id, basket = place(pool, investor, sell, buy)
    place(pool, investor2, leg(other, False, 9 * WAD, P))
    chain.mine(timestamp=fund.nav_timestamp() + DAY + 1)  # `fund` stale, `other` not
    pool.clear(fund, basket.batch, [], [REDEEM // TICK], sender=keeper)
    pool.clear(other, basket.batch, [P // TICK], [P // TICK], sender=keeper)
    assert pool.clearing_of(fund, basket.batch).status == 2
    tx = pool.settle(basket_id, basket.as_tuple(), sender=keeper)
    [repaid] = tx.decode_logs(pool.AdvanceRepaid)
    units = -(-900 * WAD * WAD // REDEEM)
    assert (repaid.cash, repaid.units) == (0, units)
    assert pool.balance_of(fund, investor) == fund_before - units
    assert pool.balance_of(cash, issuer) == 4_100 * WAD


def test_own_cash_first_then_advance_in_leg_order(pool, cash, fund, other, world, issuer,
                                                  investor):
    set_reserve(pool, cash, issuer, 10_000 * WAD)
    cash.mint(investor, 300 * WAD, sender=issuer)
    pool.deposit(cash, 300 * WAD, sender=investor)
    items = (leg(fund, False, 2 * WAD, REDEEM), leg(fund, False, 5 * WAD, 98 * WAD),
             leg(other, True, 9 * WAD, P))
    tx, basket_id, _ = place(pool, investor, *items)
    # 900 needed, 300 free: 600 advanced, 198 on the first sell and 402 on the second.
    assert [(a.index, a.amount) for a in tx.decode_logs(pool.Advanced)] == [
        (0, 198 * WAD), (1, 402 * WAD)]
    assert advance_allocation(items, 600 * WAD) == [198 * WAD, 402 * WAD, 0]
    assert pool.basket_advance(basket_id) == 600 * WAD
    assert pool.balance_of(cash, investor) == 0


def test_unfunded_basket_has_no_advance(pool, cash, fund, other, world, issuer, investor):
    cash.mint(investor, 1_000 * WAD, sender=issuer)
    pool.deposit(cash, 1_000 * WAD, sender=investor)
    reserve = pool.balance_of(cash, issuer)
    tx, basket_id, _ = place(pool, investor, leg(fund, False, WAD, REDEEM),
                             leg(other, True, 9 * WAD, P))
    assert not tx.decode_logs(pool.Advanced)
    assert pool.basket_advance(basket_id) == 0
    assert pool.balance_of(cash, investor) == 100 * WAD
    assert pool.balance_of(cash, issuer) == reserve


@pytest.mark.parametrize("case", ["limit above redemption", "alternative", "no redemption",
                                  "reserve short", "sells too small", "ineligible first",
                                  "issuer funds itself"])
def test_funding_refusals(pool, cash, fund, other, alt, world, issuer, investor, case):
    set_reserve(pool, cash, issuer, 500 if case == "reserve short" else 10_000 * WAD)
    if case == "issuer funds itself":
        # The issuer sells its own fund to buy `other` beyond its free cash: its cash is
        # locked for the buy first, so nothing is left to advance to itself.
        fund.mint(issuer, 10 * WAD, sender=issuer)
        fund.approve(pool, 2**256 - 1, sender=issuer)
        pool.deposit(fund, 10 * WAD, sender=issuer)
        investor = issuer
    buy = leg(other, True, 9 * WAD if case != "issuer funds itself" else 109 * WAD, P)
    sells, message = {
        "limit above redemption": ([leg(fund, False, 10 * WAD, REDEEM + TICK)],
                                   "lightpool: sell cannot fund buys"),
        "alternative": ([leg(alt, False, 10 * WAD, 90 * WAD)],
                        "lightpool: sell cannot fund buys"),
        "no redemption": ([leg(other, False, 10 * WAD, 90 * WAD)],
                          "lightpool: sell cannot fund buys"),
        "reserve short": ([leg(fund, False, 10 * WAD, REDEEM)], "lightpool: issuer reserve short"),
        "sells too small": ([leg(fund, False, 9 * WAD, REDEEM)], "lightpool: insufficient balance"),
        # Sells fund in leg order: an ineligible one first refuses even if a later one could.
        "ineligible first": ([leg(other, False, WAD, 90 * WAD), leg(fund, False, 10 * WAD, REDEEM)],
                             "lightpool: sell cannot fund buys"),
        "issuer funds itself": ([leg(fund, False, 10 * WAD, REDEEM)],
                                "lightpool: issuer reserve short"),
    }[case]
    before = (pool.balance_of(cash, issuer), pool.balance_of(fund, investor), pool.basket_count())
    with ape.reverts(message):
        pool.place(legs(*sells, buy), sender=investor)
    assert (pool.balance_of(cash, issuer), pool.balance_of(fund, investor),
            pool.basket_count()) == before


def test_cancel_in_funded_basket(pool, cash, fund, other, world, issuer, investor, keeper,
                                 chain):
    set_reserve(pool, cash, issuer, 10_000 * WAD)
    sell, buy = leg(fund, False, 10 * WAD, REDEEM), leg(other, True, 9 * WAD, P)
    _, basket_id, basket = place(pool, investor, sell, buy)
    with ape.reverts("lightpool: sell funds buys"):
        pool.cancel(basket_id, basket.as_tuple(), 0, sender=investor)
    # The buy can go; its lock (the advance) returns to the owner's free cash, and the
    # issuer is still repaid from the sell at settlement.
    pool.cancel(basket_id, basket.as_tuple(), 1, sender=investor)
    assert pool.balance_of(cash, investor) == 900 * WAD
    basket = basket.cancelled(1)
    with ape.reverts("lightpool: sell funds buys"):
        pool.cancel(basket_id, basket.as_tuple(), 0, sender=investor)
    # Nobody buys `fund`: the issuer's standing redemption at 99 takes the 10 units.
    clear_all(pool, basket.batch, chain, keeper, (fund, [], [REDEEM // TICK]))
    tx = pool.settle(basket_id, basket.as_tuple(), sender=keeper)
    [repaid] = tx.decode_logs(pool.AdvanceRepaid)
    assert (repaid.cash, repaid.units) == (900 * WAD, 0)
    assert pool.balance_of(cash, investor) == 990 * WAD  # 900 + 990 sale - 900 repaid
    assert pool.balance_of(cash, issuer) == 10_000 * WAD - 990 * WAD


def test_keeper_basket_is_funded_by_its_sells(pool, cash, fund, other, world, issuer, investor,
                                              keeper, mandate):
    set_reserve(pool, cash, issuer, 10_000 * WAD)
    mandate(investor, [fund, other], deviation_bps=500)
    keeper_cash = pool.balance_of(cash, keeper)
    tx = pool.place_for_many(
        [(investor, legs(leg(fund, False, 10 * WAD, REDEEM), leg(other, True, 9 * WAD, P)))],
        sender=keeper)
    [advanced] = tx.decode_logs(pool.Advanced)
    assert advanced.amount == 900 * WAD
    # The keeper moved no cash anywhere but into the investor's own order.
    assert pool.balance_of(cash, keeper) == keeper_cash
    assert pool.balance_of(cash, investor) == 0
    assert pool.balance_of(cash, issuer) == 9_100 * WAD
