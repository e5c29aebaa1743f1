"""``lightpool models list|show|history|edit|menu``: the IPC's model portfolios."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from offchain.cloud.profile import parse_profile
from offchain.errors import LightPoolError
from offchain.models.menu import account_setup
from offchain.models.portfolios import ModelStore

console = Console()
STORE = click.option("--store", "store_url", default=None,
                     help="fsspec URL of the model store (default <data_dir>/models)")


def _store(store_url: str | None) -> ModelStore:
    store = ModelStore(store_url)
    store.ensure_seeded()
    return store


@click.group()
def models() -> None:
    """Model portfolios: risk categories 1 to 5, targets, securities, limits."""


@models.command("list")
@STORE
def list_models(store_url: str | None) -> None:
    """One line per model with its risk category and latest version."""
    store = _store(store_url)
    table = Table(title="model portfolios")
    for column in ("model", "name", "category", "version", "edited by", "at"):
        table.add_column(column)
    for model_id in store.model_ids():
        latest = store.get(model_id)
        table.add_row(model_id, latest.model.name, str(latest.model.risk_category),
                      str(latest.version), latest.author, latest.edited_at.isoformat())
    console.print(table)


@models.command("show")
@click.argument("model_id")
@click.option("--version", type=int, default=None)
@STORE
def show(model_id: str, version: int | None, store_url: str | None) -> None:
    """Targets, securities, drift bands and limits of MODEL_ID."""
    try:
        stored = _store(store_url).get(model_id, version)
    except LightPoolError as error:
        raise click.ClickException(str(error)) from None
    model = stored.model
    table = Table(title=f"{model.model_id} '{model.name}' v{stored.version} "
                  f"(category {model.risk_category})")
    for column in ("asset class", "target", "band", "securities"):
        table.add_column(column)
    from offchain.universe import BY_SYMBOL

    for name, target in model.asset_class_targets.items():
        held = ", ".join(f"{s} {w:.0%}" for s, w in model.securities.items()
                         if BY_SYMBOL[s].asset_class == name)
        table.add_row(name, f"{target:.1%}", f"±{model.drift_bands[name]:.1%}", held or "cash")
    console.print(table)
    limits = model.compliance
    console.print(f"limits: position <= {limits.max_position_weight:.0%}, alternatives <= "
                  f"{limits.max_alternatives:.0%}, one issuer <= {limits.max_issuer_weight:.0%}, "
                  f"cash >= {limits.min_cash:.0%}; approved: {', '.join(model.approved)}")


@models.command("history")
@click.argument("model_id")
@STORE
def history(model_id: str, store_url: str | None) -> None:
    """Every version of MODEL_ID with author, time and note."""
    for stored in _store(store_url).history(model_id):
        console.print(f"v{stored.version}  {stored.edited_at.isoformat()}  {stored.author}: "
                      f"{stored.note or '-'}")


@models.command("edit")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--author", required=True, help="who makes the edit")
@click.option("--note", default="", help="why")
@STORE
def edit(file: Path, author: str, note: str, store_url: str | None) -> None:
    """Validate FILE (one model as JSON) and store it as the model's next version."""
    try:
        stored = _store(store_url).edit(json.loads(file.read_text()), author, note)
    except (LightPoolError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    console.print(f"[green]stored[/green] {stored.model.model_id} v{stored.version}")


@models.command("menu")
@click.argument("profile_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@STORE
def menu(profile_file: Path, store_url: str | None) -> None:
    """The advisor's menu for a profile (plain JSON): model plus customizations."""
    try:
        setup = account_setup(parse_profile(profile_file.read_bytes()), _store(store_url))
    except LightPoolError as error:
        raise click.ClickException(str(error)) from None
    console.print(f"risk category {setup.risk_category}: model {setup.model.model_id} "
                  f"v{setup.model_version}")
    for reason in setup.reasons:
        console.print(f"- {reason}")
    console.print_json(setup.customizations.model_dump_json())
