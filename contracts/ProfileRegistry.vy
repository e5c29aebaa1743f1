# pragma version ~=0.4.3
# pragma evm-version prague
"""
@title ProfileRegistry
@custom:contract-name ProfileRegistry
@license GNU Affero General Public License v3.0 only
@notice The investor's on-chain footprint, with no personal data:
        - profile commitments `keccak256(canonical_profile || salt)` with a version and
          a timestamp; only the investor writes their own;
        - identity attestations by admin-allow-listed attesters (verified until expiry,
          ISO 3166-1 numeric jurisdiction code);
        - mandates an investor grants to a keeper/provider (advisory or discretionary,
          allowed instruments, max turnover per period, max deviation of a limit price
          from NAV, flat annual fee, expiry);
        - consent grants for off-chain data access (grantee, scope, expiry);
        - instant revocation of each of them.
        FundToken reads `is_verified` to decide who may hold units; LightPool reads
        `mandate_of` and `is_instrument_allowed` to check a keeper's orders.
@custom:security Only hashes and codes are stored. A revoked attester's attestations stop
                 counting at once (checked on every read), so an admin can cut off a
                 compromised attester without touching each investor.
"""

from snekmate.auth import ownable

initializes: ownable

# @dev `owner` is the registry admin who keeps the attester allow-list. The ownership
# functions are exported so the admin role can be handed to a multisig.
exports: (
    ownable.owner,
    ownable.transfer_ownership,
    ownable.renounce_ownership,
)


# @dev Fee and deviation figures are in basis points of this base.
MAX_BPS: constant(uint256) = 10_000
# @dev A mandate lists at most this many instruments (bounded loops, bounded gas).
MAX_INSTRUMENTS: constant(uint256) = 64


# @dev How a keeper may act for the investor: ADVISORY keepers relay the investor's own
# signed orders only; DISCRETIONARY keepers may place orders within the mandate's limits.
flag MandateMode:
    ADVISORY
    DISCRETIONARY


# @dev One profile commitment; the profile itself lives encrypted off chain.
struct Profile:
    commitment: bytes32
    version: uint256
    updated_at: uint256


# @dev One identity attestation. `jurisdiction` is an ISO 3166-1 numeric country code.
struct Attestation:
    attester: address
    jurisdiction: uint16
    expiry: uint256


# @dev The limits an investor grants a keeper. `max_turnover` is in cash-token units
# (18 decimals) per `turnover_period` seconds; `annual_fee` is a flat amount of cash-token
# units per 365 days, never a percentage of assets. `epoch` ties the allowed-instrument
# set to this grant so a re-grant never inherits instruments of an earlier one.
struct Mandate:
    mode: MandateMode
    max_turnover: uint256
    turnover_period: uint256
    max_deviation_bps: uint256
    annual_fee: uint256
    expiry: uint256
    granted_at: uint256
    epoch: uint256


# @dev Latest commitment per investor.
profile_of: public(HashMap[address, Profile])

# @dev Attesters the admin trusts to verify identities.
is_attester: public(HashMap[address, bool])

# @dev Latest attestation per investor (zero struct when none or revoked).
attestation_of: public(HashMap[address, Attestation])

# @dev Mandate per (investor, keeper); `expiry == 0` means none or revoked.
mandate_of: public(HashMap[address, HashMap[address, Mandate]])

# @dev Grant counter per (investor, keeper); bumps on each grant to invalidate old lists.
_mandate_epoch: HashMap[address, HashMap[address, uint256]]

# @dev Allowed instruments per (investor, keeper, epoch).
_allowed: HashMap[address, HashMap[address, HashMap[uint256, HashMap[address, bool]]]]

# @dev Consent expiry per (investor, grantee, scope); 0 means none or revoked.
consent_expiry: public(HashMap[address, HashMap[address, HashMap[bytes32, uint256]]])


event ProfileCommitted:
    investor: indexed(address)
    commitment: bytes32
    version: uint256
    timestamp: uint256


event AttesterSet:
    attester: indexed(address)
    allowed: bool


event IdentityAttested:
    investor: indexed(address)
    attester: indexed(address)
    jurisdiction: uint16
    expiry: uint256


event AttestationRevoked:
    investor: indexed(address)
    by: indexed(address)


event MandateGranted:
    investor: indexed(address)
    keeper: indexed(address)
    mode: MandateMode
    max_turnover: uint256
    turnover_period: uint256
    max_deviation_bps: uint256
    annual_fee: uint256
    expiry: uint256
    instruments: DynArray[address, MAX_INSTRUMENTS]


