# pragma version ~=0.4.3
# pragma evm-version prague
# pragma optimize codesize
"""
@title ClearingMath
@custom:contract-name ClearingMath
@license GNU Affero General Public License v3.0 only
@notice The uniform-price arithmetic of LightPool's clearing, as a stateless contract:
        - `clearing_tick`: the equilibrium price tick nearest NAV, in one pass over the
          used ticks and the issuer's two quotes;
        - `solve`: that tick, the matched volume and the pro-rata fractions at it;
        - `order_digest` / `order_signer`: a signed order's EIP-712 digest under
          LightPool's domain separator, and its ECDSA signer.
        It lives apart from LightPool to keep LightPool under the EIP-170 code-size limit;
        it holds no state and no funds, so calling it is a pure function call.
@custom:security Pure functions only. The caller (LightPool) verifies the tick hint against
                 its stored depth before passing it here.
"""

from snekmate.utils import ecdsa
from snekmate.utils import message_hash_utils


# @dev Distinct price ticks per side per market-batch (equal to LightPool's bound).
MAX_TICKS: constant(uint256) = 32
# @dev EIP-712 type hash of a signed order (field order matches `SignedOrder`).
ORDER_TYPEHASH: constant(bytes32) = keccak256(
    "Order(address owner,address market,bool is_buy,uint256 quantity,uint256 limit_price,uint256 nonce,uint256 expiry)"
)
# @dev Candidates of one clearing: every used tick plus the issuer's two prices.
MAX_CANDIDATES: constant(uint256) = 2 * MAX_TICKS + 2


# @dev LightPool's EIP-712 signed order.
struct SignedOrder:
    owner: address
    market: address
    is_buy: bool
    quantity: uint256
    limit_price: uint256
    nonce: uint256
    expiry: uint256


@pure
@external
def clearing_tick(
    buy_ticks: DynArray[uint256, MAX_TICKS],
    buy_depth: DynArray[uint256, MAX_TICKS],
    sell_ticks: DynArray[uint256, MAX_TICKS],
    sell_depth: DynArray[uint256, MAX_TICKS],
    redeem_tick: uint256,
    redeem_cap: uint256,
    create_tick: uint256,
    create_cap: uint256,
    nav_tick: uint256,
) -> uint256:
    """
    @dev The clearing tick of one market-batch. A price p is an equilibrium if the buys
         strictly above it fit in the sells at or below it and the sells strictly below it
         fit in the buys at or above it; such prices form an interval [low, high] of the
         grid and each maximizes matched volume. Returns the point of it nearest NAV.
    @param buy_ticks Used buy ticks, strictly ascending.
    @param buy_depth Aggregate buy quantity per tick.
    @param sell_ticks Used sell ticks, strictly ascending.
    @param sell_depth Aggregate sell quantity per tick.
    @param redeem_tick The issuer's redemption (buy) tick.
    @param redeem_cap Units the issuer redeems at most (0: none).
    @param create_tick The issuer's creation (sell) tick.
    @param create_cap Units the issuer creates at most (0: none).
    @param nav_tick NAV rounded to the nearest tick.
    @return uint256 The clearing tick (price = tick x tick spacing).
    """
    return self._clearing_tick(
        buy_ticks, buy_depth, sell_ticks, sell_depth, redeem_tick, redeem_cap, create_tick,
        create_cap, nav_tick
    )


@pure
@internal
def _clearing_tick(
    buy_ticks: DynArray[uint256, MAX_TICKS],
    buy_depth: DynArray[uint256, MAX_TICKS],
    sell_ticks: DynArray[uint256, MAX_TICKS],
    sell_depth: DynArray[uint256, MAX_TICKS],
    redeem_tick: uint256,
    redeem_cap: uint256,
    create_tick: uint256,
    create_cap: uint256,
    nav_tick: uint256,
) -> uint256:
    # One ascending pass over every candidate tick. A price p is an equilibrium if buys
    # strictly above it fit in the sells at or below it, and sells strictly below it fit in
    # the buys at or above it; such prices form an interval [low, high] and all of them
    # maximize matched volume. The answer is the grid point of that interval nearest NAV.
    total_buy: uint256 = redeem_cap
    for quantity: uint256 in buy_depth:
        total_buy += quantity
    total_sell: uint256 = create_cap
    for quantity: uint256 in sell_depth:
        total_sell += quantity

    low: uint256 = 0
    high: uint256 = max_value(uint256)
    low_found: bool = total_buy == 0
    buy_below: uint256 = 0
    sell_below: uint256 = 0
    i: uint256 = 0
    j: uint256 = 0
    redeem_open: bool = redeem_cap > 0
    create_open: bool = create_cap > 0
    nb: uint256 = len(buy_ticks)
    ns: uint256 = len(sell_ticks)
    for _k: uint256 in range(MAX_CANDIDATES):
        tick: uint256 = max_value(uint256)
        if i < nb:
            tick = buy_ticks[i]
        if j < ns:
            tick = min(tick, sell_ticks[j])
        if redeem_open:
            tick = min(tick, redeem_tick)
        if create_open:
            tick = min(tick, create_tick)
        if tick == max_value(uint256):
            break
        buy_here: uint256 = 0
        sell_here: uint256 = 0
        if i < nb and buy_ticks[i] == tick:
            buy_here += buy_depth[i]
            i += 1
        if redeem_open and redeem_tick == tick:
            buy_here += redeem_cap
            redeem_open = False
        if j < ns and sell_ticks[j] == tick:
            sell_here += sell_depth[j]
            j += 1
        if create_open and create_tick == tick:
            sell_here += create_cap
            create_open = False
        buy_incl: uint256 = total_buy - buy_below
        if not low_found and buy_incl - buy_here <= sell_below + sell_here:
            low = tick
            low_found = True
        if total_sell > 0 and sell_below <= buy_incl:
            high = tick
        buy_below += buy_here
        sell_below += sell_here
    return min(max(nav_tick, low), high)


