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
        - `split`: the quantities strictly better than and at a price.
        It lives apart from LightPool to keep LightPool under the EIP-170 code-size limit;
        it holds no state and no funds, so calling it is a pure function call.
@custom:security Pure functions only. The caller (LightPool) verifies the tick hint against
                 its stored depth before passing it here.
"""

# @dev Distinct price ticks per side per market-batch (equal to LightPool's bound).
MAX_TICKS: constant(uint256) = 32
# @dev Candidates of one clearing: every used tick plus the issuer's two prices.
MAX_CANDIDATES: constant(uint256) = 2 * MAX_TICKS + 2


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
@internal
def _split_buys(
    ticks: DynArray[uint256, MAX_TICKS], depth: DynArray[uint256, MAX_TICKS], price_tick: uint256
) -> (uint256, uint256):
    strict: uint256 = 0
    at: uint256 = 0
    for i: uint256 in range(len(ticks), bound=MAX_TICKS):
        if ticks[i] > price_tick:
            strict += depth[i]
        elif ticks[i] == price_tick:
            at += depth[i]
    return strict, at


@pure
@internal
def _split_sells(
    ticks: DynArray[uint256, MAX_TICKS], depth: DynArray[uint256, MAX_TICKS], price_tick: uint256
) -> (uint256, uint256):
    strict: uint256 = 0
    at: uint256 = 0
    for i: uint256 in range(len(ticks), bound=MAX_TICKS):
        if ticks[i] < price_tick:
            strict += depth[i]
        elif ticks[i] == price_tick:
            at += depth[i]
    return strict, at


@pure
@external
def split(
    buy_ticks: DynArray[uint256, MAX_TICKS],
    buy_depth: DynArray[uint256, MAX_TICKS],
    sell_ticks: DynArray[uint256, MAX_TICKS],
    sell_depth: DynArray[uint256, MAX_TICKS],
    price_tick: uint256,
) -> (uint256, uint256, uint256, uint256):
    """
    @dev Splits the book at a price into what is strictly better than it and what is at it.
    @param buy_ticks Used buy ticks.
    @param buy_depth Aggregate buy quantity per tick.
    @param sell_ticks Used sell ticks.
    @param sell_depth Aggregate sell quantity per tick.
    @param price_tick The clearing tick.
    @return uint256 Buys above the price.
    @return uint256 Buys at the price.
    @return uint256 Sells below the price.
    @return uint256 Sells at the price.
    """
    buy_strict: uint256 = 0
    buy_at: uint256 = 0
    sell_strict: uint256 = 0
    sell_at: uint256 = 0
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
    return buy_strict, buy_at, sell_strict, sell_at
