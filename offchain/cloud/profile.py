"""The investor's financial profile: a typed, versioned document and its on-chain commitment.

Canonical serialization (schema ``lightpool.profile/1``)
--------------------------------------------------------
The bytes that are hashed for the commitment are produced by :func:`canonical_bytes`, in the
style of RFC 8785 (JSON Canonicalization Scheme) restricted so that no float ever appears:

* a JSON object with keys sorted by Unicode code point, no insignificant whitespace
  (separators ``,`` and ``:``), encoded as UTF-8 with non-ASCII characters written literally;
* money amounts (USD) and fractions/rates are **decimal strings** in plain notation with no
  exponent and no trailing zeros (``"250000"``, ``"0.35"``); integers are JSON integers;
* dates are ISO 8601 calendar dates (``"2041-06-30"``); addresses are EIP-55 checksummed;
* sets (exclusions, themes) are sorted lists without duplicates; goals keep the investor's
  order (it carries meaning for them) and must have unique names;
* every field is present (optional values appear as ``null``), so two profiles that mean the
  same thing serialize to the same bytes.

The commitment is ``keccak256(canonical_bytes || salt)`` with a 32-byte random salt, exactly
the ``bytes32`` that ``ProfileRegistry.commit_profile`` stores. Anyone shown the canonical
profile and the salt can recompute it and compare it with ``ProfileRegistry.profile_of``.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from eth_utils import is_address, keccak, to_checksum_address
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from offchain.errors import InvalidInput

SCHEMA = "lightpool.profile/1"
M = TypeVar("M", bound=BaseModel)
SALT_BYTES = 32


def decimal_text(value: Decimal) -> str:
    """Plain-notation decimal string with no exponent and no trailing zeros (``"0.35"``)."""
    if not value.is_finite():
        raise InvalidInput("decimal", "a finite number", value)
    text = format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


# A decimal that serializes to its canonical string (never a float).
CanonDecimal = Annotated[Decimal, PlainSerializer(decimal_text, return_type=str)]
Money = Annotated[CanonDecimal, Field(ge=0, le=Decimal("1e15"), allow_inf_nan=False)]
Fraction = Annotated[CanonDecimal, Field(ge=0, le=1, allow_inf_nan=False)]


class ServiceMode(StrEnum):
    """Advisory: the investor confirms each rebalance. Discretionary: delegated to a keeper."""

    ADVISORY = "advisory"
    DISCRETIONARY = "discretionary"


class GoalPriority(StrEnum):
    """How much a goal may be put at risk: essential goals are funded most conservatively."""

    ESSENTIAL = "essential"
    IMPORTANT = "important"
    ASPIRATIONAL = "aspirational"


class Exclusion(StrEnum):
    """Things the investor does not want to hold, whatever the expected return."""

    STRUCTURED_PRODUCTS = "structured_products"
    ALTERNATIVES = "alternatives"
    FOSSIL_FUELS = "fossil_fuels"
    TOBACCO = "tobacco"
    WEAPONS = "weapons"
    GAMBLING = "gambling"
    HIGH_YIELD = "high_yield"
    EMERGING_MARKETS = "emerging_markets"


class Theme(StrEnum):
    """Investment themes an investor may want more of."""

    GREEN_ENERGY = "green_energy"
    DIVIDEND_INCOME = "dividend_income"
    REAL_ASSETS = "real_assets"
    ESG_LEADERS = "esg_leaders"


class AccountType(StrEnum):
    """Tax wrapper of the account: gains are taxed only in a taxable account."""

    TAXABLE = "taxable"
    TAX_DEFERRED = "tax_deferred"
    TAX_EXEMPT = "tax_exempt"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class RiskProfile(_Strict):
    """Risk capacity (what the investor can afford to lose) and tolerance (what they accept).

    Both are scores 1 (lowest) to 5 (highest) from the questionnaire; the lower of the two
    bounds the risk category. ``horizon_years`` is the investment horizon in whole years.
    """

    capacity: int = Field(ge=1, le=5)
    tolerance: int = Field(ge=1, le=5)
    horizon_years: int = Field(ge=1, le=80)


class Goal(_Strict):
    """A financial goal: ``amount`` in USD needed on ``target_date``, with a priority."""

    name: str = Field(min_length=1, max_length=80)
    amount: Money
    target_date: dt.date
    priority: GoalPriority

    @field_validator("amount")
    @classmethod
    def _positive(cls, value: Decimal) -> Decimal:
        if value <= 0:
            raise ValueError("a positive USD amount")
        return value


class ExplicitPreferences(_Strict):
    """What the investor said: exclusions ("no structured products") and wanted themes."""

    exclusions: list[Exclusion] = Field(default_factory=list)
    themes: list[Theme] = Field(default_factory=list)

    @field_validator("exclusions", "themes")
    @classmethod
    def _as_sorted_set(cls, value: list[Any]) -> list[Any]:
        return sorted(set(value))


class ImplicitPreferences(_Strict):
    """What was learned by observation (see :mod:`offchain.cloud.preferences`).

    ``risk_aversion`` is the posterior mean of the mean-variance coefficient gamma (utility
    ``mu - gamma/2 * sigma^2`` with annual returns as fractions); ``risk_aversion_low`` and
    ``risk_aversion_high`` bound its 90% credible interval. ``theme_tilts`` maps a theme to
    the posterior mean of its tilt in [-1, 1] (added annual return per unit exposure, in
    percent points). ``observations`` counts the answers and reactions behind the estimate.
    """

    risk_aversion: CanonDecimal = Field(gt=0, le=100)
    risk_aversion_low: CanonDecimal = Field(gt=0, le=100)
    risk_aversion_high: CanonDecimal = Field(gt=0, le=100)
    theme_tilts: dict[Theme, CanonDecimal] = Field(default_factory=dict)
    observations: int = Field(ge=0)

    @model_validator(mode="after")
    def _interval(self) -> ImplicitPreferences:
        if not self.risk_aversion_low <= self.risk_aversion <= self.risk_aversion_high:
            raise ValueError("risk_aversion_low <= risk_aversion <= risk_aversion_high")
        for theme, tilt in self.theme_tilts.items():
            if not -1 <= tilt <= 1:
                raise ValueError(f"theme_tilts.{theme} within [-1, 1]")
        return self


class TaxSituation(_Strict):
    """Marginal tax rates as fractions (0.32 = 32%) and the account's tax wrapper."""

    account_type: AccountType
    income_rate: Fraction
    long_term_gains_rate: Fraction
    state_rate: Fraction = Decimal(0)
    harvest_losses: bool = True

    @field_validator("income_rate", "long_term_gains_rate", "state_rate")
    @classmethod
    def _plausible(cls, value: Decimal) -> Decimal:
        if value > Decimal("0.6"):
            raise ValueError("a marginal rate between 0 and 0.6")
        return value