@pure
@external
def solve(
    buy_ticks: DynArray[uint256, MAX_TICKS],
    buy_depth: DynArray[uint256, MAX_TICKS],
    sell_ticks: DynArray[uint256, MAX_TICKS],
    sell_depth: DynArray[uint256, MAX_TICKS],
    redeem_tick: uint256,
    redeem_cap: uint256,
    create_tick: uint256,
    create_cap: uint256,
    nav_tick: uint256,
) -> (uint256, uint256, uint256, uint256, uint256, uint256):
    """
    @dev Clears one market-batch: the clearing tick (`clearing_tick`), the matched volume
         and the pro-rata fractions of the orders at the price. Buys strictly above the
         price and sells strictly below it fill completely; buys at it fill
         buy_num / buy_den of their quantity, sells at it sell_num / sell_den. The issuer's
         quotes take part as a buy of `redeem_cap` and a sell of `create_cap`.
    @param buy_ticks Used buy ticks, strictly ascending.
    @param buy_depth Aggregate buy quantity per tick.
    @param sell_ticks Used sell ticks, strictly ascending.
    @param sell_depth Aggregate sell quantity per tick.
    @param redeem_tick The issuer's redemption (buy) tick.
    @param redeem_cap Units the issuer redeems at most (0: none).
    @param create_tick The issuer's creation (sell) tick.
    @param create_cap Units the issuer creates at most (0: none).
    @param nav_tick NAV rounded to the nearest tick.
    @return uint256 The clearing tick.
    @return uint256 The matched volume (units).
    @return uint256 buy_num (0 when no buy is at the price).
    @return uint256 buy_den (>= 1).
    @return uint256 sell_num (0 when no sell is at the price).
    @return uint256 sell_den (>= 1).
    """
    price_tick: uint256 = self._clearing_tick(
        buy_ticks, buy_depth, sell_ticks, sell_depth, redeem_tick, redeem_cap, create_tick,
        create_cap, nav_tick
    )
    # Quantities strictly better than and at the price, per side, issuer included.
    buy_strict: uint256 = 0
    buy_at: uint256 = 0
    sell_strict: uint256 = 0
    sell_at: uint256 = 0
    if redeem_tick > price_tick:
        buy_strict = redeem_cap
    elif redeem_tick == price_tick:
        buy_at = redeem_cap
    if create_tick < price_tick:
        sell_strict = create_cap
    elif create_tick == price_tick:
        sell_at = create_cap
    for i: uint256 in range(len(buy_ticks), bound=MAX_TICKS):
        if buy_ticks[i] > price_tick:
            buy_strict += buy_depth[i]
        elif buy_ticks[i] == price_tick:
            buy_at += buy_depth[i]
    for i: uint256 in range(len(sell_ticks), bound=MAX_TICKS):
        if sell_ticks[i] < price_tick:
            sell_strict += sell_depth[i]
        elif sell_ticks[i] == price_tick:
            sell_at += sell_depth[i]
    volume: uint256 = min(buy_strict + buy_at, sell_strict + sell_at)
    buy_num: uint256 = 0
    sell_num: uint256 = 0
    if buy_at > 0:
        buy_num = volume - buy_strict
    if sell_at > 0:
        sell_num = volume - sell_strict
    return price_tick, volume, buy_num, max(buy_at, 1), sell_num, max(sell_at, 1)


@pure
@external
def order_digest(domain_separator: bytes32, order: SignedOrder) -> bytes32:
    """
    @dev The EIP-712 digest of a signed order under LightPool's domain separator (which
         binds it to the chain id and LightPool's address).
    @param domain_separator LightPool's EIP-712 domain separator.
    @param order The order.
    @return bytes32 The digest the owner signs.
    """
    return self._order_digest(domain_separator, order)


@pure
@external
def order_signer(
    domain_separator: bytes32, order: SignedOrder, signature: Bytes[65]
) -> address:
    """
    @dev The signer of an order (snekmate's ECDSA recovery: low s only, the zero address
         refused). LightPool checks the signature's length and low s first.
    @param domain_separator LightPool's EIP-712 domain separator.
    @param order The order.
    @param signature The 65-byte (r, s, v) signature.
    @return address The signer.
    """
    return ecdsa._recover_sig(self._order_digest(domain_separator, order), signature)


@pure
@internal
def _order_digest(domain_separator: bytes32, order: SignedOrder) -> bytes32:
    return message_hash_utils._to_typed_data_hash(
        domain_separator,
        keccak256(
            abi_encode(
                ORDER_TYPEHASH,
                order.owner,
                order.market,
                order.is_buy,
                order.quantity,
                order.limit_price,
                order.nonce,
                order.expiry,
            )
        ),
    )
