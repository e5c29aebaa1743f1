"""Runtime configuration, read from the environment with the ``LIGHTPOOL_`` prefix."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Where the platform's state lives and which chain it talks to."""

    model_config = SettingsConfigDict(env_prefix="LIGHTPOOL_")

    # JSON-RPC endpoint of the chain (anvil in the demo).
    rpc_url: str = "http://127.0.0.1:8545"
    # File holding every deployed address, written by the deploy step, read by everything else.
    deployments_file: Path = PROJECT_ROOT / "deployments" / "local.json"
    # Folder (or fsspec URL) holding encrypted profiles and other off-chain data.
    data_dir: str = str(PROJECT_ROOT / ".lightpool")
    # LightPool's batch cadence in seconds, used when the platform is deployed.
    batch_seconds: int = 60
    # SQLAlchemy URL of the keeper's and ledger's database.
    database_url: str = f"sqlite:///{PROJECT_ROOT / '.lightpool' / 'lightpool.db'}"


def get_settings() -> Settings:
    """Return settings freshly read from the environment."""
    return Settings()