event MandateRevoked:
    investor: indexed(address)
    keeper: indexed(address)


event ConsentGranted:
    investor: indexed(address)
    grantee: indexed(address)
    scope: indexed(bytes32)
    expiry: uint256


event ConsentRevoked:
    investor: indexed(address)
    grantee: indexed(address)
    scope: indexed(bytes32)


@deploy
def __init__():
    """
    @dev The deployer becomes the admin (owner) who keeps the attester allow-list.
    """
    ownable.__init__()


@external
def commit_profile(commitment: bytes32):
    """
    @dev Records the caller's new profile commitment; bumps the version.
    @param commitment `keccak256(canonical_profile || salt)`, computed off chain.
    """
    assert commitment != empty(bytes32), "profileregistry: empty commitment"
    version: uint256 = self.profile_of[msg.sender].version + 1
    self.profile_of[msg.sender] = Profile(
        commitment=commitment, version=version, updated_at=block.timestamp
    )
    log ProfileCommitted(
        investor=msg.sender, commitment=commitment, version=version, timestamp=block.timestamp
    )


@external
def set_attester(attester: address, allowed: bool):
    """
    @dev Adds or removes an identity attester. Admin only.
    @param attester The attester's address.
    @param allowed True to allow, False to remove (its attestations stop counting).
    """
    ownable._check_owner()
    assert attester != empty(address), "profileregistry: zero attester"
    self.is_attester[attester] = allowed
    log AttesterSet(attester=attester, allowed=allowed)


@external
def attest(investor: address, jurisdiction: uint16, expiry: uint256):
    """
    @dev Records that the caller (an allow-listed attester) verified the investor's
         identity. No personal data: only who attested, where, and until when.
    @param investor The verified investor's address.
    @param jurisdiction ISO 3166-1 numeric country code (1..999).
    @param expiry Unix time after which the verification no longer counts.
    """
    assert self.is_attester[msg.sender], "profileregistry: not an attester"
    assert investor != empty(address), "profileregistry: zero investor"
    assert jurisdiction != 0 and jurisdiction < 1000, "profileregistry: bad jurisdiction"
    assert expiry > block.timestamp, "profileregistry: expiry in the past"
    self.attestation_of[investor] = Attestation(
        attester=msg.sender, jurisdiction=jurisdiction, expiry=expiry
    )
    log IdentityAttested(
        investor=investor, attester=msg.sender, jurisdiction=jurisdiction, expiry=expiry
    )


@external
def revoke_attestation(investor: address):
    """
    @dev Revokes an attestation at once. Callable by the attester who made it or the admin.
    @param investor The investor whose attestation is revoked.
    """
    current: Attestation = self.attestation_of[investor]
    assert current.expiry != 0, "profileregistry: no attestation"
    assert msg.sender == current.attester or msg.sender == ownable.owner, (
        "profileregistry: access is denied"
    )
    self.attestation_of[investor] = empty(Attestation)
    log AttestationRevoked(investor=investor, by=msg.sender)


@external
def grant_mandate(
    keeper: address,
    mode: MandateMode,
    instruments: DynArray[address, MAX_INSTRUMENTS],
    max_turnover: uint256,
    turnover_period: uint256,
    max_deviation_bps: uint256,
    annual_fee: uint256,
    expiry: uint256,
):
    """
    @dev Grants (or replaces) the caller's mandate to `keeper`.
    @param keeper The keeper/provider address acting under the mandate.
    @param mode ADVISORY or DISCRETIONARY (exactly one).
    @param instruments FundTokens the keeper may trade for the investor.
    @param max_turnover Max traded notional per period, cash-token units (18 decimals).
    @param turnover_period Length of a turnover period in seconds (> 0).
    @param max_deviation_bps Max distance of a limit price from NAV, in bps (<= 10_000).
    @param annual_fee Flat fee per 365 days in cash-token units; 0 for none.
    @param expiry Unix time at which the mandate ends.
    """
    assert keeper != empty(address) and keeper != msg.sender, "profileregistry: bad keeper"
    assert mode == MandateMode.ADVISORY or mode == MandateMode.DISCRETIONARY, (
        "profileregistry: bad mode"
    )
    assert len(instruments) > 0, "profileregistry: no instruments"
    assert turnover_period > 0, "profileregistry: zero turnover period"
    assert max_deviation_bps <= MAX_BPS, "profileregistry: deviation above 100%"
    assert expiry > block.timestamp, "profileregistry: expiry in the past"

    epoch: uint256 = self._mandate_epoch[msg.sender][keeper] + 1
    self._mandate_epoch[msg.sender][keeper] = epoch
    for token: address in instruments:
        assert token != empty(address), "profileregistry: zero instrument"
        self._allowed[msg.sender][keeper][epoch][token] = True
    self.mandate_of[msg.sender][keeper] = Mandate(
        mode=mode,
        max_turnover=max_turnover,
        turnover_period=turnover_period,
        max_deviation_bps=max_deviation_bps,
        annual_fee=annual_fee,
        expiry=expiry,
        granted_at=block.timestamp,
        epoch=epoch,
    )
    log MandateGranted(
        investor=msg.sender,
        keeper=keeper,
        mode=mode,
        max_turnover=max_turnover,
        turnover_period=turnover_period,
        max_deviation_bps=max_deviation_bps,
        annual_fee=annual_fee,
        expiry=expiry,
        instruments=instruments,
    )


