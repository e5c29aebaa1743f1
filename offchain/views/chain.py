"""Read-side views of the chain: fund tokens, an address's holdings, and event history.

All amounts come from chain as 18-decimal integers and are returned as exact ``Decimal``
(units, cash units per unit, cash units).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from web3 import Web3

from offchain.chain.contracts import Platform
from offchain.universe import BY_SYMBOL, CASH_SYMBOL, WAD

WAD_DECIMAL = Decimal(WAD)


def from_wad(amount: int) -> Decimal:
    """An 18-decimal integer as an exact ``Decimal``."""
    return Decimal(amount) / WAD_DECIMAL


def to_wad(amount: Decimal) -> int:
    """A ``Decimal`` amount as an 18-decimal integer (truncated toward zero)."""
    return int(amount * WAD_DECIMAL)


@dataclass(frozen=True)
class TokenState:
    """One fund token as read from chain; ``known`` is False for a token the universe lacks."""

    symbol: str
    address: str
    name: str
    kind: str
    asset_class: str
    issuer: str
    nav: Decimal
    nav_time: dt.datetime
    nav_stale: bool
    supply: Decimal
    known: bool


@dataclass(frozen=True)
class Holding:
    """One position of an address: ``units`` at ``nav`` is worth ``value`` (cash units).

    ``units`` is what the wallet holds plus the free balance the address has in LightPool's
    escrow (orders draw on escrow, so a position is usually there once it is traded)."""

    symbol: str
    asset_class: str
    units: Decimal
    nav: Decimal
    value: Decimal
    nav_stale: bool
    wallet_units: Decimal
    escrow_units: Decimal


def token_states(platform: Platform) -> list[TokenState]:
    """Every deployed token's NAV, NAV time, staleness and supply, sorted by symbol."""
    out = []
    for symbol in sorted(platform.deployments.tokens):
        token = platform.token(symbol)
        known = symbol in BY_SYMBOL
        nav_ts = token.functions.nav_timestamp().call()
        out.append(TokenState(
            symbol=symbol,
            address=token.address,
            name=BY_SYMBOL[symbol].name if known else token.functions.name().call(),
            kind=str(BY_SYMBOL[symbol].kind.name) if known else str(token.functions.kind().call()),
            asset_class=token.functions.asset_class().call(),
            issuer=token.functions.issuer().call(),
            nav=from_wad(token.functions.nav().call()),
            nav_time=dt.datetime.fromtimestamp(nav_ts, dt.UTC),
            nav_stale=token.functions.is_nav_stale().call(),
            supply=from_wad(token.functions.totalSupply().call()),
            known=known,
        ))
    return out


def holdings(platform: Platform, address: str) -> list[Holding]:
    """Non-zero positions of ``address`` (wallet plus LightPool escrow, if LightPool is
    deployed) in every deployed token, cash first, then by symbol.

    Raises ``ValueError`` if ``address`` is not an address.
    """
    if not Web3.is_address(address):
        raise ValueError(f"address: expected a 0x-prefixed 20-byte address, got {address!r}")
    owner = Web3.to_checksum_address(address)
    pool = platform.contract("LightPool") if "LightPool" in platform.deployments.contracts else None
    out = []
    for symbol in sorted(platform.deployments.tokens, key=lambda s: (s != CASH_SYMBOL, s)):
        token = platform.token(symbol)
        in_wallet = from_wad(token.functions.balanceOf(owner).call())
        in_escrow = (from_wad(pool.functions.balance_of(token.address, owner).call())
                     if pool is not None else Decimal(0))
        units = in_wallet + in_escrow
        if units == 0:
            continue
        nav = from_wad(token.functions.nav().call())
        out.append(Holding(symbol=symbol, asset_class=token.functions.asset_class().call(),
                           units=units, nav=nav, value=units * nav,
                           nav_stale=token.functions.is_nav_stale().call(),
                           wallet_units=in_wallet, escrow_units=in_escrow))
    return out


def weights_by_asset_class(positions: list[Holding]) -> dict[str, Decimal]:
    """Share of total value per asset class (fractions summing to 1; empty if no value)."""
    total = sum((h.value for h in positions), Decimal(0))
    if total == 0:
        return {}
    out: dict[str, Decimal] = {}
    for h in positions:
        out[h.asset_class] = out.get(h.asset_class, Decimal(0)) + h.value / total
    return out


@dataclass(frozen=True)
class ChainEvent:
    """A Transfer, NavPublished or Redeemed event of a token, decoded."""

    block: int
    tx_hash: str
    event: str
    detail: dict[str, str]


def token_events(platform: Platform, symbol: str, from_block: int = 0) -> list[ChainEvent]:
    """Transfer, NavPublished and Redeemed events of token ``symbol``, oldest first."""
    token = platform.token(symbol)
    events: list[ChainEvent] = []
    for name in ("Transfer", "NavPublished", "Redeemed"):
        for log in getattr(token.events, name).get_logs(from_block=from_block):
            detail = {}
            for key, value in log["args"].items():
                if isinstance(value, int) and key in ("value", "amount", "nav"):
                    detail[key] = str(from_wad(value))
                elif key == "timestamp":
                    detail[key] = dt.datetime.fromtimestamp(value, dt.UTC).isoformat()
                else:
                    detail[key] = str(value)
            events.append(ChainEvent(block=log["blockNumber"], tx_hash=log["transactionHash"].hex(),
                                     event=name, detail=detail))
    events.sort(key=lambda e: e.block)
    return events


def contract_events(platform: Platform, name: str, from_block: int = 0) -> list[ChainEvent]:
    """Every event of the deployed contract ``name`` (all event types of its ABI), oldest
    first. Raises ``ChainStateError`` if ``name`` is not deployed."""
    contract = platform.contract(name)
    events: list[ChainEvent] = []
    for item in contract.abi:
        if item.get("type") != "event":
            continue
        for log in getattr(contract.events, item["name"]).get_logs(from_block=from_block):
            events.append(ChainEvent(block=log["blockNumber"],
                                     tx_hash=log["transactionHash"].hex(), event=item["name"],
                                     detail={k: str(v) for k, v in log["args"].items()}))
    events.sort(key=lambda e: e.block)
    return events
