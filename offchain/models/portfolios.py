"""Model portfolios: the investment policy committee's (IPC) versioned line-up.

A model (schema ``lightpool.models/1``) has a risk category 1 (most cautious) to 5, target
weights per asset class (the universe's ``asset_class`` names, ``cash`` included; fractions
summing to 1), the securities that fill them (symbols of :mod:`offchain.universe`, the cash
token excluded; per class they sum to the class target), the approved products the optimizer
may buy (held securities and allowed substitutes), an absolute drift band per asset class
and compliance limits (largest position, alternatives, one issuer, minimum cash).

Edits go through :class:`ModelStore`: every edit is validated first, then written as a new
version with its author, UTC time and note; nothing is ever overwritten. Storage is fsspec
(``<LIGHTPOOL_DATA_DIR>/models`` by default).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import fsspec
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from offchain.cloud.profile import CanonDecimal, _FieldError, canonical_json, validate_model
from offchain.config import get_settings
from offchain.errors import InvalidInput, LightPoolError
from offchain.optimizer.inputs import Instrument as OptimizerInstrument
from offchain.optimizer.inputs import InstrumentKind
from offchain.optimizer.inputs import ModelPortfolio as OptimizerModel
from offchain.universe import BY_SYMBOL, CASH_SYMBOL, FundKind

DEFAULT_MODELS = Path(__file__).with_name("data") / "models.json"
TOLERANCE = Decimal("0.000001")
_KIND = {FundKind.ETF: InstrumentKind.ETF, FundKind.MUTUAL_FUND: InstrumentKind.MUTUAL_FUND,
         FundKind.ALTERNATIVE: InstrumentKind.ALTERNATIVE}
Weight = CanonDecimal


class ComplianceLimits(BaseModel):
    """Limits every account on the model must respect (fractions of account value)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_position_weight: Weight = Field(gt=0, le=1)
    max_alternatives: Weight = Field(ge=0, le=1)
    max_issuer_weight: Weight = Field(gt=0, le=1)
    min_cash: Weight = Field(ge=0, le=1)


