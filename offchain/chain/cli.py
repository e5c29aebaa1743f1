"""``lightpool chain``: deploy to and read from the chain."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from offchain.config import get_settings
from offchain.errors import LightPoolError
from offchain.universe import WAD, FundKind

console = Console()


@click.group()
def chain() -> None:
    """Deploy the platform and read its on-chain state."""


@chain.command()
@click.option("--deployments", "deployments_path", type=click.Path(path_type=Path),
              default=None, help="deployments file (default: LIGHTPOOL_DEPLOYMENTS_FILE)")
def deploy(deployments_path: Path | None) -> None:
    """Deploy and seed the platform on the node at LIGHTPOOL_RPC_URL (idempotent)."""
    from offchain.chain.session import ensure_deployed

    settings = get_settings()
    path = deployments_path or settings.deployments_file
    try:
        deployed, fresh = ensure_deployed(path, settings.rpc_url, lambda m: console.log(m))
    except LightPoolError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"{'deployed' if fresh else 'already deployed'}: {len(deployed.tokens)} "
                  f"tokens, registry {deployed.contract('ProfileRegistry')} -> {path}")


@chain.command()
@click.option("--deployments", "deployments_path", type=click.Path(path_type=Path),
              default=None, help="deployments file (default: LIGHTPOOL_DEPLOYMENTS_FILE)")
def status(deployments_path: Path | None) -> None:
    """Print every token's kind, NAV, NAV age and supply, read from chain."""
    console.print(status_table(deployments_path))


def status_table(deployments_path: Path | None = None) -> Table:
    """A table of every deployed token read live from chain."""
    from offchain.chain.contracts import connect

    try:
        platform = connect(deployments_file=deployments_path)
    except LightPoolError as exc:
        raise click.ClickException(str(exc)) from None
    now = platform.w3.eth.get_block("latest")["timestamp"]
    table = Table(title=f"LightPool universe on chain {platform.deployments.chain_id}")
    for column in ("symbol", "name", "kind", "asset class", "NAV", "NAV age", "stale",
                   "supply", "address"):
        table.add_column(column)
    for symbol in platform.deployments.tokens:
        token = platform.token(symbol)
        nav = Decimal(token.functions.nav().call()) / WAD
        age_s = now - token.functions.nav_timestamp().call()
        supply = Decimal(token.functions.totalSupply().call()) / WAD
        table.add_row(
            symbol, token.functions.name().call(),
            FundKind(token.functions.kind().call()).name or "?",
            token.functions.asset_class().call(), f"{nav:,.2f}", f"{age_s}s",
            "yes" if token.functions.is_nav_stale().call() else "no",
            f"{supply:,.4f}", token.address,
        )
    return table
