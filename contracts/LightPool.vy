# pragma version ~=0.4.3
# pragma evm-version prague
# pragma nonreentrancy on
# pragma optimize codesize
"""
@title LightPool
@custom:contract-name LightPool
@license GNU Affero General Public License v3.0 only
@notice A fair frequent batch auction for tokenized funds, quoted in the cash token.
        It offers:
        - markets, one per listed FundToken, with a tick spacing, a minimum order size
          and a price band around NAV;
        - batches on a fixed cadence (set at deployment): every order of a batch is
          treated the same whenever it arrived; after the batch closes and its reveal
          window ends, anyone clears a market with one uniform price;
        - escrow balances: `deposit`, `withdraw` what no open order locks; fills move
          internal balances only;
        - baskets: one owner's orders of one batch stored as a single hash and settled in
          one call, pulled by the owner or pushed in bulk by anyone; a basket's buys may be
          funded by its own sells: the sold fund's issuer advances the sell's proceeds at
          its limit price and is repaid at settlement from the sale, or in unsold units;
        - three ways to order: by the owner (`place`), EIP-712 signed and relayed by anyone
          (`place_signed`), or by keepers under discretionary ProfileRegistry mandates, in
          bulk (`place_for_many`);
        - sealed orders: `commit` a hash with an escrow lock during the batch, `reveal` it
          after the close; an unrevealed commitment is `reclaim`ed with no fill;
        - the issuer's standing liquidity (creation at NAV x (1 + fee), redemption at
          NAV x (1 - fee), up to capacities and the gate) inside the same auction;
        - flat annual mandate fees accrued per second from escrow (`claim_fee`).
@custom:security Orders are aggregated per price tick; `clear` takes the sorted used ticks
                 as a hint and verifies it against the stored depth and tick counts, so
                 clearing costs O(ticks) whatever the number of orders. Buyers receive
                 floor(units) and pay ceil(cash); sellers deliver ceil(units) and receive
                 floor(cash): rounding stays in the pool (at most one wei per order and
                 token) and never creates value. Keepers can only move an investor's funds
                 into that investor's own orders: every withdrawal pays `msg.sender`.
                 All external functions are non-reentrant (file-level pragma).
"""

from ethereum.ercs import IERC20

from snekmate.auth import ownable
from snekmate.utils import eip712_domain_separator

initializes: ownable
initializes: eip712_domain_separator

# @dev The admin (owner) lists markets; `eip712Domain` lets wallets discover the domain.
exports: (
    ownable.owner,
    ownable.transfer_ownership,
    ownable.renounce_ownership,
    eip712_domain_separator.eip712Domain,
)


interface IFundToken:
    def nav() -> uint256: view
    def is_nav_stale() -> bool: view
    def issuer() -> address: view
    def kind() -> uint256: view
    def gate_remaining() -> uint256: view
    def mint(owner: address, amount: uint256): nonpayable
    def burn(amount: uint256): nonpayable


interface IClearingMath:
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
    ) -> (uint256, uint256, uint256, uint256, uint256, uint256): pure
    def order_digest(domain_separator: bytes32, order: SignedOrder) -> bytes32: pure
    def order_signer(
        domain_separator: bytes32, order: SignedOrder, signature: Bytes[65]
    ) -> address: pure


interface IProfileRegistry:
    def mandate_of(investor: address, keeper: address) -> Mandate: view
    def is_instrument_allowed(investor: address, keeper: address, token: address) -> bool: view


# @dev 18-decimal fixed-point base of quantities and prices.
WAD: constant(uint256) = 10**18
# @dev Basis-point base of fees, bands and deviations.
MAX_BPS: constant(uint256) = 10_000
# @dev An issuer's creation/redemption spread is at most 10%.
MAX_ISSUER_FEE_BPS: constant(uint256) = 1_000
# @dev Distinct price ticks per side per market-batch: bounds the cost of `clear`.
MAX_TICKS: constant(uint256) = 32
# @dev Orders (legs) in one basket.
MAX_LEGS: constant(uint256) = 32
# @dev Baskets in one bulk call (a 10,000-order batch fits many 30M-gas blocks).
MAX_BASKETS: constant(uint256) = 64
# @dev Seconds per fee year (365 days), the base of the flat annual fee.
YEAR: constant(uint256) = 365 * 86_400
# @dev Low 128 bits of a packed word.
LOW_128: constant(uint256) = 2**128 - 1
# @dev Upper bound of a low-s signature (secp256k1 n / 2).
HALF_CURVE_ORDER: constant(uint256) = (
    57_896_044_618_658_097_711_785_492_504_343_953_926_418_782_139_537_452_191_302_581_570_759_080_747_168
)
# @dev FundToken's ALTERNATIVE kind (flag value 8): its redemptions are gated.
KIND_ALTERNATIVE: constant(uint256) = 8

# @dev Clearing status values: not cleared yet, cleared at a price, void (stale NAV).
STATUS_OPEN: constant(uint8) = 0
STATUS_CLEARED: constant(uint8) = 1
STATUS_VOID: constant(uint8) = 2

# @dev How an order entered the book (logged so auditors can tell the paths apart).
VIA_OWNER: constant(uint8) = 0
VIA_SIGNED: constant(uint8) = 1
VIA_MANDATE: constant(uint8) = 2
VIA_SEALED: constant(uint8) = 3


# @dev The cash token all markets are quoted in.
cash: public(immutable(address))

# @dev ProfileRegistry holding mandates.
registry: public(immutable(IProfileRegistry))

# @dev The stateless clearing arithmetic and order-signature recovery (kept apart for the
# EIP-170 size limit).
clearing_math: public(immutable(IClearingMath))

# @dev Start of batch 0 (deployment time).
genesis: public(immutable(uint256))

# @dev Length of every batch in seconds.
batch_length: public(immutable(uint256))

# @dev Seconds after a batch closes during which sealed orders are revealed; the batch
# clears only after it.
reveal_period: public(immutable(uint256))


# @dev Mirrors ProfileRegistry's mandate mode.
flag MandateMode:
    ADVISORY
    DISCRETIONARY


