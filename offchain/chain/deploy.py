"""Deploy and seed the platform with ape: registry, 17 fund tokens, LightPool, demo investors.

Used by ``lightpool demo``, ``lightpool chain deploy`` and ``ape run deploy``. Needs a
connected ape provider (``networks.ethereum.local.use_provider("foundry")``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from offchain.chain.actors import ADMIN, ATTESTER, ISSUER_ACTORS, ISSUER_AGENT, KEEPER, Actor
from offchain.chain.deployments import Deployments
from offchain.chain.seed import (
    DEMO_INVESTORS,
    seed_pool_accounts,
    seed_profiles,
    units_for_value,
)
from offchain.cloud.crypto import public_key_of
from offchain.cloud.store import PROFILE_SCOPE
from offchain.config import get_settings
from offchain.universe import CASH_SYMBOL, DAY, UNIVERSE, WAD, FundKind, funds, instrument

# Attestations in the demo last a year.
ATTESTATION_DAYS = 365
# Market terms: ticks of about 1 bp of the listing NAV (the grid is fixed at listing), orders
# of at least 0.01 units, limits within 10% of NAV (alternatives 20%).
TICK_BPS = 1
MIN_ORDER_UNITS = 10**16
PRICE_BAND_BPS = {FundKind.ALTERNATIVE: 2_000}
DEFAULT_PRICE_BAND_BPS = 1_000
# Each issuer creates/redeems up to this many units per batch (alternatives only redeem,
# within their gate), and keeps this much cash in escrow to pay redemptions.
ISSUER_CAPACITY_UNITS = 1_000_000 * WAD
ISSUER_RESERVE = 50_000_000 * WAD


def market_terms(nav_wad: int, kind: FundKind) -> tuple[int, int, int]:
    """(tick spacing, min quantity, price band bps) of a fund's LightPool market.

    The tick is 1 bp of the listing NAV rounded down to a power of ten of cash units, so
    every NAV-relative price the keeper quotes lands on the grid and a batch's limits within
    the band span a bounded number of ticks.
    """
    raw = max(nav_wad * TICK_BPS // 10_000, 1)
    spacing = 10 ** (len(str(raw)) - 1)
    return spacing, MIN_ORDER_UNITS, PRICE_BAND_BPS.get(kind, DEFAULT_PRICE_BAND_BPS)
# LightPool's cadence: a batch a minute by default (LIGHTPOOL_BATCH_SECONDS); sealed orders
# are revealed in the first 10 s after a batch closes.
REVEAL_SECONDS = 10

Progress = Callable[[str], None]


def _account(accounts: Any, actor: Actor) -> Any:
    return accounts.test_accounts[actor.index]


def deploy_platform(project: Any, accounts: Any, chain: Any,
                    progress: Progress = lambda _msg: None,
                    profile_store: str | None = None) -> Deployments:
    """Deploy ProfileRegistry and every FundToken, attest and seed the demo investors.

    The investors' profiles go encrypted into ``profile_store`` (an fsspec URL; default:
    ``LIGHTPOOL_DATA_DIR/profiles``), shared with the keeper; only commitments go on chain.
    Returns the addresses; the caller writes them to the deployments file.
    """
    admin = _account(accounts, ADMIN)
    attester = _account(accounts, ATTESTER)
    agent = _account(accounts, ISSUER_AGENT)

    progress("ProfileRegistry")
    registry = admin.deploy(project.ProfileRegistry)
    registry.set_attester(attester.address, True, sender=admin)

    expiry = chain.pending_timestamp + ATTESTATION_DAYS * DAY
    # Issuers hold their own units (inventory); investors are the demo's people.
    for issuer in ISSUER_ACTORS.values():
        registry.attest(issuer.address, 840, expiry, sender=attester)
    for investor in DEMO_INVESTORS:
        registry.attest(investor.actor.address, investor.jurisdiction, expiry, sender=attester)

    tokens: dict[str, str] = {}
    contracts_by_symbol: dict[str, Any] = {}
    for item in UNIVERSE:
        progress(f"FundToken {item.symbol}")
        issuer = _account(accounts, ISSUER_ACTORS[item.issuer])
        token = admin.deploy(
            project.FundToken, item.name, item.symbol, int(item.kind), item.asset_class,
            issuer.address, registry.address, item.nav_wad, item.nav_max_age_days * DAY,
        )
        token.set_agent(agent.address, sender=issuer)
        if item.kind == FundKind.ALTERNATIVE:
            assert item.gate_bps is not None and item.redemption_window_days is not None
            token.set_liquidity_terms(item.redemption_window_days * DAY, item.gate_bps,
                                      sender=issuer)
        tokens[item.symbol] = token.address
        contracts_by_symbol[item.symbol] = token

    keeper_key = KEEPER.private_key
    as_of = dt.datetime.fromtimestamp(chain.pending_timestamp, dt.UTC).date()
    commitments = seed_profiles(profile_store, as_of, public_key_of(keeper_key), expiry)
    for investor in DEMO_INVESTORS:
        progress(f"investor {investor.actor.name}")
        who = _account(accounts, investor.actor)
        registry.commit_profile(commitments[who.address], sender=who)
        registry.grant_consent(KEEPER.address, PROFILE_SCOPE, expiry, sender=who)
        for symbol, value in investor.opening_values.items():
            issuer = _account(accounts, ISSUER_ACTORS[instrument(symbol).issuer])
            contracts_by_symbol[symbol].mint(who.address, units_for_value(symbol, value),
                                             sender=issuer)

    progress("LightPool")
    pool, lens = _deploy_pool(project, accounts, admin, registry, contracts_by_symbol)
    seed_pool_accounts(accounts, chain, registry, pool, contracts_by_symbol,
                       _account(accounts, KEEPER).address)

    return Deployments(
        chain_id=chain.chain_id,
        genesis_hash=chain.blocks[0].hash.hex(),
        block=chain.blocks.head.number,
        contracts={"ProfileRegistry": registry.address, "LightPool": pool.address,
                   "ClearingMath": pool.clearing_math(), "Lens": lens.address},
        tokens=tokens,
    )


def _deploy_pool(project: Any, accounts: Any, admin: Any, registry: Any,
                 tokens: dict[str, Any]) -> tuple[Any, Any]:
    """Deploy LightPool and Lens, list every fund, and let each issuer stand in as
    liquidity of last resort with a cash reserve for redemptions."""
    clearing_math = admin.deploy(project.ClearingMath)
    cash = tokens[CASH_SYMBOL]
    pool = admin.deploy(project.LightPool, cash.address, registry.address,
                        clearing_math.address, get_settings().batch_seconds, REVEAL_SECONDS)
    lens = admin.deploy(project.Lens)
    cash_issuer = _account(accounts, ISSUER_ACTORS[instrument(CASH_SYMBOL).issuer])
    cash.set_allowlisted(pool.address, True, sender=cash_issuer)
    funded_issuers: set[str] = set()
    for item in funds():
        token = tokens[item.symbol]
        issuer = _account(accounts, ISSUER_ACTORS[item.issuer])
        token.set_allowlisted(pool.address, True, sender=issuer)
        token.set_minter(pool.address, True, sender=issuer)
        spacing, min_quantity, band = market_terms(item.nav_wad, item.kind)
        pool.list_market(token.address, spacing, min_quantity, band, sender=admin)
        creation = 0 if item.kind == FundKind.ALTERNATIVE else ISSUER_CAPACITY_UNITS
        pool.set_issuer_liquidity(token.address, item.issuer_fee_bps, creation,
                                  ISSUER_CAPACITY_UNITS, sender=issuer)
        if item.issuer not in funded_issuers:
            # The issuer's redemption reserve: cash in escrow that redemptions are paid from.
            funded_issuers.add(item.issuer)
            cash.mint(issuer.address, ISSUER_RESERVE, sender=cash_issuer)
            cash.approve(pool.address, ISSUER_RESERVE, sender=issuer)
            pool.deposit(cash.address, ISSUER_RESERVE, sender=issuer)
    return pool, lens

