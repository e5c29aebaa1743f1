"""Deploy and seed the platform with ape: registry, 17 fund tokens, demo investors.

Used by ``lightpool demo``, ``lightpool chain deploy`` and ``ape run deploy``. Needs a
connected ape provider (``networks.ethereum.local.use_provider("foundry")``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from eth_utils import keccak

from offchain.chain.actors import ADMIN, ATTESTER, ISSUER_ACTORS, ISSUER_AGENT, Actor
from offchain.chain.deployments import Deployments
from offchain.chain.seed import DEMO_INVESTORS, units_for_value
from offchain.universe import DAY, UNIVERSE, FundKind, instrument

# Attestations in the demo last a year.
ATTESTATION_DAYS = 365

Progress = Callable[[str], None]


def _account(accounts: Any, actor: Actor) -> Any:
    return accounts.test_accounts[actor.index]


def demo_profile_commitment(address: str, risk_category: int, discretionary: bool) -> bytes:
    """Commitment of a demo investor's seed profile: keccak256(canonical JSON || salt)."""
    profile = {"owner": address.lower(), "risk_category": risk_category,
               "mode": "discretionary" if discretionary else "advisory", "version": 1}
    canonical = json.dumps(profile, sort_keys=True, separators=(",", ":")).encode()
    salt = keccak(b"lightpool-demo-salt" + bytes.fromhex(address[2:]))
    return keccak(canonical + salt)


def deploy_platform(project: Any, accounts: Any, chain: Any,
                    progress: Progress = lambda _msg: None) -> Deployments:
    """Deploy ProfileRegistry and every FundToken, attest and seed the demo investors.

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

    for investor in DEMO_INVESTORS:
        progress(f"investor {investor.actor.name}")
        who = _account(accounts, investor.actor)
        registry.commit_profile(
            demo_profile_commitment(who.address, investor.risk_category,
                                    investor.discretionary),
            sender=who,
        )
        for symbol, value in investor.opening_values.items():
            issuer = _account(accounts, ISSUER_ACTORS[instrument(symbol).issuer])
            contracts_by_symbol[symbol].mint(who.address, units_for_value(symbol, value),
                                             sender=issuer)

    return Deployments(
        chain_id=chain.chain_id,
        genesis_hash=chain.blocks[0].hash.hex(),
        block=chain.blocks.head.number,
        contracts={"ProfileRegistry": registry.address},
        tokens=tokens,
    )

