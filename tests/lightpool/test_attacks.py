"""Attacks on LightPool: replays (same chain, other chain id, second deployment), expired and
high-s signatures, tampered relays, keepers beyond their mandates, spam, re-entrant tokens."""

from __future__ import annotations

import socket
import subprocess
import time

import ape
import pytest
from eth_utils import to_checksum_address
from web3 import Web3

from offchain.chain import actors as roles
from offchain.chain.lightpool import CURVE_ORDER, SignedOrder, sign_order
from offchain.chain.node import anvil_binary
from offchain.universe import DAY, WAD, FundKind

from .conftest import BATCH, CASH0, MIN_QTY, NAV, REVEAL, TICK, leg, legs

P = NAV
ALICE = roles.INVESTORS[0]


def make_order(pool, fund, nonce=1, expiry=None, **fields):
    order = SignedOrder(owner=ALICE.address, market=fund.address, is_buy=True, quantity=2 * WAD,
                        limit_price=P, nonce=nonce,
                        expiry=ape.chain.pending_timestamp + 3600 if expiry is None else expiry)
    return order.model_copy(update=fields)


def test_replay_on_same_pool_is_refused(pool, fund, funded, keeper, outsider):
    order = make_order(pool, fund)
    signature = sign_order(order, ALICE.private_key, ape.chain.chain_id, pool.address)
    pool.place_signed(order.as_tuple(), signature, sender=keeper)
    with ape.reverts("lightpool: nonce used"):
        pool.place_signed(order.as_tuple(), signature, sender=outsider)


def test_replay_on_second_deployment_is_refused(pool, make_pool, connect, cash, fund, funded,
                                                keeper, investor):
    second = make_pool(cash)
    connect(second, cash)
    connect(second, fund, cash)
    pool_cash = cash.balanceOf(investor)
    cash.mint(investor, 1_000 * WAD, sender=fund.issuer())
    cash.approve(second, 2**256 - 1, sender=investor)
    second.deposit(cash, 1_000 * WAD, sender=investor)
    assert cash.balanceOf(investor) == pool_cash
    order = make_order(pool, fund)
    signature = sign_order(order, ALICE.private_key, ape.chain.chain_id, pool.address)
    with ape.reverts("lightpool: bad signature"):
        second.place_signed(order.as_tuple(), signature, sender=keeper)
    # The same order signed for the second deployment is accepted there.
    good = sign_order(order, ALICE.private_key, ape.chain.chain_id, second.address)
    second.place_signed(order.as_tuple(), good, sender=keeper)


def test_expired_order_is_refused(pool, fund, funded, keeper):
    order = make_order(pool, fund, expiry=ape.chain.pending_timestamp - 1)
    signature = sign_order(order, ALICE.private_key, ape.chain.chain_id, pool.address)
    with ape.reverts("lightpool: order expired"):
        pool.place_signed(order.as_tuple(), signature, sender=keeper)


def test_high_s_signature_is_refused(pool, fund, funded, keeper, investor):
    order = make_order(pool, fund)
    signature = sign_order(order, ALICE.private_key, ape.chain.chain_id, pool.address)
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    # The malleable twin: same signer, s' = n - s, parity flipped.
    twin = r + (CURVE_ORDER - s).to_bytes(32, "big") + bytes([55 - v])
    with ape.reverts("lightpool: high s"):
        pool.place_signed(order.as_tuple(), twin, sender=keeper)
    pool.place_signed(order.as_tuple(), signature, sender=keeper)
    assert pool.is_nonce_used(investor, 1)


@pytest.mark.parametrize("field,value", [
    ("owner", roles.INVESTORS[1].address),
    ("is_buy", False),
    ("quantity", 3 * WAD),
    ("limit_price", P + TICK),
    ("nonce", 2),
    ("expiry", 2**40),
])
def test_tampered_relay_is_refused(pool, fund, funded, keeper, field, value):
    order = make_order(pool, fund)
    signature = sign_order(order, ALICE.private_key, ape.chain.chain_id, pool.address)
    tampered = order.model_copy(update={field: value})
    with ape.reverts("lightpool: bad signature"):
        pool.place_signed(tampered.as_tuple(), signature, sender=keeper)


