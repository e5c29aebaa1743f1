"""LightPool: each external function works (state + event) and refuses what it must."""

from __future__ import annotations

import ape
import pytest
from web3.exceptions import ContractLogicError

from offchain.chain import actors as roles
from offchain.chain.lightpool import (
    Basket,
    Book,
    Clearing,
    SignedOrder,
    commitment,
    compute_clearing,
    order_digest,
    sign_order,
)
from offchain.universe import DAY, WAD, FundKind

from .conftest import (
    ADVISORY,
    BAND,
    BATCH,
    CASH0,
    MIN_QTY,
    NAV,
    REVEAL,
    TICK,
    UNITS0,
    leg,
    legs,
    to_clear,
    to_reveal,
)

P = NAV  # a price on the grid at NAV


def basket_of(pool, tx, owner, items):
    [first, *_] = tx.decode_logs(pool.OrderPlaced)
    return first.basket_id, Basket(owner=str(owner), batch=first.batch, legs=tuple(items))


def place(pool, owner, *items):
    tx = pool.place(legs(*items), sender=owner)
    return basket_of(pool, tx, owner, items)


def clear(pool, fund, batch, chain, sender, book=None):
    to_clear(chain, pool, batch)
    if book is None:
        book = book_from_chain(pool, fund, batch)
    buys, sells = book.hint()
    return pool.clear(fund, batch, buys, sells, sender=sender)


def book_from_chain(pool, fund, batch):
    placed = [log for log in pool.OrderPlaced.range(0, ape.chain.blocks.head.number + 1)
              if log.market == fund.address and log.batch == batch]
    cancelled = [log for log in pool.OrderCancelled.range(0, ape.chain.blocks.head.number + 1)
                 if log.market == fund.address and log.batch == batch]
    return Book.from_events(pool.market_of(fund).tick_spacing, placed, cancelled)


# --- deployment and admin -------------------------------------------------------------------


def test_deploy_sets_fields(pool, cash, registry, clearing_math, admin):
    assert pool.cash() == cash
    assert pool.registry() == registry
    assert pool.clearing_math() == clearing_math
    assert pool.batch_length() == BATCH
    assert pool.reveal_period() == REVEAL
    assert pool.owner() == admin
    assert pool.current_batch() == (ape.chain.pending_timestamp - pool.genesis()) // BATCH
    assert pool.batch_close(3) == pool.genesis() + 4 * BATCH
    domain = pool.eip712Domain()
    assert domain[1] == "LightPool" and domain[2] == "1"


@pytest.mark.parametrize(
    "cash_zero,batch,reveal,message",
    [
        (True, 60, 0, "lightpool: zero cash"),
        (False, 0, 0, "lightpool: zero batch length"),
        (False, 60, 60, "lightpool: reveal period too long"),
    ],
)
def test_deploy_refuses_bad_params(project, admin, cash, registry, clearing_math, chain,
                                   cash_zero, batch, reveal, message):
    # The constructor is executed with eth_call through web3: ape's decoding of a reverted
    # deployment's data is unreliable once many contract types are cached in one session.
    contract_type = project.LightPool.contract_type
    w3 = chain.provider.web3
    factory = w3.eth.contract(abi=[a.model_dump(mode="json", by_alias=True)
                                   for a in contract_type.abi],
                              bytecode=contract_type.deployment_bytecode.bytecode)
    args = (ape.utils.ZERO_ADDRESS if cash_zero else cash.address, registry.address,
            clearing_math.address, batch, reveal)
    with pytest.raises(ContractLogicError, match=message):
        factory.constructor(*args).estimate_gas({"from": admin.address})


def test_list_market(make_pool, cash, fund, admin):
    pool = make_pool(cash)
    tx = pool.list_market(fund, TICK, MIN_QTY, BAND, sender=admin)
    [log] = tx.decode_logs(pool.MarketListed)
    assert log.market == fund and log.tick_spacing == TICK and log.min_quantity == MIN_QTY
    assert pool.market_of(fund).price_band_bps == BAND