# @dev Mirrors ProfileRegistry's `Mandate` (returned by `mandate_of`).
struct Mandate:
    mode: MandateMode
    max_turnover: uint256
    turnover_period: uint256
    max_deviation_bps: uint256
    annual_fee: uint256
    expiry: uint256
    granted_at: uint256
    epoch: uint256


# @dev A listed market. Prices are multiples of `tick_spacing` (cash units per fund unit,
# 18 decimals); limits lie within `price_band_bps` of NAV. The issuer stands in at
# NAV x (1 +/- issuer_fee_bps) for up to the capacities (units per batch).
struct Market:
    tick_spacing: uint256
    min_quantity: uint256
    price_band_bps: uint256
    issuer_fee_bps: uint256
    creation_capacity: uint256
    redemption_capacity: uint256


# @dev One order. `quantity` in fund units, `limit_price` in cash per unit (18 decimals).
struct Leg:
    market: address
    is_buy: bool
    quantity: uint256
    limit_price: uint256


# @dev One owner's orders in one batch. Stored as keccak256(abi_encode(basket)) only;
# callers re-supply it (from the OrderPlaced events) to cancel or settle.
struct Basket:
    owner: address
    batch: uint256
    legs: DynArray[Leg, MAX_LEGS]


# @dev A basket and its id, for bulk settlement.
struct BasketRef:
    id: uint256
    basket: Basket


# @dev A keeper's bulk entry: one investor's legs.
struct KeeperBasket:
    investor: address
    legs: DynArray[Leg, MAX_LEGS]


# @dev The EIP-712 signed order. It enters the batch current when relayed.
struct SignedOrder:
    owner: address
    market: address
    is_buy: bool
    quantity: uint256
    limit_price: uint256
    nonce: uint256
    expiry: uint256


# @dev The result of clearing one market-batch. Buys with limit > price fill fully, at
# the price `quantity * buy_num // buy_den`; sells mirror that with `sell_*`.
struct Clearing:
    status: uint8
    price: uint256
    buy_num: uint256
    buy_den: uint256
    sell_num: uint256
    sell_den: uint256


# @dev Listed markets by FundToken (tick_spacing == 0: not listed).
market_of: public(HashMap[address, Market])

# @dev Free escrow balance per token per owner (what no open order locks).
balance_of: public(HashMap[address, HashMap[address, uint256]])

# @dev keccak256(abi_encode(Basket)) per basket id; empty once settled.
basket_hash: public(HashMap[uint256, bytes32])

# @dev Number of baskets ever placed (the next id).
basket_count: public(uint256)

# @dev Cash the issuers of a basket's sold funds advanced to its buys (0: self-funded),
# allocated to its sell legs in leg order (see `_leg_advance`); cleared at settlement.
basket_advance: public(HashMap[uint256, uint256])

# @dev Aggregate open quantity per market, batch and key (tick * 2 + 1 for buys, + 0 for
# sells).
_depth: HashMap[address, HashMap[uint256, HashMap[uint256, uint256]]]

# @dev Distinct non-empty ticks per market-batch: buys in the low 128 bits, sells high.
_tick_counts: HashMap[address, HashMap[uint256, uint256]]

# @dev Clearing result per market and batch.
clearing_of: public(HashMap[address, HashMap[uint256, Clearing]])

# @dev Used or cancelled EIP-712 nonces: owner => word index => 256-bit bitmap.
nonce_bitmap: HashMap[address, HashMap[uint256, uint256]]

# @dev Sealed commitments: commitment => keccak256(owner, batch, lock_token, lock_amount).
_commit_record: HashMap[bytes32, bytes32]

# @dev Mandate turnover per (investor, keeper): period start (high 128 bits) and cash
# notional used in it (low 128 bits).
_turnover: HashMap[address, HashMap[address, uint256]]

# @dev Time up to which a mandate's flat fee is paid, per (investor, provider).
fee_paid_until: public(HashMap[address, HashMap[address, uint256]])


event MarketListed:
    market: indexed(address)
    tick_spacing: uint256
    min_quantity: uint256
    price_band_bps: uint256


event IssuerLiquiditySet:
    market: indexed(address)
    issuer: indexed(address)
    fee_bps: uint256
    creation_capacity: uint256
    redemption_capacity: uint256


event Deposited:
    owner: indexed(address)
    token: indexed(address)
    amount: uint256


event Withdrawn:
    owner: indexed(address)
    token: indexed(address)
    amount: uint256


event OrderPlaced:
    basket_id: indexed(uint256)
    owner: indexed(address)
    market: indexed(address)
    batch: uint256
    index: uint256
    is_buy: bool
    quantity: uint256
    limit_price: uint256
    via: uint8
    placed_by: address


event Advanced:
    basket_id: indexed(uint256)
    market: indexed(address)
    issuer: indexed(address)
    index: uint256
    amount: uint256


event AdvanceRepaid:
    basket_id: indexed(uint256)
    market: indexed(address)
    issuer: indexed(address)
    index: uint256
    cash: uint256
    units: uint256


event OrderCancelled:
    basket_id: indexed(uint256)
    owner: indexed(address)
    market: indexed(address)
    batch: uint256
    index: uint256
    is_buy: bool
    quantity: uint256
    limit_price: uint256


event NonceCancelled:
    owner: indexed(address)
    nonce: uint256


event OrderCommitted:
    commitment: indexed(bytes32)
    owner: indexed(address)
    batch: uint256
    lock_token: address
    lock_amount: uint256


event OrderRevealed:
    commitment: indexed(bytes32)
    basket_id: indexed(uint256)
    owner: indexed(address)
    batch: uint256


event CommitReclaimed:
    commitment: indexed(bytes32)
    owner: indexed(address)
    lock_token: address
    lock_amount: uint256


event BatchCleared:
    market: indexed(address)
    batch: indexed(uint256)
    price: uint256
    volume: uint256
    buy_num: uint256
    buy_den: uint256
    sell_num: uint256
    sell_den: uint256
    nav: uint256
    created: uint256
    redeemed: uint256


