"""The wealth plan: capital-market assumptions, strategic allocation, glide paths, explanation.

* Capital-market assumptions (CMA) are read from ``data/cma.json``: per asset class a compound
  expected return and a volatility (fractions per year) with the source of each figure, and a
  factor model of the correlations (positive semi-definite by construction).
* The strategic allocation maximises ``w'mu - gamma/2 w'Sigma w`` (arithmetic returns,
  ``mu = g + sigma^2/2``) subject to: weights sum to 1, the policy cap of each class
  (``POLICY_MAX``), alternatives (illiquid classes) at most the investor's
  ``max_illiquid_fraction`` (0 when alternatives are excluded), cash at least the emergency
  reserve plus a year of withdrawals, excluded classes at 0, and thematic classes only for
  investors who named the theme.
* ``gamma`` is the learned risk aversion when the profile has one, else the questionnaire's.
* A glide path per goal re-solves with ``gamma`` rising as the goal nears (x1 at 10 years or
  more, up to x4 at the target date, x1.5 more for essential goals) and the alternatives cap
  falling to 0 two years before it: a gated fund (5% of supply per quarter) can take five
  years to leave.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from scipy.optimize import minimize
from scipy.stats import norm

from offchain.cloud.preferences import TOLERANCE_GAMMA
from offchain.cloud.profile import (
    CanonDecimal,
    Exclusion,
    GoalPriority,
    Profile,
    Theme,
    _FieldError,
    validate_model,
)
from offchain.errors import InvalidInput

CMA_FILE = Path(__file__).with_name("data") / "cma.json"
PLAN_SCHEMA = "lightpool.plan/1"
GROUPS = ("cash", "bonds", "equity", "alternatives")
# The investment committee's cap per asset class (fraction of the portfolio).
POLICY_MAX = {
    "cash": 1.0, "us_bonds_aggregate": 0.6, "inflation_linked_bonds": 0.2,
    "municipal_bonds": 0.4, "high_yield_bonds": 0.06, "us_equity_large": 0.5,
    "us_equity_small": 0.08, "us_equity_dividend": 0.1, "intl_equity_developed": 0.15,
    "emerging_markets_equity": 0.06, "global_reits": 0.05, "thematic_clean_energy": 0.08,
    "private_equity": 0.1, "private_credit": 0.1, "real_estate": 0.1, "infrastructure": 0.1,
}
# Which exclusion removes which classes, and which theme unlocks which thematic class.
EXCLUDED_BY = {
    Exclusion.HIGH_YIELD: ("high_yield_bonds",),
    Exclusion.EMERGING_MARKETS: ("emerging_markets_equity",),
    Exclusion.ALTERNATIVES: ("private_equity", "private_credit", "real_estate", "infrastructure"),
}
THEMATIC = {"thematic_clean_energy": Theme.GREEN_ENERGY}
GLIDE_YEARS = (30, 20, 15, 10, 7, 5, 3, 2, 1, 0)
WEIGHT_PLACES = Decimal("0.0001")


class AssetClassAssumption(BaseModel):
    """One asset class: compound ``expected_return`` and ``volatility`` (fractions a year)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group: str
    expected_return: Decimal = Field(ge=Decimal("-0.2"), le=Decimal("0.3"))
    volatility: Decimal = Field(ge=0, le=1)
    illiquid: bool
    source: str = Field(min_length=1)
    note: str = Field(min_length=1)

    @field_validator("group")
    @classmethod
    def _group(cls, value: str) -> str:
        if value not in GROUPS:
            raise ValueError(f"one of {list(GROUPS)}")
        return value


