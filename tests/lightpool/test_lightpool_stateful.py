"""Stateful property test of LightPool against a ghost ledger.

Three markets (an ETF with issuer creation and redemption, an ETF without issuer, an
alternative with gated redemption), three investors and a keeper. Steps: deposits,
withdrawals, direct, signed and keeper orders, baskets whose buys are funded by their own
sells (issuer-advanced), cancels, sealed commits (revealed or not),
NAV moves, batch closes (clearing every market, sometimes on a stale NAV), pulled and pushed
settlement, fee claims. The ghost recomputes every clearing and fill with the off-chain
client (``offchain.chain.lightpool``) and checks after every step:

- every escrow balance equals the ghost's, and for each token LightPool's holdings equal the
  sum of what it owes (free balances, locks of open orders and commitments, fills not yet
  settled) plus at most one wei of rounding per fill;
- every fill respects its limit price, all fills of a market-batch use its one price, no
  order fills more than its quantity or twice; cancelled and expired orders never fill;
- at the end every account withdraws everything and LightPool holds at most dust.

Steps use web3 on ape's anvil directly (fixed gas, no estimation round-trips); refused
steps are checked with an ``eth_call`` of the same transaction.
Profiles: default 8 examples x 40 steps; HYPOTHESIS_PROFILE=long runs 80 x 80.
"""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from offchain.chain import actors as roles
from offchain.chain.lightpool import (
    Basket,
    Book,
    Clearing,
    IssuerLiquidity,
    Leg,
    SignedOrder,
    advance_allocation,
    advance_repayment,
    basket_advance,
    can_fund,
    commitment,
    compute_clearing,
    leg_fill,
    sign_order,
)
from offchain.universe import DAY, WAD, FundKind