event BatchVoided:
    market: indexed(address)
    batch: indexed(uint256)
    nav_timestamp_stale: bool


event Filled:
    basket_id: indexed(uint256)
    owner: indexed(address)
    market: indexed(address)
    batch: uint256
    index: uint256
    is_buy: bool
    quantity: uint256
    filled: uint256
    cash: uint256


event IssuerFilled:
    market: indexed(address)
    batch: indexed(uint256)
    issuer: indexed(address)
    created: uint256
    redeemed: uint256
    cash_in: uint256
    cash_out: uint256


event FeeAccrued:
    investor: indexed(address)
    provider: indexed(address)
    amount: uint256
    paid_until: uint256


@deploy
def __init__(
    cash_: address,
    registry_: address,
    clearing_math_: address,
    batch_length_: uint256,
    reveal_period_: uint256,
):
    """
    @dev Deploys the pool. The deployer becomes the admin who lists markets.
    @param cash_ The cash token (a FundToken of kind CASH) every market is quoted in.
    @param registry_ ProfileRegistry with the mandates.
    @param clearing_math_ The ClearingMath contract.
    @param batch_length_ Seconds per batch (> 0).
    @param reveal_period_ Seconds after a close for revealing sealed orders (< batch length).
    """
    assert cash_ != empty(address), "lightpool: zero cash"
    assert registry_ != empty(address), "lightpool: zero registry"
    assert clearing_math_ != empty(address), "lightpool: zero clearing math"
    assert batch_length_ > 0, "lightpool: zero batch length"
    assert reveal_period_ < batch_length_, "lightpool: reveal period too long"
    ownable.__init__()
    eip712_domain_separator.__init__("LightPool", "1")
    cash = cash_
    registry = IProfileRegistry(registry_)
    clearing_math = IClearingMath(clearing_math_)
    genesis = block.timestamp
    batch_length = batch_length_
    reveal_period = reveal_period_


@external
def list_market(
    market: address, tick_spacing: uint256, min_quantity: uint256, price_band_bps: uint256
):
    """
    @dev Lists a FundToken. Admin only. LightPool must be allow-listed (and, for issuer
         liquidity, a minter) on the token.
    @param market The FundToken.
    @param tick_spacing Price grid in cash units per fund unit (18 decimals), > 0.
    @param min_quantity Smallest order in fund units (spam floor), > 0.
    @param price_band_bps Max distance of a limit price from NAV (1 .. 10_000 bps).
    """
    self._check_admin()
    assert market != empty(address) and market != cash, "lightpool: bad market"
    assert self.market_of[market].tick_spacing == 0, "lightpool: already listed"
    assert tick_spacing > 0, "lightpool: zero tick spacing"
    assert min_quantity > 0, "lightpool: zero min quantity"
    assert price_band_bps > 0 and price_band_bps <= MAX_BPS, "lightpool: bad price band"
    self.market_of[market] = Market(
        tick_spacing=tick_spacing,
        min_quantity=min_quantity,
        price_band_bps=price_band_bps,
        issuer_fee_bps=0,
        creation_capacity=0,
        redemption_capacity=0,
    )
    log MarketListed(
        market=market,
        tick_spacing=tick_spacing,
        min_quantity=min_quantity,
        price_band_bps=price_band_bps,
    )


@external
def set_issuer_liquidity(
    market: address, fee_bps: uint256, creation_capacity: uint256, redemption_capacity: uint256
):
    """
    @dev Sets the issuer's standing liquidity in its market. The FundToken's issuer only.
         Redemptions are paid from the issuer's cash escrow balance (its reserve).
    @param market The listed FundToken.
    @param fee_bps Creation/redemption spread around NAV in bps (<= 1_000).
    @param creation_capacity Max units created per batch (0: no creation).
    @param redemption_capacity Max units redeemed per batch (0: no redemption).
    """
    self._check_listed(market)
    assert msg.sender == staticcall IFundToken(market).issuer(), "lightpool: not the issuer"
    assert fee_bps <= MAX_ISSUER_FEE_BPS, "lightpool: fee too high"
    self.market_of[market].issuer_fee_bps = fee_bps
    self.market_of[market].creation_capacity = creation_capacity
    self.market_of[market].redemption_capacity = redemption_capacity
    log IssuerLiquiditySet(
        market=market,
        issuer=msg.sender,
        fee_bps=fee_bps,
        creation_capacity=creation_capacity,
        redemption_capacity=redemption_capacity,
    )


@external
def deposit(token: address, amount: uint256):
    """
    @dev Moves `amount` of `token` from the caller into their escrow balance.
    @param token The cash token or a listed FundToken.
    @param amount Units (18 decimals), > 0. Needs an ERC-20 allowance.
    """
    self._check_token(token)
    assert amount > 0, "lightpool: zero amount"
    # Effects before the interaction; a failed transfer reverts both.
    self.balance_of[token][msg.sender] += amount
    log Deposited(owner=msg.sender, token=token, amount=amount)
    assert extcall IERC20(token).transferFrom(msg.sender, self, amount, default_return_value=True), (
        "lightpool: transfer failed"
    )


@external
def withdraw(token: address, amount: uint256):
    """
    @dev Pays out `amount` of the caller's free escrow balance to the caller.
    @param token The cash token or a listed FundToken.
    @param amount Units (18 decimals), > 0, at most the free balance.
    """
    assert amount > 0, "lightpool: zero amount"
    self._debit(token, msg.sender, amount)
    log Withdrawn(owner=msg.sender, token=token, amount=amount)
    assert extcall IERC20(token).transfer(msg.sender, amount, default_return_value=True), (
        "lightpool: transfer failed"
    )


@external
def place(legs: DynArray[Leg, MAX_LEGS]) -> uint256:
    """
    @dev Places the caller's basket in the current batch, locking escrow: a buy locks
         ceil(quantity x limit) cash, a sell locks its units. Buys beyond the free cash are
         funded by the basket's sells, in leg order: each funding sell's issuer advances up
         to floor(quantity x limit) from its cash reserve. A funding sell must be of a
         fund the issuer redeems in LightPool (not an alternative) with its limit at or
         below the redemption price NAV x (1 - fee).
    @param legs The orders (1 .. 32).
    @return uint256 The basket id.
    """
    return self._place(msg.sender, legs, self._current_batch(), VIA_OWNER)


