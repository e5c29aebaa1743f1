"""Read-side contract handles over plain web3, for processes that do not need ape.

ABIs come from ape's compiled manifest (``.build/__local__.json``), which deploy writes;
addresses come from the deployments file. The keeper, the UI and the auditor use these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from web3 import Web3

from offchain.chain.deployments import Deployments, load
from offchain.config import PROJECT_ROOT, Settings, get_settings
from offchain.errors import ChainStateError

MANIFEST = PROJECT_ROOT / ".build" / "__local__.json"


@cache
def abi(contract_name: str) -> list[dict[str, Any]]:
    """ABI of a project contract from ape's manifest; compiles with ape if missing."""
    if not MANIFEST.exists():
        _compile()
    types = json.loads(MANIFEST.read_text())["contractTypes"]
    if contract_name not in types:
        _compile()
        types = json.loads(MANIFEST.read_text())["contractTypes"]
    try:
        return types[contract_name]["abi"]
    except KeyError:
        raise ChainStateError(f"contract {contract_name} is not in {MANIFEST}") from None


def _compile() -> None:
    from ape import Project

    Project(PROJECT_ROOT).load_contracts()


@dataclass
class Platform:
    """web3 handles to one deployment."""

    w3: Web3
    deployments: Deployments

    def contract(self, name: str) -> Any:
        return self.w3.eth.contract(address=self.deployments.contract(name), abi=abi(name))

    def token(self, symbol: str) -> Any:
        return self.w3.eth.contract(address=self.deployments.token(symbol), abi=abi("FundToken"))


def connect(settings: Settings | None = None, deployments_file: Path | None = None) -> Platform:
    """web3 handles for the deployment in the deployments file, checked against the node.

    Raises ``ChainStateError`` if the node is unreachable or is another chain.
    """
    settings = settings or get_settings()
    deployments = load(deployments_file or settings.deployments_file)
    w3 = Web3(Web3.HTTPProvider(settings.rpc_url, request_kwargs={"timeout": 10}))
    if not w3.is_connected():
        raise ChainStateError(f"no node answers at {settings.rpc_url}; start the demo first")
    if w3.eth.chain_id != deployments.chain_id:
        raise ChainStateError(
            f"the deployments file is for chain id {deployments.chain_id} but the node at "
            f"{settings.rpc_url} is chain id {w3.eth.chain_id}"
        )
    return Platform(w3=w3, deployments=deployments)
