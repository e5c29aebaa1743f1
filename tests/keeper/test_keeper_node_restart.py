"""The node restarts in the middle of a batch: the keeper loses nothing and sends nothing
twice. A real anvil with ``--state`` (it keeps state, blocks and receipts across restarts),
deployed by the real CLI in its own process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

from offchain.chain import node
from offchain.chain.actors import KEEPER
from offchain.chain.contracts import connect
from offchain.chain.tx import Sender
from offchain.cloud.store import ProfileStore
from offchain.config import Settings
from offchain.keeper.accounts import granted_profiles, mandated_accounts
from offchain.keeper.bot import Keeper
from offchain.keeper.db import make_sessions
from offchain.models.portfolios import ModelStore

LIGHTPOOL = str(Path(sys.executable).with_name("lightpool"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def restart(process: subprocess.Popen, port: int, tmp_path: Path, state: Path):
    process.send_signal(signal.SIGINT)  # anvil writes its state file on SIGINT
    process.wait(timeout=30)
    assert not node.port_in_use("127.0.0.1", port)
    return node.start_anvil("127.0.0.1", port, tmp_path / "anvil-2.log", state_file=state)


def test_node_restart_mid_batch(tmp_path):
    port, state = free_port(), tmp_path / "anvil-state.json"
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LIGHTPOOL_RPC_URL": url, "LIGHTPOOL_BATCH_SECONDS": "3600",
           "LIGHTPOOL_DATA_DIR": str(tmp_path / "data")}
    anvil = node.start_anvil("127.0.0.1", port, tmp_path / "anvil-1.log", state_file=state)
    try:
        deployed = subprocess.run(
            [LIGHTPOOL, "chain", "deploy", "--deployments", str(tmp_path / "d.json")],
            env=env, capture_output=True, text=True, timeout=300, check=False)
        assert deployed.returncode == 0, deployed.stderr

        def make_keeper() -> Keeper:
            platform = connect(Settings(rpc_url=url), tmp_path / "d.json")
            sender = Sender(platform.w3, KEEPER.private_key)
            models = ModelStore(str(tmp_path / "models"))
            profiles = granted_profiles(platform, KEEPER.private_key,
                                        ProfileStore(str(tmp_path / "data" / "profiles")), models)
            return Keeper(platform, make_sessions(f"sqlite:///{tmp_path / 'keeper.db'}"),
                          models, sender, mandated_accounts(platform, sender.address, profiles))

        def placed(keeper: Keeper, batch: int) -> Counter:
            logs = keeper.pool.events.OrderPlaced().get_logs(from_block=0)
            return Counter(e["args"]["owner"] for e in logs if e["args"]["batch"] == batch)

        keeper = make_keeper()
        first = keeper.run_once()
        before = placed(keeper, first.batch)
        assert sum(before.values()) > 0

        anvil = restart(anvil, port, tmp_path, state)
        keeper = make_keeper()
        again = keeper.run_once()
        assert again.batch == first.batch
        assert again.sent_baskets == 0 and again.planned == 0
        assert placed(keeper, first.batch) == before

        anvil = restart(anvil, port, tmp_path, state)  # and once more before settling
        keeper = make_keeper()
        # After the restart (anvil does not keep a clock offset in its state file).
        pool = keeper.pool
        close = (pool.functions.batch_close(first.batch).call()
                 + pool.functions.reveal_period().call() + 1)
        keeper.w3.provider.make_request("evm_setNextBlockTimestamp", [close])
        keeper.w3.provider.make_request("evm_mine", [])
        done = keeper.run_once()
        assert not done.errors, done
        assert done.fills_recorded == sum(before.values()), done
        assert placed(keeper, first.batch) == before
    finally:
        node.stop(anvil)