@external
def revoke_mandate(keeper: address):
    """
    @dev Revokes the caller's mandate to `keeper` at once.
    @param keeper The keeper whose mandate ends.
    """
    assert self.mandate_of[msg.sender][keeper].expiry != 0, "profileregistry: no mandate"
    self.mandate_of[msg.sender][keeper] = empty(Mandate)
    log MandateRevoked(investor=msg.sender, keeper=keeper)


@external
def grant_consent(grantee: address, scope: bytes32, expiry: uint256):
    """
    @dev Grants `grantee` access to the caller's off-chain data of `scope`.
    @param grantee The provider or regulator receiving access.
    @param scope What may be read, e.g. keccak256("profile") or keccak256("tax").
    @param expiry Unix time at which the consent ends.
    """
    assert grantee != empty(address) and grantee != msg.sender, "profileregistry: bad grantee"
    assert scope != empty(bytes32), "profileregistry: empty scope"
    assert expiry > block.timestamp, "profileregistry: expiry in the past"
    self.consent_expiry[msg.sender][grantee][scope] = expiry
    log ConsentGranted(investor=msg.sender, grantee=grantee, scope=scope, expiry=expiry)


@external
def revoke_consent(grantee: address, scope: bytes32):
    """
    @dev Revokes a consent grant at once.
    @param grantee The grantee losing access.
    @param scope The scope of the grant.
    """
    assert self.consent_expiry[msg.sender][grantee][scope] != 0, "profileregistry: no consent"
    self.consent_expiry[msg.sender][grantee][scope] = 0
    log ConsentRevoked(investor=msg.sender, grantee=grantee, scope=scope)


@view
@external
def is_verified(account: address) -> bool:
    """
    @dev Whether `account` holds an unexpired attestation from a still-allowed attester.
    @param account The address to check.
    @return bool True if verified now.
    """
    return self._is_verified(account)


@view
@external
def jurisdiction_of(account: address) -> uint16:
    """
    @dev The jurisdiction of a currently verified account, 0 if not verified.
    @param account The address to check.
    @return uint16 ISO 3166-1 numeric code, or 0.
    """
    if not self._is_verified(account):
        return 0
    return self.attestation_of[account].jurisdiction


@view
@external
def has_consent(investor: address, grantee: address, scope: bytes32) -> bool:
    """
    @dev Whether `grantee` currently holds the investor's consent for `scope`.
    @param investor The data owner.
    @param grantee The provider or regulator.
    @param scope The scope of the grant.
    @return bool True while granted and unexpired.
    """
    return self.consent_expiry[investor][grantee][scope] > block.timestamp


@view
@external
def is_mandate_active(investor: address, keeper: address) -> bool:
    """
    @dev Whether the mandate from `investor` to `keeper` is granted and unexpired.
    @param investor The investor.
    @param keeper The keeper.
    @return bool True while active.
    """
    return self.mandate_of[investor][keeper].expiry > block.timestamp


@view
@external
def is_instrument_allowed(investor: address, keeper: address, token: address) -> bool:
    """
    @dev Whether the current mandate from `investor` to `keeper` allows `token`.
    @param investor The investor.
    @param keeper The keeper.
    @param token The FundToken.
    @return bool True if the active mandate lists the token.
    """
    mandate: Mandate = self.mandate_of[investor][keeper]
    if mandate.expiry <= block.timestamp:
        return False
    return self._allowed[investor][keeper][mandate.epoch][token]


@view
@internal
def _is_verified(account: address) -> bool:
    attestation: Attestation = self.attestation_of[account]
    return attestation.expiry > block.timestamp and self.is_attester[attestation.attester]