class ModelDefinition(BaseModel):
    """One model portfolio as the IPC edits it. Raises (via :func:`parse_model`)
    :class:`InvalidInput` naming the field when a rule below is broken."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_id: str = Field(pattern=r"^[A-Z0-9][A-Z0-9-]{0,31}$")
    name: str = Field(min_length=1, max_length=80)
    risk_category: int = Field(ge=1, le=5)
    asset_class_targets: dict[str, Weight] = Field(min_length=1)
    securities: dict[str, Weight] = Field(min_length=1)
    approved: list[str]
    drift_bands: dict[str, Weight]
    compliance: ComplianceLimits

    @field_validator("securities")
    @classmethod
    def _known(cls, securities: dict[str, Decimal]) -> dict[str, Decimal]:
        for symbol, weight in securities.items():
            if symbol not in BY_SYMBOL or symbol == CASH_SYMBOL:
                raise _FieldError(f"securities.{symbol}", "a fund symbol of the demo universe")
            if not 0 < weight <= 1:
                raise _FieldError(f"securities.{symbol}", "a weight in (0, 1]")
        return securities

    @model_validator(mode="after")
    def _rules(self) -> ModelDefinition:
        classes = {i.asset_class for i in BY_SYMBOL.values()}
        for name, target in self.asset_class_targets.items():
            if name not in classes:
                raise _FieldError(f"asset_class_targets.{name}", "an asset class of the universe")
            if not 0 <= target <= 1:
                raise _FieldError(f"asset_class_targets.{name}", "a weight between 0 and 1")
        total = sum(self.asset_class_targets.values(), Decimal(0))
        if abs(total - 1) > TOLERANCE:
            raise _FieldError("asset_class_targets", f"targets summing to 1 (got {total})")
        filled: dict[str, Decimal] = {}
        for symbol, weight in self.securities.items():
            asset_class = BY_SYMBOL[symbol].asset_class
            if asset_class not in self.asset_class_targets:
                raise _FieldError(f"securities.{symbol}",
                                  f"an asset class with a target ({asset_class} has none)")
            if symbol not in self.approved:
                raise _FieldError(f"securities.{symbol}", "an approved product")
            if weight > self.compliance.max_position_weight:
                raise _FieldError(f"securities.{symbol}", "at most compliance.max_position_weight")
            filled[asset_class] = filled.get(asset_class, Decimal(0)) + weight
        for name, target in self.asset_class_targets.items():
            if name == "cash":
                continue
            if abs(filled.get(name, Decimal(0)) - target) > TOLERANCE:
                raise _FieldError(f"asset_class_targets.{name}",
                                  f"securities summing to the target {target}")
        for symbol in self.approved:
            if symbol not in BY_SYMBOL or symbol == CASH_SYMBOL:
                raise _FieldError("approved", f"fund symbols of the universe (not {symbol!r})")
        for name in self.asset_class_targets:
            band = self.drift_bands.get(name)
            if band is None:
                raise _FieldError(f"drift_bands.{name}", "a band for every targeted class")
            if not 0 < band <= Decimal("0.25"):
                raise _FieldError(f"drift_bands.{name}", "a band in (0, 0.25]")
        for name in self.drift_bands:
            if name not in self.asset_class_targets:
                raise _FieldError(f"drift_bands.{name}", "a class that has a target")
        alternatives = sum((w for s, w in self.securities.items()
                            if BY_SYMBOL[s].kind == FundKind.ALTERNATIVE), Decimal(0))
        if alternatives > self.compliance.max_alternatives:
            raise _FieldError("securities", "alternatives at most compliance.max_alternatives")
        issuers: dict[str, Decimal] = {}
        for symbol, weight in self.securities.items():
            issuer = BY_SYMBOL[symbol].issuer
            issuers[issuer] = issuers.get(issuer, Decimal(0)) + weight
        for issuer, weight in issuers.items():
            if weight > self.compliance.max_issuer_weight:
                raise _FieldError("securities",
                                  f"at most max_issuer_weight per issuer ({issuer} has {weight})")
        if self.asset_class_targets.get("cash", Decimal(0)) < self.compliance.min_cash:
            raise _FieldError("asset_class_targets.cash", "at least compliance.min_cash")
        return self

    def to_optimizer(self, risk_aversion: float = 20.0) -> OptimizerModel:
        """The optimizer's ``ModelPortfolio``: held and approved instruments, security weights
        (the rest is cash), asset-class limits ``target -/+ drift band``, the largest band as
        the position drift band, and the compliance cap on any position."""
        symbols = sorted(set(self.securities) | set(self.approved))
        instruments = tuple(optimizer_instrument(s) for s in symbols)
        limits = {
            name: (max(Decimal(0), target - self.drift_bands[name]),
                   min(Decimal(1), target + self.drift_bands[name]))
            for name, target in self.asset_class_targets.items() if name != "cash"
        }
        return OptimizerModel(
            model_id=self.model_id,
            instruments=instruments,
            security_weights=dict(self.securities),
            approved=frozenset(self.approved),
            max_position_weight=self.compliance.max_position_weight,
            asset_class_limits=limits,
            drift_band=max(self.drift_bands.values()),
            risk_aversion=risk_aversion,
        )


class ModelVersion(BaseModel):
    """A stored version of a model with who edited it, when (UTC) and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    author: str = Field(min_length=1)
    edited_at: dt.datetime
    note: str
    model: ModelDefinition


def parse_model(data: Any) -> ModelDefinition:
    """Validate a model document; raises :class:`InvalidInput` naming the field (``model.*``)."""
    if not isinstance(data, dict):
        raise InvalidInput("model", "a JSON object", data)
    return validate_model(ModelDefinition, data, "model")


