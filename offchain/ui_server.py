"""Start the Streamlit UI (``ui/app.py``) as a child process, for ``lightpool demo``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from offchain.config import PROJECT_ROOT

APP = PROJECT_ROOT / "ui" / "app.py"


def serve_ui(port: int, host: str = "127.0.0.1", log_file: Path | None = None,
             env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``streamlit run ui/app.py`` headless on ``host:port`` and return the process.

    The UI reads ``LIGHTPOOL_RPC_URL`` and ``LIGHTPOOL_DEPLOYMENTS_FILE`` from ``env``
    (default: this process's environment). Output goes to ``log_file`` (default:
    ``.lightpool/ui.log``). Raises ``ValueError`` for a port outside 1..65535. The caller
    stops it (SIGINT or ``terminate``) like any child it started.
    """
    if not 1 <= port <= 65535:
        raise ValueError(f"port: expected 1..65535, got {port}")
    log_file = log_file or PROJECT_ROOT / ".lightpool" / "ui.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.headless", "true", "--server.address", host, "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
    ]
    with open(log_file, "ab") as log:
        return subprocess.Popen(command, cwd=PROJECT_ROOT, env=env or dict(os.environ),
                                stdout=log, stderr=subprocess.STDOUT)