@external
def place_signed(order: SignedOrder, signature: Bytes[65]) -> uint256:
    """
    @dev Relays an order the owner signed with EIP-712 into the current batch. Anyone may
         relay; the nonce is spent so the signature cannot be replayed.
    @param order The signed order.
    @param signature 65-byte (r, s, v) signature with low s.
    @return uint256 The basket id.
    """
    return self._place_signed(order, signature)


@external
def place_for_many(baskets: DynArray[KeeperBasket, MAX_BASKETS]) -> DynArray[uint256, MAX_BASKETS]:
    """
    @dev A keeper places investors' baskets under their discretionary mandates, checked
         here: mandate active, every instrument allowed, limits within the allowed deviation
         from NAV, turnover (sum of quantity x limit) within the period's limit. One basket
         per investor, many investors per transaction.
    @param baskets Investors and their legs.
    @return DynArray The basket ids, in order.
    """
    batch: uint256 = self._current_batch()
    ids: DynArray[uint256, MAX_BASKETS] = []
    for entry: KeeperBasket in baskets:
        self._check_mandate(entry.investor, msg.sender, entry.legs)
        ids.append(self._place(entry.investor, entry.legs, batch, VIA_MANDATE))
    return ids


@external
def cancel(basket_id: uint256, basket: Basket, index: uint256):
    """
    @dev Cancels one leg of an open basket before its batch closes and unlocks its escrow.
         The owner, or a keeper holding an active discretionary mandate from the owner.
    @param basket_id The basket id.
    @param basket The basket as placed (or as left by earlier cancels).
    @param index The leg to cancel.
    """
    if msg.sender != basket.owner:
        mandate: Mandate = self._mandate(basket.owner, msg.sender)
        assert mandate.mode == MandateMode.DISCRETIONARY and mandate.expiry > block.timestamp, (
            "lightpool: access is denied"
        )
    self._check_basket(basket_id, basket)
    assert block.timestamp < self._close_time(basket.batch), "lightpool: batch closed"
    assert index < len(basket.legs), "lightpool: bad index"
    leg: Leg = basket.legs[index]
    assert leg.quantity > 0, "lightpool: already cancelled"
    # A funded basket's sells secure the issuers' advance until settlement.
    assert leg.is_buy or self.basket_advance[basket_id] == 0, "lightpool: sell funds buys"

    self._remove_depth(leg, basket.batch)
    if leg.is_buy:
        self.balance_of[cash][basket.owner] += self._ceil_div(leg.quantity * leg.limit_price, WAD)
    else:
        self.balance_of[leg.market][basket.owner] += leg.quantity
    updated: Basket = basket
    updated.legs[index].quantity = 0
    self.basket_hash[basket_id] = self._hash_basket(updated)
    log OrderCancelled(
        basket_id=basket_id,
        owner=basket.owner,
        market=leg.market,
        batch=basket.batch,
        index=index,
        is_buy=leg.is_buy,
        quantity=leg.quantity,
        limit_price=leg.limit_price,
    )


@external
def cancel_nonce(nonce: uint256):
    """
    @dev Spends one of the caller's EIP-712 nonces so a signed order using it can never be
         relayed.
    @param nonce The nonce.
    """
    self._use_nonce(msg.sender, nonce)
    log NonceCancelled(owner=msg.sender, nonce=nonce)


@external
def commit(commitment: bytes32, lock_token: address, lock_amount: uint256):
    """
    @dev Commits a sealed order in the current batch, locking escrow that must cover it.
         commitment = keccak256(abi_encode(owner, batch, leg, salt)). Only the lock (token
         and amount) is public until the reveal; over-locking hides the size.
    @param commitment The hash of the sealed order.
    @param lock_token The cash token (for a buy) or the market (for a sell).
    @param lock_amount Units locked (>= the order's need, excess returned at reveal).
    """
    self._check_token(lock_token)
    assert commitment != empty(bytes32), "lightpool: empty commitment"
    assert lock_amount > 0, "lightpool: zero amount"
    assert self._commit_record[commitment] == empty(bytes32), "lightpool: commitment exists"
    batch: uint256 = self._current_batch()
    self._debit(lock_token, msg.sender, lock_amount)
    self._commit_record[commitment] = keccak256(
        abi_encode(msg.sender, batch, lock_token, lock_amount)
    )
    log OrderCommitted(
        commitment=commitment,
        owner=msg.sender,
        batch=batch,
        lock_token=lock_token,
        lock_amount=lock_amount,
    )


@external
def reveal(
    owner: address,
    batch: uint256,
    leg: Leg,
    salt: bytes32,
    lock_token: address,
    lock_amount: uint256,
) -> uint256:
    """
    @dev Reveals a sealed order after its batch closed and before the reveal window ends;
         it joins the batch like any other order. Anyone holding the preimage may reveal.
    @param owner The committer.
    @param batch The batch of the commitment.
    @param leg The order.
    @param salt The secret salt.
    @param lock_token The committed lock token.
    @param lock_amount The committed lock amount.
    @return uint256 The basket id of the revealed order.
    """
    commitment: bytes32 = keccak256(abi_encode(owner, batch, leg, salt))
    self._check_commit(commitment, owner, batch, lock_token, lock_amount)
    close: uint256 = self._close_time(batch)
    assert block.timestamp >= close, "lightpool: batch not closed"
    assert block.timestamp < close + reveal_period, "lightpool: reveal window over"
    needed_token: address = leg.market
    needed: uint256 = leg.quantity
    if leg.is_buy:
        needed_token = cash
        needed = self._ceil_div(leg.quantity * leg.limit_price, WAD)
    assert lock_token == needed_token and lock_amount >= needed, (
        "lightpool: lock does not cover order"
    )
    self._commit_record[commitment] = empty(bytes32)
    # The lock returns to the free balance and `_place` locks exactly what the order needs.
    self.balance_of[lock_token][owner] += lock_amount
    legs: DynArray[Leg, MAX_LEGS] = [leg]
    basket_id: uint256 = self._place(owner, legs, batch, VIA_SEALED)
    log OrderRevealed(commitment=commitment, basket_id=basket_id, owner=owner, batch=batch)
    return basket_id