class ModelStore:
    """Versioned model portfolios under an fsspec URL (``<data_dir>/models`` by default)."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or get_settings().data_dir.rstrip("/") + "/models"
        self.fs, self.root = fsspec.core.url_to_fs(self.url)

    def model_ids(self) -> list[str]:
        """Ids of the stored models, sorted."""
        if not self.fs.exists(self.root):
            return []
        return sorted(p.rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False)
                      if self.fs.isdir(p))

    def versions(self, model_id: str) -> list[int]:
        """Stored versions of ``model_id``, ascending."""
        folder = f"{self.root}/{model_id}"
        if not self.fs.exists(folder):
            return []
        names = [p.rsplit("/", 1)[-1] for p in self.fs.ls(folder, detail=False)]
        return sorted(int(n[1:7]) for n in names if n.startswith("v") and n.endswith(".json"))

    def edit(self, data: dict[str, Any] | ModelDefinition, author: str, note: str = ""
             ) -> ModelVersion:
        """Validate ``data`` and store it as the next version of its model.

        Raises :class:`InvalidInput` (nothing written) if the model or ``author`` is invalid.
        """
        model = data if isinstance(data, ModelDefinition) else parse_model(data)
        if not author or not author.strip():
            raise InvalidInput("author", "the editor's name or address", author)
        existing = self.versions(model.model_id)
        record = ModelVersion(
            version=(existing[-1] if existing else 0) + 1, author=author.strip(),
            edited_at=dt.datetime.now(dt.UTC).replace(microsecond=0), note=note, model=model,
        )
        folder = f"{self.root}/{model.model_id}"
        path = f"{folder}/v{record.version:06d}.json"
        if self.fs.exists(path):
            raise LightPoolError(f"{path}: already exists; versions are never overwritten")
        self.fs.makedirs(folder, exist_ok=True)
        temporary = f"{folder}/.tmp-{uuid.uuid4().hex}"
        self.fs.pipe_file(temporary, canonical_json(record.model_dump(mode="json")))
        self.fs.mv(temporary, path)
        return record

    def get(self, model_id: str, version: int | None = None) -> ModelVersion:
        """A stored version (latest by default); raises :class:`InvalidInput` if absent."""
        versions = self.versions(model_id)
        if not versions:
            raise InvalidInput("model_id", f"one of {self.model_ids()}", model_id)
        version = version or versions[-1]
        if version not in versions:
            raise InvalidInput("version", f"one of {versions}", version)
        with self.fs.open(f"{self.root}/{model_id}/v{version:06d}.json", "rb") as handle:
            return ModelVersion.model_validate(json.loads(handle.read()))

    def history(self, model_id: str) -> list[ModelVersion]:
        """Every version of ``model_id``, oldest first."""
        return [self.get(model_id, v) for v in self.versions(model_id)]

    def for_category(self, risk_category: int) -> ModelVersion:
        """The latest model of ``risk_category`` (1..5)."""
        self.ensure_seeded()
        for model_id in self.model_ids():
            latest = self.get(model_id)
            if latest.model.risk_category == risk_category:
                return latest
        raise InvalidInput("risk_category", "a category with a model (1..5)", risk_category)

    def ensure_seeded(self, path: Path = DEFAULT_MODELS) -> None:
        """Store the IPC's initial line-up (``data/models.json``) if the store is empty."""
        if self.model_ids():
            return
        document = json.loads(Path(path).read_text())
        models = [parse_model(m) for m in document["models"]]
        for model in models:
            self.edit(model, document["author"], document["note"])


def optimizer_instrument(symbol: str) -> OptimizerInstrument:
    """The optimizer's view of a fund of the universe: kind, asset class, screenable
    attributes and ``theme_<name>`` flags. Raises ``KeyError`` for an unknown symbol."""
    item = BY_SYMBOL[symbol]
    return OptimizerInstrument(
        symbol=symbol, kind=_KIND[item.kind], asset_class=item.asset_class,
        attributes={**item.attributes, **{f"theme_{t}": True for t in item.themes}},
    )


def with_held(model: OptimizerModel, symbols: Iterable[str]) -> OptimizerModel:
    """``model`` plus the held funds it does not list: they take part in the problem (to be
    sold, never bought, as they have no weight and are not approved)."""
    listed = {i.symbol for i in model.instruments}
    extra = tuple(optimizer_instrument(s) for s in sorted(set(symbols) - listed)
                  if s != CASH_SYMBOL)
    if not extra:
        return model
    return model.model_copy(update={"instruments": model.instruments + extra})
