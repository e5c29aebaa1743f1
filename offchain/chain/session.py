"""Deploy-or-reuse against a running node, through ape (the write side)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from web3 import Web3

from offchain.chain import deployments as deployments_file
from offchain.chain.deployments import Deployments
from offchain.config import PROJECT_ROOT
from offchain.errors import ChainStateError


def check_against_node(path: Path, url: str) -> Deployments | None:
    """The deployment in ``path`` if it is live on the node at ``url``, else None.

    Raises ``ChainStateError`` when the file belongs to another chain (another chain id):
    nothing is deployed and the file is left as it is.
    """
    if not path.exists():
        return None
    recorded = deployments_file.load(path)
    w3 = Web3(Web3.HTTPProvider(url))
    live_chain_id = w3.eth.chain_id
    if recorded.chain_id != live_chain_id:
        raise ChainStateError(
            f"{path} points at chain id {recorded.chain_id}, but the node at {url} is chain id "
            f"{live_chain_id}. Nothing was changed. Point --deployments at another file, or "
            f"remove this one if that chain is gone."
        )
    genesis = w3.eth.get_block(0)["hash"].hex()
    addresses = [*recorded.contracts.values(), *recorded.tokens.values()]
    if _strip(genesis) == _strip(recorded.genesis_hash) and all(
        w3.eth.get_code(Web3.to_checksum_address(a)) for a in addresses
    ):
        return recorded
    # Same chain id, but the chain was restarted: the recorded contracts no longer exist.
    return None


def ensure_deployed(path: Path, url: str, progress: Callable[[str], None]
                    ) -> tuple[Deployments, bool]:
    """Return the live deployment at ``url``, deploying and seeding it first if needed.

    The second value says whether this call deployed. The file is written only after a
    complete deployment, atomically.
    """
    existing = check_against_node(path, url)
    if existing is not None:
        return existing, False
    os.environ["APE_FOUNDRY_HOST"] = url
    from ape import Project, accounts, chain, networks

    from offchain.chain.deploy import deploy_platform

    project = Project(PROJECT_ROOT)
    with networks.ethereum.local.use_provider("foundry"):
        deployed = deploy_platform(project, accounts, chain, progress)
    deployments_file.save(path, deployed)
    return deployed, True


def _strip(hex_string: str) -> str:
    return hex_string.lower().removeprefix("0x")