class CorrelationModel(BaseModel):
    """Correlations as ``normalise(B B' + diag(1 - |b_i|^2))``: PSD by construction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    factors: list[str] = Field(min_length=1)
    loadings: dict[str, list[Decimal]]


class CapitalMarketAssumptions(BaseModel):
    """The CMA file (schema ``lightpool.cma/1``); every figure names a source in ``sources``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_id: str = Field(alias="schema")
    version: str
    base_currency: str
    return_basis: str
    sources: dict[str, str]
    asset_classes: dict[str, AssetClassAssumption] = Field(min_length=2)
    correlation_model: CorrelationModel

    @model_validator(mode="after")
    def _consistent(self) -> CapitalMarketAssumptions:
        if self.schema_id != "lightpool.cma/1":
            raise _FieldError("schema", "'lightpool.cma/1'")
        if "cash" not in self.asset_classes:
            raise _FieldError("asset_classes", "a 'cash' class")
        for name, assumption in self.asset_classes.items():
            if assumption.source not in self.sources:
                raise _FieldError(f"asset_classes.{name}.source", "a key of sources")
        model = self.correlation_model
        if model.source not in self.sources:
            raise _FieldError("correlation_model.source", "a key of sources")
        for name in self.asset_classes:
            row = model.loadings.get(name)
            if row is None:
                raise _FieldError(f"correlation_model.loadings.{name}", "a loadings row")
            if len(row) != len(model.factors):
                raise _FieldError(f"correlation_model.loadings.{name}",
                                  f"{len(model.factors)} loadings")
            if sum(x * x for x in row) >= 1:
                raise _FieldError(f"correlation_model.loadings.{name}",
                                  "loadings with a sum of squares below 1")
        return self

    @property
    def names(self) -> list[str]:
        """Asset-class names in file order."""
        return list(self.asset_classes)

    def arithmetic_returns(self) -> np.ndarray:
        """Arithmetic expected returns ``g + sigma^2 / 2`` (fractions a year)."""
        return np.array([float(a.expected_return) + float(a.volatility) ** 2 / 2
                         for a in self.asset_classes.values()])

    def correlation(self) -> np.ndarray:
        """The correlation matrix implied by the factor loadings."""
        b = np.array([[float(x) for x in self.correlation_model.loadings[n]] for n in self.names])
        cov = b @ b.T
        np.fill_diagonal(cov, 1.0)
        return cov

    def covariance(self) -> np.ndarray:
        """Annual covariance matrix (fractions squared)."""
        vol = np.array([float(a.volatility) for a in self.asset_classes.values()])
        return self.correlation() * np.outer(vol, vol)


def parse_cma(data: Any) -> CapitalMarketAssumptions:
    """Validate CMA data; raises :class:`InvalidInput` naming the field (``cma.<path>``)."""
    if not isinstance(data, dict):
        raise InvalidInput("cma", "a JSON object", data)
    return validate_model(CapitalMarketAssumptions, data, "cma")


@lru_cache(maxsize=4)
def load_cma(path: Path = CMA_FILE) -> CapitalMarketAssumptions:
    """Read and validate the CMA file (default ``offchain/cloud/data/cma.json``)."""
    return parse_cma(json.loads(Path(path).read_text()))


class GlidePoint(BaseModel):
    """Group weights (fractions summing to 1) ``years_to_goal`` years before a goal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    years_to_goal: int = Field(ge=0, le=80)
    risk_aversion: CanonDecimal = Field(gt=0)
    cash: CanonDecimal = Field(ge=0, le=1)
    bonds: CanonDecimal = Field(ge=0, le=1)
    equity: CanonDecimal = Field(ge=0, le=1)
    alternatives: CanonDecimal = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _sums(self) -> GlidePoint:
        total = self.cash + self.bonds + self.equity + self.alternatives
        if abs(total - 1) > Decimal("0.0005"):
            raise ValueError(f"group weights summing to 1 (got {total})")
        return self


class GoalPlan(BaseModel):
    """One goal's glide path and its chance of being met (``funding_probability``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    goal: str = Field(min_length=1)
    target_date: dt.date
    amount: CanonDecimal = Field(gt=0)
    capital: CanonDecimal = Field(ge=0)
    funding_probability: CanonDecimal = Field(ge=0, le=1)
    glide_path: list[GlidePoint] = Field(min_length=1)

    @field_validator("glide_path")
    @classmethod
    def _descending(cls, points: list[GlidePoint]) -> list[GlidePoint]:
        years = [p.years_to_goal for p in points]
        if years != sorted(set(years), reverse=True):
            raise ValueError("years_to_goal strictly decreasing")
        return points