from .conftest import BATCH, DISCRETIONARY, MIN_QTY, REVEAL

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
EXAMPLES, STEPS = {"default": (8, 40), "long": (80, 80)}[PROFILE]
GAS = 3_000_000
YEAR = 365 * DAY
# (symbol, kind, nav, tick spacing, issuer fee bps, creation cap, redemption cap)
MARKETS = [
    ("ETFA", FundKind.ETF, 100 * WAD, WAD, 200, 30 * WAD, 30 * WAD),
    ("ETFB", FundKind.ETF, 50 * WAD, WAD // 2, 0, 0, 0),
    ("ALTC", FundKind.ALTERNATIVE, 20 * WAD, WAD // 5, 300, 0, 1_000 * WAD),
]
CASH_START = 50_000 * WAD
UNITS_START = 200 * WAD
ANNUAL_FEE = 365 * 10 * WAD  # 10 cash a day


def _abi(contract):
    return [a.model_dump(mode="json", by_alias=True) for a in contract.contract_type.abi]


@pytest.fixture(scope="module")
def world(chain, project, admin, issuer, keeper, registry, verify, make_fund, make_pool,
          connect, accounts):
    investors = [accounts[a.index] for a in roles.INVESTORS[:3]]
    for who in [issuer, keeper, *investors]:
        verify(who)
    cash = make_fund(kind=FundKind.CASH, symbol="USDL", name="LightPool USD",
                     asset_class="cash", nav=WAD, max_age=92 * DAY)
    pool = make_pool(cash)
    connect(pool, cash)
    tokens = []
    for symbol, kind, nav, tick, fee, create, redeem in MARKETS:
        token = make_fund(kind=kind, symbol=symbol, name=symbol, nav=nav, max_age=DAY)
        connect(pool, token, cash, tick=tick, min_qty=MIN_QTY, band=1_000)
        if kind == FundKind.ALTERNATIVE:
            token.set_liquidity_terms(91 * DAY, 1_000, sender=issuer)
        if create or redeem:
            pool.set_issuer_liquidity(token, fee, create, redeem, sender=issuer)
        tokens.append(token)
    cash.mint(issuer, 100_000 * WAD, sender=issuer)
    cash.approve(pool, 2**256 - 1, sender=issuer)
    pool.deposit(cash, 20_000 * WAD, sender=issuer)  # the redemption reserve
    expiry = chain.pending_timestamp + 3 * 365 * DAY
    for who in investors:
        cash.mint(who, CASH_START, sender=issuer)
        cash.approve(pool, 2**256 - 1, sender=who)
        pool.deposit(cash, CASH_START * 3 // 5, sender=who)
        for token in tokens:
            token.mint(who, UNITS_START, sender=issuer)
            token.approve(pool, 2**256 - 1, sender=who)
            pool.deposit(token, UNITS_START * 3 // 5, sender=who)
        registry.grant_mandate(keeper, DISCRETIONARY, tokens, 10**30, 7 * DAY, 1_000,
                               ANNUAL_FEE, expiry, sender=who)
    w3 = chain.provider.web3
    handle = lambda c: w3.eth.contract(address=c.address, abi=_abi(c))  # noqa: E731
    return {
        "w3": w3, "pool": handle(pool), "cash": handle(cash),
        "tokens": [handle(t) for t in tokens], "issuer": issuer.address,
        "keeper": keeper.address, "investors": [i.address for i in investors],
        "keys": {a.address: a.private_key for a in roles.INVESTORS[:3]},
        "chain_id": chain.chain_id, "registry": handle(registry),
    }


def test_lightpool_ghost_ledger(world):
    w3, pool, cash, tokens = world["w3"], world["pool"], world["cash"], world["tokens"]
    issuer, keeper, investors = world["issuer"], world["keeper"], world["investors"]
    accounts = [issuer, keeper, *investors]
    all_tokens = [cash, *tokens]
    market_info = {t.address: m for t, m in zip(tokens, MARKETS, strict=True)}

    legs_st = st.lists(
        st.tuples(st.integers(0, len(tokens) - 1), st.booleans(), st.integers(1, 60),
                  st.integers(-4, 4)),
        min_size=1, max_size=4)

    class LightPoolMachine(RuleBasedStateMachine):
        @initialize(who=st.sampled_from(investors), size=st.integers(8, 60),
                    buy_market=st.integers(0, len(tokens) - 1), share=st.integers(1, 100))
        def start(self, who, size, buy_market, share):
            self.snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
            self.free = {(t.address, a): pool.functions.balance_of(t.address, a).call()
                         for t in all_tokens for a in accounts}
            self.holdings = {t.address: t.functions.balanceOf(pool.address).call()
                             for t in all_tokens}
            self.baskets: dict[int, Basket] = {}  # open (unsettled) baskets
            self.advances: dict[int, list[int]] = {}  # issuer advance carried per leg
            self.cancelled: set[tuple[int, int]] = set()
            # commitment -> (owner, batch, leg, salt, token, amount, reveal?)
            self.commits: dict[bytes, tuple] = {}
            self.clearings: dict[tuple[str, int], Clearing] = {}
            self.filled: set[tuple[int, int]] = set()
            self.fills = 0
            self.advanced = 0  # baskets placed with an issuer advance
            self.nonce = 1
            self.navs = {t.address: t.functions.nav().call() for t in tokens}
            # Every example opens with a rebalance whose buys its sells fund (ETFA at 3
            # ticks under NAV, under the issuer's redemption price).
            self.rebalance(who, 0, size, -3, buy_market, 0, share)

        def teardown(self):
            if hasattr(self, "snapshot"):
                w3.provider.make_request("evm_revert", [self.snapshot])

        # --- helpers -------------------------------------------------------------------

        def now(self) -> int:
            return w3.eth.get_block("latest").timestamp

        def batch(self) -> int:
            return pool.functions.current_batch().call()

        def warp(self, timestamp: int) -> None:
            w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])
            w3.provider.make_request("evm_mine", [])

        def send(self, fn, sender: str, ok: bool, message: str | None = None):
            if ok:
                receipt = w3.eth.wait_for_transaction_receipt(
                    fn.transact({"from": sender, "gas": GAS}))
                if receipt.status != 1:  # replay it on the state before, for the reason
                    try:
                        fn.call({"from": sender, "gas": GAS},
                                block_identifier=receipt.blockNumber - 1)
                    except ContractLogicError as exc:
                        raise AssertionError(f"reverted: {exc}") from exc
                    raise AssertionError("reverted (no reason on replay)")
                return receipt
            with pytest.raises(ContractLogicError) as refused:
                fn.call({"from": sender, "gas": GAS})
            if message is not None:
                assert message in str(refused.value)
            return None

        def make_legs(self, raw) -> list[Leg]:
            out = []
            for index, is_buy, size, offset in raw:
                token = tokens[index]
                tick = market_info[token.address][3]
                nav = self.navs[token.address]
                price = (nav // tick + offset) * tick
                out.append(Leg(market=token.address, is_buy=is_buy,
                               quantity=size * WAD // 7, limit_price=price))
            return out

        def plan(self, free: dict, owner: str, legs: list[Leg]):
            """What ``_place`` does to the balances in ``free`` (changed in place): sells
            lock units leg by leg, buys lock the owner's free cash and, beyond it, the
            advance of the sells' issuers. Returns (refusal message or None, allocation)."""
            for leg in legs:
                if not leg.is_buy:
                    if free[(leg.market, owner)] < leg.quantity:
                        return "lightpool: insufficient balance", []
                    free[(leg.market, owner)] -= leg.quantity
            need = sum(leg.lock() for leg in legs if leg.is_buy)
            own = free[(cash.address, owner)]
            advance = basket_advance(legs, own)
            allocation = advance_allocation(legs, advance)
            for leg, amount in zip(legs, allocation, strict=True):
                if amount:
                    info = market_info[leg.market]
                    if not can_fund(leg, self.navs[leg.market], info[4], info[6],
                                    info[1] == FundKind.ALTERNATIVE):
                        return "lightpool: sell cannot fund buys", []
                    if free[(cash.address, issuer)] < amount:
                        return "lightpool: issuer reserve short", []
                    free[(cash.address, issuer)] -= amount
            if sum(allocation) < advance:
                return "lightpool: insufficient balance", []
            free[(cash.address, owner)] = own - (need - advance)
            return None, allocation

        def place_basket(self, who: str, legs: list[Leg]):
            """Place ``legs`` as ``who``'s own basket; the ghost predicts the outcome."""
            free = dict(self.free)
            refusal, allocation = self.plan(free, who, legs)
            batch = self.batch()
            receipt = self.send(pool.functions.place([leg.as_tuple() for leg in legs]), who,
                                refusal is None, refusal)
            if receipt:
                self.free = free
                self.record_placed(receipt, [(who, legs)], batch, [allocation])

        def record_placed(self, receipt, owner_legs: list[tuple[str, list[Leg]]], batch: int,
                          allocations: list[list[int]]):
            logs = pool.events.OrderPlaced().process_receipt(receipt, errors=DISCARD)
            advanced = {(log.args.basket_id, log.args.index): log.args for log in
                        pool.events.Advanced().process_receipt(receipt, errors=DISCARD)}
            ids = sorted({log.args.basket_id for log in logs})
            assert len(ids) == len(owner_legs)
            for basket_id, (owner, legs), allocation in zip(ids, owner_legs, allocations,
                                                           strict=True):
                basket = Basket(owner=owner, batch=batch, legs=tuple(legs))
                assert pool.functions.basket_hash(basket_id).call() == basket.hash()
                assert pool.functions.basket_advance(basket_id).call() == sum(allocation)
                for index, amount in enumerate(allocation):
                    if amount:
                        log = advanced.pop((basket_id, index))
                        assert (log.amount, log.issuer) == (amount, issuer)
                self.baskets[basket_id] = basket
                self.advances[basket_id] = allocation
                self.advanced += sum(allocation) > 0
            assert not advanced  # no advance the ghost did not expect

        # --- rules ---------------------------------------------------------------------

        @rule(who=st.sampled_from(investors), token=st.integers(0, len(tokens)),
              share=st.integers(0, 110))
        def deposit(self, who, token, share):
            contract = all_tokens[token]
            held = contract.functions.balanceOf(who).call()
            amount = held * share // 100 + (1 if share > 100 else 0)
            ok = 0 < amount <= held
            if self.send(pool.functions.deposit(contract.address, amount), who, ok):
                self.free[(contract.address, who)] += amount
                self.holdings[contract.address] += amount

        @rule(who=st.sampled_from(accounts), token=st.integers(0, len(tokens)),
              share=st.integers(1, 100), extra=st.booleans())
        def withdraw(self, who, token, share, extra):
            contract = all_tokens[token]
            free = self.free[(contract.address, who)]
            amount = free + 1 if extra else free * share // 100
            ok = 0 < amount <= free
            receipt = self.send(pool.functions.withdraw(contract.address, amount), who, ok,
                                "lightpool: insufficient balance" if amount > free else None)
            if receipt:
                self.free[(contract.address, who)] -= amount
                self.holdings[contract.address] -= amount

        @rule(who=st.sampled_from(investors), raw=legs_st)
        def place(self, who, raw):
            self.place_basket(who, self.make_legs(raw))

        # Mostly ETFA, whose issuer redeems (ETFB has no issuer, ALTC is gated).
        # Limits 2 to 4 ticks under NAV: at or under ETFA's redemption price unless NAV moved.
        @rule(who=st.sampled_from(investors), sell_market=st.sampled_from([0, 0, 0, 0, 1, 2]),
              size=st.integers(8, 60), offset=st.integers(-4, -2),
              buy_market=st.integers(0, len(tokens) - 1), buy_offset=st.integers(-2, 2),
              share=st.integers(1, 120))
        def rebalance(self, who, sell_market, size, offset, buy_market, buy_offset, share):
            """A rebalance whose buy costs the owner's free cash plus ``share``% of what the
            sell brings at its limit: the sell's issuer advances the difference (or the
            basket is refused: ineligible sell, short reserve, more than the sell covers)."""
            sell = self.make_legs([(sell_market, False, size, offset)])[0]
            buy = self.make_legs([(buy_market, True, 1, buy_offset)])[0]
            free_cash = self.free[(cash.address, who)]
            target = free_cash + sell.quantity * sell.limit_price // WAD * share // 100
            quantity = target * WAD // buy.limit_price
            if quantity < MIN_QTY:
                return
            self.place_basket(who, [sell, buy.model_copy(update={"quantity": quantity})])

        @rule(raw=st.lists(st.tuples(st.sampled_from(investors), legs_st), min_size=1,
                           max_size=3))
        def keeper_place(self, raw):
            entries = [(who, self.make_legs(r)) for who, r in raw]
            free = dict(self.free)
            refusal, allocations = None, []
            for who, legs in entries:  # sequential, as the contract places them
                refusal, allocation = self.plan(free, who, legs)
                if refusal:
                    break
                allocations.append(allocation)
            batch = self.batch()
            receipt = self.send(pool.functions.place_for_many(
                [(who, [leg.as_tuple() for leg in legs]) for who, legs in entries]),
                keeper, refusal is None, refusal)
            if receipt:
                self.free = free
                self.record_placed(receipt, entries, batch, allocations)

        @rule(market=st.integers(0, len(tokens) - 1), size=st.integers(1, 60),
              offset=st.integers(-2, 2), pair=st.permutations(investors))
        def cross(self, market, size, offset, pair):
            """A buy and a sell that overlap, from two investors (so batches trade)."""
            buy = self.make_legs([(market, True, size, offset + 1)])[0]
            sell = self.make_legs([(market, False, size + 3, offset - 1)])[0]
            for who, leg in ((pair[0], buy), (pair[1], sell)):
                self.place_basket(who, [leg])

        @rule(who=st.sampled_from(investors), raw=legs_st, expired=st.booleans())
        def place_signed(self, who, raw, expired):
            leg = self.make_legs(raw[:1])[0]
            expiry = self.now() - 1 if expired else self.now() + 3_600
            order = SignedOrder(owner=who, market=leg.market, is_buy=leg.is_buy,
                                quantity=leg.quantity, limit_price=leg.limit_price,
                                nonce=self.nonce, expiry=expiry)
            self.nonce += 1
            signature = sign_order(order, world["keys"][who], world["chain_id"], pool.address)
            free = dict(self.free)
            refusal, allocation = self.plan(free, who, [leg])
            if expired:
                refusal = "lightpool: order expired"
            batch = self.batch()
            receipt = self.send(pool.functions.place_signed(order.as_tuple(), signature),
                                keeper, refusal is None, refusal)
            if receipt:
                self.free = free
                self.record_placed(receipt, [(who, [leg])], batch, [allocation])

        @precondition(lambda self: any(b.batch == self.batch() for b in self.baskets.values()))
        @rule(data=st.data())
        def cancel(self, data):
            batch = self.batch()
            open_ = sorted(i for i, b in self.baskets.items() if b.batch == batch
                           and any(leg.quantity for leg in b.legs))
            if not open_:
                return
            basket_id = data.draw(st.sampled_from(open_))
            basket = self.baskets[basket_id]
            index = data.draw(st.sampled_from(
                [i for i, leg in enumerate(basket.legs) if leg.quantity]))
            leg = basket.legs[index]
            # A funded basket's sells secure the issuer's advance: they cannot be cancelled.
            funds = not leg.is_buy and sum(self.advances[basket_id]) > 0
            receipt = self.send(pool.functions.cancel(basket_id, basket.as_tuple(), index),
                                basket.owner, not funds, "lightpool: sell funds buys")
            if not receipt:
                return
            token = cash.address if leg.is_buy else leg.market
            self.free[(token, basket.owner)] += leg.lock()
            self.baskets[basket_id] = basket.cancelled(index)
            self.cancelled.add((basket_id, index))

        @rule(who=st.sampled_from(investors), raw=legs_st, extra=st.integers(0, 5),
              reveal=st.booleans())
        def commit(self, who, raw, extra, reveal):
            leg = self.make_legs(raw[:1])[0]
            token = cash.address if leg.is_buy else leg.market
            amount = leg.lock() + extra * WAD
            if self.free[(token, who)] < amount:
                return
            batch = self.batch()
            salt = os.urandom(32)
            digest = commitment(who, batch, leg, salt)
            self.send(pool.functions.commit(digest, token, amount), who, True)
            self.free[(token, who)] -= amount
            self.commits[digest] = (who, batch, leg, salt, token, amount, reveal)

        @rule(market=st.integers(0, len(tokens) - 1), move=st.integers(-3, 3))
        def move_nav(self, market, move):
            token = tokens[market]
            tick = market_info[token.address][3]
            base = market_info[token.address][2]
            # NAV stays within 3 ticks of its start so a batch never needs more than 32 ticks.
            nav = min(max(self.navs[token.address] + move * tick, base - 3 * tick),
                      base + 3 * tick)
            self.warp(self.now() + 1)
            self.send(token.functions.publish_nav(nav, self.now()), issuer, True)
            self.navs[token.address] = nav

        @rule(stale=st.sampled_from([False, False, False, True]))
        def close_batch(self, stale):
            batch = self.batch()
            close = pool.functions.batch_close(batch).call()
            # Reveal the commitments meant to be revealed, inside the reveal window.
            self.warp(close + 1)
            for digest, (who, cbatch, leg, salt, token, amount, reveal) in list(
                    self.commits.items()):
                if cbatch != batch or not reveal:
                    continue
                receipt = self.send(pool.functions.reveal(who, cbatch, leg.as_tuple(), salt,
                                                          token, amount), keeper, True)
                self.free[(token, who)] += amount
                refusal, allocation = self.plan(self.free, who, [leg])
                assert refusal is None
                self.record_placed(receipt, [(who, [leg])], cbatch, [allocation])
                del self.commits[digest]
            self.warp(close + REVEAL + (DAY if stale else 0))
            for token in tokens:
                book = Book(market_info[token.address][3])
                for basket in self.baskets.values():
                    if basket.batch == batch:
                        for leg in basket.legs:
                            if leg.market == token.address and leg.quantity:
                                book.add(leg)
                buys, sells = book.hint()
                nav = token.functions.nav().call()
                stale_now = token.functions.is_nav_stale().call()
                liquidity = market_info[token.address]
                gate = (token.functions.gate_remaining().call()
                        if liquidity[1] == FundKind.ALTERNATIVE else None)
                expected = compute_clearing(book, nav, IssuerLiquidity(
                    fee_bps=liquidity[4], creation_capacity=liquidity[5],
                    redemption_capacity=liquidity[6],
                    reserve=self.free[(cash.address, issuer)], gate_remaining=gate))
                supply = token.functions.totalSupply().call()
                self.send(pool.functions.clear(token.address, batch, buys, sells), keeper, True)
                stored = Clearing.from_chain(
                    pool.functions.clearing_of(token.address, batch).call())
                if stale_now:
                    assert stored.status == 2
                else:
                    assert stored == expected.clearing
                    self.free[(cash.address, issuer)] += (expected.issuer_cash_in
                                                          - expected.issuer_cash_out)
                    self.holdings[token.address] += expected.created - expected.redeemed
                    assert token.functions.totalSupply().call() == (
                        supply + expected.created - expected.redeemed)
                    self.fills += (expected.created > 0) + (expected.redeemed > 0)
                self.clearings[(token.address, batch)] = stored
            if stale:
                for token in tokens:
                    self.send(token.functions.publish_nav(self.navs[token.address],
                                                          self.now()), issuer, True)

        def settleable(self) -> list[int]:
            return sorted(i for i, b in self.baskets.items()
                          if all((leg.market, b.batch) in self.clearings for leg in b.legs))

        def apply_settlement(self, receipt, basket_ids: list[int]) -> None:
            logs = pool.events.Filled().process_receipt(receipt, errors=DISCARD)
            by_key = {(log.args.basket_id, log.args.index): log.args for log in logs}
            repaid_logs = {(log.args.basket_id, log.args.index): log.args for log in
                           pool.events.AdvanceRepaid().process_receipt(receipt, errors=DISCARD)}
            for basket_id in basket_ids:
                basket = self.baskets.pop(basket_id)
                allocation = self.advances.pop(basket_id)
                for index, leg in enumerate(basket.legs):
                    if leg.quantity == 0:
                        assert (basket_id, index) not in by_key  # cancelled: never fills
                        continue
                    key = (basket_id, index)
                    assert key not in self.filled  # never twice
                    self.filled.add(key)
                    clearing = self.clearings[(leg.market, basket.batch)]
                    units, amount = leg_fill(leg, clearing)
                    log = by_key[key]
                    assert (log.filled, log.cash) == (units, amount)
                    assert units <= leg.quantity
                    if units:
                        self.fills += 1
                        # The limit is respected at the market-batch's one price.
                        # Rounding costs at most one wei of units (paid for, not delivered).
                        if leg.is_buy:
                            assert clearing.price <= leg.limit_price
                            assert amount <= -(-(units + 1) * clearing.price // WAD)
                            assert amount <= leg.lock()
                        else:
                            assert clearing.price >= leg.limit_price
                            assert amount >= (units - 1) * clearing.price // WAD - 1
                    owner = basket.owner
                    if leg.is_buy:
                        self.free[(leg.market, owner)] += units
                        self.free[(cash.address, owner)] += leg.lock() - amount
                    else:
                        # The issuer's advance comes back from the sale, then in units.
                        repaid, taken = advance_repayment(leg, allocation[index], units, amount)
                        if allocation[index]:
                            log = repaid_logs.pop(key)
                            assert (log.cash, log.units, log.issuer) == (repaid, taken, issuer)
                            # Units at the limit cover the rest of the advance, with at most
                            # one wei of units over (unless all unsold units are not enough).
                            rest = (allocation[index] - repaid) * WAD
                            assert taken * leg.limit_price >= rest or (
                                taken == leg.quantity - units)
                            assert taken == 0 or (taken - 1) * leg.limit_price < rest
                        self.free[(cash.address, issuer)] += repaid
                        self.free[(leg.market, issuer)] += taken
                        self.free[(leg.market, owner)] += leg.quantity - units - taken
                        self.free[(cash.address, owner)] += amount - repaid
            assert not repaid_logs
            for basket_id in basket_ids:
                assert pool.functions.basket_hash(basket_id).call() == b"\x00" * 32
                assert pool.functions.basket_advance(basket_id).call() == 0

        @precondition(lambda self: self.settleable())
        @rule(data=st.data())
        def settle_pull(self, data):
            basket_id = data.draw(st.sampled_from(self.settleable()))
            basket = self.baskets[basket_id]
            receipt = self.send(pool.functions.settle(basket_id, basket.as_tuple()),
                                basket.owner, True)
            self.apply_settlement(receipt, [basket_id])

        @precondition(lambda self: self.settleable())
        @rule()
        def settle_push(self):
            ids = self.settleable()[:20]
            refs = [(i, self.baskets[i].as_tuple()) for i in ids]
            receipt = self.send(pool.functions.settle_many(refs), keeper, True)
            self.apply_settlement(receipt, ids)
            # Settling again is refused: no order fills twice.
            self.send(pool.functions.settle(*refs[0]), keeper, False, "lightpool: unknown basket")

        @rule()
        def reclaim(self):
            for digest, (who, batch, _leg, _salt, token, amount, _reveal) in list(
                    self.commits.items()):
                over = self.now() >= pool.functions.batch_close(batch).call() + REVEAL
                receipt = self.send(pool.functions.reclaim(digest, who, batch, token, amount),
                                    keeper, over, None if over else "lightpool: reveal window open")
                if receipt:
                    self.free[(token, who)] += amount
                    del self.commits[digest]

        @rule(who=st.sampled_from(investors))
        def claim_fee(self, who):
            granted_at = world["registry"].functions.mandate_of(who, keeper).call()[6]
            start = max(pool.functions.fee_paid_until(who, keeper).call(), granted_at)
            fn = pool.functions.claim_fee(who)
            self.warp(self.now() + 1)
            receipt = self.send(fn, keeper, True)
            [log] = pool.events.FeeAccrued().process_receipt(receipt, errors=DISCARD)
            end = w3.eth.get_block(receipt.blockNumber).timestamp
            # Never more than declared for the seconds it pays, never more than escrow.
            assert start <= log.args.paid_until <= end
            assert log.args.amount == ANNUAL_FEE * (log.args.paid_until - start) // YEAR or (
                log.args.paid_until < end)
            assert log.args.amount <= ANNUAL_FEE * (log.args.paid_until - start) // YEAR
            assert log.args.amount <= self.free[(cash.address, who)]
            self.free[(cash.address, who)] -= log.args.amount
            self.free[(cash.address, keeper)] += log.args.amount

        # --- invariants ----------------------------------------------------------------

        @invariant()
        def escrow_matches_ghost(self):
            for (token, owner), amount in self.free.items():
                assert pool.functions.balance_of(token, owner).call() == amount, (token, owner)

        @invariant()
        def holdings_cover_obligations(self):
            owed = {t.address: 0 for t in all_tokens}
            pending_fills = 0  # cleared but unsettled fills: each may leave one wei of dust
            for (token, _), amount in self.free.items():
                owed[token] += amount
            for basket in self.baskets.values():
                for leg in basket.legs:
                    clearing = self.clearings.get((leg.market, basket.batch))
                    if clearing is None:
                        owed[cash.address if leg.is_buy else leg.market] += leg.lock()
                        continue
                    units, amount = leg_fill(leg, clearing)
                    pending_fills += units > 0
                    if leg.is_buy:
                        owed[leg.market] += units
                        owed[cash.address] += leg.lock() - amount
                    else:
                        owed[leg.market] += leg.quantity - units
                        owed[cash.address] += amount
            for _, _, _, _, token, amount, _ in self.commits.values():
                owed[token] += amount
            for token in all_tokens:
                held = token.functions.balanceOf(pool.address).call()
                assert held == self.holdings[token.address]
                assert owed[token.address] <= held <= owed[token.address] + self.fills + (
                    pending_fills)

        def everyone_exits(self):
            """Settle and reclaim everything, withdraw every balance: only dust remains."""
            self.close_batch(False)
            while self.settleable():
                self.settle_push()
            self.warp(self.now() + BATCH + REVEAL)
            self.reclaim()
            for (token, owner), amount in list(self.free.items()):
                if amount:
                    self.send(pool.functions.withdraw(token, amount), owner, True)
                    self.free[(token, owner)] = 0
                    self.holdings[token] -= amount
            for token in all_tokens:
                held = token.functions.balanceOf(pool.address).call()
                assert held <= self.fills, (token.address, held)

    stats = {"fills": 0, "clearings": 0, "advances": 0}

    class Finishing(LightPoolMachine):
        def teardown(self):
            if hasattr(self, "snapshot"):
                try:
                    if sys.exc_info()[0] is None:  # a failed step's error is the one to see
                        self.everyone_exits()
                    stats["fills"] += self.fills
                    stats["clearings"] += len(self.clearings)
                    stats["advances"] += self.advanced
                finally:
                    super().teardown()

    run_state_machine_as_test(Finishing, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
        suppress_health_check=list(HealthCheck)))
    # The machine must have exercised trading, not only refusals.
    print("ghost ledger:", stats)
    assert stats["fills"] > 0 and stats["clearings"] > 0 and stats["advances"] > 0, stats
