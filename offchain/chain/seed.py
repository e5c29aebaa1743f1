"""The demo investors' starting point: identity, profile commitment and opening positions.

Opening positions are given in cash value (exact decimals) and converted to units at the
instrument's NAV, so each investor starts with a recognisable, deliberately drifted
portfolio that the optimizer will want to rebalance.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from offchain.chain.actors import INVESTORS, Actor
from offchain.cloud.profile import Profile
from offchain.universe import WAD, instrument

# ISO 3166-1 numeric codes.
JURISDICTION_US = 840
JURISDICTION_FR = 250
JURISDICTION_DE = 276
JURISDICTION_SG = 702


@dataclass(frozen=True)
class DemoInvestor:
    """A demo investor: who they are and what they hold at the start (cash value per symbol)."""

    actor: Actor
    jurisdiction: int
    risk_category: int
    discretionary: bool
    opening_values: dict[str, Decimal]


DEMO_INVESTORS: tuple[DemoInvestor, ...] = (
    DemoInvestor(INVESTORS[0], JURISDICTION_FR, 2, False, {
        "USDL": Decimal("20000"), "AGGB": Decimal("95000"), "MUNI": Decimal("30000"),
        "LCAP": Decimal("60000"), "DXUS": Decimal("15000"), "TIPS": Decimal("10000"),
    }),
    DemoInvestor(INVESTORS[1], JURISDICTION_US, 4, True, {
        "USDL": Decimal("50000"), "LCAP": Decimal("180000"), "SCAP": Decimal("40000"),
        "EMEQ": Decimal("35000"), "AGGB": Decimal("30000"), "PEQ": Decimal("25000"),
    }),
    DemoInvestor(INVESTORS[2], JURISDICTION_DE, 3, False, {
        "USDL": Decimal("15000"), "BALX": Decimal("80000"), "LCAP": Decimal("45000"),
        "AGGB": Decimal("40000"), "CLEN": Decimal("12000"), "PRE": Decimal("8000"),
    }),
    DemoInvestor(INVESTORS[3], JURISDICTION_SG, 5, True, {
        "USDL": Decimal("100000"), "LCAP": Decimal("220000"), "SCAP": Decimal("70000"),
        "EMEQ": Decimal("60000"), "DXUS": Decimal("50000"), "PCRD": Decimal("20000"),
        "INFR": Decimal("15000"),
    }),
)


def units_for_value(symbol: str, value: Decimal) -> int:
    """Units (18 decimals) worth ``value`` cash at the instrument's NAV, rounded down."""
    nav_wad = instrument(symbol).nav_wad
    return int(value * WAD) * WAD // nav_wad


# Mandate terms the demo investors grant the keeper: a flat fee per year in USDL (never a
# percentage of assets), limits no wider than 2% from NAV, turnover capped per day.
MANDATE_DAYS = 365
MANDATE_MAX_DEVIATION_BPS = 200
MANDATE_TURNOVER_PER_DAY = Decimal("2000000")
MANDATE_FEE = {True: Decimal("1200"), False: Decimal("600")}  # discretionary, advisory
ADVISORY_MODE, DISCRETIONARY_MODE = 1, 2


def seed_pool_accounts(accounts, chain, registry, pool, tokens: dict, keeper_address: str,
                       investors=DEMO_INVESTORS) -> None:
    """Each demo investor moves its opening positions into LightPool escrow (orders draw on
    escrow) and grants the keeper a mandate over every listed fund: discretionary or
    advisory as the investor chose. ``tokens`` maps symbol -> ape contract."""
    from offchain.universe import DAY

    instruments = [t.address for s, t in tokens.items() if s != "USDL"]
    for investor in investors:
        who = accounts.test_accounts[investor.actor.index]
        for symbol in investor.opening_values:
            token = tokens[symbol]
            balance = token.balanceOf(who.address)
            token.approve(pool.address, balance, sender=who)
            pool.deposit(token.address, balance, sender=who)
        registry.grant_mandate(
            keeper_address,
            DISCRETIONARY_MODE if investor.discretionary else ADVISORY_MODE,
            instruments, int(MANDATE_TURNOVER_PER_DAY * WAD), DAY, MANDATE_MAX_DEVIATION_BPS,
            int(MANDATE_FEE[investor.discretionary] * WAD),
            chain.pending_timestamp + MANDATE_DAYS * DAY, sender=who,
        )


def demo_profile(investor: DemoInvestor, as_of) -> Profile:  # as_of: datetime.date
    """The demo investor's financial profile (what MyFinancialCloud stores, encrypted):
    questionnaire scores at the investor's risk category, one goal, taxes, service mode."""
    import datetime as dt

    from offchain.cloud.profile import parse_profile

    category = investor.risk_category
    value = sum(investor.opening_values.values(), Decimal(0))
    return parse_profile({
        "investor": investor.actor.address,
        "as_of": as_of.isoformat(),
        "investable_assets": str(value),
        "risk": {"capacity": category, "tolerance": category, "horizon_years": 5 + 5 * category},
        "goals": [{"name": "Retirement", "amount": str(value * 3),
                   "target_date": (as_of + dt.timedelta(days=365 * (5 + 5 * category)))
                   .isoformat(), "priority": "important"}],
        "explicit": {"exclusions": ["structured_products"],
                     "themes": ["green_energy"] if investor.jurisdiction == JURISDICTION_DE
                     else []},
        "tax": {"account_type": "taxable", "income_rate": "0.32",
                "long_term_gains_rate": "0.15"},
        "service_mode": "discretionary" if investor.discretionary else "advisory",
    })


def seed_profiles(store_url: str | None, as_of, keeper_public_key: bytes, expiry: int,
                  investors=DEMO_INVESTORS) -> dict[str, bytes]:
    """Store each demo investor's profile encrypted under a key from their wallet signature,
    share it with the keeper (ECIES grant), and return investor -> commitment to put on
    chain with the matching consent grant."""
    from offchain.cloud.store import ProfileStore, WalletUnlock

    store = ProfileStore(store_url)
    commitments = {}
    for investor in investors:
        vault = store.vault(investor.actor.address,
                            WalletUnlock.from_private_key(investor.actor.private_key))
        saved = vault.save_profile(demo_profile(investor, as_of))
        vault.grant(keeper_public_key, expiry)
        commitments[investor.actor.address] = saved.commitment
    return commitments