class LiquidityNeeds(_Strict):
    """Cash the investor needs: a reserve kept in cash, yearly withdrawals (USD per year),
    and the largest fraction of the portfolio they accept to lock up in gated funds."""

    emergency_reserve: Money = Decimal(0)
    annual_withdrawals: Money = Decimal(0)
    max_illiquid_fraction: Fraction = Decimal("0.2")


class Profile(_Strict):
    """The investor's financial profile, schema ``lightpool.profile/1``.

    ``investable_assets`` is in USD. ``as_of`` is the date the investor last reviewed it.
    Raises :class:`~offchain.errors.InvalidInput` (through :func:`parse_profile`) naming the
    first wrong field.
    """

    schema_id: str = Field(default=SCHEMA, alias="schema")
    investor: str
    as_of: dt.date
    investable_assets: Money
    risk: RiskProfile
    goals: list[Goal] = Field(default_factory=list, max_length=20)
    explicit: ExplicitPreferences = Field(default_factory=ExplicitPreferences)
    implicit: ImplicitPreferences | None = None
    tax: TaxSituation
    liquidity: LiquidityNeeds = Field(default_factory=LiquidityNeeds)
    service_mode: ServiceMode

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("schema_id")
    @classmethod
    def _schema(cls, value: str) -> str:
        if value != SCHEMA:
            raise ValueError(f"the schema id {SCHEMA!r}")
        return value

    @field_validator("investor")
    @classmethod
    def _address(cls, value: str) -> str:
        if not isinstance(value, str) or not is_address(value):
            raise ValueError("a 20-byte hex address (0x...)")
        return to_checksum_address(value)

    @field_validator("goals")
    @classmethod
    def _unique_goals(cls, goals: list[Goal]) -> list[Goal]:
        names = [goal.name for goal in goals]
        if len(set(names)) != len(names):
            raise ValueError("goal names to be unique")
        return goals

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        for index, goal in enumerate(self.goals):
            if goal.target_date <= self.as_of:
                raise _FieldError(f"goals[{index}].target_date", "a date after as_of")
        if self.liquidity.emergency_reserve > self.investable_assets:
            raise _FieldError("liquidity.emergency_reserve", "at most investable_assets")
        if Exclusion.ALTERNATIVES in self.explicit.exclusions and (
            self.liquidity.max_illiquid_fraction > 0
        ):
            raise _FieldError(
                "liquidity.max_illiquid_fraction", "0 when alternatives are excluded"
            )
        return self

    def canonical(self) -> dict[str, Any]:
        """The profile as the JSON-ready dict that :func:`canonical_bytes` serializes."""
        return self.model_dump(mode="json", by_alias=True)


