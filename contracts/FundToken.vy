# pragma version ~=0.4.3
# pragma evm-version prague
"""
@title FundToken
@custom:contract-name FundToken
@license GNU Affero General Public License v3.0 only
@notice One deployment per instrument: the cash token, an ETF, a mutual fund or an
        alternative fund. It offers:
        - ERC-20 with EIP-2612 `permit` (snekmate `erc20`, 18 decimals);
        - kind, asset class and issuer;
        - mint and burn by the issuer or by a primary market it authorises (LightPool
          creates and redeems units there at NAV +/- a fee);
        - NAV per unit (cash units, 18 decimals) with a timestamp and a maximum age, and
          `is_nav_stale` so nobody trades against an old price;
        - for alternatives, liquidity terms: a redemption window and a gate (max share
          of supply redeemable per window), with `gate_remaining` readable;
        - transfers only between eligible holders (verified in ProfileRegistry, or
          contracts the issuer allow-lists such as LightPool);
        - an issuer agent who can freeze an address and recover a frozen position to
          the owner's new verified address.
@custom:security `mint`, `burn`, `set_minter` of the snekmate module are not exported:
                 issuance goes through this contract's own role checks. Every burn of an
                 alternative counts against the gate, whoever redeems.
"""

from ethereum.ercs import IERC20
from ethereum.ercs import IERC20Detailed

implements: IERC20
implements: IERC20Detailed

from snekmate.auth import ownable
from snekmate.tokens import erc20

initializes: ownable
initializes: erc20[ownable := ownable]

# @dev The ERC-20 surface and permit. `transfer`/`transferFrom` are this contract's own
# (eligibility and freezes); `mint`, `burn`, `burn_from`, `set_minter` and snekmate's
# minter-aware `transfer_ownership` are left out: see the issuer functions below.
exports: (
    erc20.balanceOf,
    erc20.totalSupply,
    erc20.allowance,
    erc20.approve,
    erc20.permit,
    erc20.nonces,
    erc20.DOMAIN_SEPARATOR,
    erc20.name,
    erc20.symbol,
    erc20.decimals,
    erc20.eip712Domain,
)


interface IProfileRegistry:
    def is_verified(account: address) -> bool: view


# @dev Basis-point base for the gate.
MAX_BPS: constant(uint256) = 10_000
# @dev Upper bound on a NAV's max age: one quarter, the slowest NAV cycle of an alternative.
MAX_NAV_AGE: constant(uint256) = 92 * 86_400


# @dev What the token represents. Only ALTERNATIVE has liquidity terms.
flag FundKind:
    CASH
    ETF
    MUTUAL_FUND
    ALTERNATIVE


# @dev The registry whose attestations decide who may hold units.
registry: public(immutable(IProfileRegistry))

# @dev What the token represents.
kind: public(immutable(FundKind))

# @dev Asset class label, e.g. "us_equity_large", "private_equity".
asset_class: public(String[32])

# @dev Agent who may freeze and recover positions (set by the issuer).
agent: public(address)

# @dev Contracts the issuer lets hold and move units without an attestation (LightPool).
is_allowlisted: public(HashMap[address, bool])

# @dev Primary markets the issuer lets mint and burn (LightPool, for creations/redemptions).
is_minter: public(HashMap[address, bool])

# @dev Frozen addresses: they can neither send nor receive units.
is_frozen: public(HashMap[address, bool])

# @dev NAV per unit in cash units (18 decimals) and the time it was struck.
nav: public(uint256)
nav_timestamp: public(uint256)

# @dev A NAV older than this many seconds is stale.
nav_max_age: public(uint256)

# @dev Alternatives: redemption window length in seconds and gate in bps of supply.
redemption_window: public(uint256)
gate_bps: public(uint256)

# @dev Gate bookkeeping of the current window: its index, the supply at its start
# (the gate's base) and what has been redeemed in it.
_window_index: uint256
_window_supply: uint256
_window_redeemed: uint256


