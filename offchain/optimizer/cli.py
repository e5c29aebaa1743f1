"""``lightpool optimize``: run the optimizer on a file of accounts and show the proposals.

The input file is JSON::

    {"model": {...ModelPortfolio...}, "market": {...MarketData...},
     "accounts": [{...Account...}, ...],
     "customizations": {"<account id>": {...Customizations...}},
     "household_trades": [{...HouseholdTrade...}], "as_of": "2026-11-20"}

``model`` and ``market`` may instead be given as files (``--model``, ``--market``).
``--demo N`` optimizes N synthetic accounts instead (seeded; see
``offchain.optimizer.synthetic``).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.table import Table

from offchain.errors import InvalidInput
from offchain.optimizer.engine import optimize_accounts
from offchain.optimizer.inputs import (
    Account,
    Customizations,
    HouseholdTrade,
    MarketData,
    ModelPortfolio,
)
from offchain.optimizer.output import BatchResult


def _load(path: Path | None, default: Any, what: str) -> Any:
    if path is None:
        return default
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise click.BadParameter(f"{what}: cannot read {path}: {exc}") from exc


@click.command()
@click.option("--accounts", "accounts_file", type=click.Path(path_type=Path, exists=True),
              help="JSON file of accounts (see the module docstring).")
@click.option("--model", "model_file", type=click.Path(path_type=Path, exists=True),
              help="JSON ModelPortfolio (overrides the accounts file's).")
@click.option("--market", "market_file", type=click.Path(path_type=Path, exists=True),
              help="JSON MarketData (overrides the accounts file's).")
@click.option("--demo", type=int, default=None, help="Optimize N synthetic accounts instead.")
@click.option("--trades/--no-trades", "show_trades", default=False,
              help="List every trade with its reason.")
@click.option("--json-out", type=click.Path(path_type=Path), default=None,
              help="Also write the full result (proposals and errors) as JSON.")
@click.option("--workers", type=int, default=1, show_default=True)
def optimize(accounts_file, model_file, market_file, demo, show_trades, json_out,
             workers) -> None:
    """Propose tax-aware rebalancing trades for every account and print them."""
    console = Console()
    if demo is not None:
        from offchain.optimizer.synthetic import make_accounts, make_universe

        model, market = make_universe(0, 24)
        accounts, customs, history = make_accounts(model, market, demo)
        as_of: dt.date | None = market.as_of.date()
    else:
        if accounts_file is None:
            raise click.UsageError("give --accounts FILE.json or --demo N")
        data = _load(accounts_file, {}, "accounts")
        try:
            model = ModelPortfolio.model_validate(_load(model_file, data.get("model"), "model"))
            market = MarketData.model_validate(_load(market_file, data.get("market"), "market"))
            accounts = TypeAdapter(list[Account]).validate_python(data.get("accounts", []))
            customs = TypeAdapter(dict[str, Customizations]).validate_python(
                data.get("customizations", {}))
            history = TypeAdapter(list[HouseholdTrade]).validate_python(
                data.get("household_trades", []))
        except (ValidationError, InvalidInput) as exc:
            raise click.ClickException(f"invalid input: {exc}") from exc
        as_of = dt.date.fromisoformat(data["as_of"]) if "as_of" in data else None
    try:
        result = optimize_accounts(model, accounts, market, customs, history, as_of,
                                   workers=workers)
    except InvalidInput as exc:
        raise click.ClickException(str(exc)) from exc
    _print(console, result, show_trades)
    if json_out is not None:
        json_out.write_text(result.model_dump_json(indent=2))
        console.print(f"wrote {json_out}")


def _print(console: Console, result: BatchResult, show_trades: bool) -> None:
    table = Table(title="Proposals")
    for col in ("account", "trades", "bought", "sold", "ST gain", "LT gain", "tax", "cost",
                "TE before", "TE after", "approval"):
        table.add_column(col, justify="right")
    for p in result.proposals:
        bought = sum(t.value for t in p.trades if t.side == "buy")
        sold = sum(t.value for t in p.trades if t.side == "sell")
        table.add_row(p.account_id, str(len(p.trades)), f"{bought:,.2f}", f"{sold:,.2f}",
                      f"{p.realized_short_term:,.2f}", f"{p.realized_long_term:,.2f}",
                      f"{p.tax_cost:,.2f}", f"{p.transaction_cost:,.2f}",
                      f"{p.tracking_error_before:.2%}", f"{p.tracking_error_after:.2%}",
                      "needed" if p.needs_approval else "-")
    console.print(table)
    if show_trades:
        for p in result.proposals:
            if not p.trades:
                continue
            trades = Table(title=f"{p.account_id}: trades")
            for col in ("side", "symbol", "lot", "quantity", "value", "gain", "reason"):
                trades.add_column(col)
            for t in p.trades:
                trades.add_row(t.side, t.symbol, t.lot_id or "", f"{t.quantity}",
                               f"{t.value:,.2f}", "" if t.realized_gain is None
                               else f"{t.realized_gain:,.2f}", t.reason)
            console.print(trades)
    if result.errors:
        errors = Table(title="Skipped accounts")
        for col in ("account", "field", "reason"):
            errors.add_column(col)
        for e in result.errors:
            errors.add_row(e.account_id, e.field, e.reason)
        console.print(errors)