class _FieldError(ValueError):
    """A cross-field check that knows exactly which field is wrong."""

    def __init__(self, field: str, expected: str) -> None:
        self.field = field
        self.expected = expected
        super().__init__(expected)


def parse_profile(data: Any) -> Profile:
    """Validate ``data`` (a dict or JSON text/bytes) into a :class:`Profile`.

    Raises :class:`InvalidInput` whose ``field`` is the dotted path of the first wrong field
    and ``expected`` says what would be accepted.
    """
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError) as error:
            raise InvalidInput("profile", "a JSON object", str(error)) from None
    if not isinstance(data, dict):
        raise InvalidInput("profile", "a JSON object", data)
    return validate_model(Profile, data, "profile")


def validate_model(model: type[M], data: Any, root: str) -> M:
    """Validate ``data`` into ``model`` and turn pydantic's errors into :class:`InvalidInput`.

    The raised error names the first offending field as a dotted path under ``root``
    (``"profile.goals[0].amount"``) and what was expected there.
    """
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise invalid_from_validation(error, root) from None
    except _FieldError as error:
        raise InvalidInput(f"{root}.{error.field}", error.expected) from None


def invalid_from_validation(error: ValidationError, root: str) -> InvalidInput:
    """Translate the first pydantic error into :class:`InvalidInput` (field path + expected)."""
    first = error.errors(include_url=False)[0]
    context = first.get("ctx") or {}
    inner = context.get("error")
    if isinstance(inner, _FieldError):
        return InvalidInput(f"{root}.{inner.field}", inner.expected)
    path = root
    for part in first["loc"]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    message = str(first["msg"])
    expected = message.removeprefix("Value error, ").removeprefix("Input should be ")
    return InvalidInput(path, expected, first.get("input"))


def canonical_bytes(profile: Profile) -> bytes:
    """The canonical UTF-8 JSON serialization of ``profile`` (see the module docstring)."""
    return canonical_json(profile.canonical())


def canonical_json(document: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8; refuses floats so no value is ever ambiguous."""
    _refuse_floats(document, "document")
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def _refuse_floats(value: Any, path: str) -> None:
    if isinstance(value, float):
        raise InvalidInput(path, "a decimal string, not a float", value)
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_floats(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_floats(item, f"{path}[{index}]")


def new_salt() -> bytes:
    """A fresh 32-byte random salt (keeps a low-entropy profile from being guessed)."""
    return secrets.token_bytes(SALT_BYTES)


def commitment_of(canonical: bytes, salt: bytes) -> bytes:
    """``keccak256(canonical || salt)``: the 32 bytes ``ProfileRegistry`` stores.

    Raises :class:`InvalidInput` if ``salt`` is not exactly 32 bytes.
    """
    if len(salt) != SALT_BYTES:
        raise InvalidInput("salt", f"{SALT_BYTES} bytes", f"{len(salt)} bytes")
    return keccak(canonical + salt)


def commitment(profile: Profile, salt: bytes) -> bytes:
    """The on-chain commitment of ``profile`` with ``salt`` (32 bytes)."""
    return commitment_of(canonical_bytes(profile), salt)


def verify_revealed(canonical: bytes, salt: bytes, onchain_commitment: bytes) -> Profile:
    """Check a revealed profile against the commitment read from the chain.

    ``canonical`` must be the exact canonical bytes (re-canonicalized here, so a revealed
    document with different whitespace or key order is refused). Returns the parsed profile;
    raises :class:`InvalidInput` if the bytes are not canonical or the commitment differs.
    """
    profile = parse_profile(canonical)
    if canonical_bytes(profile) != canonical:
        raise InvalidInput("revealed", "the canonical serialization of the profile")
    if commitment_of(canonical, salt) != bytes(onchain_commitment):
        raise InvalidInput(
            "commitment",
            "keccak256(canonical || salt) equal to the on-chain commitment",
            "0x" + bytes(onchain_commitment).hex(),
        )
    return profile
