"""The investment committee's views of model portfolios and the edit path through
:class:`ModelStore` (validated, versioned, with author and time)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from offchain.models.portfolios import ModelDefinition, ModelStore, ModelVersion
from offchain.universe import BY_SYMBOL


def targets_table(model: ModelDefinition) -> pd.DataFrame:
    """Asset-class targets and drift bands, in percent, largest first."""
    rows = [{"asset class": name, "target %": float(target) * 100,
             "drift band %": float(model.drift_bands[name]) * 100}
            for name, target in model.asset_class_targets.items()]
    return pd.DataFrame(rows).sort_values("target %", ascending=False)


def securities_table(model: ModelDefinition) -> pd.DataFrame:
    """Securities with their weight in percent, instrument name and issuer."""
    rows = [{"symbol": s, "name": BY_SYMBOL[s].name, "issuer": BY_SYMBOL[s].issuer,
             "weight %": float(w) * 100} for s, w in model.securities.items()]
    return pd.DataFrame(rows).sort_values("weight %", ascending=False)


def history_rows(store: ModelStore, model_id: str) -> list[dict[str, Any]]:
    """One row per version, newest first: version, author, time, note."""
    return [{"version": v.version, "author": v.author,
             "edited (UTC)": v.edited_at.strftime("%Y-%m-%d %H:%M:%S"), "note": v.note}
            for v in reversed(store.history(model_id))]


def editable_json(model: ModelDefinition) -> str:
    """The model as indented JSON for editing (weights as decimal strings)."""
    return json.dumps(model.model_dump(mode="json"), indent=2)


def save_edit(store: ModelStore, document: str, author: str, note: str) -> ModelVersion:
    """Parse ``document`` (JSON) and store it as the next version by ``author``.

    Raises ``json.JSONDecodeError`` for malformed JSON and ``InvalidInput`` naming the field
    for a model that breaks a rule or a missing author; nothing is written then.
    """
    return store.edit(json.loads(document), author=author, note=note)
