"""``lightpool profile new|show|commit|share|revoke|verify`` and ``lightpool plan``.

The vault is unlocked with the investor's wallet (``--private-key`` or
``LIGHTPOOL_PRIVATE_KEY``: it signs the fixed EIP-712 unlock message locally) or with a
passphrase (``--passphrase`` or ``LIGHTPOOL_PASSPHRASE``). Chain commands use
``LIGHTPOOL_RPC_URL`` and the deployments file through :mod:`offchain.chain.contracts`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
from eth_account import Account
from rich.console import Console
from rich.table import Table

from offchain.cloud.plan import build_plan, store_plan
from offchain.cloud.profile import verify_revealed
from offchain.cloud.store import (
    PROFILE_SCOPE,
    PassphraseUnlock,
    ProfileStore,
    Unlock,
    Vault,
    WalletUnlock,
)
from offchain.errors import LightPoolError

console = Console()


def _unlock(private_key: str | None, passphrase: str | None) -> tuple[str | None, Unlock]:
    if private_key:
        return Account.from_key(private_key).address, WalletUnlock.from_private_key(private_key)
    if passphrase:
        return None, PassphraseUnlock(passphrase)
    raise click.UsageError("give --private-key (wallet) or --passphrase to unlock the vault")


def _vault(investor: str | None, private_key: str | None, passphrase: str | None,
           store_url: str | None) -> Vault:
    address, unlock = _unlock(private_key, passphrase)
    investor = investor or address
    if investor is None:
        raise click.UsageError("give --investor with --passphrase")
    return ProfileStore(store_url).vault(investor, unlock)


def _key_options(command: Any) -> Any:
    options = [
        click.option("--private-key", envvar="LIGHTPOOL_PRIVATE_KEY", default=None,
                     help="investor's wallet key (signs the unlock message locally)"),
        click.option("--passphrase", envvar="LIGHTPOOL_PASSPHRASE", default=None,
                     help="passphrase instead of a wallet"),
        click.option("--investor", default=None, help="investor address (with --passphrase)"),
        click.option("--store", "store_url", default=None,
                     help="fsspec URL of the store (default <data_dir>/profiles)"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _fail(error: Exception) -> None:
    raise click.ClickException(str(error))


@click.group()
def profile() -> None:
    """The investor's encrypted financial profile (MyFinancialCloud)."""


@profile.command("new")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_key_options
def new(file: Path, private_key: str | None, passphrase: str | None, investor: str | None,
        store_url: str | None) -> None:
    """Validate FILE (profile JSON) and store it encrypted as a new version."""
    try:
        vault = _vault(investor, private_key, passphrase, store_url)
        saved = vault.save_profile(file.read_bytes())
    except LightPoolError as error:
        _fail(error)
    console.print(f"[green]stored[/green] profile v{saved.version} of {vault.investor}")
    console.print(f"commitment 0x{saved.commitment.hex()}")