event AgentSet:
    agent: indexed(address)


event AllowlistSet:
    account: indexed(address)
    allowed: bool


event MinterSet:
    minter: indexed(address)
    allowed: bool


event NavPublished:
    nav: uint256
    timestamp: uint256


event NavMaxAgeSet:
    max_age: uint256


event LiquidityTermsSet:
    redemption_window: uint256
    gate_bps: uint256


event Frozen:
    account: indexed(address)
    frozen: bool
    by: indexed(address)


event Recovered:
    lost: indexed(address)
    new_owner: indexed(address)
    amount: uint256
    by: indexed(address)


event Redeemed:
    owner: indexed(address)
    amount: uint256
    window: uint256


@deploy
def __init__(
    name_: String[25],
    symbol_: String[5],
    kind_: FundKind,
    asset_class_: String[32],
    issuer_: address,
    registry_: address,
    nav_: uint256,
    nav_max_age_: uint256,
):
    """
    @dev Deploys a fund token. The issuer becomes the owner (the issuer role).
    @param name_ Fund name, at most 25 characters.
    @param symbol_ Ticker, at most 5 characters.
    @param kind_ CASH, ETF, MUTUAL_FUND or ALTERNATIVE (exactly one).
    @param asset_class_ Asset class label.
    @param issuer_ The fund issuer (mints, burns, publishes NAV).
    @param registry_ ProfileRegistry deciding eligibility.
    @param nav_ Initial NAV per unit in cash units (18 decimals), > 0.
    @param nav_max_age_ Seconds after which a NAV is stale.
    """
    assert kind_ in (FundKind.CASH | FundKind.ETF | FundKind.MUTUAL_FUND | FundKind.ALTERNATIVE)
    assert convert(kind_, uint256) & (convert(kind_, uint256) - 1) == 0, "fundtoken: bad kind"
    assert issuer_ != empty(address), "fundtoken: zero issuer"
    assert registry_ != empty(address), "fundtoken: zero registry"
    assert nav_ > 0, "fundtoken: zero nav"
    assert nav_max_age_ > 0 and nav_max_age_ <= MAX_NAV_AGE, "fundtoken: bad nav max age"

    ownable.__init__()
    erc20.__init__(name_, symbol_, 18, name_, "1")
    # The snekmate module makes the deployer a minter; issuance here is role-checked
    # by this contract instead, so that flag is cleared.
    erc20.is_minter[msg.sender] = False
    ownable._transfer_ownership(issuer_)

    registry = IProfileRegistry(registry_)
    kind = kind_
    self.asset_class = asset_class_
    self.nav = nav_
    self.nav_timestamp = block.timestamp
    self.nav_max_age = nav_max_age_
    self.gate_bps = MAX_BPS
    log NavPublished(nav=nav_, timestamp=block.timestamp)


@external
def transfer(to: address, amount: uint256) -> bool:
    """
    @dev ERC-20 transfer between eligible, unfrozen holders.
    @param to The receiver.
    @param amount Units (18 decimals).
    @return bool True.
    """
    self._check_transfer(msg.sender, to)
    erc20._transfer(msg.sender, to, amount)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    """
    @dev ERC-20 transferFrom between eligible, unfrozen holders.
    @param owner The sender whose allowance is spent.
    @param to The receiver.
    @param amount Units (18 decimals).
    @return bool True.
    """
    self._check_transfer(owner, to)
    erc20._spend_allowance(owner, msg.sender, amount)
    erc20._transfer(owner, to, amount)
    return True


@view
@external
def issuer() -> address:
    """
    @dev The fund issuer (the owner role).
    @return address The issuer.
    """
    return ownable.owner


