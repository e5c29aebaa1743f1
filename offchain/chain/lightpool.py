"""A small client for LightPool: typed orders, EIP-712 signing and the clearing, off chain.

The keeper and the UI build orders here, sign them (``eth_signTypedData_v4`` payloads for
wallets, or ``eth_account`` for local keys), and submit, clear and settle through an ape
contract handle. The auditor rebuilds each market-batch's book from ``OrderPlaced`` and
``OrderCancelled`` events and recomputes the price and every fill with the same integer
arithmetic as ``contracts/LightPool.vy`` and ``contracts/ClearingMath.vy``.

Units: quantities are fund units and prices are cash units per fund unit, both as 18-decimal
integers (``WAD``), exactly as on chain.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address
from pydantic import BaseModel, ConfigDict, Field, field_validator

from offchain.errors import InvalidInput

WAD = 10**18
MAX_BPS = 10_000
MAX_TICKS = 32
MAX_LEGS = 32
MAX_BASKETS = 64
# secp256k1 group order and the low-s bound the contract enforces.
CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
HALF_CURVE_ORDER = CURVE_ORDER // 2

STATUS_OPEN, STATUS_CLEARED, STATUS_VOID = 0, 1, 2
VIA_OWNER, VIA_SIGNED, VIA_MANDATE, VIA_SEALED = 0, 1, 2, 3

EIP712_NAME = "LightPool"
EIP712_VERSION = "1"
ORDER_TYPE = [
    {"name": "owner", "type": "address"},
    {"name": "market", "type": "address"},
    {"name": "is_buy", "type": "bool"},
    {"name": "quantity", "type": "uint256"},
    {"name": "limit_price", "type": "uint256"},
    {"name": "nonce", "type": "uint256"},
    {"name": "expiry", "type": "uint256"},
]
DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

_LEG_ABI = "(address,bool,uint256,uint256)"
_BASKET_ABI = f"(address,uint256,{_LEG_ABI}[])"


def _checksum(value: str, name: str) -> str:
    try:
        return to_checksum_address(value)
    except (ValueError, TypeError):
        raise InvalidInput(name, "a 20-byte hex address", value) from None


class Leg(BaseModel):
    """One order: ``quantity`` fund units of ``market`` at a limit of ``limit_price``."""

    model_config = ConfigDict(frozen=True)

    market: str
    is_buy: bool
    quantity: int = Field(ge=0)
    limit_price: int = Field(gt=0)

    @field_validator("market", mode="before")
    @classmethod
    def _market(cls, value: Any) -> str:
        return _checksum(str(value), "leg.market")

    def as_tuple(self) -> tuple[str, bool, int, int]:
        """The ABI tuple of ``struct Leg``."""
        return (self.market, self.is_buy, self.quantity, self.limit_price)

    def lock(self) -> int:
        """Escrow the leg locks: ceil(quantity x limit) cash for a buy, the units for a sell."""
        if self.is_buy:
            return -(-self.quantity * self.limit_price // WAD)
        return self.quantity


class Basket(BaseModel):
    """One owner's legs in one batch, as the contract hashes it."""

    model_config = ConfigDict(frozen=True)

    owner: str
    batch: int = Field(ge=0)
    legs: tuple[Leg, ...]

    @field_validator("owner", mode="before")
    @classmethod
    def _owner(cls, value: Any) -> str:
        return _checksum(str(value), "basket.owner")

    @field_validator("legs")
    @classmethod
    def _legs(cls, value: tuple[Leg, ...]) -> tuple[Leg, ...]:
        if not 1 <= len(value) <= MAX_LEGS:
            raise ValueError(f"expected 1..{MAX_LEGS} legs, got {len(value)}")
        return value

    def as_tuple(self) -> tuple[str, int, list[tuple[str, bool, int, int]]]:
        """The ABI tuple of ``struct Basket``."""
        return (self.owner, self.batch, [leg.as_tuple() for leg in self.legs])

    def hash(self) -> bytes:
        """keccak256(abi_encode(basket)), the one word the contract stores."""
        return keccak(encode([_BASKET_ABI], [self.as_tuple()]))

    def cancelled(self, index: int) -> Basket:
        """The basket as the contract stores it after leg ``index`` is cancelled."""
        legs = list(self.legs)
        legs[index] = legs[index].model_copy(update={"quantity": 0})
        return self.model_copy(update={"legs": tuple(legs)})


