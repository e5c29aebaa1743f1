"""The demo universe: one cash token, 8 ETFs, 4 mutual funds and 4 alternative funds.

Issuers and products are fictional; names, asset classes, NAV levels, costs and liquidity
terms are chosen to look like their real-world counterparts. Every other module (deploy,
models, optimizer inputs, UI) reads the universe from here: one place for each fact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import IntFlag

WAD = 10**18
DAY = 86_400


class FundKind(IntFlag):
    """Mirrors FundToken.vy's ``flag FundKind`` (Vyper flags are powers of two)."""

    CASH = 1
    ETF = 2
    MUTUAL_FUND = 4
    ALTERNATIVE = 8


@dataclass(frozen=True)
class Instrument:
    """One tokenized instrument of the demo universe.

    ``nav`` is the NAV per unit in cash units (exact decimal); ``cost_bps`` the one-way
    transaction cost the optimizer assumes; ``issuer_fee_bps`` the issuer's creation and
    redemption spread in LightPool; ``gate_bps``/``redemption_window_days`` the liquidity
    terms of an alternative (None otherwise); ``attributes`` feed the advisor's screens.
    """

    symbol: str
    name: str
    kind: FundKind
    asset_class: str
    issuer: str
    nav: Decimal
    nav_max_age_days: int
    cost_bps: int
    issuer_fee_bps: int
    gate_bps: int | None = None
    redemption_window_days: int | None = None
    attributes: dict[str, bool] = field(default_factory=dict)
    themes: tuple[str, ...] = ()

    @property
    def nav_wad(self) -> int:
        """NAV per unit as an 18-decimal integer, as FundToken stores it."""
        return int(self.nav * WAD)


# Fictional issuers. Their on-chain accounts are assigned in ``offchain.chain.actors``.
ISSUERS: tuple[str, ...] = (
    "LightPool Treasury",
    "Meridian Funds",
    "Northwind Investments",
    "Harbor Point Asset Mgmt",
    "Keystone Capital",
    "Summit Alternatives",
    "Cairn Real Assets",
)

_CLEAN = {"fossil_fuels": False, "tobacco": False, "weapons": False, "structured": False}
_BROAD = {"fossil_fuels": True, "tobacco": True, "weapons": True, "structured": False}

UNIVERSE: tuple[Instrument, ...] = (
    Instrument("USDL", "LightPool USD", FundKind.CASH, "cash", "LightPool Treasury",
               Decimal("1"), 92, 0, 0, attributes=dict(_CLEAN)),
    # ETFs: daily NAV, tight spreads.
    Instrument("LCAP", "Meridian US Large Cap ETF", FundKind.ETF, "us_equity_large",
               "Meridian Funds", Decimal("512.37"), 1, 2, 5, attributes=dict(_BROAD)),
    Instrument("SCAP", "Meridian US Small Cap ETF", FundKind.ETF, "us_equity_small",
               "Meridian Funds", Decimal("218.44"), 1, 5, 8, attributes=dict(_BROAD)),
    Instrument("DXUS", "Northwind Dev ex-US ETF", FundKind.ETF, "intl_equity_developed",
               "Northwind Investments", Decimal("71.05"), 1, 4, 8, attributes=dict(_BROAD)),
    Instrument("EMEQ", "Northwind EM Equity ETF", FundKind.ETF, "emerging_markets_equity",
               "Northwind Investments", Decimal("44.12"), 1, 8, 12, attributes=dict(_BROAD)),
    Instrument("AGGB", "Harbor Point US Agg Bond", FundKind.ETF, "us_bonds_aggregate",
               "Harbor Point Asset Mgmt", Decimal("98.61"), 1, 2, 4, attributes=dict(_CLEAN)),
    Instrument("TIPS", "Harbor Point TIPS ETF", FundKind.ETF, "inflation_linked_bonds",
               "Harbor Point Asset Mgmt", Decimal("107.90"), 1, 3, 5, attributes=dict(_CLEAN)),
    Instrument("REIT", "Keystone Global REIT ETF", FundKind.ETF, "global_reits",
               "Keystone Capital", Decimal("39.77"), 1, 6, 10, attributes=dict(_CLEAN)),
    Instrument("CLEN", "Keystone Clean Energy ETF", FundKind.ETF, "thematic_clean_energy",
               "Keystone Capital", Decimal("18.26"), 1, 10, 15, attributes=dict(_CLEAN),
               themes=("green_energy",)),
    # Mutual funds: daily NAV, traded at NAV plus a small spread.
    Instrument("BALX", "Meridian Balanced Fund", FundKind.MUTUAL_FUND, "multi_asset_balanced",
               "Meridian Funds", Decimal("31.48"), 1, 5, 10, attributes=dict(_BROAD)),
    Instrument("MUNI", "Harbor Point Muni Bond Fd", FundKind.MUTUAL_FUND, "municipal_bonds",
               "Harbor Point Asset Mgmt", Decimal("10.83"), 1, 5, 10, attributes=dict(_CLEAN)),
    Instrument("HYLD", "Northwind High Yield Fund", FundKind.MUTUAL_FUND, "high_yield_bonds",
               "Northwind Investments", Decimal("9.12"), 1, 8, 15, attributes=dict(_BROAD)),
    Instrument("DIVI", "Keystone Dividend Equity", FundKind.MUTUAL_FUND, "us_equity_dividend",
               "Keystone Capital", Decimal("27.55"), 1, 5, 10, attributes=dict(_BROAD)),
    # Alternatives: monthly NAV, wide spreads, quarterly windows with a 5% gate.
    Instrument("PEQ", "Summit Private Equity Fd", FundKind.ALTERNATIVE, "private_equity",
               "Summit Alternatives", Decimal("124.80"), 31, 60, 100, gate_bps=500,
               redemption_window_days=91, attributes=dict(_BROAD)),
    Instrument("PCRD", "Summit Private Credit Fd", FundKind.ALTERNATIVE, "private_credit",
               "Summit Alternatives", Decimal("10.42"), 31, 40, 75, gate_bps=500,
               redemption_window_days=91, attributes=dict(_CLEAN)),
    Instrument("PRE", "Cairn Real Estate Income", FundKind.ALTERNATIVE, "real_estate",
               "Cairn Real Assets", Decimal("25.31"), 31, 50, 100, gate_bps=500,
               redemption_window_days=91, attributes=dict(_CLEAN)),
    Instrument("INFR", "Cairn Infrastructure Fund", FundKind.ALTERNATIVE, "infrastructure",
               "Cairn Real Assets", Decimal("15.67"), 31, 50, 100, gate_bps=500,
               redemption_window_days=91, attributes=dict(_CLEAN), themes=("green_energy",)),
)

CASH_SYMBOL = "USDL"
BY_SYMBOL: dict[str, Instrument] = {i.symbol: i for i in UNIVERSE}


def instrument(symbol: str) -> Instrument:
    """Return the instrument with ``symbol``; raises ``KeyError`` naming it if unknown."""
    try:
        return BY_SYMBOL[symbol]
    except KeyError:
        raise KeyError(f"unknown instrument {symbol!r}; known: {sorted(BY_SYMBOL)}") from None


def funds() -> tuple[Instrument, ...]:
    """Every instrument except the cash token."""
    return tuple(i for i in UNIVERSE if i.kind != FundKind.CASH)