@external
def mint(owner: address, amount: uint256):
    """
    @dev Creates units for an eligible holder. Issuer or authorised primary market only.
    @param owner The receiver of the new units.
    @param amount Units (18 decimals), > 0.
    """
    self._check_issuance()
    assert amount > 0, "fundtoken: zero amount"
    assert not self.is_frozen[owner], "fundtoken: account frozen"
    assert self._is_eligible(owner), "fundtoken: receiver not eligible"
    erc20._mint(owner, amount)


@external
def burn(amount: uint256):
    """
    @dev Destroys units the caller holds (a redemption). Issuer or authorised primary
         market only. For alternatives the amount counts against the window's gate.
    @param amount Units (18 decimals), > 0.
    """
    self._check_issuance()
    assert amount > 0, "fundtoken: zero amount"
    if kind == FundKind.ALTERNATIVE:
        self._consume_gate(amount)
    erc20._burn(msg.sender, amount)
    log Redeemed(owner=msg.sender, amount=amount, window=self._window_index)


@external
def publish_nav(nav_: uint256, timestamp: uint256):
    """
    @dev Publishes a NAV per unit struck at `timestamp`. Issuer only.
    @param nav_ NAV per unit in cash units (18 decimals), > 0.
    @param timestamp When the NAV was struck: after the last one, not in the future.
    """
    ownable._check_owner()
    assert nav_ > 0, "fundtoken: zero nav"
    assert timestamp <= block.timestamp, "fundtoken: nav from the future"
    assert timestamp > self.nav_timestamp, "fundtoken: nav older than current"
    self.nav = nav_
    self.nav_timestamp = timestamp
    log NavPublished(nav=nav_, timestamp=timestamp)


@external
def set_nav_max_age(max_age: uint256):
    """
    @dev Sets the age after which a NAV is stale. Issuer only.
    @param max_age Seconds, 1 .. 92 days.
    """
    ownable._check_owner()
    assert max_age > 0 and max_age <= MAX_NAV_AGE, "fundtoken: bad nav max age"
    self.nav_max_age = max_age
    log NavMaxAgeSet(max_age=max_age)


@view
@external
def is_nav_stale() -> bool:
    """
    @dev Whether the current NAV is older than its max age (then nobody may trade on it).
    @return bool True if stale.
    """
    return block.timestamp > self.nav_timestamp + self.nav_max_age


@external
def set_liquidity_terms(redemption_window: uint256, gate_bps: uint256):
    """
    @dev Sets an alternative's redemption window and gate. Issuer only.
    @param redemption_window Window length in seconds (1 day .. 366 days).
    @param gate_bps Max share of supply redeemable per window, in bps (1 .. 10_000).
    """
    ownable._check_owner()
    assert kind == FundKind.ALTERNATIVE, "fundtoken: not an alternative"
    assert redemption_window >= 86_400 and redemption_window <= 366 * 86_400, (
        "fundtoken: bad redemption window"
    )
    assert gate_bps > 0 and gate_bps <= MAX_BPS, "fundtoken: bad gate"
    self.redemption_window = redemption_window
    self.gate_bps = gate_bps
    # The new terms take effect with a fresh window.
    self._window_index = 0
    self._window_supply = 0
    self._window_redeemed = 0
    log LiquidityTermsSet(redemption_window=redemption_window, gate_bps=gate_bps)


@view
@external
def gate_remaining() -> uint256:
    """
    @dev Units still redeemable in the current window (unbounded for non-alternatives
         and for alternatives without terms).
    @return uint256 Units (18 decimals).
    """
    index: uint256 = 0
    capacity: uint256 = 0
    used: uint256 = 0
    index, capacity, used = self._gate_state()
    return capacity - used


@external
def set_agent(agent_: address):
    """
    @dev Appoints the agent who may freeze and recover positions. Issuer only.
    @param agent_ The agent (zero to remove).
    """
    ownable._check_owner()
    self.agent = agent_
    log AgentSet(agent=agent_)


