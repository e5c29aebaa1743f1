"""The keeper's proposals as the UI shows them, and the UI's two ways to act on them:
the overlay manager's decision and the investor's EIP-712 signatures of LightPool orders.

Reads go through the keeper's database (``LIGHTPOOL_DATABASE_URL``); signatures and
decisions go through :class:`offchain.keeper.bot.Keeper`, which checks them (each signature
must recover to the account owner) before the next keeper pass relays the orders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from offchain.keeper.bot import Keeper
from offchain.keeper.db import ProposalRow
from offchain.views.chain import from_wad


@dataclass(frozen=True)
class OrderLeg:
    """One LightPool order of a keeper proposal, in units and cash per unit."""

    symbol: str
    side: str
    quantity: Decimal
    limit_price: Decimal
    status: str
    signed: bool


@dataclass(frozen=True)
class KeeperProposal:
    """One keeper proposal: which account, batch and model, its status and its legs."""

    proposal_id: int
    account: str
    batch: int
    mode: str
    model_id: str
    model_version: int
    status: str
    decided_by: str | None
    legs: tuple[OrderLeg, ...]
    explanation: dict[str, Any]


def open_keeper() -> Keeper:
    """The keeper of the configured deployment and database (no waiting on batches).

    Raises ``ChainStateError`` if the deployment has no LightPool.
    """
    from offchain.keeper.cli import build_keeper

    return build_keeper(wait_s=0)


def proposals(keeper: Keeper, account: str | None = None) -> list[KeeperProposal]:
    """The latest proposal of each account (of ``account`` only, if given), newest first."""
    query = select(ProposalRow).order_by(ProposalRow.batch.desc(), ProposalRow.id.desc())
    latest: dict[str, KeeperProposal] = {}
    with keeper.sessions() as session:
        for row in session.scalars(query):
            if account is not None and row.account.lower() != account.lower():
                continue
            if row.account in latest:
                continue
            latest[row.account] = KeeperProposal(
                proposal_id=row.id, account=row.account, batch=row.batch, mode=row.mode,
                model_id=row.model_id, model_version=row.model_version, status=row.status,
                decided_by=row.decided_by, explanation=dict(row.explanation or {}),
                legs=tuple(OrderLeg(symbol=o.symbol, side="buy" if o.is_buy else "sell",
                                    quantity=from_wad(int(o.quantity)),
                                    limit_price=from_wad(int(o.limit_price)),
                                    status=o.status, signed=o.signature is not None)
                           for o in row.orders),
            )
    return list(latest.values())


def signing_requests(keeper: Keeper, proposal_id: int) -> list[dict[str, Any]]:
    """The ``eth_signTypedData_v4`` payloads (LightPool ``Order``, one per leg) the investor
    signs. Raises ``InvalidInput`` unless the proposal awaits a signature."""
    return keeper.signing_requests(proposal_id)


def record_signatures(keeper: Keeper, proposal_id: int, signatures: Sequence[str]) -> None:
    """Hand the investor's signatures to the keeper, which verifies each against the account.

    Raises ``InvalidInput`` naming the first signature that is not the owner's.
    """
    keeper.record_signatures(proposal_id, list(signatures))


def decide(keeper: Keeper, proposal_id: int, approver: str, approved: bool) -> None:
    """The overlay manager's approval or rejection of a pending discretionary proposal.

    Raises ``InvalidInput`` unless the proposal is pending approval.
    """
    keeper.approve(proposal_id, approver, approved)