def test_list_market_refuses(make_pool, cash, fund, admin, outsider):
    pool = make_pool(cash)
    with ape.reverts("lightpool: access is denied"):
        pool.list_market(fund, TICK, MIN_QTY, BAND, sender=outsider)
    with ape.reverts("lightpool: bad market"):
        pool.list_market(cash, TICK, MIN_QTY, BAND, sender=admin)
    with ape.reverts("lightpool: zero tick spacing"):
        pool.list_market(fund, 0, MIN_QTY, BAND, sender=admin)
    with ape.reverts("lightpool: zero min quantity"):
        pool.list_market(fund, TICK, 0, BAND, sender=admin)
    with ape.reverts("lightpool: bad price band"):
        pool.list_market(fund, TICK, MIN_QTY, 10_001, sender=admin)
    pool.list_market(fund, TICK, MIN_QTY, BAND, sender=admin)
    with ape.reverts("lightpool: already listed"):
        pool.list_market(fund, TICK, MIN_QTY, BAND, sender=admin)


def test_set_issuer_liquidity(pool, fund, issuer):
    tx = pool.set_issuer_liquidity(fund, 50, 10 * WAD, 20 * WAD, sender=issuer)
    [log] = tx.decode_logs(pool.IssuerLiquiditySet)
    assert (log.fee_bps, log.creation_capacity, log.redemption_capacity) == (50, 10 * WAD, 20 * WAD)
    market = pool.market_of(fund)
    assert market.issuer_fee_bps == 50 and market.redemption_capacity == 20 * WAD


def test_set_issuer_liquidity_refuses(pool, fund, cash, issuer, admin):
    with ape.reverts("lightpool: not the issuer"):
        pool.set_issuer_liquidity(fund, 50, 0, 0, sender=admin)
    with ape.reverts("lightpool: fee too high"):
        pool.set_issuer_liquidity(fund, 1_001, 0, 0, sender=issuer)
    with ape.reverts("lightpool: unknown market"):
        pool.set_issuer_liquidity(cash, 0, 0, 0, sender=issuer)


def test_ownership_transfer(pool, admin, investor):
    pool.transfer_ownership(investor, sender=admin)
    assert pool.owner() == investor


# --- escrow ---------------------------------------------------------------------------------


def test_deposit(pool, cash, fund_account, investor, verify):
    verify(investor)
    fund_account(investor, deposit=False)
    tx = pool.deposit(cash, 5 * WAD, sender=investor)
    [log] = tx.decode_logs(pool.Deposited)
    assert log.owner == investor and log.token == cash and log.amount == 5 * WAD
    assert pool.balance_of(cash, investor) == 5 * WAD
    assert cash.balanceOf(pool) == 5 * WAD


def test_deposit_refuses(pool, cash, investor, registry, outsider, fund_account, verify):
    verify(investor)
    fund_account(investor, deposit=False)
    with ape.reverts("lightpool: unknown token"):
        pool.deposit(registry, WAD, sender=investor)
    with ape.reverts("lightpool: zero amount"):
        pool.deposit(cash, 0, sender=investor)
    with ape.reverts("fundtoken: sender not eligible"):
        pool.deposit(cash, WAD, sender=outsider)


def test_withdraw(pool, cash, funded, investor):
    tx = pool.withdraw(cash, 7 * WAD, sender=investor)
    [log] = tx.decode_logs(pool.Withdrawn)
    assert log.owner == investor and log.amount == 7 * WAD
    assert pool.balance_of(cash, investor) == CASH0 - 7 * WAD
    assert cash.balanceOf(investor) == 7 * WAD


def test_withdraw_refuses_locked_funds(pool, cash, fund, funded, investor):
    place(pool, investor, leg(fund, True, 900 * WAD, P))  # locks 90,000 cash
    free = pool.balance_of(cash, investor)
    assert free == CASH0 - 90_000 * WAD
    with ape.reverts("lightpool: insufficient balance"):
        pool.withdraw(cash, free + 1, sender=investor)
    with ape.reverts("lightpool: zero amount"):
        pool.withdraw(cash, 0, sender=investor)


# --- placing --------------------------------------------------------------------------------


