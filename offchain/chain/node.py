"""The local anvil node: find it, probe a port, start it, stop it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from offchain.chain.actors import DEV_ACCOUNT_COUNT, TEST_MNEMONIC
from offchain.config import PROJECT_ROOT
from offchain.errors import ChainStateError

ANVIL_IN_PROJECT = PROJECT_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin"
LOCAL_CHAIN_ID = 31337


def anvil_binary() -> Path:
    """Path of the anvil binary: the project's pinned one first, else one on PATH."""
    candidate = ANVIL_IN_PROJECT / "anvil"
    if candidate.exists():
        return candidate
    found = shutil.which("anvil")
    if found is None:
        raise ChainStateError("anvil not found: run `bash run.sh setup` to install it")
    return Path(found)


def rpc(url: str, method: str, params: list | None = None, timeout: float = 2.0):
    """One JSON-RPC call; returns its result or raises ``ChainStateError``."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    request = urllib.request.Request(url, body.encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = json.loads(response.read())
    if "error" in payload:
        raise ChainStateError(f"{method} failed at {url}: {payload['error']}")
    return payload["result"]


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def probe_chain_id(host: str, port: int) -> int | None:
    """Chain id of the node on ``host:port``; None if the port is free.

    Raises ``ChainStateError`` if the port is taken by something that is not an Ethereum
    JSON-RPC node.
    """
    if not port_in_use(host, port):
        return None
    try:
        return int(rpc(f"http://{host}:{port}", "eth_chainId"), 16)
    except (urllib.error.URLError, ValueError, KeyError, OSError, ChainStateError) as exc:
        raise ChainStateError(
            f"port {port} on {host} is taken by a program that is not an Ethereum node "
            f"({type(exc).__name__}); stop it or pass --port with a free port"
        ) from None


def start_anvil(host: str, port: int, log_path: Path, chain_id: int = LOCAL_CHAIN_ID,
                timeout_s: float = 20.0, state_file: Path | None = None) -> subprocess.Popen:
    """Start anvil on ``host:port`` with the demo's dev accounts; wait until it answers.

    With ``state_file`` the chain (state, blocks, receipts) is loaded from it if it exists
    and written back when anvil is stopped with SIGINT: a node that survives restarts.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [str(anvil_binary()), "--host", host, "--port", str(port),
         "--chain-id", str(chain_id), "--accounts", str(DEV_ACCOUNT_COUNT),
         "--mnemonic", TEST_MNEMONIC, "--hardfork", "prague", "--gas-limit", "30000000",
         *(["--state", str(state_file)] if state_file else [])],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ},
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ChainStateError(f"anvil exited with code {process.returncode}; see {log_path}")
        try:
            rpc(f"http://{host}:{port}", "eth_chainId", timeout=0.5)
            return process
        except (urllib.error.URLError, OSError, ChainStateError):
            time.sleep(0.1)
    process.terminate()
    raise ChainStateError(f"anvil did not answer on {host}:{port} within {timeout_s}s")


def stop(process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Terminate a process we started, then kill it if it lingers."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