class WealthPlan(BaseModel):
    """A wealth plan (schema ``lightpool.plan/1``). Weights are fractions summing to 1;
    ``expected_return`` (compound) and ``volatility`` are fractions per year."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_id: str = Field(default=PLAN_SCHEMA, alias="schema")
    investor: str
    profile_as_of: dt.date
    cma_version: str
    risk_aversion: CanonDecimal = Field(gt=0, le=100)
    risk_aversion_source: str
    illiquid_cap: CanonDecimal = Field(ge=0, le=1)
    cash_floor: CanonDecimal = Field(ge=0, le=1)
    allocation: dict[str, CanonDecimal] = Field(min_length=1)
    expected_return: CanonDecimal = Field(ge=-1, le=1)
    volatility: CanonDecimal = Field(ge=0, le=1)
    goals: list[GoalPlan] = Field(default_factory=list)
    explanation: list[str] = Field(min_length=1)

    @field_validator("schema_id")
    @classmethod
    def _schema(cls, value: str) -> str:
        if value != PLAN_SCHEMA:
            raise ValueError(f"the schema id {PLAN_SCHEMA!r}")
        return value

    @field_validator("risk_aversion_source")
    @classmethod
    def _source(cls, value: str) -> str:
        if value not in ("learned", "questionnaire"):
            raise ValueError("'learned' or 'questionnaire'")
        return value

    @model_validator(mode="after")
    def _weights(self) -> WealthPlan:
        known = set(load_cma().names)
        for name, weight in self.allocation.items():
            if name not in known:
                raise _FieldError(f"allocation.{name}", "an asset class of the CMA file")
            if not 0 <= weight <= 1:
                raise _FieldError(f"allocation.{name}", "a weight between 0 and 1")
        total = sum(self.allocation.values(), Decimal(0))
        if abs(total - 1) > Decimal("0.0005"):
            raise _FieldError("allocation", f"weights summing to 1 (got {total})")
        illiquid = sum((w for n, w in self.allocation.items()
                        if load_cma().asset_classes[n].illiquid), Decimal(0))
        if illiquid > self.illiquid_cap + Decimal("0.0005"):
            raise _FieldError("allocation",
                              f"alternatives at most illiquid_cap {self.illiquid_cap}")
        if self.allocation.get("cash", Decimal(0)) + Decimal("0.0005") < self.cash_floor:
            raise _FieldError("allocation.cash", f"at least cash_floor {self.cash_floor}")
        names = [g.goal for g in self.goals]
        if len(set(names)) != len(names):
            raise _FieldError("goals", "unique goal names")
        return self

    def groups(self) -> dict[str, Decimal]:
        """Weights summed per group (cash, bonds, equity, alternatives)."""
        return _group_weights(self.allocation, load_cma())


def parse_plan(data: Any) -> WealthPlan:
    """Validate a plan document; raises :class:`InvalidInput` naming the field (``plan.*``)."""
    if not isinstance(data, dict):
        raise InvalidInput("plan", "a JSON object", data)
    return validate_model(WealthPlan, data, "plan")


def risk_aversion_of(profile: Profile) -> tuple[float, str]:
    """``(gamma, source)``: the learned estimate if any, else the questionnaire's."""
    if profile.implicit is not None:
        return float(profile.implicit.risk_aversion), "learned"
    return TOLERANCE_GAMMA[profile.risk.tolerance], "questionnaire"


def _constraints(profile: Profile, cma: CapitalMarketAssumptions
                 ) -> tuple[float, float, list[float]]:
    """``(illiquid_cap, cash_floor, upper bound per class)`` from the profile."""
    assets = float(profile.investable_assets)
    illiquid_cap = float(profile.liquidity.max_illiquid_fraction)
    needs = float(profile.liquidity.emergency_reserve + profile.liquidity.annual_withdrawals)
    cash_floor = min(needs / assets, 1.0) if assets > 0 else 1.0
    excluded = {name for e in profile.explicit.exclusions for name in EXCLUDED_BY.get(e, ())}
    upper = []
    for name, assumption in cma.asset_classes.items():
        cap = POLICY_MAX.get(name, 0.1)
        if name in excluded or (name in THEMATIC and THEMATIC[name] not in
                                profile.explicit.themes):
            cap = 0.0
        if assumption.illiquid:
            cap = min(cap, illiquid_cap)
        upper.append(cap)
    return illiquid_cap, cash_floor, upper


