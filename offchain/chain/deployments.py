"""The deployments file: every deployed address, written once by deploy, read by everything.

Format (JSON)::

    {"chain_id": 31337, "genesis_hash": "0x..", "block": 12,
     "contracts": {"ProfileRegistry": "0x..", ...},
     "tokens": {"USDL": "0x..", "LCAP": "0x..", ...}}

The file is replaced atomically (written beside, then renamed), so a reader never sees half
of it and a failed deploy leaves the previous file in place.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from offchain.errors import ChainStateError, InvalidInput


class Deployments(BaseModel):
    """Addresses of one deployment of the platform on one chain."""

    chain_id: int = Field(gt=0)
    genesis_hash: str
    block: int = Field(ge=0, description="block number at which deployment finished")
    contracts: dict[str, str]
    tokens: dict[str, str]

    def token(self, symbol: str) -> str:
        """Address of the token ``symbol``; raises ``InvalidInput`` if not deployed."""
        try:
            return self.tokens[symbol]
        except KeyError:
            raise InvalidInput("symbol", f"one of {sorted(self.tokens)}", symbol) from None

    def contract(self, name: str) -> str:
        """Address of the contract ``name``; raises ``ChainStateError`` if not deployed."""
        try:
            return self.contracts[name]
        except KeyError:
            raise ChainStateError(
                f"{name} is not in the deployments file; run `lightpool chain deploy`"
            ) from None


def load(path: Path) -> Deployments:
    """Read and validate a deployments file.

    Raises ``ChainStateError`` if it does not exist, ``InvalidInput`` if it is malformed.
    """
    if not path.exists():
        raise ChainStateError(
            f"no deployments file at {path}; run the demo or `lightpool chain deploy`")
    try:
        return Deployments.model_validate_json(path.read_text())
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise InvalidInput(f"{path.name}:{field}", first["msg"]) from None


def save(path: Path, deployments: Deployments) -> None:
    """Write ``deployments`` to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(deployments.model_dump(), handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
