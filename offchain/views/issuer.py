"""The fund issuer's actions: publish NAV, mint and burn, signed with the issuer's dev key.

On the local chain every issuer is an anvil dev account (``offchain.chain.actors``), so the
UI signs with that account's key; a production deployment would sign in the issuer's wallet.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from web3 import Web3
from web3.exceptions import ContractLogicError, Web3RPCError

from offchain.chain.actors import ISSUER_ACTORS, Actor
from offchain.chain.contracts import Platform
from offchain.errors import ChainStateError, InvalidInput
from offchain.universe import instrument
from offchain.views.chain import to_wad


@dataclass(frozen=True)
class TxResult:
    """A mined transaction: its hash and block."""

    tx_hash: str
    block: int


def issuer_of(symbol: str) -> Actor:
    """The dev-account actor that issues ``symbol``; raises ``KeyError`` if unknown."""
    return ISSUER_ACTORS[instrument(symbol).issuer]


def publish_nav(platform: Platform, symbol: str, nav: Decimal,
                struck_at: dt.datetime | None = None) -> TxResult:
    """Publish ``nav`` (cash units per unit) struck at ``struck_at`` (default: latest block).

    Raises ``InvalidInput`` for a NAV <= 0, ``ChainStateError`` if the transaction reverts.
    """
    if nav <= 0:
        raise InvalidInput("nav", "a NAV > 0", nav)
    timestamp: int = (platform.w3.eth.get_block("latest")["timestamp"] if struck_at is None
                      else int(struck_at.timestamp()))
    token = platform.token(symbol)
    return _send(platform, issuer_of(symbol), token.functions.publish_nav(to_wad(nav), timestamp))


def mint(platform: Platform, symbol: str, receiver: str, units: Decimal) -> TxResult:
    """Mint ``units`` of ``symbol`` to ``receiver``. Raises ``InvalidInput`` for a bad
    receiver or amount, ``ChainStateError`` with the contract's reason if it reverts."""
    if not Web3.is_address(receiver):
        raise InvalidInput("receiver", "a 0x-prefixed address", receiver)
    if units <= 0:
        raise InvalidInput("units", "an amount > 0", units)
    token = platform.token(symbol)
    call = token.functions.mint(Web3.to_checksum_address(receiver), to_wad(units))
    return _send(platform, issuer_of(symbol), call)


def burn(platform: Platform, symbol: str, units: Decimal) -> TxResult:
    """Burn (redeem) ``units`` of ``symbol`` held by its issuer. Raises ``InvalidInput`` for
    an amount <= 0, ``ChainStateError`` with the contract's reason if it reverts."""
    if units <= 0:
        raise InvalidInput("units", "an amount > 0", units)
    return _send(platform, issuer_of(symbol), platform.token(symbol).functions.burn(to_wad(units)))


def _send(platform: Platform, actor: Actor, call) -> TxResult:
    w3 = platform.w3
    try:
        call.estimate_gas({"from": actor.address})
    except (ContractLogicError, Web3RPCError) as exc:
        raise ChainStateError(f"{actor.name}: transaction refused: {_reason(exc)}") from None
    tx = call.build_transaction({
        "from": actor.address,
        "nonce": w3.eth.get_transaction_count(Web3.to_checksum_address(actor.address), "pending"),
        "chainId": platform.deployments.chain_id,
    })
    signed = w3.eth.account.sign_transaction(tx, actor.private_key)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    if receipt["status"] != 1:
        raise ChainStateError(f"{actor.name}: transaction {tx_hash.hex()} reverted")
    return TxResult(tx_hash="0x" + tx_hash.hex().removeprefix("0x"), block=receipt["blockNumber"])


def _reason(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return message.replace("execution reverted: ", "")