def optimal_weights(
    gamma: float, cma: CapitalMarketAssumptions, upper: list[float], illiquid_cap: float,
    cash_floor: float,
) -> np.ndarray:
    """Mean-variance weights for risk aversion ``gamma`` under the plan's constraints.

    Raises :class:`InvalidInput` if the constraints admit no portfolio.
    """
    mu, cov = cma.arithmetic_returns(), cma.covariance()
    names = cma.names
    illiquid = np.array([cma.asset_classes[n].illiquid for n in names], dtype=float)
    cash_index = names.index("cash")
    lower = np.zeros(len(names))
    lower[cash_index] = cash_floor
    upper_arr = np.maximum(np.array(upper), lower)
    if upper_arr.sum() < 1 - 1e-9:
        raise InvalidInput("profile", "exclusions and caps that leave a fully invested portfolio")
    start = np.clip(np.full(len(names), 1 / len(names)), lower, upper_arr)
    start /= start.sum()
    result = minimize(
        lambda w: -(w @ mu) + gamma / 2 * w @ cov @ w,
        start,
        jac=lambda w: -mu + gamma * cov @ w,
        bounds=list(zip(lower, upper_arr, strict=True)),
        constraints=[
            {"type": "eq", "fun": lambda w: w.sum() - 1, "jac": lambda w: np.ones_like(w)},
            {"type": "ineq", "fun": lambda w: illiquid_cap - illiquid @ w,
             "jac": lambda w: -illiquid},
        ],
        method="SLSQP",
        options={"ftol": 1e-12, "maxiter": 500},
    )
    weights = np.clip(result.x, 0, None)
    return weights / weights.sum()


def _rounded(names: list[str], weights: np.ndarray) -> dict[str, Decimal]:
    """Weights to 4 decimals summing exactly to 1 (the remainder goes to the largest)."""
    out = {n: Decimal(str(w)).quantize(WEIGHT_PLACES) for n, w in zip(names, weights, strict=True)
           if w >= 0.00005}
    largest = max(out, key=lambda n: out[n])
    out[largest] += Decimal(1) - sum(out.values(), Decimal(0))
    return out


def _group_weights(allocation: dict[str, Decimal], cma: CapitalMarketAssumptions
                   ) -> dict[str, Decimal]:
    groups = {g: Decimal(0) for g in GROUPS}
    for name, weight in allocation.items():
        groups[cma.asset_classes[name].group] += weight
    return groups


def _portfolio_stats(weights: np.ndarray, cma: CapitalMarketAssumptions) -> tuple[float, float]:
    """(compound expected return, volatility) of a weight vector, fractions a year."""
    variance = float(weights @ cma.covariance() @ weights)
    return float(weights @ cma.arithmetic_returns()) - variance / 2, math.sqrt(variance)


def glide_multiplier(years_to_goal: int, priority: GoalPriority) -> float:
    """Factor on gamma ``years_to_goal`` years before a goal (1 at 10+ years, 4 at 0)."""
    ramp = 1 + 3 * max(0.0, (10 - years_to_goal) / 10)
    return ramp * (1.5 if priority is GoalPriority.ESSENTIAL else 1.0)


def glide_illiquid_cap(years_to_goal: int, cap: float) -> float:
    """Alternatives cap before a goal: full at 7+ years, 0 at 2 years or fewer."""
    return cap * min(1.0, max(0.0, (years_to_goal - 2) / 5))


def build_plan(profile: Profile, cma: CapitalMarketAssumptions | None = None) -> WealthPlan:
    """The wealth plan for ``profile``: strategic allocation, glide paths and explanation.

    Raises :class:`InvalidInput` if the profile's constraints leave no feasible portfolio.
    """
    cma = cma or load_cma()
    gamma, source = risk_aversion_of(profile)
    illiquid_cap, cash_floor, upper = _constraints(profile, cma)
    weights = optimal_weights(gamma, cma, upper, illiquid_cap, cash_floor)
    allocation = _rounded(cma.names, weights)
    expected, volatility = _portfolio_stats(weights, cma)
    goals = _goal_plans(profile, cma, gamma, upper, illiquid_cap, cash_floor, expected)
    plan = {
        "schema": PLAN_SCHEMA,
        "investor": profile.investor,
        "profile_as_of": profile.as_of.isoformat(),
        "cma_version": cma.version,
        "risk_aversion": _dec(gamma, "0.01"),
        "risk_aversion_source": source,
        "illiquid_cap": _dec(illiquid_cap, "0.0001"),
        "cash_floor": _dec(cash_floor, "0.0001"),
        "allocation": allocation,
        "expected_return": _dec(expected, "0.0001"),
        "volatility": _dec(volatility, "0.0001"),
        "goals": goals,
        "explanation": ["-"],
    }
    draft = parse_plan(plan)
    return draft.model_copy(update={"explanation": explain(profile, draft, cma)})


