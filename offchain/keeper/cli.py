"""``lightpool keeper``: run the bot, see and decide the approval queue."""

from __future__ import annotations

import json
import logging
import time

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from offchain.config import get_settings
from offchain.errors import LightPoolError

console = Console()


def build_keeper(wait_s: float = 30.0):
    """The keeper for the configured deployment, database, model store and profile store:
    it manages the accounts whose owners granted it a mandate and shared their profile."""
    from offchain.chain.actors import KEEPER
    from offchain.chain.contracts import connect
    from offchain.chain.tx import Sender
    from offchain.cloud.store import ProfileStore
    from offchain.keeper.accounts import granted_profiles, mandated_accounts
    from offchain.keeper.bot import Keeper
    from offchain.keeper.db import make_sessions
    from offchain.models.portfolios import ModelStore

    settings = get_settings()
    platform = connect(settings)
    sender = Sender(platform.w3, KEEPER.private_key)
    models = ModelStore()
    profiles = granted_profiles(platform, KEEPER.private_key, ProfileStore(), models)
    return Keeper(platform, make_sessions(settings.database_url), models, sender,
                  mandated_accounts(platform, sender.address, profiles), wait_s=wait_s)


@click.group()
def keeper() -> None:
    """The keeper bot: optimize, propose, submit, clear, settle, record."""


@keeper.command()
@click.option("--interval", default=2.0, show_default=True, help="seconds between passes")
@click.option("--once", is_flag=True, help="run one pass and exit")
def run(interval: float, once: bool) -> None:
    """Run passes until Ctrl-C (each pass is idempotent: safe to stop and restart)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)])
    try:
        bot = build_keeper()
    except LightPoolError as exc:
        raise click.ClickException(str(exc)) from None
    with console.status("keeper running") as status:
        while True:
            report = bot.run_once()
            status.update(f"batch {report.batch}: planned {report.planned}, sent "
                          f"{report.sent_baskets}, cleared {report.cleared_markets}, settled "
                          f"{report.settled_baskets}, fills {report.fills_recorded}")
            if once:
                break
            time.sleep(interval)


@keeper.command()
def queue() -> None:
    """Show proposals waiting for the overlay manager or the investor."""
    from sqlalchemy import select

    from offchain.keeper.db import ProposalRow

    bot = build_keeper()
    table = Table(title="Proposals")
    for column in ("id", "account", "batch", "mode", "model", "status", "trades", "tax cost"):
        table.add_column(column)
    with bot.sessions() as session:
        for row in session.scalars(select(ProposalRow).order_by(ProposalRow.id)):
            table.add_row(str(row.id), row.account, str(row.batch), row.mode,
                          f"{row.model_id} v{row.model_version}", row.status,
                          str(len(row.orders)), str(row.explanation.get("tax_cost")))
    console.print(table)


@keeper.command()
@click.argument("proposal_id", type=int)
@click.option("--reject", is_flag=True, help="reject instead of approve")
@click.option("--by", "approver", default="overlay-manager", show_default=True)
def approve(proposal_id: int, reject: bool, approver: str) -> None:
    """Approve (or reject) a discretionary proposal pending approval."""
    try:
        row = build_keeper().approve(proposal_id, approver, approved=not reject)
    except LightPoolError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(json.dumps({"proposal": row.id, "status": row.status}))