def test_tampered_market_is_refused(pool, fund, funded, keeper, cash):
    order = make_order(pool, fund)
    signature = sign_order(order, ALICE.private_key, ape.chain.chain_id, pool.address)
    tampered = order.model_copy(update={"market": cash.address})
    with ape.reverts("lightpool: bad signature"):
        pool.place_signed(tampered.as_tuple(), signature, sender=keeper)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def other_chain():
    """A second anvil with chain id 7777 and the same dev accounts."""
    port = _free_port()
    proc = subprocess.Popen([str(anvil_binary()), "--port", str(port), "--chain-id", "7777",
                             "--accounts", "30", "--silent"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}"))
    for _ in range(100):
        try:
            if w3.is_connected():
                break
        except Exception:
            pass
        time.sleep(0.1)
    try:
        yield w3
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _deploy(w3, project, name, *args, sender):
    contract_type = getattr(project, name).contract_type
    factory = w3.eth.contract(abi=[a.model_dump(by_alias=True, mode="json")
                                   for a in contract_type.abi],
                              bytecode=contract_type.deployment_bytecode.bytecode)
    receipt = w3.eth.wait_for_transaction_receipt(
        factory.constructor(*args).transact({"from": sender}))
    return w3.eth.contract(address=receipt.contractAddress, abi=factory.abi)


def test_replay_on_other_chain_id_is_refused(pool, fund, funded, keeper, admin, project,
                                             other_chain):
    """Chain 7777 gets a pool at the very same address as the test chain's pool; only the
    chain id differs, and the signature made for the test chain is rejected there."""
    w3 = other_chain
    assert w3.eth.chain_id == 7777 != ape.chain.chain_id
    issuer = roles.ISSUER_ACTORS["Meridian Funds"].address
    investor = ALICE.address
    # Everything but the pool comes from another account so the admin's nonces stay free.
    deployer = roles.ATTESTER.address
    send = {"from": deployer}
    registry = _deploy(w3, project, "ProfileRegistry", sender=deployer)
    w3.eth.wait_for_transaction_receipt(
        registry.functions.set_attester(deployer, True).transact(send))
    w3.eth.wait_for_transaction_receipt(
        registry.functions.attest(investor, 840, 2**40).transact(send))
    cash = _deploy(w3, project, "FundToken", "LightPool USD", "USDL", int(FundKind.CASH),
                   "cash", issuer, registry.address, WAD, 92 * DAY, sender=deployer)
    etf = _deploy(w3, project, "FundToken", "ETF", "ETF", int(FundKind.ETF), "x", issuer,
                  registry.address, NAV, DAY, sender=deployer)
    math = _deploy(w3, project, "ClearingMath", sender=deployer)
    # Deploy the pool from the admin at the nonce that created the test chain's pool.
    nonce = next(n for n in range(admin.nonce)
                 if to_checksum_address(
                     Web3.keccak(_rlp_address_nonce(admin.address, n))[12:]) == pool.address)
    w3.provider.make_request("anvil_setNonce", [admin.address, hex(nonce)])
    twin = _deploy(w3, project, "LightPool", cash.address, registry.address, math.address,
                   BATCH, REVEAL, sender=admin.address)
    assert twin.address == pool.address
    for token in (cash, etf):
        w3.eth.wait_for_transaction_receipt(
            token.functions.set_allowlisted(twin.address, True).transact({"from": issuer}))
    w3.eth.wait_for_transaction_receipt(
        twin.functions.list_market(etf.address, TICK, MIN_QTY, 1_000).transact(
            {"from": admin.address}))
    w3.eth.wait_for_transaction_receipt(
        cash.functions.mint(investor, 1_000 * WAD).transact({"from": issuer}))
    w3.eth.wait_for_transaction_receipt(
        cash.functions.approve(twin.address, 2**256 - 1).transact({"from": investor}))
    w3.eth.wait_for_transaction_receipt(
        twin.functions.deposit(cash.address, 1_000 * WAD).transact({"from": investor}))

    order = make_order(pool, fund, market=etf.address)
    signature = sign_order(order, ALICE.private_key, ape.chain.chain_id, pool.address)
    with pytest.raises(Exception, match="lightpool: bad signature"):
        twin.functions.place_signed(order.as_tuple(), signature).call({"from": keeper.address})
    # Control: signed for chain 7777, the same order is accepted by the twin.
    good = sign_order(order, ALICE.private_key, 7777, pool.address)
    receipt = w3.eth.wait_for_transaction_receipt(
        twin.functions.place_signed(order.as_tuple(), good).transact({"from": keeper.address}))
    assert receipt.status == 1
    assert twin.functions.is_nonce_used(investor, 1).call()


def _rlp_address_nonce(address: str, nonce: int) -> bytes:
    import rlp

    return rlp.encode([bytes.fromhex(address[2:]), nonce])


# --- keepers --------------------------------------------------------------------------------


@pytest.mark.parametrize("limit,kwargs,legs_,message", [
    ("instrument", {}, "other", "lightpool: instrument not allowed"),
    ("deviation", {"deviation_bps": 200}, [(True, WAD, P * 103 // 100)],
     "lightpool: price deviation"),
    ("deviation-low", {"deviation_bps": 200}, [(False, WAD, P * 97 // 100)],
     "lightpool: price deviation"),
    ("turnover", {"max_turnover": 150 * WAD}, [(True, WAD, P), (False, WAD // 2 + MIN_QTY, P)],
     "lightpool: turnover limit"),
    ("expired", {"days": 1}, "later", "lightpool: mandate inactive"),
    ("advisory", {"mode": 1}, [(True, WAD, P)], "lightpool: mandate not discretionary"),
])
def test_keeper_beyond_mandate(pool, fund, cash, funded, investor, keeper, mandate, make_fund,
                               connect, chain, limit, kwargs, legs_, message):
    mandate(investor, [fund], **kwargs)
    if legs_ == "other":
        other = connect(pool, make_fund(symbol="OTHR"), cash)
        items = [leg(other, True, WAD, P)]
    elif legs_ == "later":
        chain.mine(timestamp=chain.pending_timestamp + DAY + 1)
        fund.publish_nav(NAV, chain.pending_timestamp - 1, sender=fund.issuer())
        items = [leg(fund, True, WAD, P)]
    else:
        items = [leg(fund, *x) for x in legs_]
    with ape.reverts(message):
        pool.place_for_many([(investor, legs(*items))], sender=keeper)
    assert pool.balance_of(cash, investor) == CASH0


def test_keeper_cannot_move_investor_funds(pool, fund, cash, funded, investor, keeper, mandate,
                                           verify):
    verify(keeper)
    mandate(investor, [fund])
    for token in (cash, fund):
        with ape.reverts("lightpool: insufficient balance"):
            pool.withdraw(token, WAD, sender=keeper)
    # A keeper's order is always the investor's own: the basket's owner is the investor.
    tx = pool.place_for_many([(investor, legs(leg(fund, True, WAD, P)))], sender=keeper)
    [log] = tx.decode_logs(pool.OrderPlaced)
    assert log.owner == investor and log.placed_by == keeper
    assert pool.balance_of(cash, keeper) == 0


# --- spam -----------------------------------------------------------------------------------


def test_orders_below_min_size_are_refused(pool, fund, funded, outsider, investor):
    with ape.reverts("lightpool: below min size"):
        pool.place(legs(*[leg(fund, True, MIN_QTY - 1, P - i * TICK) for i in range(32)]),
                   sender=investor)
    assert pool.tick_counts(fund, pool.current_batch()) == (0, 0)


def test_tick_spam_cannot_block_existing_ticks(pool, fund, funded, investor, investor2):
    # A spammer fills every free buy tick with minimum-size orders ...
    pool.place(legs(*[leg(fund, True, MIN_QTY, P - i * TICK) for i in range(32)]),
               sender=investor2)
    with ape.reverts("lightpool: too many ticks"):
        pool.place(legs(leg(fund, True, WAD, P + TICK)), sender=investor)
    # ... but every used tick, and the whole sell side, still take orders.
    pool.place(legs(leg(fund, True, WAD, P), leg(fund, False, WAD, P + TICK)), sender=investor)


# --- re-entrancy ----------------------------------------------------------------------------


@pytest.fixture
def evil(project, admin, pool, investor):
    token = admin.deploy(project.ReentrantToken)
    pool.list_market(token, TICK, MIN_QTY, 1_000, sender=admin)
    token.mint(investor, 100 * WAD, sender=admin)
    token.approve(pool, 2**256 - 1, sender=investor)
    return token


def test_reentrant_token_on_deposit(pool, evil, investor):
    evil.arm(pool, pool.cancel_nonce.encode_input(12345), sender=investor)
    pool.deposit(evil, 10 * WAD, sender=investor)
    assert evil.reentered() and not evil.reentry_succeeded()
    assert not pool.is_nonce_used(evil, 12345)
    assert pool.balance_of(evil, investor) == 10 * WAD
    assert evil.balanceOf(pool) == 10 * WAD


def test_reentrant_token_on_withdraw(pool, evil, investor, cash, funded):
    pool.deposit(evil, 10 * WAD, sender=investor)
    # During the payout the token tries to move the pool's other escrow (the investor's cash
    # is not the token's, and the lock refuses any call) and to double-withdraw itself.
    evil.arm(pool, pool.withdraw.encode_input(evil, 10 * WAD), sender=investor)
    pool.withdraw(evil, 10 * WAD, sender=investor)
    assert evil.reentered() and not evil.reentry_succeeded()
    assert pool.balance_of(evil, investor) == 0
    assert evil.balanceOf(investor) == 100 * WAD
    assert evil.balanceOf(pool) == 0
    assert pool.balance_of(cash, investor) == CASH0
    assert cash.balanceOf(pool) == 2 * CASH0