@external
def reclaim(commitment: bytes32, owner: address, batch: uint256, lock_token: address, lock_amount: uint256):
    """
    @dev Returns the lock of a commitment never revealed, once the reveal window is over.
         Anyone may call; the lock goes back to the owner's free balance. No fill.
    @param commitment The commitment.
    @param owner The committer.
    @param batch The batch of the commitment.
    @param lock_token The committed lock token.
    @param lock_amount The committed lock amount.
    """
    self._check_commit(commitment, owner, batch, lock_token, lock_amount)
    assert block.timestamp >= self._close_time(batch) + reveal_period, (
        "lightpool: reveal window open"
    )
    self._commit_record[commitment] = empty(bytes32)
    self.balance_of[lock_token][owner] += lock_amount
    log CommitReclaimed(
        commitment=commitment, owner=owner, lock_token=lock_token, lock_amount=lock_amount
    )


@external
def clear(
    market: address,
    batch: uint256,
    buy_ticks: DynArray[uint256, MAX_TICKS],
    sell_ticks: DynArray[uint256, MAX_TICKS],
):
    """
    @dev Clears one market-batch after its reveal window. Anyone may call. The hint lists
         the used buy and sell ticks in strictly ascending order; it is verified against the
         stored depth and tick counts. The price maximizes matched volume (every buy above it
         and every sell below it fills completely); among such prices the one closest to NAV.
         The issuer's creation and redemption take part as a sell and a buy at its prices
         and are settled here. If the NAV is stale the batch is void: no fills, escrow back.
    @param market The listed FundToken.
    @param batch The batch.
    @param buy_ticks Used buy ticks, ascending.
    @param sell_ticks Used sell ticks, ascending.
    """
    self._check_listed(market)
    assert self.clearing_of[market][batch].status == STATUS_OPEN, "lightpool: already cleared"
    assert block.timestamp >= self._close_time(batch) + reveal_period, (
        "lightpool: batch not closed"
    )
    token: IFundToken = IFundToken(market)
    if staticcall token.is_nav_stale():
        self.clearing_of[market][batch].status = STATUS_VOID
        log BatchVoided(market=market, batch=batch, nav_timestamp_stale=True)
        return

    counts: uint256 = self._tick_counts[market][batch]
    assert len(buy_ticks) == counts & LOW_128 and len(sell_ticks) == counts >> 128, (
        "lightpool: bad tick hint"
    )
    buy_depth: DynArray[uint256, MAX_TICKS] = self._read_depth(market, batch, buy_ticks, 1)
    sell_depth: DynArray[uint256, MAX_TICKS] = self._read_depth(market, batch, sell_ticks, 0)

    m: Market = self.market_of[market]
    nav: uint256 = staticcall token.nav()
    issuer: address = staticcall token.issuer()
    # The issuer's quotes, on the grid and never better than NAV +/- fee for investors.
    redeem_tick: uint256 = nav * (MAX_BPS - m.issuer_fee_bps) // MAX_BPS // m.tick_spacing
    create_tick: uint256 = self._ceil_div(
        self._ceil_div(nav * (MAX_BPS + m.issuer_fee_bps), MAX_BPS), m.tick_spacing
    )
    redeem_cap: uint256 = 0
    if redeem_tick > 0 and m.redemption_capacity > 0:
        redeem_cap = min(
            m.redemption_capacity,
            self.balance_of[cash][issuer] * WAD // (redeem_tick * m.tick_spacing),
        )
        if staticcall token.kind() == KIND_ALTERNATIVE:
            redeem_cap = min(redeem_cap, staticcall token.gate_remaining())
    create_cap: uint256 = m.creation_capacity

    price_tick: uint256 = 0
    volume: uint256 = 0
    buy_num: uint256 = 0
    buy_den: uint256 = 0
    sell_num: uint256 = 0
    sell_den: uint256 = 0
    price_tick, volume, buy_num, buy_den, sell_num, sell_den = staticcall clearing_math.solve(
        buy_ticks, buy_depth, sell_ticks, sell_depth, redeem_tick, redeem_cap, create_tick,
        create_cap, (nav + m.tick_spacing // 2) // m.tick_spacing
    )
    record: Clearing = Clearing(
        status=STATUS_CLEARED,
        price=price_tick * m.tick_spacing,
        buy_num=buy_num,
        buy_den=buy_den,
        sell_num=sell_num,
        sell_den=sell_den,
    )
    self.clearing_of[market][batch] = record

    # The issuer's side, settled now: redemption pays cash from its reserve and burns the
    # units the sellers delivered; creation mints units and credits the issuer's cash.
    redeemed: uint256 = 0
    cash_out: uint256 = 0
    created: uint256 = 0
    cash_in: uint256 = 0
    if redeem_cap > 0:
        redeemed, cash_out = self._buy_fill(redeem_cap, redeem_tick * m.tick_spacing, record)
    if create_cap > 0:
        created, cash_in = self._sell_fill(create_cap, create_tick * m.tick_spacing, record)
    self.balance_of[cash][issuer] = self.balance_of[cash][issuer] + cash_in - cash_out
    log BatchCleared(
        market=market,
        batch=batch,
        price=record.price,
        volume=volume,
        buy_num=record.buy_num,
        buy_den=record.buy_den,
        sell_num=record.sell_num,
        sell_den=record.sell_den,
        nav=nav,
        created=created,
        redeemed=redeemed,
    )
    if created > 0 or redeemed > 0:
        log IssuerFilled(
            market=market,
            batch=batch,
            issuer=issuer,
            created=created,
            redeemed=redeemed,
            cash_in=cash_in,
            cash_out=cash_out,
        )
    # Interactions last.
    if created > 0:
        extcall token.mint(self, created)
    if redeemed > 0:
        extcall token.burn(redeemed)


@external
def settle(basket_id: uint256, basket: Basket):
    """
    @dev Settles a basket whose markets have all cleared (or were voided): credits fills and
         unlocks the rest to the owner's free balances. Anyone may call (pull or push).
    @param basket_id The basket id.
    @param basket The basket as placed (or as left by cancels).
    """
    self._settle(basket_id, basket)


@external
def settle_many(refs: DynArray[BasketRef, MAX_BASKETS]):
    """
    @dev Bulk `settle`, for keepers pushing settlement.
    @param refs Basket ids and baskets.
    """
    for ref: BasketRef in refs:
        self._settle(ref.id, ref.basket)


@external
def claim_fee(investor: address) -> uint256:
    """
    @dev The provider (caller) collects the flat annual fee of its mandate from `investor`
         accrued per second since it was last paid (from the grant, up to expiry or now),
         into the provider's cash escrow balance. If the investor's free cash is short, the
         part paid covers whole seconds only and the rest stays due. Never more than declared.
    @param investor The investor who granted the mandate.
    @return uint256 Cash units paid.
    """
    mandate: Mandate = self._mandate(investor, msg.sender)
    assert mandate.expiry != 0, "lightpool: no mandate"
    assert mandate.annual_fee > 0, "lightpool: no fee"
    start: uint256 = max(self.fee_paid_until[investor][msg.sender], mandate.granted_at)
    end: uint256 = min(block.timestamp, mandate.expiry)
    assert end > start, "lightpool: nothing accrued"
    due: uint256 = mandate.annual_fee * (end - start) // YEAR
    available: uint256 = self.balance_of[cash][investor]
    paid: uint256 = due
    paid_until: uint256 = end
    if due > available:
        seconds: uint256 = available * YEAR // mandate.annual_fee
        paid = mandate.annual_fee * seconds // YEAR
        paid_until = start + seconds
    self.fee_paid_until[investor][msg.sender] = paid_until
    self.balance_of[cash][investor] -= paid
    self.balance_of[cash][msg.sender] += paid
    log FeeAccrued(investor=investor, provider=msg.sender, amount=paid, paid_until=paid_until)
    return paid


@view
@external
def current_batch() -> uint256:
    """
    @dev The batch new orders join now.
    @return uint256 Batch index.
    """
    return self._current_batch()


@view
@external
def batch_close(batch: uint256) -> uint256:
    """
    @dev When a batch closes (reveals run to close + reveal_period, then it may clear).
    @param batch Batch index.
    @return uint256 Unix time.
    """
    return self._close_time(batch)


@view
@external
def depth(market: address, batch: uint256, tick: uint256, is_buy: bool) -> uint256:
    """
    @dev Aggregate open quantity at a tick (price = tick x tick_spacing).
    @param market The FundToken.
    @param batch Batch index.
    @param tick The tick.
    @param is_buy Side.
    @return uint256 Fund units.
    """
    return self._depth[market][batch][tick * 2 + convert(is_buy, uint256)]


@view
@external
def tick_counts(market: address, batch: uint256) -> (uint256, uint256):
    """
    @dev Distinct non-empty ticks of a market-batch.
    @param market The FundToken.
    @param batch Batch index.
    @return uint256 Buy ticks.
    @return uint256 Sell ticks.
    """
    counts: uint256 = self._tick_counts[market][batch]
    return counts & LOW_128, counts >> 128


@view
@external
def is_nonce_used(owner: address, nonce: uint256) -> bool:
    """
    @dev Whether a signed-order nonce is spent (relayed or cancelled).
    @param owner The signer.
    @param nonce The nonce.
    @return bool True if spent.
    """
    return self.nonce_bitmap[owner][nonce >> 8] & (1 << (nonce & 255)) != 0


@view
@external
def order_digest(order: SignedOrder) -> bytes32:
    """
    @dev The EIP-712 digest an owner signs for `order` (bound to chain id and this address).
    @param order The order.
    @return bytes32 The digest.
    """
    return staticcall clearing_math.order_digest(eip712_domain_separator._domain_separator_v4(), order)


@view
@external
def commitment_exists(commitment: bytes32) -> bool:
    """
    @dev Whether a sealed commitment is pending (neither revealed nor reclaimed).
    @param commitment The commitment.
    @return bool True if pending.
    """
    return self._commit_record[commitment] != empty(bytes32)


@view
@external
def turnover_used(investor: address, keeper: address) -> (uint256, uint256):
    """
    @dev The mandate turnover recorded for (investor, keeper).
    @param investor The investor.
    @param keeper The keeper.
    @return uint256 Start of the period it belongs to.
    @return uint256 Cash notional used in that period.
    """
    word: uint256 = self._turnover[investor][keeper]
    return word >> 128, word & LOW_128


@pure
@internal
def _hash_basket(basket: Basket) -> bytes32:
    return keccak256(abi_encode(basket))


@view
@internal
def _check_basket(basket_id: uint256, basket: Basket):
    assert self.basket_hash[basket_id] == self._hash_basket(basket), "lightpool: unknown basket"


@view
@internal
def _mandate(investor: address, keeper: address) -> Mandate:
    return staticcall registry.mandate_of(investor, keeper)


@view
@internal
def _current_batch() -> uint256:
    return (block.timestamp - genesis) // batch_length


@view
@internal
def _close_time(batch: uint256) -> uint256:
    return genesis + (batch + 1) * batch_length


@view
@internal
def _check_admin():
    assert msg.sender == ownable.owner, "lightpool: access is denied"


@view
@internal
def _check_listed(market: address):
    assert self.market_of[market].tick_spacing != 0, "lightpool: unknown market"


@view
@internal
def _check_token(token: address):
    assert token == cash or self.market_of[token].tick_spacing != 0, "lightpool: unknown token"


@internal
def _debit(token: address, owner: address, amount: uint256):
    assert self.balance_of[token][owner] >= amount, "lightpool: insufficient balance"
    self.balance_of[token][owner] -= amount


@view
@internal
def _check_commit(
    commitment: bytes32, owner: address, batch: uint256, lock_token: address, lock_amount: uint256
):
    assert self._commit_record[commitment] == keccak256(
        abi_encode(owner, batch, lock_token, lock_amount)
    ), "lightpool: unknown commitment"


@pure
@internal
def _ceil_div(a: uint256, b: uint256) -> uint256:
    return (a + b - 1) // b


@internal
def _place(owner: address, legs: DynArray[Leg, MAX_LEGS], batch: uint256, via: uint8) -> uint256:
    assert len(legs) > 0, "lightpool: empty basket"
    cash_needed: uint256 = 0
    basket_id: uint256 = self.basket_count
    index: uint256 = 0
    for leg: Leg in legs:
        m: Market = self.market_of[leg.market]
        assert m.tick_spacing != 0, "lightpool: unknown market"
        assert leg.quantity >= m.min_quantity, "lightpool: below min size"
        assert leg.limit_price > 0 and leg.limit_price % m.tick_spacing == 0, (
            "lightpool: price off tick"
        )
        token: IFundToken = IFundToken(leg.market)
        assert not staticcall token.is_nav_stale(), "lightpool: stale nav"
        nav: uint256 = staticcall token.nav()
        gap: uint256 = max(leg.limit_price, nav) - min(leg.limit_price, nav)
        assert gap * MAX_BPS <= nav * m.price_band_bps, "lightpool: price outside band"
        if leg.is_buy:
            cash_needed += self._ceil_div(leg.quantity * leg.limit_price, WAD)
        else:
            self._debit(leg.market, owner, leg.quantity)
        self._add_depth(leg, batch, m.tick_spacing)
        log OrderPlaced(
            basket_id=basket_id,
            owner=owner,
            market=leg.market,
            batch=batch,
            index=index,
            is_buy=leg.is_buy,
            quantity=leg.quantity,
            limit_price=leg.limit_price,
            via=via,
            placed_by=msg.sender,
        )
        index += 1
    if cash_needed > 0:
        free: uint256 = self.balance_of[cash][owner]
        # The owner's cash is locked first: an issuer never advances to itself what it
        # spends.
        self.balance_of[cash][owner] = free - min(free, cash_needed)
        if cash_needed > free:
            self._advance(basket_id, legs, cash_needed - free)
    self.basket_count = basket_id + 1
    self.basket_hash[basket_id] = self._hash_basket(Basket(owner=owner, batch=batch, legs=legs))
    return basket_id


@pure
@internal
def _leg_advance(leg: Leg, remaining: uint256) -> uint256:
    # The part of a basket's advance carried by this leg: sells in leg order, each up to
    # its proceeds at its limit. Placement and settlement allocate identically.
    if leg.is_buy:
        return 0
    return min(remaining, leg.quantity * leg.limit_price // WAD)


@internal
def _advance(basket_id: uint256, legs: DynArray[Leg, MAX_LEGS], advance: uint256):
    remaining: uint256 = advance
    for index: uint256 in range(len(legs), bound=MAX_LEGS):
        leg: Leg = legs[index]
        amount: uint256 = self._leg_advance(leg, remaining)
        if amount > 0:
            token: IFundToken = IFundToken(leg.market)
            assert (
                self.market_of[leg.market].redemption_capacity > 0
                and staticcall token.kind() != KIND_ALTERNATIVE
                and leg.limit_price * MAX_BPS
                <= staticcall token.nav() * (MAX_BPS - self.market_of[leg.market].issuer_fee_bps)
            ), "lightpool: sell cannot fund buys"
            issuer: address = staticcall token.issuer()
            assert self.balance_of[cash][issuer] >= amount, "lightpool: issuer reserve short"
            self.balance_of[cash][issuer] -= amount
            remaining -= amount
            log Advanced(
                basket_id=basket_id, market=leg.market, issuer=issuer, index=index, amount=amount
            )
    assert remaining == 0, "lightpool: insufficient balance"
    self.basket_advance[basket_id] = advance


@internal
def _add_depth(leg: Leg, batch: uint256, tick_spacing: uint256):
    key: uint256 = leg.limit_price // tick_spacing * 2 + convert(leg.is_buy, uint256)
    before: uint256 = self._depth[leg.market][batch][key]
    self._depth[leg.market][batch][key] = before + leg.quantity
    if before == 0:
        counts: uint256 = self._tick_counts[leg.market][batch]
        if leg.is_buy:
            assert counts & LOW_128 < MAX_TICKS, "lightpool: too many ticks"
            counts += 1
        else:
            assert counts >> 128 < MAX_TICKS, "lightpool: too many ticks"
            counts += 1 << 128
        self._tick_counts[leg.market][batch] = counts


@internal
def _remove_depth(leg: Leg, batch: uint256):
    tick_spacing: uint256 = self.market_of[leg.market].tick_spacing
    key: uint256 = leg.limit_price // tick_spacing * 2 + convert(leg.is_buy, uint256)
    after: uint256 = self._depth[leg.market][batch][key] - leg.quantity
    self._depth[leg.market][batch][key] = after
    if after == 0:
        if leg.is_buy:
            self._tick_counts[leg.market][batch] -= 1
        else:
            self._tick_counts[leg.market][batch] -= 1 << 128


@internal
def _check_mandate(investor: address, keeper: address, legs: DynArray[Leg, MAX_LEGS]):
    mandate: Mandate = self._mandate(investor, keeper)
    assert mandate.expiry > block.timestamp, "lightpool: mandate inactive"
    assert mandate.mode == MandateMode.DISCRETIONARY, "lightpool: mandate not discretionary"
    notional: uint256 = 0
    for leg: Leg in legs:
        assert staticcall registry.is_instrument_allowed(investor, keeper, leg.market), (
            "lightpool: instrument not allowed"
        )
        nav: uint256 = staticcall IFundToken(leg.market).nav()
        gap: uint256 = max(leg.limit_price, nav) - min(leg.limit_price, nav)
        assert gap * MAX_BPS <= nav * mandate.max_deviation_bps, "lightpool: price deviation"
        notional += self._ceil_div(leg.quantity * leg.limit_price, WAD)
    period_start: uint256 = mandate.granted_at + (
        block.timestamp - mandate.granted_at
    ) // mandate.turnover_period * mandate.turnover_period
    word: uint256 = self._turnover[investor][keeper]
    used: uint256 = 0
    if word >> 128 == period_start:
        used = word & LOW_128
    used += notional
    assert used <= mandate.max_turnover, "lightpool: turnover limit"
    self._turnover[investor][keeper] = (period_start << 128) | used


@internal
def _use_nonce(owner: address, nonce: uint256):
    bit: uint256 = 1 << (nonce & 255)
    word: uint256 = self.nonce_bitmap[owner][nonce >> 8]
    assert word & bit == 0, "lightpool: nonce used"
    self.nonce_bitmap[owner][nonce >> 8] = word | bit


@internal
def _place_signed(order: SignedOrder, signature: Bytes[65]) -> uint256:
    assert block.timestamp <= order.expiry, "lightpool: order expired"
    assert len(signature) == 65, "lightpool: bad signature"
    s: uint256 = convert(slice(signature, 32, 32), uint256)
    assert s <= HALF_CURVE_ORDER, "lightpool: high s"
    signer: address = staticcall clearing_math.order_signer(
        eip712_domain_separator._domain_separator_v4(), order, signature
    )
    assert signer == order.owner and signer != empty(address), "lightpool: bad signature"
    self._use_nonce(order.owner, order.nonce)
    legs: DynArray[Leg, MAX_LEGS] = [
        Leg(
            market=order.market,
            is_buy=order.is_buy,
            quantity=order.quantity,
            limit_price=order.limit_price,
        )
    ]
    return self._place(order.owner, legs, self._current_batch(), VIA_SIGNED)


@view
@internal
def _read_depth(
    market: address, batch: uint256, ticks: DynArray[uint256, MAX_TICKS], side: uint256
) -> DynArray[uint256, MAX_TICKS]:
    result: DynArray[uint256, MAX_TICKS] = []
    previous: uint256 = 0
    for i: uint256 in range(len(ticks), bound=MAX_TICKS):
        tick: uint256 = ticks[i]
        assert i == 0 or tick > previous, "lightpool: bad tick hint"
        quantity: uint256 = self._depth[market][batch][tick * 2 + side]
        assert quantity > 0, "lightpool: bad tick hint"
        result.append(quantity)
        previous = tick
    return result


@pure
@internal
def _buy_fill(quantity: uint256, limit_price: uint256, record: Clearing) -> (uint256, uint256):
    # Units received (floor) and cash paid (ceil) by a buy.
    if record.status != STATUS_CLEARED or limit_price < record.price:
        return 0, 0
    if limit_price > record.price:
        return quantity, (quantity * record.price + WAD - 1) // WAD
    numerator: uint256 = quantity * record.buy_num
    denominator: uint256 = record.buy_den * WAD
    return numerator // record.buy_den, (numerator * record.price + denominator - 1) // denominator


@pure
@internal
def _sell_fill(quantity: uint256, limit_price: uint256, record: Clearing) -> (uint256, uint256):
    # Units delivered (ceil) and cash received (floor) by a sell.
    if record.status != STATUS_CLEARED or limit_price > record.price:
        return 0, 0
    if limit_price < record.price:
        return quantity, quantity * record.price // WAD
    numerator: uint256 = quantity * record.sell_num
    return (numerator + record.sell_den - 1) // record.sell_den, (
        numerator * record.price // (record.sell_den * WAD)
    )


@internal
def _settle(basket_id: uint256, basket: Basket):
    self._check_basket(basket_id, basket)
    self.basket_hash[basket_id] = empty(bytes32)
    advance: uint256 = self.basket_advance[basket_id]
    self.basket_advance[basket_id] = 0
    cash_credit: uint256 = 0
    index: uint256 = 0
    for leg: Leg in basket.legs:
        if leg.quantity == 0:
            index += 1
            continue
        record: Clearing = self.clearing_of[leg.market][basket.batch]
        assert record.status != STATUS_OPEN, "lightpool: batch not cleared"
        filled: uint256 = 0
        amount: uint256 = 0
        if leg.is_buy:
            filled, amount = self._buy_fill(leg.quantity, leg.limit_price, record)
            cash_credit += self._ceil_div(leg.quantity * leg.limit_price, WAD) - amount
            if filled > 0:
                self.balance_of[leg.market][basket.owner] += filled
        else:
            filled, amount = self._sell_fill(leg.quantity, leg.limit_price, record)
            unsold: uint256 = leg.quantity - filled
            cash_credit += amount
            owed: uint256 = self._leg_advance(leg, advance)
            if owed > 0:
                # The issuer's advance is repaid from the sale first, then in unsold units
                # at the leg's limit (units rounded up, never beyond the unsold units).
                advance -= owed
                repaid: uint256 = min(amount, owed)
                units: uint256 = min(unsold, self._ceil_div((owed - repaid) * WAD, leg.limit_price))
                issuer: address = staticcall IFundToken(leg.market).issuer()
                self.balance_of[cash][issuer] += repaid
                self.balance_of[leg.market][issuer] += units
                cash_credit -= repaid
                unsold -= units
                log AdvanceRepaid(
                    basket_id=basket_id,
                    market=leg.market,
                    issuer=issuer,
                    index=index,
                    cash=repaid,
                    units=units,
                )
            if unsold > 0:
                self.balance_of[leg.market][basket.owner] += unsold
        log Filled(
            basket_id=basket_id,
            owner=basket.owner,
            market=leg.market,
            batch=basket.batch,
            index=index,
            is_buy=leg.is_buy,
            quantity=leg.quantity,
            filled=filled,
            cash=amount,
        )
        index += 1
    if cash_credit > 0:
        self.balance_of[cash][basket.owner] += cash_credit