class SignedOrder(BaseModel):
    """An order the owner signs with EIP-712 for anyone to relay (``place_signed``)."""

    model_config = ConfigDict(frozen=True)

    owner: str
    market: str
    is_buy: bool
    quantity: int = Field(gt=0)
    limit_price: int = Field(gt=0)
    nonce: int = Field(ge=0)
    expiry: int = Field(ge=0, description="unix time after which it cannot be relayed")

    @field_validator("owner", "market", mode="before")
    @classmethod
    def _address(cls, value: Any) -> str:
        return _checksum(str(value), "order address")

    def as_tuple(self) -> tuple[str, str, bool, int, int, int, int]:
        """The ABI tuple of ``struct SignedOrder``."""
        return (self.owner, self.market, self.is_buy, self.quantity, self.limit_price,
                self.nonce, self.expiry)

    def leg(self) -> Leg:
        """The leg this order places."""
        return Leg(market=self.market, is_buy=self.is_buy, quantity=self.quantity,
                   limit_price=self.limit_price)


def typed_data(order: SignedOrder, chain_id: int, pool_address: str) -> dict[str, Any]:
    """The ``eth_signTypedData_v4`` payload for ``order`` on the pool at ``pool_address``.

    The domain binds the signature to the chain id and the contract address.
    """
    return {
        "types": {"EIP712Domain": DOMAIN_TYPE, "Order": ORDER_TYPE},
        "primaryType": "Order",
        "domain": {"name": EIP712_NAME, "version": EIP712_VERSION, "chainId": chain_id,
                   "verifyingContract": _checksum(pool_address, "pool_address")},
        "message": order.model_dump(),
    }


def order_digest(order: SignedOrder, chain_id: int, pool_address: str) -> bytes:
    """The 32-byte EIP-712 digest the owner signs (the contract's ``order_digest``)."""
    signable = encode_typed_data(full_message=typed_data(order, chain_id, pool_address))
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def sign_order(order: SignedOrder, private_key: bytes | str, chain_id: int,
               pool_address: str) -> bytes:
    """Sign ``order`` with a local key; returns the 65-byte (r, s, v) signature (low s).

    Raises ``InvalidInput`` if the key does not belong to ``order.owner``.
    """
    account = Account.from_key(private_key)
    if account.address != order.owner:
        raise InvalidInput("private_key", f"the key of {order.owner}", account.address)
    signed = Account.sign_typed_data(private_key,
                                     full_message=typed_data(order, chain_id, pool_address))
    r, s, v = signed.r, signed.s, signed.v
    if s > HALF_CURVE_ORDER:  # eth_account already normalizes; keep the contract's rule here
        s, v = CURVE_ORDER - s, 55 - v
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])


def new_salt() -> bytes:
    """32 random bytes for a sealed commitment."""
    return os.urandom(32)


def commitment(owner: str, batch: int, leg: Leg, salt: bytes) -> bytes:
    """keccak256(abi_encode(owner, batch, leg, salt)): what ``commit`` stores."""
    return keccak(encode(["address", "uint256", _LEG_ABI, "bytes32"],
                         [_checksum(owner, "owner"), batch, leg.as_tuple(), salt]))


@dataclass(frozen=True)
class Clearing:
    """A market-batch's result, as ``clearing_of`` stores it."""

    status: int
    price: int
    buy_num: int
    buy_den: int
    sell_num: int
    sell_den: int

    @classmethod
    def from_chain(cls, value: Sequence[int] | Any) -> Clearing:
        """From the tuple (or struct) ``clearing_of`` returns."""
        return cls(*(int(x) for x in tuple(value)))


