"""ClearingMath on its own: each external function against the off-chain client, and what it
refuses. LightPool calls it for the clearing (`solve`) and for signed orders (`order_digest`,
`order_signer`); `tests/lightpool/test_lightpool.py` covers those paths end to end."""

from __future__ import annotations

import ape
import pytest
from eth_abi import encode
from eth_utils import keccak

from offchain.chain import actors as roles
from offchain.chain.lightpool import (
    CURVE_ORDER,
    Book,
    IssuerLiquidity,
    Leg,
    SignedOrder,
    compute_clearing,
    issuer_quotes,
    order_digest,
    sign_order,
)
from offchain.universe import WAD

POOL = "0x00000000000000000000000000000000000C0FFE"  # any verifying contract
TICK = WAD // 100


def domain_separator(chain_id: int, pool: str) -> bytes:
    return keccak(encode(
        ["bytes32", "bytes32", "bytes32", "uint256", "address"],
        [keccak(b"EIP712Domain(string name,string version,uint256 chainId,"
                b"address verifyingContract)"),
         keccak(b"LightPool"), keccak(b"1"), chain_id, pool]))


def order(**changes) -> SignedOrder:
    base = SignedOrder(owner=roles.INVESTORS[0].address, market=POOL, is_buy=True,
                       quantity=3 * WAD, limit_price=100 * WAD, nonce=7, expiry=2**40)
    return base.model_copy(update=changes)


@pytest.fixture(scope="module")
def math(project, admin):
    return admin.deploy(project.ClearingMath)


@pytest.mark.parametrize("fee_bps,create,redeem", [(0, 0, 0), (100, 5 * WAD, 0),
                                                   (100, 0, 50 * WAD), (50, 8 * WAD, 8 * WAD)])
def test_solve_matches_the_client(math, fee_bps, create, redeem):
    book = Book(TICK)
    for is_buy, units, price in [(True, 10, 101), (True, 6, 100), (True, 3, 98),
                                 (False, 4, 99), (False, 8, 100), (False, 5, 102)]:
        book.add(Leg(market=POOL, is_buy=is_buy, quantity=units * WAD,
                     limit_price=price * WAD))
    nav = 100 * WAD
    liquidity = IssuerLiquidity(fee_bps=fee_bps, creation_capacity=create,
                                redemption_capacity=redeem, reserve=10**9 * WAD)
    expected = compute_clearing(book, nav, liquidity)
    redeem_tick, create_tick = issuer_quotes(nav, TICK, fee_bps)
    buys, sells = book.hint()
    result = math.solve(buys, [book.buys[t] for t in buys], sells, [book.sells[t] for t in sells],
                        redeem_tick, min(redeem, 10**9 * WAD * WAD // (redeem_tick * TICK)),
                        create_tick, create, nav // TICK)
    c = expected.clearing
    assert tuple(result) == (c.price // TICK, expected.volume, c.buy_num, c.buy_den, c.sell_num,
                             c.sell_den)
    assert result[0] == math.clearing_tick(
        buys, [book.buys[t] for t in buys], sells, [book.sells[t] for t in sells], redeem_tick,
        min(redeem, 10**9 * WAD * WAD // (redeem_tick * TICK)), create_tick, create, nav // TICK)


def test_solve_of_an_empty_book_is_nav(math):
    assert tuple(math.solve([], [], [], [], 0, 0, 0, 0, 100)) == (100, 0, 0, 1, 0, 1)


def test_solve_refuses_depth_shorter_than_ticks(math):
    with ape.reverts():
        math.solve([100, 101], [WAD], [], [], 0, 0, 0, 0, 100)


def test_order_digest_and_signer(math, chain):
    o = order()
    separator = domain_separator(chain.chain_id, POOL)
    assert math.order_digest(separator, o.as_tuple()) == order_digest(o, chain.chain_id, POOL)
    signature = sign_order(o, roles.INVESTORS[0].private_key, chain.chain_id, POOL)
    assert math.order_signer(separator, o.as_tuple(), signature) == o.owner
    # One field changed: a different digest, so a different (wrong) signer.
    assert math.order_signer(separator, order(quantity=4 * WAD).as_tuple(),
                             signature) != o.owner
    # Another domain (chain id) recovers someone else too.
    assert math.order_signer(domain_separator(chain.chain_id + 1, POOL), o.as_tuple(),
                             signature) != o.owner


def test_order_signer_refuses_high_s_and_garbage(math, chain):
    o = order()
    separator = domain_separator(chain.chain_id, POOL)
    signature = sign_order(o, roles.INVESTORS[0].private_key, chain.chain_id, POOL)
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    high = r + (CURVE_ORDER - s).to_bytes(32, "big") + bytes([55 - v])  # the malleable twin
    with ape.reverts("ecdsa: invalid signature `s` value"):
        math.order_signer(separator, o.as_tuple(), high)
    with ape.reverts("ecdsa: invalid signature"):
        math.order_signer(separator, o.as_tuple(), r + signature[32:64] + bytes([29]))