def _goal_plans(
    profile: Profile, cma: CapitalMarketAssumptions, gamma: float, upper: list[float],
    illiquid_cap: float, cash_floor: float, expected: float,
) -> list[dict[str, Any]]:
    assets = float(profile.investable_assets - profile.liquidity.emergency_reserve)
    years_of = {g.name: max((g.target_date - profile.as_of).days / 365.25, 0.0)
                for g in profile.goals}
    present = {g.name: float(g.amount) / (1 + expected) ** years_of[g.name] for g in profile.goals}
    total_present = sum(present.values()) or 1.0
    out = []
    for goal in profile.goals:
        years = years_of[goal.name]
        capital = assets * present[goal.name] / total_present
        points = []
        for y in [int(round(years))] + [y for y in GLIDE_YEARS if y < round(years)]:
            g = gamma * glide_multiplier(y, goal.priority)
            cap = glide_illiquid_cap(y, illiquid_cap)
            capped = [min(u, cap) if cma.asset_classes[n].illiquid else u
                      for n, u in zip(cma.names, upper, strict=True)]
            w = optimal_weights(g, cma, capped, cap, cash_floor)
            groups = _group_weights(_rounded(cma.names, w), cma)
            points.append({"years_to_goal": y, "risk_aversion": _dec(g, "0.01"),
                           **{k: v for k, v in groups.items()}})
        mu, sigma = _path_stats(profile, cma, gamma, goal, upper, illiquid_cap, cash_floor, years)
        probability = _funding_probability(capital, float(goal.amount), years, mu, sigma)
        out.append({
            "goal": goal.name, "target_date": goal.target_date.isoformat(),
            "amount": goal.amount, "capital": _dec(capital, "1"),
            "funding_probability": _dec(probability, "0.01"), "glide_path": points,
        })
    return out


def _path_stats(
    profile: Profile, cma: CapitalMarketAssumptions, gamma: float, goal: Any, upper: list[float],
    illiquid_cap: float, cash_floor: float, years: float,
) -> tuple[float, float]:
    """Average compound return and volatility along the glide path (fractions a year)."""
    if years <= 0:
        return 0.0, 0.0
    mus, variances = [], []
    for y in range(int(math.ceil(years)), 0, -1):
        cap = glide_illiquid_cap(y, illiquid_cap)
        capped = [min(u, cap) if cma.asset_classes[n].illiquid else u
                  for n, u in zip(cma.names, upper, strict=True)]
        w = optimal_weights(gamma * glide_multiplier(y, goal.priority), cma, capped, cap,
                            cash_floor)
        mu, sigma = _portfolio_stats(w, cma)
        mus.append(mu)
        variances.append(sigma**2)
    return float(np.mean(mus)), math.sqrt(float(np.mean(variances)))


def _funding_probability(capital: float, amount: float, years: float, mu: float,
                         sigma: float) -> float:
    """P(capital grown at compound ``mu`` with volatility ``sigma`` reaches ``amount``)."""
    if capital <= 0:
        return 0.0
    if years <= 0 or sigma == 0:
        return float(capital * (1 + mu) ** years >= amount)
    spread = sigma * math.sqrt(years)
    z = (math.log(capital / amount) + math.log1p(mu) * years) / spread
    return float(norm.cdf(z))


