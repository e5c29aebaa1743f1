"""End-to-end benchmark: the committee changes a model, N accounts get rebalanced on anvil.

Setup (not timed): anvil on a free port, the platform deployed as in the demo, N investors
with real keys, each attested, holding the bench model (v1) in LightPool escrow, with a
discretionary mandate to the keeper. One untimed keeper cycle settles anything v1 wants.

Timed: the investment committee publishes v2 of the model; the keeper runs passes (plan
with the optimizer, auto-approve, submit in bulk under the mandates) until every account's
proposal is settled: cleared, settled and recorded into tax lots. The chain clock is moved
to the batch close instead of waiting for it (the cadence is a parameter, not work), so
the figure is the platform's own time. Prints a table and writes bench/results/e2e.json.

    .venv/bin/python bench/e2e.py [--accounts 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

from eth_account import Account
from eth_utils import keccak
from rich.console import Console
from rich.progress import track
from rich.table import Table
from sqlalchemy import func, select

from offchain.chain import node
from offchain.chain.actors import ATTESTER, ISSUER_ACTORS, KEEPER
from offchain.chain.contracts import connect
from offchain.chain.session import ensure_deployed
from offchain.chain.tx import Sender
from offchain.config import Settings
from offchain.keeper.bot import AutoApprove, Keeper, ManagedAccount
from offchain.keeper.db import ProposalRow, make_sessions
from offchain.models.portfolios import ModelStore
from offchain.universe import DAY, WAD, instrument

RESULTS = Path(__file__).parent / "results" / "e2e.json"
console = Console()

# The bench model: four funds and cash. v2 moves 5% from US large caps to bonds.
V1 = {"LCAP": "0.40", "AGGB": "0.35", "DXUS": "0.15", "TIPS": "0.05"}
V2 = {"LCAP": "0.35", "AGGB": "0.40", "DXUS": "0.15", "TIPS": "0.05"}
CASH_WEIGHT = Decimal("0.05")
ACCOUNT_VALUE = Decimal("100000")


def bench_model(weights: dict[str, str]) -> dict:
    classes = {instrument(s).asset_class: w for s, w in weights.items()}
    return {
        "model_id": "LP-BENCH", "name": "Benchmark balanced", "risk_category": 3,
        "asset_class_targets": {"cash": str(CASH_WEIGHT), **classes},
        "securities": dict(weights), "approved": sorted(weights),
        "drift_bands": {name: "0.02" for name in ["cash", *classes]},
        "compliance": {"max_position_weight": "0.5", "max_alternatives": "0",
                       "max_issuer_weight": "0.8", "min_cash": "0.01"},
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RawSender:
    """Setup transactions signed locally and posted in JSON-RPC batches (no waiting)."""

    def __init__(self, w3, url: str) -> None:
        self.w3, self.url, self.nonces, self.pending = w3, url, {}, []
        self.accounts: dict[bytes, Account] = {}
        self.chain_id = w3.eth.chain_id

    def add(self, key: bytes, call, gas: int = 300_000) -> None:
        if key not in self.accounts:
            self.accounts[key] = Account.from_key(key)
        address = self.accounts[key].address
        if address not in self.nonces:
            self.nonces[address] = self.w3.eth.get_transaction_count(address)
        nonce = self.nonces[address]
        self.nonces[address] = nonce + 1
        tx = {"to": call.address, "data": call._encode_transaction_data(), "nonce": nonce,
              "gas": gas, "chainId": self.chain_id, "maxFeePerGas": 10**10,
              "maxPriorityFeePerGas": 0, "value": 0}
        self.pending.append(self.accounts[key].sign_transaction(tx).raw_transaction.hex())

    def flush(self) -> None:
        """Post the pending transactions in batches, letting the node's pool drain after
        each; then check every sender's nonce moved as far as it should (all mined)."""
        for start in range(0, len(self.pending), 200):
            body = [{"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction",
                     "params": ["0x" + raw.removeprefix("0x")]}
                    for i, raw in enumerate(self.pending[start:start + 200])]
            request = urllib.request.Request(self.url, json.dumps(body).encode(),
                                             {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=120) as response:
                for answer in json.loads(response.read()):
                    if "error" in answer:
                        raise RuntimeError(f"setup transaction refused: {answer['error']}")
            while int(self.w3.provider.make_request("txpool_status", [])["result"]["pending"],
                      16):
                time.sleep(0.05)
        self.pending.clear()
        for address, nonce in self.nonces.items():
            mined = self.w3.eth.get_transaction_count(address)
            if mined != nonce:
                raise RuntimeError(f"{address}: {nonce - mined} setup transactions not mined")


def setup_accounts(platform, url: str, n: int) -> list[str]:
    w3 = platform.w3
    pool, registry = platform.contract("LightPool"), platform.contract("ProfileRegistry")
    keys = [keccak(b"lightpool-bench-investor" + i.to_bytes(4, "big")) for i in range(n)]
    addresses = [Account.from_key(k).address for k in keys]
    for address in addresses:
        w3.provider.make_request("anvil_setBalance", [address, hex(10**20)])
    raw = RawSender(w3, url)
    expiry = w3.eth.get_block("latest")["timestamp"] + 365 * DAY
    symbols = ["USDL", *V1]
    navs = {s: platform.token(s).functions.nav().call() for s in symbols}
    for address in addresses:
        raw.add(ATTESTER.private_key, registry.functions.attest(address, 840, expiry))
    raw.flush()  # attested before anything is minted to them
    for address in track(addresses, description="mint"):
        for symbol in symbols:
            weight = CASH_WEIGHT if symbol == "USDL" else Decimal(V1[symbol])
            units = int(ACCOUNT_VALUE * weight * WAD) * WAD // navs[symbol]
            issuer = ISSUER_ACTORS[instrument(symbol).issuer]
            raw.add(issuer.private_key, platform.token(symbol).functions.mint(address, units))
    raw.flush()
    instruments = [platform.deployments.token(s) for s in V1]
    pairs = list(zip(keys, addresses, strict=True))
    for key, address in track(pairs, description="deposit + mandate"):
        for symbol in symbols:
            token = platform.token(symbol)
            units = token.functions.balanceOf(address).call()
            raw.add(key, token.functions.approve(pool.address, units), gas=80_000)
            raw.add(key, pool.functions.deposit(token.address, units), gas=120_000)
        raw.add(key, registry.functions.grant_mandate(
            KEEPER.address, 2, instruments, 10**9 * WAD, DAY, 200, 1_200 * WAD, expiry),
            gas=400_000)
        if len(raw.pending) >= 2_000:
            raw.flush()
    raw.flush()
    lens = platform.contract("Lens")
    tokens = [platform.deployments.token(s) for s in symbols]
    for start in range(0, n, 256):
        chunk = addresses[start:start + 256]
        cells = lens.functions.escrow_balances(pool.address, tokens, chunk).call()
        if not all(cells):
            raise RuntimeError("setup incomplete: an account's escrow lacks a position")
    return addresses


def run_until_settled(keeper: Keeper, w3, max_passes: int = 20) -> tuple[float, dict, int]:
    """Keeper passes, moving the chain clock to each batch's clearing time, until no
    proposal is open. Returns (seconds, seconds per stage, passes)."""
    pool = keeper.pool
    reveal = pool.functions.reveal_period().call()
    stages: dict[str, float] = {}
    started = time.perf_counter()
    for passes in range(1, max_passes + 1):
        report = keeper.run_once()
        for stage, seconds in report.seconds.items():
            stages[stage] = stages.get(stage, 0.0) + seconds
        with keeper.sessions() as session:
            open_ = session.scalar(select(func.count()).select_from(ProposalRow).where(
                ProposalRow.status.in_(("approved", "submitted", "pending_approval"))))
        if not open_ and passes > 1:
            return time.perf_counter() - started, stages, passes
        close = pool.functions.batch_close(report.batch).call() + reveal + 1
        w3.provider.make_request("evm_setNextBlockTimestamp", [close])
        w3.provider.make_request("evm_mine", [])
    raise RuntimeError(f"proposals still open after {max_passes} passes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    args = parser.parse_args()
    from ape.logging import logger as ape_logger

    ape_logger.set_level("WARNING")
    work = Path(tempfile.mkdtemp(prefix="lightpool-e2e-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    anvil = node.start_anvil("127.0.0.1", port, work / "anvil.log")
    try:
        with console.status("deploying"):
            ensure_deployed(work / "deployments.json", url, lambda _m: None)
        platform = connect(Settings(rpc_url=url), work / "deployments.json")
        addresses = setup_accounts(platform, url, args.accounts)
        models = ModelStore(str(work / "models"))
        models.edit(bench_model(V1), author="IPC", note="bench v1")
        directory = [ManagedAccount(address=a, mode="discretionary", risk_category=3,
                                    household=f"hh-{i}", max_deviation_bps=200)
                     for i, a in enumerate(addresses)]
        keeper = Keeper(platform, make_sessions(f"sqlite:///{work / 'keeper.db'}"), models,
                        Sender(platform.w3, KEEPER.private_key), lambda: directory,
                        auto_approve=AutoApprove(max_turnover=Decimal(10**9)))
        with console.status("untimed first cycle on v1"):
            run_until_settled(keeper, platform.w3)
        # Next day's plan is due anyway; the model change is what the timed run measures.
        models.edit(bench_model(V2), author="IPC", note="bench v2: 5% from LCAP to AGGB")
        with console.status("timed: model v2 until every account is settled"):
            seconds, stages, passes = run_until_settled(keeper, platform.w3)
        with keeper.sessions() as session:
            settled = session.scalar(select(func.count()).select_from(ProposalRow).where(
                ProposalRow.model_version == 2, ProposalRow.status == "settled"))
            no_trade = session.scalar(select(func.count()).select_from(ProposalRow).where(
                ProposalRow.model_version == 2, ProposalRow.status == "no_trade"))
    finally:
        node.stop(anvil)
    result = {"accounts": args.accounts, "seconds_to_settled": round(seconds, 3),
              "stages": {k: round(v, 3) for k, v in stages.items()}, "keeper_passes": passes,
              "accounts_settled": settled, "accounts_no_trade": no_trade}
    table = Table(title=f"e2e: model change -> {args.accounts} accounts settled on anvil")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for stage, value in result["stages"].items():
        table.add_row(stage, f"{value:.2f}")
    table.add_row("[bold]total[/bold]", f"[bold]{seconds:.2f}[/bold]")
    console.print(table)
    console.print(f"settled {settled}, no trade {no_trade}, keeper passes {passes}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
