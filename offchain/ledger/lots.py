"""Tax lots and realized gains, built from fills read off the chain.

Every acquisition (a buy fill, or units minted to the investor) opens a lot at its cost per
unit; every disposal (a sell fill) closes units of lots — the lots the optimizer chose when
the keeper recorded them, else first-in-first-out — and realizes a gain, short-term if the
lot was held one year or less, long-term if more. Quantities and cash are exact: integers
in wei (18 decimals) on the way in, ``Decimal`` on the way out; never floats.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from offchain.errors import InvalidInput
from offchain.universe import WAD

# A lot held more than this many days is long-term (US rule: more than one year).
LONG_TERM_DAYS = 365


@dataclass(frozen=True)
class Fill:
    """One fill of one account in one instrument. ``units`` and ``cash`` are wei integers:
    units received (buy) or delivered (sell), cash paid (buy) or received (sell)."""

    account: str
    symbol: str
    side: Literal["buy", "sell"]
    units: int
    cash: int
    trade_date: dt.date
    ref: str
    lot_ids: tuple[str, ...] = ()


@dataclass
class Lot:
    """An open tax lot: ``units`` (wei) left, bought at ``cost`` (wei, for the whole lot as
    bought) for ``units_bought`` units on ``acquired``."""

    lot_id: str
    account: str
    symbol: str
    acquired: dt.date
    units_bought: int
    cost: int
    units: int

    @property
    def cost_per_unit(self) -> Decimal:
        """Cash per unit, exact."""
        return Decimal(self.cost) / Decimal(self.units_bought)


@dataclass(frozen=True)
class RealizedGain:
    """A realized gain (negative: loss) on part of one lot, in cash (exact decimal)."""

    account: str
    symbol: str
    lot_id: str
    units: Decimal
    proceeds: Decimal
    basis: Decimal
    gain: Decimal
    term: Literal["short", "long"]
    acquired: dt.date
    sold: dt.date
    ref: str


@dataclass
class TaxLedger:
    """Open lots and realized gains per account, built by applying fills in chain order."""

    lots: dict[str, list[Lot]] = field(default_factory=dict)
    realized: list[RealizedGain] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def apply(self, fill: Fill) -> list[RealizedGain]:
        """Apply one fill; a fill whose ``ref`` was applied before is ignored (idempotent).

        Returns the gains it realized. Raises ``InvalidInput`` for a sell of more units than
        the account's lots hold, or for non-positive amounts; nothing is changed then.
        """
        if fill.ref in self._seen:
            return []
        if fill.units <= 0:
            raise InvalidInput("fill.units", "a positive number of wei", fill.units)
        if fill.cash < 0:
            raise InvalidInput("fill.cash", "a non-negative number of wei", fill.cash)
        account_lots = self.lots.setdefault(fill.account, [])
        if fill.side == "buy":
            account_lots.append(Lot(fill.ref, fill.account, fill.symbol, fill.trade_date,
                                    fill.units, fill.cash, fill.units))
            self._seen.add(fill.ref)
            return []
        gains = self._dispose(account_lots, fill)
        self._seen.add(fill.ref)
        self.realized.extend(gains)
        return gains

    def _dispose(self, account_lots: list[Lot], fill: Fill) -> list[RealizedGain]:
        held = [lot for lot in account_lots if lot.symbol == fill.symbol and lot.units > 0]
        if sum(lot.units for lot in held) < fill.units:
            raise InvalidInput(
                f"fill[{fill.ref}].units",
                f"at most the {sum(lot.units for lot in held)} wei of {fill.symbol} held",
                fill.units,
            )
        chosen = [lot for lot_id in fill.lot_ids for lot in held if lot.lot_id == lot_id]
        order = chosen + sorted((lot for lot in held if lot not in chosen),
                                key=lambda lot: (lot.acquired, lot.lot_id))
        plan: list[tuple[Lot, int]] = []
        remaining = fill.units
        for lot in order:
            if remaining == 0:
                break
            take = min(lot.units, remaining)
            plan.append((lot, take))
            remaining -= take
        gains = []
        price = Decimal(fill.cash) / Decimal(fill.units)
        for lot, take in plan:
            lot.units -= take
            units = Decimal(take) / WAD
            proceeds = (price * take) / WAD
            basis = (lot.cost_per_unit * take) / WAD
            held_days = (fill.trade_date - lot.acquired).days
            gains.append(RealizedGain(
                fill.account, fill.symbol, lot.lot_id, units, proceeds, basis,
                proceeds - basis, "long" if held_days > LONG_TERM_DAYS else "short",
                lot.acquired, fill.trade_date, fill.ref,
            ))
        account_lots[:] = [lot for lot in account_lots if lot.units > 0]
        return gains

    def open_lots(self, account: str) -> list[Lot]:
        """The account's open lots, oldest first."""
        return sorted(self.lots.get(account, []), key=lambda lot: (lot.acquired, lot.lot_id))

    def holdings(self, account: str) -> dict[str, int]:
        """Units (wei) held per symbol according to the lots."""
        totals: dict[str, int] = {}
        for lot in self.lots.get(account, []):
            totals[lot.symbol] = totals.get(lot.symbol, 0) + lot.units
        return totals

    def realized_totals(self, account: str) -> dict[str, Decimal]:
        """Realized short- and long-term gains of the account (exact)."""
        totals = {"short": Decimal(0), "long": Decimal(0)}
        for gain in self.realized:
            if gain.account == account:
                totals[gain.term] += gain.gain
        return totals