def test_place_locks_and_logs(pool, cash, fund, funded, investor):
    buy = leg(fund, True, 3 * WAD, P + TICK)
    sell = leg(fund, False, 2 * WAD, P - TICK)
    tx = pool.place(legs(buy, sell), sender=investor)
    logs = tx.decode_logs(pool.OrderPlaced)
    assert [(x.index, x.is_buy, x.quantity, x.limit_price, x.via) for x in logs] == [
        (0, True, 3 * WAD, P + TICK, 0), (1, False, 2 * WAD, P - TICK, 0)]
    basket_id = logs[0].basket_id
    basket = Basket(owner=investor.address, batch=logs[0].batch, legs=(buy, sell))
    assert pool.basket_hash(basket_id) == basket.hash()
    assert pool.balance_of(cash, investor) == CASH0 - buy.lock()
    assert pool.balance_of(fund, investor) == UNITS0 - 2 * WAD
    batch = logs[0].batch
    assert pool.depth(fund, batch, (P + TICK) // TICK, True) == 3 * WAD
    assert pool.depth(fund, batch, (P - TICK) // TICK, False) == 2 * WAD
    assert pool.tick_counts(fund, batch) == (1, 1)


def test_place_refuses(pool, cash, fund, funded, investor, outsider, make_fund):
    other = make_fund(symbol="OTHR")
    cases = [
        ([], "lightpool: empty basket"),
        ([leg(other, True, WAD, P)], "lightpool: unknown market"),
        ([leg(fund, True, MIN_QTY - 1, P)], "lightpool: below min size"),
        ([leg(fund, True, WAD, P + 1)], "lightpool: price off tick"),
        ([leg(fund, True, WAD, P * 111 // 100)], "lightpool: price outside band"),
        ([leg(fund, False, UNITS0 + 1, P)], "lightpool: insufficient balance"),
        ([leg(fund, True, 10_000 * WAD, P)], "lightpool: insufficient balance"),
    ]
    for items, message in cases:
        with ape.reverts(message):
            pool.place(legs(*items), sender=investor)


def test_place_refuses_stale_nav(pool, fund, funded, investor, chain):
    chain.mine(timestamp=fund.nav_timestamp() + DAY + 1)
    with ape.reverts("lightpool: stale nav"):
        pool.place(legs(leg(fund, True, WAD, P)), sender=investor)


def test_too_many_ticks(pool, fund, funded, investor):
    items = [leg(fund, True, MIN_QTY, P - i * TICK) for i in range(32)]
    pool.place(legs(*items), sender=investor)
    with ape.reverts("lightpool: too many ticks"):
        pool.place(legs(leg(fund, True, MIN_QTY, P - 32 * TICK)), sender=investor)
    # An existing tick still takes orders, and the sell side has its own bound.
    pool.place(legs(leg(fund, True, MIN_QTY, P), leg(fund, False, MIN_QTY, P)), sender=investor)


# --- signed orders --------------------------------------------------------------------------


def signed(pool, fund, owner_actor, nonce=1, expiry=None, **changes):
    order = SignedOrder(owner=owner_actor.address, market=fund.address, is_buy=True,
                        quantity=2 * WAD, limit_price=P, nonce=nonce,
                        expiry=expiry if expiry is not None else ape.chain.pending_timestamp + 3600)
    signature = sign_order(order, owner_actor.private_key, ape.chain.chain_id, pool.address)
    return order.model_copy(update=changes), signature


def test_place_signed(pool, cash, fund, funded, investor, keeper):
    order, signature = signed(pool, fund, roles.INVESTORS[0])
    assert pool.order_digest(order.as_tuple()) == order_digest(order, ape.chain.chain_id,
                                                                pool.address)
    tx = pool.place_signed(order.as_tuple(), signature, sender=keeper)
    [log] = tx.decode_logs(pool.OrderPlaced)
    assert log.owner == investor and log.via == 1 and log.placed_by == keeper
    assert pool.is_nonce_used(investor, 1)
    assert pool.balance_of(cash, investor) == CASH0 - 200 * WAD


def test_place_signed_refuses(pool, fund, funded, investor, keeper):
    order, signature = signed(pool, fund, roles.INVESTORS[0])
    with ape.reverts("lightpool: bad signature"):
        pool.place_signed(order.model_copy(update={"quantity": 3 * WAD}).as_tuple(), signature,
                          sender=keeper)
    expired, sig2 = signed(pool, fund, roles.INVESTORS[0], nonce=2,
                           expiry=ape.chain.pending_timestamp - 1)
    with ape.reverts("lightpool: order expired"):
        pool.place_signed(expired.as_tuple(), sig2, sender=keeper)
    pool.place_signed(order.as_tuple(), signature, sender=keeper)
    with ape.reverts("lightpool: nonce used"):
        pool.place_signed(order.as_tuple(), signature, sender=keeper)


def test_cancel_nonce(pool, fund, funded, investor, keeper):
    order, signature = signed(pool, fund, roles.INVESTORS[0], nonce=777)
    tx = pool.cancel_nonce(777, sender=investor)
    [log] = tx.decode_logs(pool.NonceCancelled)
    assert log.owner == investor and log.nonce == 777
    with ape.reverts("lightpool: nonce used"):
        pool.place_signed(order.as_tuple(), signature, sender=keeper)
    with ape.reverts("lightpool: nonce used"):
        pool.cancel_nonce(777, sender=investor)


# --- keepers under mandates -----------------------------------------------------------------


def test_place_for_many(pool, cash, fund, funded, investor, investor2, keeper, mandate):
    mandate(investor, [fund])
    mandate(investor2, [fund])
    tx = pool.place_for_many([(investor, legs(leg(fund, True, WAD, P))),
                              (investor2, legs(leg(fund, False, WAD, P)))], sender=keeper)
    logs = tx.decode_logs(pool.OrderPlaced)
    assert [(x.owner, x.via, x.placed_by) for x in logs] == [
        (investor, 2, keeper), (investor2, 2, keeper)]
    start, used = pool.turnover_used(investor, keeper)
    assert used == 100 * WAD and start > 0


def test_place_for_many_refuses(pool, fund, funded, investor, keeper, mandate, make_fund,
                                registry, connect, cash, chain):
    other = connect(pool, make_fund(symbol="OTHR"), cash)
    one = [(investor, legs(leg(fund, True, WAD, P)))]
    with ape.reverts("lightpool: mandate inactive"):
        pool.place_for_many(one, sender=keeper)
    mandate(investor, [fund], mode=ADVISORY)
    with ape.reverts("lightpool: mandate not discretionary"):
        pool.place_for_many(one, sender=keeper)
    mandate(investor, [fund], max_turnover=150 * WAD, deviation_bps=100)
    with ape.reverts("lightpool: instrument not allowed"):
        pool.place_for_many([(investor, legs(leg(other, True, WAD, P)))], sender=keeper)
    with ape.reverts("lightpool: price deviation"):
        pool.place_for_many([(investor, legs(leg(fund, True, WAD, P * 102 // 100)))],
                            sender=keeper)
    pool.place_for_many(one, sender=keeper)  # 100 of 150 used
    with ape.reverts("lightpool: turnover limit"):
        pool.place_for_many(one, sender=keeper)
    # A new period resets the turnover.
    chain.mine(timestamp=chain.pending_timestamp + 7 * DAY)
    fund.publish_nav(NAV, chain.pending_timestamp - 1, sender=fund.issuer())
    pool.place_for_many(one, sender=keeper)
    registry.revoke_mandate(keeper, sender=investor)
    with ape.reverts("lightpool: mandate inactive"):
        pool.place_for_many(one, sender=keeper)


def test_keeper_cannot_withdraw_investor_funds(pool, cash, funded, investor, keeper, mandate,
                                               fund):
    mandate(investor, [fund])
    with ape.reverts("lightpool: insufficient balance"):
        pool.withdraw(cash, WAD, sender=keeper)
    assert pool.balance_of(cash, investor) == CASH0


# --- cancel ---------------------------------------------------------------------------------


def test_cancel(pool, cash, fund, funded, investor):
    buy = leg(fund, True, 3 * WAD, P)
    sell = leg(fund, False, 2 * WAD, P)
    basket_id, basket = place(pool, investor, buy, sell)
    tx = pool.cancel(basket_id, basket.as_tuple(), 0, sender=investor)
    [log] = tx.decode_logs(pool.OrderCancelled)
    assert log.index == 0 and log.quantity == 3 * WAD and log.is_buy
    assert pool.balance_of(cash, investor) == CASH0
    assert pool.basket_hash(basket_id) == basket.cancelled(0).hash()
    assert pool.depth(fund, basket.batch, P // TICK, True) == 0
    assert pool.tick_counts(fund, basket.batch) == (0, 1)


def test_cancel_by_keeper_with_mandate(pool, cash, fund, funded, investor, keeper, mandate):
    basket_id, basket = place(pool, investor, leg(fund, True, WAD, P))
    with ape.reverts("lightpool: access is denied"):
        pool.cancel(basket_id, basket.as_tuple(), 0, sender=keeper)
    mandate(investor, [fund])
    pool.cancel(basket_id, basket.as_tuple(), 0, sender=keeper)
    assert pool.balance_of(cash, investor) == CASH0


def test_cancel_refuses(pool, fund, funded, investor, investor2, chain):
    basket_id, basket = place(pool, investor, leg(fund, True, WAD, P))
    with ape.reverts("lightpool: access is denied"):
        pool.cancel(basket_id, basket.as_tuple(), 0, sender=investor2)
    forged = basket.model_copy(update={"legs": (leg(fund, True, 2 * WAD, P),)})
    with ape.reverts("lightpool: unknown basket"):
        pool.cancel(basket_id, forged.as_tuple(), 0, sender=investor)
    with ape.reverts("lightpool: bad index"):
        pool.cancel(basket_id, basket.as_tuple(), 1, sender=investor)
    pool.cancel(basket_id, basket.as_tuple(), 0, sender=investor)
    with ape.reverts("lightpool: already cancelled"):
        pool.cancel(basket_id, basket.cancelled(0).as_tuple(), 0, sender=investor)
    basket_id, basket = place(pool, investor, leg(fund, True, WAD, P))
    chain.mine(timestamp=pool.batch_close(basket.batch))
    with ape.reverts("lightpool: batch closed"):
        pool.cancel(basket_id, basket.as_tuple(), 0, sender=investor)


# --- sealed orders --------------------------------------------------------------------------


def test_commit_reveal(pool, cash, fund, funded, investor, keeper, chain):
    order = leg(fund, True, 4 * WAD, P)
    batch = pool.current_batch()
    salt = b"\x07" * 32
    digest = commitment(investor.address, batch, order, salt)
    tx = pool.commit(digest, cash, 1_000 * WAD, sender=investor)
    [log] = tx.decode_logs(pool.OrderCommitted)
    assert log.commitment == digest and log.lock_amount == 1_000 * WAD
    assert pool.balance_of(cash, investor) == CASH0 - 1_000 * WAD
    assert pool.commitment_exists(digest)
    to_reveal(chain, pool, batch)
    tx = pool.reveal(investor, batch, order.as_tuple(), salt, cash, 1_000 * WAD, sender=keeper)
    [revealed] = tx.decode_logs(pool.OrderRevealed)
    [placed] = tx.decode_logs(pool.OrderPlaced)
    assert placed.via == 3 and placed.batch == batch and placed.quantity == 4 * WAD
    assert revealed.basket_id == placed.basket_id
    # The excess of the lock is back; exactly the order's need stays locked.
    assert pool.balance_of(cash, investor) == CASH0 - 400 * WAD
    assert not pool.commitment_exists(digest)


def test_reveal_refuses(pool, cash, fund, funded, investor, chain):
    order = leg(fund, True, 4 * WAD, P)
    batch = pool.current_batch()
    salt = b"\x01" * 32
    digest = commitment(investor.address, batch, order, salt)
    pool.commit(digest, cash, 100 * WAD, sender=investor)
    args = (investor, batch, order.as_tuple(), salt, cash, 100 * WAD)
    with ape.reverts("lightpool: batch not closed"):
        pool.reveal(*args, sender=investor)
    to_reveal(chain, pool, batch)
    with ape.reverts("lightpool: unknown commitment"):
        pool.reveal(investor, batch, order.as_tuple(), b"\x02" * 32, cash, 100 * WAD,
                    sender=investor)
    with ape.reverts("lightpool: lock does not cover order"):
        pool.reveal(*args, sender=investor)  # needs 400 cash, 100 locked
    to_clear(chain, pool, batch)
    with ape.reverts("lightpool: reveal window over"):
        pool.reveal(*args, sender=investor)


def test_commit_refuses(pool, cash, fund, funded, investor, registry):
    with ape.reverts("lightpool: unknown token"):
        pool.commit(b"\x01" * 32, registry, WAD, sender=investor)
    with ape.reverts("lightpool: empty commitment"):
        pool.commit(b"\x00" * 32, cash, WAD, sender=investor)
    with ape.reverts("lightpool: zero amount"):
        pool.commit(b"\x01" * 32, cash, 0, sender=investor)
    with ape.reverts("lightpool: insufficient balance"):
        pool.commit(b"\x01" * 32, cash, CASH0 + 1, sender=investor)
    pool.commit(b"\x01" * 32, cash, WAD, sender=investor)
    with ape.reverts("lightpool: commitment exists"):
        pool.commit(b"\x01" * 32, cash, WAD, sender=investor)


def test_reclaim_unrevealed(pool, cash, fund, funded, investor, outsider, chain):
    batch = pool.current_batch()
    digest = commitment(investor.address, batch, leg(fund, False, WAD, P), b"\x03" * 32)
    pool.commit(digest, fund, 5 * WAD, sender=investor)
    args = (digest, investor, batch, fund, 5 * WAD)
    to_reveal(chain, pool, batch)
    with ape.reverts("lightpool: reveal window open"):
        pool.reclaim(*args, sender=outsider)
    to_clear(chain, pool, batch)
    with ape.reverts("lightpool: unknown commitment"):
        pool.reclaim(digest, investor, batch, fund, 6 * WAD, sender=outsider)
    tx = pool.reclaim(*args, sender=outsider)
    [log] = tx.decode_logs(pool.CommitReclaimed)
    assert log.owner == investor and log.lock_amount == 5 * WAD
    assert pool.balance_of(fund, investor) == UNITS0
    with ape.reverts("lightpool: unknown commitment"):
        pool.reclaim(*args, sender=outsider)


# --- clearing and settlement ----------------------------------------------------------------


def test_clear_p2p_pro_rata_and_settle(pool, cash, fund, funded, investor, investor2, keeper,
                                        chain):
    # Buys: 10 @ 101, 6 @ 100; sells: 4 @ 99, 8 @ 100. Equilibria: 100 only.
    b1 = place(pool, investor, leg(fund, True, 10 * WAD, P + WAD),
               leg(fund, True, 6 * WAD, P))
    b2 = place(pool, investor2, leg(fund, False, 4 * WAD, P - WAD),
               leg(fund, False, 8 * WAD, P))
    batch = b1[1].batch
    tx = clear(pool, fund, batch, chain, keeper)
    [log] = tx.decode_logs(pool.BatchCleared)
    assert log.price == P and log.volume == 12 * WAD
    # Buys at the price share 2 of 6; sells at the price fill fully (8 of 8).
    assert (log.buy_num, log.buy_den, log.sell_num, log.sell_den) == (2 * WAD, 6 * WAD,
                                                                      8 * WAD, 8 * WAD)
    expected = compute_clearing(book_from_chain(pool, fund, batch), fund.nav())
    assert Clearing.from_chain(pool.clearing_of(fund, batch)) == expected.clearing

    tx = pool.settle(b1[0], b1[1].as_tuple(), sender=investor)
    fills = tx.decode_logs(pool.Filled)
    assert [(f.filled, f.cash) for f in fills] == [(10 * WAD, 1_000 * WAD),
                                                  (2 * WAD - 0, 200 * WAD)]
    assert pool.balance_of(fund, investor) == UNITS0 + 12 * WAD
    assert pool.balance_of(cash, investor) == CASH0 - 1_200 * WAD
    pool.settle_many([(b2[0], b2[1].as_tuple())], sender=keeper)  # pushed by the keeper
    assert pool.balance_of(fund, investor2) == UNITS0 - 12 * WAD
    assert pool.balance_of(cash, investor2) == CASH0 + 1_200 * WAD
    assert pool.basket_hash(b1[0]) == b"\x00" * 32


def test_clear_price_closest_to_nav(pool, fund, funded, investor, investor2, keeper, chain):
    # Buy 5 @ 103, sell 5 @ 97: every price in [97, 103] clears 5; NAV 100 wins.
    b1 = place(pool, investor, leg(fund, True, 5 * WAD, P + 3 * WAD))
    place(pool, investor2, leg(fund, False, 5 * WAD, P - 3 * WAD))
    [log] = clear(pool, fund, b1[1].batch, chain, keeper).decode_logs(pool.BatchCleared)
    assert log.price == P and log.volume == 5 * WAD
    # Buy 5 @ 98, sell 5 @ 96: the interval [96, 98] is below NAV; 98 is nearest.
    b3 = place(pool, investor, leg(fund, True, 5 * WAD, P - 2 * WAD))
    place(pool, investor2, leg(fund, False, 5 * WAD, P - 4 * WAD))
    [log] = clear(pool, fund, b3[1].batch, chain, keeper).decode_logs(pool.BatchCleared)
    assert log.price == P - 2 * WAD


def test_issuer_creation_fills_residual(pool, cash, fund, funded, investor, investor2, issuer,
                                        keeper, chain):
    pool.set_issuer_liquidity(fund, 50, 100 * WAD, 0, sender=issuer)  # create at 100.50
    buyer = place(pool, investor, leg(fund, True, 30 * WAD, P * 101 // 100))
    place(pool, investor2, leg(fund, False, 10 * WAD, P))
    supply = fund.totalSupply()
    tx = clear(pool, fund, buyer[1].batch, chain, keeper)
    [log] = tx.decode_logs(pool.BatchCleared)
    assert log.price == P * 1005 // 1000 and log.created == 20 * WAD and log.volume == 30 * WAD
    assert fund.totalSupply() == supply + 20 * WAD
    assert pool.balance_of(cash, issuer) == 20 * P * 1005 // 1000
    pool.settle(buyer[0], buyer[1].as_tuple(), sender=investor)
    assert pool.balance_of(fund, investor) == UNITS0 + 30 * WAD


def test_issuer_redemption_respects_gate(pool, cash, make_fund, connect, fund_account,
                                         issuer, investor, keeper, chain, verify):
    alt = connect(pool, make_fund(kind=FundKind.ALTERNATIVE, symbol="PEQ", max_age=31 * DAY),
                  cash)
    alt.set_liquidity_terms(91 * DAY, 500, sender=issuer)  # 5% of supply per window
    verify(investor)
    alt.mint(investor, 100 * WAD, sender=issuer)
    alt.approve(pool, 2**256 - 1, sender=investor)
    pool.deposit(alt, 100 * WAD, sender=investor)
    fund_account(issuer, cash_amount=10_000 * WAD, units=0)  # the redemption reserve
    pool.set_issuer_liquidity(alt, 100, 0, 50 * WAD, sender=issuer)  # redeem at 99
    seller = place(pool, investor, leg(alt, False, 20 * WAD, P * 98 // 100))
    cash_before = pool.balance_of(cash, investor)
    reserve_before = pool.balance_of(cash, issuer)
    tx = clear(pool, alt, seller[1].batch, chain, keeper)
    [log] = tx.decode_logs(pool.BatchCleared)
    # Supply exceeds the gated redemption, so the price falls to the marginal seller's limit.
    assert log.price == P * 98 // 100
    assert log.redeemed == 5 * WAD  # the gate: 5% of 100 units
    assert (log.sell_num, log.sell_den) == (5 * WAD, 20 * WAD)
    assert alt.totalSupply() == 95 * WAD
    pool.settle(seller[0], seller[1].as_tuple(), sender=investor)
    assert pool.balance_of(alt, investor) == 95 * WAD
    assert pool.balance_of(cash, investor) == cash_before + 5 * 98 * WAD
    assert pool.balance_of(cash, issuer) == reserve_before - 5 * 98 * WAD


def test_stale_nav_voids_batch(pool, cash, fund, funded, investor, keeper, chain):
    b = place(pool, investor, leg(fund, True, 5 * WAD, P))
    chain.mine(timestamp=fund.nav_timestamp() + DAY + 1)
    tx = pool.clear(fund, b[1].batch, [P // TICK], [], sender=keeper)
    [log] = tx.decode_logs(pool.BatchVoided)
    assert log.market == fund and log.batch == b[1].batch
    tx = pool.settle(b[0], b[1].as_tuple(), sender=keeper)
    [fill] = tx.decode_logs(pool.Filled)
    assert fill.filled == 0 and fill.cash == 0
    assert pool.balance_of(cash, investor) == CASH0


def test_clear_refuses(pool, fund, cash, funded, investor, keeper, chain):
    b = place(pool, investor, leg(fund, True, 5 * WAD, P), leg(fund, True, WAD, P - TICK))
    batch = b[1].batch
    with ape.reverts("lightpool: batch not closed"):
        pool.clear(fund, batch, [P // TICK - 1, P // TICK], [], sender=keeper)
    to_clear(chain, pool, batch)
    with ape.reverts("lightpool: unknown market"):
        pool.clear(cash, batch, [], [], sender=keeper)
    with ape.reverts("lightpool: bad tick hint"):
        pool.clear(fund, batch, [P // TICK], [], sender=keeper)  # one missing
    with ape.reverts("lightpool: bad tick hint"):
        pool.clear(fund, batch, [P // TICK, P // TICK - 1], [], sender=keeper)  # unsorted
    with ape.reverts("lightpool: bad tick hint"):
        pool.clear(fund, batch, [P // TICK - 2, P // TICK], [], sender=keeper)  # empty tick
    pool.clear(fund, batch, [P // TICK - 1, P // TICK], [], sender=keeper)
    with ape.reverts("lightpool: already cleared"):
        pool.clear(fund, batch, [P // TICK - 1, P // TICK], [], sender=keeper)


def test_settle_refuses(pool, fund, funded, investor, keeper, chain):
    b = place(pool, investor, leg(fund, True, 5 * WAD, P))
    with ape.reverts("lightpool: batch not cleared"):
        pool.settle(b[0], b[1].as_tuple(), sender=keeper)
    clear(pool, fund, b[1].batch, chain, keeper)
    forged = b[1].model_copy(update={"owner": keeper.address})
    with ape.reverts("lightpool: unknown basket"):
        pool.settle(b[0], forged.as_tuple(), sender=keeper)
    pool.settle(b[0], b[1].as_tuple(), sender=keeper)
    with ape.reverts("lightpool: unknown basket"):
        pool.settle_many([(b[0], b[1].as_tuple())], sender=keeper)


# --- fees -----------------------------------------------------------------------------------


def test_claim_fee_accrues_per_second(pool, cash, fund, funded, investor, keeper, mandate,
                                      registry, chain, verify):
    verify(keeper)
    mandate(investor, [fund], annual_fee=365 * WAD)  # 1 cash per day
    granted = registry.mandate_of(investor, keeper).granted_at
    chain.mine(timestamp=granted + 2 * DAY)
    tx = pool.claim_fee(investor, sender=keeper)
    [log] = tx.decode_logs(pool.FeeAccrued)
    elapsed = log.paid_until - granted
    assert log.amount == 365 * WAD * elapsed // (365 * DAY)
    assert pool.balance_of(cash, keeper) == log.amount
    assert pool.balance_of(cash, investor) == CASH0 - log.amount
    pool.withdraw(cash, log.amount, sender=keeper)


def test_claim_fee_partial_when_escrow_short(pool, cash, fund, funded, investor, keeper,
                                             mandate, registry, chain):
    mandate(investor, [fund], annual_fee=365 * 1_000 * WAD)  # 1,000 cash per day
    pool.withdraw(cash, CASH0 - 500 * WAD, sender=investor)  # 500 left: half a day
    granted = registry.mandate_of(investor, keeper).granted_at
    chain.mine(timestamp=granted + DAY)
    tx = pool.claim_fee(investor, sender=keeper)
    [log] = tx.decode_logs(pool.FeeAccrued)
    assert log.paid_until - granted == DAY // 2 and log.amount == 500 * WAD
    assert pool.fee_paid_until(investor, keeper) == granted + DAY // 2


def test_claim_fee_refuses(pool, fund, funded, investor, keeper, mandate):
    with ape.reverts("lightpool: no mandate"):
        pool.claim_fee(investor, sender=keeper)
    mandate(investor, [fund])
    with ape.reverts("lightpool: no fee"):
        pool.claim_fee(investor, sender=keeper)


def test_claim_fee_stops_at_expiry(pool, cash, fund, funded, investor, keeper, mandate,
                                   registry, chain):
    mandate(investor, [fund], annual_fee=365 * WAD, days=1)
    expiry = registry.mandate_of(investor, keeper).expiry
    granted = registry.mandate_of(investor, keeper).granted_at
    chain.mine(timestamp=expiry + 10 * DAY)
    tx = pool.claim_fee(investor, sender=keeper)
    [log] = tx.decode_logs(pool.FeeAccrued)
    assert log.paid_until == expiry
    assert log.amount == 365 * WAD * (expiry - granted) // (365 * DAY)
    with ape.reverts("lightpool: nothing accrued"):
        pool.claim_fee(investor, sender=keeper)
