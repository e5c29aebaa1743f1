"""The advisor's menu: from an investor's profile to a model plus account customizations.

The output is the optimizer's own types (:class:`offchain.optimizer.inputs.ModelPortfolio`
and :class:`offchain.optimizer.inputs.Customizations`), so the keeper can pass it on as is.

Rules (each one is reported in ``AccountSetup.reasons``):

* risk category = the learned risk aversion's category (or the questionnaire tolerance when
  nothing was learned), capped by the risk capacity, and at most 2 for horizons under 3 years;
* exclusions become screens on the universe's attributes (fossil fuels, tobacco, weapons,
  structured products) or never-buy restrictions (alternatives, high yield, emerging markets);
* themes become substitutions: green energy holds CLEN instead of SCAP, dividend income DIVI
  instead of LCAP; a taxable account with an income rate of 32% or more holds the municipal
  bond fund MUNI instead of AGGB;
* tax settings from the profile (short-term = income + state rate, long-term = long-term gains
  + state rate; no taxes and no harvesting outside taxable accounts);
* the emergency reserve (USD = cash-token units) is the account's minimum cash.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from offchain.cloud.preferences import category_for_gamma
from offchain.cloud.profile import AccountType, Exclusion, Profile, Theme
from offchain.models.portfolios import ModelStore, ModelVersion
from offchain.optimizer.inputs import Customizations, ModelPortfolio, Screen, TaxSettings
from offchain.universe import BY_SYMBOL, FundKind

SCREENED = {
    Exclusion.FOSSIL_FUELS: "fossil_fuels",
    Exclusion.TOBACCO: "tobacco",
    Exclusion.WEAPONS: "weapons",
    Exclusion.STRUCTURED_PRODUCTS: "structured",
}
RESTRICTED = {
    Exclusion.ALTERNATIVES: tuple(s for s, i in BY_SYMBOL.items()
                                  if i.kind == FundKind.ALTERNATIVE),
    Exclusion.HIGH_YIELD: ("HYLD",),
    Exclusion.EMERGING_MARKETS: ("EMEQ",),
}
THEME_SUBSTITUTIONS = {Theme.GREEN_ENERGY: ("SCAP", "CLEN"),
                       Theme.DIVIDEND_INCOME: ("LCAP", "DIVI")}
MUNI_INCOME_RATE = Decimal("0.32")
TOLERANCE_CATEGORY = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5}


@dataclass(frozen=True)
class AccountSetup:
    """What the advisor's menu produces for one account, in the optimizer's types."""

    risk_category: int
    model_version: int
    model: ModelPortfolio
    customizations: Customizations
    reasons: tuple[str, ...]


def risk_category(profile: Profile) -> tuple[int, list[str]]:
    """The risk category 1..5 for ``profile`` and the reasons, per the module's rules."""
    reasons = []
    if profile.implicit is not None:
        category = category_for_gamma(float(profile.implicit.risk_aversion))
        reasons.append(f"learned risk aversion {profile.implicit.risk_aversion} -> category "
                       f"{category}")
    else:
        category = TOLERANCE_CATEGORY[profile.risk.tolerance]
        reasons.append(f"questionnaire tolerance {profile.risk.tolerance} -> category {category}")
    if profile.risk.capacity < category:
        category = profile.risk.capacity
        reasons.append(f"capped by risk capacity {profile.risk.capacity}")
    if profile.risk.horizon_years < 3 and category > 2:
        category = 2
        reasons.append(f"capped at 2 for a {profile.risk.horizon_years}-year horizon")
    return category, reasons


def account_setup(profile: Profile, store: ModelStore | None = None) -> AccountSetup:
    """Map ``profile`` to the latest model of its risk category plus customizations."""
    store = store or ModelStore()
    category, reasons = risk_category(profile)
    chosen: ModelVersion = store.for_category(category)
    model = chosen.model
    reasons.append(f"model {model.model_id} '{model.name}' v{chosen.version}")

    screens = tuple(Screen(attribute=SCREENED[e], op="==", value=False)
                    for e in profile.explicit.exclusions if e in SCREENED)
    never_buy: set[str] = set()
    for exclusion in profile.explicit.exclusions:
        never_buy.update(RESTRICTED.get(exclusion, ()))
    for screen in screens:
        reasons.append(f"screen: {screen.attribute} == False")
    if never_buy:
        reasons.append(f"never buy: {', '.join(sorted(never_buy))}")

    substitutions: dict[str, str] = {}
    for theme in profile.explicit.themes:
        if theme in THEME_SUBSTITUTIONS:
            held, instead = THEME_SUBSTITUTIONS[theme]
            if held in model.securities and instead not in never_buy:
                substitutions[held] = instead
                reasons.append(f"theme {theme.value}: hold {instead} instead of {held}")
    tax = profile.tax
    taxable = tax.account_type is AccountType.TAXABLE
    if taxable and tax.income_rate >= MUNI_INCOME_RATE and "AGGB" in model.securities:
        substitutions["AGGB"] = "MUNI"
        reasons.append(f"income rate {tax.income_rate:.0%}: hold tax-exempt MUNI instead of AGGB")

    settings = TaxSettings(
        short_term_rate=float(tax.income_rate + tax.state_rate) if taxable else 0.0,
        long_term_rate=float(tax.long_term_gains_rate + tax.state_rate) if taxable else 0.0,
        loss_harvest_threshold=0.05 if taxable and tax.harvest_losses else 1.0,
    )
    customizations = Customizations(
        never_buy=frozenset(never_buy),
        screens=screens,
        substitutions=substitutions,
        tax=settings,
        min_cash=profile.liquidity.emergency_reserve,
    )
    approved = set(model.approved) | set(substitutions.values())
    optimizer_model = model.model_copy(update={"approved": sorted(approved)}).to_optimizer()
    return AccountSetup(category, chosen.version, optimizer_model, customizations, tuple(reasons))