@external
def set_allowlisted(account: address, allowed: bool):
    """
    @dev Lets a contract (e.g. LightPool) hold units without an attestation. Issuer only.
    @param account The contract.
    @param allowed True to allow.
    """
    ownable._check_owner()
    assert account != empty(address), "fundtoken: zero account"
    self.is_allowlisted[account] = allowed
    log AllowlistSet(account=account, allowed=allowed)


@external
def set_minter(minter: address, allowed: bool):
    """
    @dev Authorises a primary market (LightPool) to mint and burn. Issuer only.
    @param minter The primary market contract.
    @param allowed True to authorise.
    """
    ownable._check_owner()
    assert minter != empty(address), "fundtoken: zero account"
    self.is_minter[minter] = allowed
    log MinterSet(minter=minter, allowed=allowed)


@external
def freeze(account: address, frozen: bool):
    """
    @dev Freezes or unfreezes an address (e.g. a stolen wallet). Agent or issuer only.
    @param account The address.
    @param frozen True to freeze.
    """
    self._check_agent()
    assert account != empty(address), "fundtoken: zero account"
    self.is_frozen[account] = frozen
    log Frozen(account=account, frozen=frozen, by=msg.sender)


@external
def recover(lost: address, new_owner: address) -> uint256:
    """
    @dev Moves a frozen address's whole position to the owner's new verified address.
         Agent or issuer only.
    @param lost The frozen address.
    @param new_owner The owner's new address: eligible and not frozen.
    @return uint256 Units moved.
    """
    self._check_agent()
    assert new_owner != lost, "fundtoken: same account"
    assert self.is_frozen[lost], "fundtoken: account not frozen"
    assert not self.is_frozen[new_owner], "fundtoken: account frozen"
    assert self._is_eligible(new_owner), "fundtoken: receiver not eligible"
    amount: uint256 = erc20.balanceOf[lost]
    assert amount > 0, "fundtoken: nothing to recover"
    erc20._transfer(lost, new_owner, amount)
    log Recovered(lost=lost, new_owner=new_owner, amount=amount, by=msg.sender)
    return amount


@view
@external
def is_eligible(account: address) -> bool:
    """
    @dev Whether `account` may hold and receive units now.
    @param account The address.
    @return bool True if verified (or allow-listed) and not frozen.
    """
    return self._is_eligible(account) and not self.is_frozen[account]


@view
@internal
def _is_eligible(account: address) -> bool:
    if self.is_allowlisted[account]:
        return True
    return staticcall registry.is_verified(account)


@view
@internal
def _check_transfer(owner: address, to: address):
    assert not self.is_frozen[owner], "fundtoken: account frozen"
    assert not self.is_frozen[to], "fundtoken: account frozen"
    assert self._is_eligible(owner), "fundtoken: sender not eligible"
    assert self._is_eligible(to), "fundtoken: receiver not eligible"


@view
@internal
def _check_issuance():
    assert msg.sender == ownable.owner or self.is_minter[msg.sender], (
        "fundtoken: access is denied"
    )


@view
@internal
def _check_agent():
    assert msg.sender == self.agent or msg.sender == ownable.owner, (
        "fundtoken: access is denied"
    )


@view
@internal
def _gate_state() -> (uint256, uint256, uint256):
    if kind != FundKind.ALTERNATIVE or self.redemption_window == 0:
        return 0, max_value(uint256), 0
    index: uint256 = block.timestamp // self.redemption_window + 1
    if index != self._window_index:
        # A new window: the gate's base is the supply now, nothing redeemed yet.
        return index, erc20.totalSupply * self.gate_bps // MAX_BPS, 0
    return index, self._window_supply * self.gate_bps // MAX_BPS, self._window_redeemed


@internal
def _consume_gate(amount: uint256):
    index: uint256 = 0
    capacity: uint256 = 0
    used: uint256 = 0
    index, capacity, used = self._gate_state()
    assert used + amount <= capacity, "fundtoken: gate exceeded"
    if index != self._window_index:
        self._window_index = index
        self._window_supply = erc20.totalSupply
    self._window_redeemed = used + amount
