"""``lightpool demo``: the platform's main job on a local chain.

Starts anvil on 127.0.0.1:8545 unless a node already runs there, deploys and seeds the
platform unless the deployments file already describes a live deployment, prints what is
running and what to do next, then keeps running until Ctrl-C, which stops only what this
command started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
from rich.console import Console

from offchain.chain import node
from offchain.config import PROJECT_ROOT, get_settings
from offchain.errors import LightPoolError

console = Console()


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="node host")
@click.option("--port", default=8545, show_default=True, type=click.IntRange(1, 65535),
              help="node port")
@click.option("--deployments", "deployments_path", type=click.Path(path_type=Path),
              default=None, help="deployments file (default: deployments/local.json)")
@click.option("--ui-port", default=8501, show_default=True, type=click.IntRange(1, 65535),
              help="port of the Streamlit UI")
@click.option("--no-ui", is_flag=True, help="do not serve the UI")
@click.option("--no-keeper", is_flag=True, help="do not run the keeper bot")
@click.option("--exit-after-setup", is_flag=True,
              help="stop what was started once everything is deployed (for scripts)")
def demo(host: str, port: int, deployments_path: Path | None, ui_port: int, no_ui: bool,
         no_keeper: bool, exit_after_setup: bool) -> None:
    """Bring the platform up on a local chain and keep it running until Ctrl-C."""
    settings = get_settings()
    path = deployments_path or settings.deployments_file
    url = f"http://{host}:{port}"
    started: list[subprocess.Popen] = []
    services = {"keeper": not no_keeper and not exit_after_setup,
                "ui": not no_ui and not exit_after_setup}
    try:
        _run(url, host, port, path, started, exit_after_setup, services, ui_port)
    except LightPoolError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        for process in reversed(started):
            node.stop(process)
        if started:
            console.print(f"stopped {len(started)} process(es) this demo started")


def _run(url: str, host: str, port: int, path: Path, started: list[subprocess.Popen],
         exit_after_setup: bool, services: dict[str, bool], ui_port: int) -> None:
    from offchain.chain.session import check_against_node, ensure_deployed

    chain_id = node.probe_chain_id(host, port)
    if chain_id is None:
        console.print(f"starting anvil on {host}:{port}")
        started.append(node.start_anvil(host, port, PROJECT_ROOT / ".lightpool" / "anvil.log"))
    else:
        console.print(f"using the node already running on {host}:{port} (chain id {chain_id})")
        # Refuse before touching anything if the file belongs to another chain.
        check_against_node(path, url)

    with console.status("deploying") as spinner:
        deployed, fresh = ensure_deployed(path, url, lambda msg: spinner.update(f"deploying {msg}"))
    console.print(("deployed and seeded" if fresh else "found a live deployment") + f" -> {path}")

    from offchain.chain.cli import status_table

    os.environ["LIGHTPOOL_RPC_URL"] = url
    os.environ["LIGHTPOOL_DEPLOYMENTS_FILE"] = str(path)
    console.print(status_table(path))
    logs = PROJECT_ROOT / ".lightpool"
    if services["keeper"]:
        with open(logs / "keeper.log", "ab") as log:
            started.append(subprocess.Popen(
                [sys.executable, "-m", "offchain.cli", "keeper", "run"], cwd=PROJECT_ROOT,
                stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)))
        console.print(f"keeper running (log: {logs / 'keeper.log'})")
    if services["ui"]:
        if node.port_in_use("127.0.0.1", ui_port):
            raise LightPoolError(f"UI port {ui_port} is taken; pass --ui-port or --no-ui")
        from offchain.ui_server import serve_ui

        started.append(serve_ui(ui_port))
        console.print(f"UI at http://localhost:{ui_port} (log: {logs / 'ui.log'})")
    console.print(_next_steps(url, path))
    if exit_after_setup:
        return
    # ape installs a SIGINT handler that exits at once; the demo wants Ctrl-C (and SIGTERM)
    # to reach the `finally` that stops what it started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        console.print("[bold]running; press Ctrl-C to stop[/bold]")
        while all(p.poll() is None for p in started):
            time.sleep(0.5)
        dead = [p.args[0] for p in started if p.poll() is not None]
        if dead:
            raise LightPoolError(f"a process the demo started has exited: {dead}")
    except KeyboardInterrupt:
        console.print("stopping")


def _next_steps(url: str, path: Path) -> str:
    return (
        f"\n[bold]Running[/bold]: node {url}, deployments {path}\n"
        "[bold]Next[/bold]: open the UI (Investor page: connect a wallet, review and sign the\n"
        "proposal; Overlay manager: approve discretionary trades), or in another terminal\n"
        "`source .venv/bin/activate` then\n"
        "  lightpool chain status       # every token's NAV and supply, read from chain\n"
        "  lightpool keeper queue       # proposals and their status\n"
        "  lightpool --help             # profiles, plans, models, optimizer, keeper\n"
    )
