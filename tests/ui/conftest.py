"""A live demo chain for the UI tests: ``lightpool demo`` on a free port, kept running.

One chain per session (deploying the universe takes a while), without the demo's own
keeper and UI so that nothing trades behind the tests' back; tests that move time or send
transactions do it inside an anvil snapshot and revert it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from offchain.config import PROJECT_ROOT

UI_APP = str(PROJECT_ROOT / "ui" / "app.py")
ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class DemoChain:
    rpc_url: str
    deployments_file: Path
    data_dir: Path
    database_url: str

    def rpc(self, method: str, *params):
        answer = requests.post(self.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                                   "params": list(params)}, timeout=30).json()
        assert "error" not in answer, answer
        return answer["result"]

    def env(self) -> dict[str, str]:
        return {"LIGHTPOOL_RPC_URL": self.rpc_url,
                "LIGHTPOOL_DEPLOYMENTS_FILE": str(self.deployments_file),
                "LIGHTPOOL_DATA_DIR": str(self.data_dir),
                "LIGHTPOOL_DATABASE_URL": self.database_url}


@pytest.fixture(scope="session")
def demo_chain(tmp_path_factory) -> Iterator[DemoChain]:
    root = tmp_path_factory.mktemp("ui-chain")
    port = free_port()
    deployments = root / "deployments.json"
    log = (root / "demo.log").open("wb")  # closed at teardown, after the demo stops
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("lightpool")), "demo", "--port", str(port),
         "--deployments", str(deployments),
         # The tests plan with their own keeper and serve their own UI: the chain stays quiet.
         "--no-ui", "--no-keeper"],
        cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
        # Hour-long batches: proposals planned by a test stay in their batch until the test
        # itself moves chain time to the close, however slow the machine.
        env={**os.environ, "COLUMNS": "200", "LIGHTPOOL_BATCH_SECONDS": "3600",
             "LIGHTPOOL_DATA_DIR": str(root / "data")},
    )
    try:
        deadline = time.monotonic() + 300
        while "press Ctrl-C" not in (root / "demo.log").read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("lightpool demo did not come up:\n"
                                   + (root / "demo.log").read_text(errors="replace")[-3000:])
            time.sleep(0.5)
        assert deployments.exists()
        yield DemoChain(f"http://127.0.0.1:{port}", deployments, root / "data",
                        f"sqlite:///{root / 'keeper.db'}")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def ui_env(demo_chain, monkeypatch, tmp_path) -> DemoChain:
    """Point the app at the demo chain with an empty keeper database of its own, and start
    from empty Streamlit caches."""
    import streamlit as st

    for name, value in demo_chain.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LIGHTPOOL_DATABASE_URL", f"sqlite:///{tmp_path / 'keeper.db'}")
    st.cache_data.clear()
    st.cache_resource.clear()
    return demo_chain


def plan_keeper_pass():
    """Run the keeper's plan step once for the open batch with auto-approval off, so
    discretionary proposals wait for the overlay manager and advisory ones for a signature.
    Nothing is submitted, so nothing expires while a test looks at them."""
    from offchain.keeper.bot import PassReport
    from offchain.views.keeper import open_keeper

    keeper = open_keeper()
    keeper.auto_approve = None
    batch = keeper.pool.functions.current_batch().call()
    with keeper.sessions() as session:
        keeper.plan(session, batch, PassReport(batch=batch))
    return keeper


@pytest.fixture
def plan_pass():
    """The planning step as a function, for tests that plan again after moving time."""
    return plan_keeper_pass


@pytest.fixture
def planned_keeper(ui_env):
    """The keeper (on the test's own database) after one planning step."""
    return plan_keeper_pass()


@pytest.fixture
def snapshot(demo_chain) -> Iterator[None]:
    """Revert every chain change the test makes."""
    snap = demo_chain.rpc("evm_snapshot")
    yield
    assert demo_chain.rpc("evm_revert", snap) is True


@pytest.fixture(scope="session")
def ui_url(demo_chain, tmp_path_factory) -> Iterator[str]:
    """The app served by ``offchain.ui_server.serve_ui`` against the demo chain."""
    from offchain.ui_server import serve_ui

    port = free_port()
    log = tmp_path_factory.mktemp("ui-server") / "streamlit.log"
    env = {**os.environ, **demo_chain.env()}
    previous = {name: os.environ.get(name) for name in demo_chain.env()}
    os.environ.update(demo_chain.env())
    try:
        plan_keeper_pass()  # the proposals the browser test signs
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    process = serve_ui(port, log_file=log, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{url}/_stcore/health", timeout=2).text == "ok":
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("streamlit did not come up:\n" + log.read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