def buy_fill(quantity: int, limit_price: int, clearing: Clearing) -> tuple[int, int]:
    """Units a buy receives (rounded down) and cash it pays (rounded up)."""
    if clearing.status != STATUS_CLEARED or limit_price < clearing.price:
        return 0, 0
    if limit_price > clearing.price:
        return quantity, -(-quantity * clearing.price // WAD)
    numerator = quantity * clearing.buy_num
    return (numerator // clearing.buy_den,
            -(-numerator * clearing.price // (clearing.buy_den * WAD)))


def sell_fill(quantity: int, limit_price: int, clearing: Clearing) -> tuple[int, int]:
    """Units a sell delivers (rounded up) and cash it receives (rounded down)."""
    if clearing.status != STATUS_CLEARED or limit_price > clearing.price:
        return 0, 0
    if limit_price < clearing.price:
        return quantity, quantity * clearing.price // WAD
    numerator = quantity * clearing.sell_num
    return (-(-numerator // clearing.sell_den),
            numerator * clearing.price // (clearing.sell_den * WAD))


def leg_fill(leg: Leg, clearing: Clearing) -> tuple[int, int]:
    """(units, cash) of one leg: received/paid for a buy, delivered/received for a sell."""
    if leg.quantity == 0:
        return 0, 0
    return (buy_fill if leg.is_buy else sell_fill)(leg.quantity, leg.limit_price, clearing)


@dataclass
class Book:
    """Aggregate open quantity per tick of one market-batch (what the contract stores)."""

    tick_spacing: int
    buys: dict[int, int] = field(default_factory=dict)
    sells: dict[int, int] = field(default_factory=dict)

    def add(self, leg: Leg, sign: int = 1) -> None:
        """Add (sign=1) or remove (sign=-1) a leg; drops ticks that become empty."""
        if leg.limit_price % self.tick_spacing:
            raise InvalidInput("leg.limit_price", f"a multiple of {self.tick_spacing}",
                               leg.limit_price)
        side = self.buys if leg.is_buy else self.sells
        tick = leg.limit_price // self.tick_spacing
        side[tick] = side.get(tick, 0) + sign * leg.quantity
        if side[tick] < 0:
            raise InvalidInput("leg.quantity", "no more than the open depth", leg.quantity)
        if side[tick] == 0:
            del side[tick]

    def hint(self) -> tuple[list[int], list[int]]:
        """The sorted used buy and sell ticks ``clear`` takes as its hint."""
        return sorted(self.buys), sorted(self.sells)

    @classmethod
    def from_events(cls, tick_spacing: int, placed: Iterable[Any],
                    cancelled: Iterable[Any] = ()) -> Book:
        """Rebuild one market-batch's book from its ``OrderPlaced``/``OrderCancelled`` logs.

        Each log needs ``is_buy``, ``quantity``, ``limit_price`` and ``market`` attributes
        (ape's ``ContractLog`` has them); the caller filters by market and batch.
        """
        book = cls(tick_spacing)
        for sign, logs in ((1, placed), (-1, cancelled)):
            for log in logs:
                book.add(Leg(market=log.market, is_buy=log.is_buy, quantity=log.quantity,
                             limit_price=log.limit_price), sign)
        return book


def basket_advance(legs: Sequence[Leg], free_cash: int) -> int:
    """Cash a basket needs advanced by its sells' issuers: its buys' locks beyond the
    owner's free cash (``_place``)."""
    return max(0, sum(leg.lock() for leg in legs if leg.is_buy) - free_cash)


def advance_allocation(legs: Sequence[Leg], advance: int) -> list[int]:
    """The advance each leg carries (``_leg_advance``): sells in leg order, each up to
    floor(quantity x limit); 0 for buys and for sells after the advance is covered. The
    sum is less than ``advance`` when the sells cannot cover it (the contract refuses)."""
    out = []
    remaining = advance
    for leg in legs:
        amount = 0 if leg.is_buy else min(remaining, leg.quantity * leg.limit_price // WAD)
        out.append(amount)
        remaining -= amount
    return out


def can_fund(leg: Leg, nav: int, fee_bps: int, redemption_capacity: int,
             is_alternative: bool) -> bool:
    """Whether a sell leg may carry an advance: its issuer redeems in LightPool, it is not
    a gated alternative, and its limit is at or below NAV x (1 - fee)."""
    return (not leg.is_buy and redemption_capacity > 0 and not is_alternative
            and leg.limit_price * MAX_BPS <= nav * (MAX_BPS - fee_bps))


def advance_repayment(leg: Leg, owed: int, units_sold: int, proceeds: int) -> tuple[int, int]:
    """(cash, units) a funding sell repays its issuer at settlement: the sale's proceeds
    first, the rest in unsold units at the leg's limit (rounded up, at most the unsold)."""
    if owed == 0:
        return 0, 0
    repaid = min(proceeds, owed)
    units = min(leg.quantity - units_sold, _ceil_div((owed - repaid) * WAD, leg.limit_price))
    return repaid, units


def issuer_quotes(nav: int, tick_spacing: int, fee_bps: int) -> tuple[int, int]:
    """The issuer's (redemption tick, creation tick): NAV x (1 - fee) rounded down and
    NAV x (1 + fee) rounded up to the grid."""
    redeem_tick = nav * (MAX_BPS - fee_bps) // MAX_BPS // tick_spacing
    create_tick = _ceil_div(_ceil_div(nav * (MAX_BPS + fee_bps), MAX_BPS), tick_spacing)
    return redeem_tick, create_tick


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def clearing_tick(buys: dict[int, int], sells: dict[int, int], redeem: tuple[int, int],
                  create: tuple[int, int], nav_tick: int) -> int:
    """The equilibrium tick nearest NAV (``ClearingMath.clearing_tick``).

    ``redeem``/``create`` are the issuer's (tick, capacity) on the buy and sell side.
    """
    buy_side = dict(buys)
    sell_side = dict(sells)
    if redeem[1]:
        buy_side[redeem[0]] = buy_side.get(redeem[0], 0) + redeem[1]
    if create[1]:
        sell_side[create[0]] = sell_side.get(create[0], 0) + create[1]
    total_buy = sum(buy_side.values())
    total_sell = sum(sell_side.values())
    low, high = 0, 2**256 - 1
    low_found = total_buy == 0
    buy_below = sell_below = 0
    for tick in sorted(set(buy_side) | set(sell_side)):
        buy_here, sell_here = buy_side.get(tick, 0), sell_side.get(tick, 0)
        buy_incl = total_buy - buy_below
        if not low_found and buy_incl - buy_here <= sell_below + sell_here:
            low, low_found = tick, True
        if total_sell > 0 and sell_below <= buy_incl:
            high = tick
        buy_below += buy_here
        sell_below += sell_here
    return min(max(nav_tick, low), high)


@dataclass(frozen=True)
class IssuerLiquidity:
    """The issuer's standing terms in one market at clearing time."""

    fee_bps: int = 0
    creation_capacity: int = 0
    redemption_capacity: int = 0
    reserve: int = 0  # the issuer's free cash escrow balance
    gate_remaining: int | None = None  # alternatives only


@dataclass(frozen=True)
class ClearingResult:
    """What ``clear`` records and logs, recomputed off chain."""

    clearing: Clearing
    volume: int
    created: int
    redeemed: int
    issuer_cash_in: int
    issuer_cash_out: int


def compute_clearing(book: Book, nav: int, issuer: IssuerLiquidity | None = None
                     ) -> ClearingResult:
    """Recompute ``LightPool.clear`` for a fresh-NAV market-batch, to the wei."""
    issuer = issuer or IssuerLiquidity()
    spacing = book.tick_spacing
    redeem_tick, create_tick = issuer_quotes(nav, spacing, issuer.fee_bps)
    redeem_cap = 0
    if redeem_tick > 0 and issuer.redemption_capacity > 0:
        redeem_cap = min(issuer.redemption_capacity,
                         issuer.reserve * WAD // (redeem_tick * spacing))
        if issuer.gate_remaining is not None:
            redeem_cap = min(redeem_cap, issuer.gate_remaining)
    create_cap = issuer.creation_capacity
    tick = clearing_tick(book.buys, book.sells, (redeem_tick, redeem_cap),
                         (create_tick, create_cap), (nav + spacing // 2) // spacing)
    buy_strict = sum(q for t, q in book.buys.items() if t > tick)
    buy_at = book.buys.get(tick, 0)
    sell_strict = sum(q for t, q in book.sells.items() if t < tick)
    sell_at = book.sells.get(tick, 0)
    if redeem_tick > tick:
        buy_strict += redeem_cap
    elif redeem_tick == tick:
        buy_at += redeem_cap
    if create_tick < tick:
        sell_strict += create_cap
    elif create_tick == tick:
        sell_at += create_cap
    volume = min(buy_strict + buy_at, sell_strict + sell_at)
    clearing = Clearing(
        status=STATUS_CLEARED, price=tick * spacing,
        buy_num=volume - buy_strict if buy_at else 0, buy_den=max(buy_at, 1),
        sell_num=volume - sell_strict if sell_at else 0, sell_den=max(sell_at, 1),
    )
    redeemed, cash_out = (buy_fill(redeem_cap, redeem_tick * spacing, clearing)
                          if redeem_cap else (0, 0))
    created, cash_in = (sell_fill(create_cap, create_tick * spacing, clearing)
                        if create_cap else (0, 0))
    return ClearingResult(clearing, volume, created, redeemed, cash_in, cash_out)


class LightPoolClient:
    """Submit, clear and settle through an ape contract handle of LightPool.

    Every call takes ``sender`` (an ape account) and passes ``tx_kwargs`` on (gas, etc.).
    """

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def place(self, legs: Sequence[Leg], sender: Any, **tx_kwargs: Any) -> Any:
        """Place the sender's own basket in the current batch."""
        return self.pool.place([leg.as_tuple() for leg in legs], sender=sender, **tx_kwargs)

    def place_for_many(self, baskets: Sequence[tuple[str, Sequence[Leg]]], sender: Any,
                       **tx_kwargs: Any) -> Any:
        """A keeper places (investor, legs) baskets under discretionary mandates."""
        if len(baskets) > MAX_BASKETS:
            raise InvalidInput("baskets", f"at most {MAX_BASKETS} per call", len(baskets))
        payload = [(inv, [leg.as_tuple() for leg in legs]) for inv, legs in baskets]
        return self.pool.place_for_many(payload, sender=sender, **tx_kwargs)

    def place_signed(self, order: SignedOrder, signature: bytes, sender: Any,
                     **tx_kwargs: Any) -> Any:
        """Relay a signed order."""
        return self.pool.place_signed(order.as_tuple(), signature, sender=sender, **tx_kwargs)

    def clear(self, market: str, batch: int, book: Book, sender: Any, **tx_kwargs: Any) -> Any:
        """Clear a market-batch with the book's tick hint."""
        buys, sells = book.hint()
        return self.pool.clear(market, batch, buys, sells, sender=sender, **tx_kwargs)

    def settle_many(self, baskets: Sequence[tuple[int, Basket]], sender: Any,
                    **tx_kwargs: Any) -> Any:
        """Push settlement of (basket id, basket) pairs."""
        if len(baskets) > MAX_BASKETS:
            raise InvalidInput("baskets", f"at most {MAX_BASKETS} per call", len(baskets))
        return self.pool.settle_many([(i, b.as_tuple()) for i, b in baskets], sender=sender,
                                     **tx_kwargs)

    def clearing(self, market: str, batch: int) -> Clearing:
        """The stored clearing of a market-batch."""
        return Clearing.from_chain(self.pool.clearing_of(market, batch))