@profile.command("show")
@click.option("--version", type=int, default=None, help="version (default latest)")
@click.option("--reveal", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write the canonical profile and salt to this JSON file")
@_key_options
def show(version: int | None, reveal: Path | None, private_key: str | None,
         passphrase: str | None, investor: str | None, store_url: str | None) -> None:
    """Decrypt and print a profile version."""
    try:
        vault = _vault(investor, private_key, passphrase, store_url)
        revealed = vault.load_profile(version)
    except LightPoolError as error:
        _fail(error)
    p = revealed.profile
    table = Table(title=f"profile v{revealed.version} of {p.investor}", show_header=False)
    table.add_row("as of", str(p.as_of))
    table.add_row("investable assets", f"${p.investable_assets:,}")
    table.add_row("risk", f"capacity {p.risk.capacity}/5, tolerance {p.risk.tolerance}/5, "
                  f"horizon {p.risk.horizon_years} years")
    for goal in p.goals:
        table.add_row(f"goal {goal.name}", f"${goal.amount:,} by {goal.target_date} "
                      f"({goal.priority.value})")
    table.add_row("exclusions", ", ".join(e.value for e in p.explicit.exclusions) or "-")
    table.add_row("themes", ", ".join(t.value for t in p.explicit.themes) or "-")
    if p.implicit is not None:
        table.add_row("learned risk aversion", f"{p.implicit.risk_aversion} (90% "
                      f"{p.implicit.risk_aversion_low}-{p.implicit.risk_aversion_high}, "
                      f"{p.implicit.observations} observations)")
    table.add_row("tax", f"{p.tax.account_type.value}, income {p.tax.income_rate:.0%}, "
                  f"long-term gains {p.tax.long_term_gains_rate:.0%}")
    table.add_row("liquidity", f"reserve ${p.liquidity.emergency_reserve:,}, withdrawals "
                  f"${p.liquidity.annual_withdrawals:,}/yr, illiquid at most "
                  f"{p.liquidity.max_illiquid_fraction:.0%}")
    table.add_row("service", p.service_mode.value)
    table.add_row("commitment", "0x" + revealed.commitment.hex())
    console.print(table)
    if reveal is not None:
        reveal.write_text(json.dumps({"canonical": revealed.canonical.decode("utf-8"),
                                      "salt": "0x" + revealed.salt.hex()}, indent=1))
        console.print(f"revealed profile and salt written to {reveal}")


@profile.command("commit")
@click.option("--version", type=int, default=None, help="version (default latest)")
@_key_options
def commit(version: int | None, private_key: str | None, passphrase: str | None,
           investor: str | None, store_url: str | None) -> None:
    """Send the stored version's commitment to ProfileRegistry.commit_profile."""
    if not private_key:
        raise click.UsageError("commit sends a transaction: give --private-key")
    try:
        vault = _vault(investor, private_key, passphrase, store_url)
        revealed = vault.load_profile(version)
        registry, w3 = _registry()
        receipt = _send(w3, registry.functions.commit_profile(revealed.commitment), private_key)
        onchain = registry.functions.profile_of(vault.investor).call()
    except LightPoolError as error:
        _fail(error)
    console.print(f"[green]committed[/green] 0x{revealed.commitment.hex()} in block "
                  f"{receipt['blockNumber']}; on-chain version {onchain[1]}")


@profile.command("share")
@click.option("--grantee-public-key", required=True,
              help="grantee's secp256k1 public key, hex (64 or 65 bytes)")
@click.option("--days", type=int, default=30, show_default=True, help="consent lifetime")
@click.option("--chain/--no-chain", default=True, show_default=True,
              help="also record the consent in ProfileRegistry.grant_consent")
@_key_options
def share(grantee_public_key: str, days: int, chain: bool, private_key: str | None,
          passphrase: str | None, investor: str | None, store_url: str | None) -> None:
    """Grant a provider or regulator access: wrap the data key to their public key."""
    expiry = int(time.time()) + days * 86_400
    try:
        vault = _vault(investor, private_key, passphrase, store_url)
        grant = vault.grant(bytes.fromhex(grantee_public_key.removeprefix("0x")), expiry)
        if chain:
            if not private_key:
                raise click.UsageError("the on-chain consent needs --private-key (or --no-chain)")
            registry, w3 = _registry()
            _send(w3, registry.functions.grant_consent(grant.grantee, PROFILE_SCOPE, expiry),
                  private_key)
    except (LightPoolError, ValueError) as error:
        _fail(error)
    console.print(f"[green]shared[/green] with {grant.grantee} until {expiry} (unix), scope "
                  f"keccak256('profile'){' and on chain' if chain else ''}")


@profile.command("revoke")
@click.argument("grantee")
@click.option("--chain/--no-chain", default=True, show_default=True)
@_key_options
def revoke(grantee: str, chain: bool, private_key: str | None, passphrase: str | None,
           investor: str | None, store_url: str | None) -> None:
    """Revoke GRANTEE: rotate the key so later versions are closed to them."""
    try:
        vault = _vault(investor, private_key, passphrase, store_url)
        epoch = vault.revoke(grantee)
        if chain and private_key:
            registry, w3 = _registry()
            _send(w3, registry.functions.revoke_consent(grantee, PROFILE_SCOPE), private_key)
    except LightPoolError as error:
        _fail(error)
    console.print(f"[green]revoked[/green] {grantee}; new key epoch {epoch}")


@profile.command("verify")
@click.argument("revealed", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--investor", required=True, help="whose on-chain commitment to check")
def verify(revealed: Path, investor: str) -> None:
    """Check a REVEALED file ({"canonical", "salt"}) against ProfileRegistry.profile_of."""
    try:
        body = json.loads(revealed.read_text())
        registry, _ = _registry()
        onchain = registry.functions.profile_of(investor).call()
        profile_doc = verify_revealed(body["canonical"].encode("utf-8"),
                                      bytes.fromhex(body["salt"].removeprefix("0x")), onchain[0])
    except (LightPoolError, KeyError, ValueError) as error:
        _fail(error)
    console.print(f"[green]verified[/green]: the profile of {profile_doc.investor} matches "
                  f"on-chain version {onchain[1]} (0x{bytes(onchain[0]).hex()})")


@click.command("plan")
@click.option("--save/--no-save", default=False, help="store the plan encrypted in the vault")
@_key_options
def plan(save: bool, private_key: str | None, passphrase: str | None, investor: str | None,
         store_url: str | None) -> None:
    """Compute the wealth plan of the latest profile and explain it."""
    try:
        vault = _vault(investor, private_key, passphrase, store_url)
        wealth_plan = build_plan(vault.load_profile().profile)
        if save:
            store_plan(vault, wealth_plan)
    except LightPoolError as error:
        _fail(error)
    table = Table(title=f"strategic allocation of {wealth_plan.investor}")
    table.add_column("asset class")
    table.add_column("weight", justify="right")
    for name, weight in sorted(wealth_plan.allocation.items(), key=lambda kv: -kv[1]):
        table.add_row(name, f"{weight:.1%}")
    console.print(table)
    for goal in wealth_plan.goals:
        glide = Table(title=f"glide path: {goal.goal} ({goal.target_date})")
        for column in ("years to goal", "equity", "bonds", "alternatives", "cash"):
            glide.add_column(column, justify="right")
        for point in goal.glide_path:
            glide.add_row(str(point.years_to_goal), f"{point.equity:.0%}", f"{point.bonds:.0%}",
                          f"{point.alternatives:.0%}", f"{point.cash:.0%}")
        console.print(glide)
    for line in wealth_plan.explanation:
        console.print(f"- {line}")


def _registry() -> tuple[Any, Any]:
    from offchain.chain.contracts import connect

    platform = connect()
    return platform.contract("ProfileRegistry"), platform.w3


def _send(w3: Any, call: Any, private_key: str) -> Any:
    account = Account.from_key(private_key)
    tx = call.build_transaction({
        "from": account.address,
        "nonce": w3.eth.get_transaction_count(account.address),
        "chainId": w3.eth.chain_id,
    })
    signed = account.sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    if receipt["status"] != 1:
        raise LightPoolError(f"transaction {receipt['transactionHash'].hex()} reverted")
    return receipt

