"""The README's demo command, run as a user runs it: real processes, real anvil, real ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from offchain.chain import node
from offchain.universe import UNIVERSE

LIGHTPOOL = str(Path(sys.executable).with_name("lightpool"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_demo(port: int, deployments: Path, *extra: str, timeout: int = 180):
    return subprocess.run(
        [LIGHTPOOL, "demo", "--port", str(port), "--deployments", str(deployments), *extra],
        capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, "COLUMNS": "200",
             "LIGHTPOOL_DATA_DIR": str(deployments.parent / "data")},
    )


@pytest.fixture
def anvil(tmp_path):
    """A node started by the test (the demo then reuses it); stopped at the end."""
    started = []

    def _start(chain_id: int = node.LOCAL_CHAIN_ID) -> int:
        port = free_port()
        started.append(node.start_anvil("127.0.0.1", port, tmp_path / f"anvil-{port}.log",
                                        chain_id=chain_id))
        return port

    yield _start
    for process in started:
        node.stop(process)


def test_demo_deploys_once_and_a_separate_process_reads_navs(anvil, tmp_path):
    port = anvil()
    deployments = tmp_path / "local.json"
    first = run_demo(port, deployments, "--exit-after-setup")
    assert first.returncode == 0, first.stderr
    assert "deployed and seeded" in first.stdout
    recorded = json.loads(deployments.read_text())
    assert set(recorded["tokens"]) == {i.symbol for i in UNIVERSE}
    assert len(recorded["tokens"]) == 17

    second = run_demo(port, deployments, "--exit-after-setup")
    assert second.returncode == 0, second.stderr
    assert "found a live deployment" in second.stdout
    assert json.loads(deployments.read_text()) == recorded

    status = subprocess.run(
        [LIGHTPOOL, "chain", "status", "--deployments", str(deployments)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "LIGHTPOOL_RPC_URL": f"http://127.0.0.1:{port}", "COLUMNS": "250"},
    )
    assert status.returncode == 0, status.stderr
    for item in UNIVERSE:
        assert item.symbol in status.stdout
        assert f"{item.nav:,.2f}" in status.stdout


def test_demo_refuses_a_port_taken_by_another_program(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        deployments = tmp_path / "local.json"
        result = run_demo(port, deployments, "--exit-after-setup", timeout=60)
    assert result.returncode != 0
    assert f"port {port} on 127.0.0.1 is taken by a program that is not an Ethereum node" in (
        result.stderr
    )
    assert not deployments.exists()


def test_demo_refuses_a_deployments_file_of_another_chain(anvil, tmp_path):
    port = anvil(chain_id=999)
    deployments = tmp_path / "local.json"
    original = json.dumps({"chain_id": 31337, "genesis_hash": "0x00", "block": 1,
                           "contracts": {}, "tokens": {}})
    deployments.write_text(original)
    result = run_demo(port, deployments, "--exit-after-setup", timeout=60)
    assert result.returncode != 0
    assert "points at chain id 31337, but the node" in result.stderr
    assert "chain id 999" in result.stderr
    assert deployments.read_text() == original


def test_ctrl_c_stops_what_the_demo_started(tmp_path):
    port = free_port()
    deployments = tmp_path / "local.json"
    demo = subprocess.Popen(
        [LIGHTPOOL, "demo", "--port", str(port), "--deployments", str(deployments),
         "--ui-port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "LIGHTPOOL_DATA_DIR": str(tmp_path / "data"),
             "LIGHTPOOL_DATABASE_URL": f"sqlite:///{tmp_path / 'keeper.db'}"},
    )
    try:
        output = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            output.append(line)
            if "press Ctrl-C to stop" in line:
                break
        assert any("press Ctrl-C" in line for line in output), "".join(output)
        assert node.port_in_use("127.0.0.1", port)
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
        assert demo.returncode == 0, rest
        assert "stopped 3 process(es)" in rest  # anvil, keeper, UI
        assert not node.port_in_use("127.0.0.1", port)
    finally:
        if demo.poll() is None:
            demo.kill()