def explain(profile: Profile, plan: WealthPlan, cma: CapitalMarketAssumptions | None = None
            ) -> list[str]:
    """Plain-language sentences saying why the plan looks as it does."""
    cma = cma or load_cma()
    groups = plan.groups()
    lines = []
    if plan.risk_aversion_source == "learned":
        implicit = profile.implicit
        assert implicit is not None
        lines.append(
            f"Your risk aversion is {plan.risk_aversion}, learned from {implicit.observations} "
            f"of your choices (90% between {implicit.risk_aversion_low} and "
            f"{implicit.risk_aversion_high})."
        )
    else:
        lines.append(
            f"Your risk aversion is {plan.risk_aversion}, the typical value for a tolerance "
            f"score of {profile.risk.tolerance} in the questionnaire; answering a few choice "
            "questions will refine it."
        )
    lines.append(
        f"That gives {groups['equity']:.0%} equity, {groups['bonds']:.0%} bonds, "
        f"{groups['alternatives']:.0%} alternatives and {groups['cash']:.0%} cash, expected to "
        f"return {plan.expected_return:.1%} a year with a volatility of {plan.volatility:.1%} "
        f"(capital-market assumptions {cma.version})."
    )
    if Exclusion.ALTERNATIVES in profile.explicit.exclusions:
        lines.append("You excluded alternatives, so none are held.")
    else:
        lines.append(
            f"Alternatives are capped at {plan.illiquid_cap:.0%}, the most you accept to lock "
            "up: they can only be redeemed quarterly, 5% of the fund at a time."
        )
    if plan.cash_floor > 0:
        lines.append(
            f"At least {plan.cash_floor:.1%} stays in cash for your emergency reserve and a "
            "year of withdrawals."
        )
    excluded = sorted(e.value.replace("_", " ") for e in profile.explicit.exclusions)
    if excluded:
        lines.append(f"Excluded at your request: {', '.join(excluded)}.")
    if Theme.GREEN_ENERGY in profile.explicit.themes:
        lines.append("Clean energy is allowed as a satellite (at most 8%) because you asked "
                     "for it.")
    for goal in plan.goals:
        last = goal.glide_path[-1]
        lines.append(
            f"Goal '{goal.goal}' ({goal.target_date}): ${goal.capital:,} set aside today has a "
            f"{goal.funding_probability:.0%} chance of reaching ${goal.amount:,}; the mix moves "
            f"to {last.equity:.0%} equity by the target date."
        )
    return lines


def explain_change(old: WealthPlan, new: WealthPlan, old_profile: Profile,
                   new_profile: Profile) -> list[str]:
    """Sentences saying what changed in the profile and how the plan moved as a result."""
    lines = []
    if old.risk_aversion != new.risk_aversion:
        lines.append(
            f"Risk aversion moved from {old.risk_aversion} ({old.risk_aversion_source}) to "
            f"{new.risk_aversion} ({new.risk_aversion_source})."
        )
    if old.illiquid_cap != new.illiquid_cap:
        lines.append(f"The alternatives cap moved from {old.illiquid_cap:.0%} to "
                     f"{new.illiquid_cap:.0%}.")
    if old.cash_floor != new.cash_floor:
        lines.append(f"The cash floor moved from {old.cash_floor:.1%} to {new.cash_floor:.1%}.")
    if old_profile.explicit != new_profile.explicit:
        lines.append("Your exclusions or themes changed.")
    if [g.name for g in old_profile.goals] != [g.name for g in new_profile.goals]:
        lines.append("Your goals changed.")
    before, after = old.groups(), new.groups()
    moves = [f"{g} {before[g]:.0%} -> {after[g]:.0%}" for g in GROUPS if before[g] != after[g]]
    lines.append("Allocation: " + (", ".join(moves) if moves else "unchanged") + ".")
    return lines


def _dec(value: float, places: str) -> Decimal:
    return Decimal(str(value)).quantize(Decimal(places))


def store_plan(vault: Any, data: WealthPlan | dict[str, Any]) -> int:
    """Validate ``data`` and store it encrypted as the vault's next plan version.

    Raises :class:`InvalidInput` (nothing written) if the plan is malformed or belongs to
    another investor. Returns the stored version number.
    """
    plan = data if isinstance(data, WealthPlan) else parse_plan(data)
    if plan.investor != vault.investor:
        raise InvalidInput("plan.investor", f"the vault owner {vault.investor}", plan.investor)
    return vault.save_document("plan", plan.model_dump(mode="json", by_alias=True))
