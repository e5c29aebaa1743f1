"""What every page shares: the cached chain connection, cached reads and the wallet state.

Connections are ``st.cache_resource`` (one per node and deployments file); reads are
``st.cache_data`` keyed by the chain head, so they are recomputed after every new block and
served from cache otherwise.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

import streamlit as st

from offchain.chain.contracts import Platform, connect
from offchain.config import Settings, get_settings
from offchain.errors import LightPoolError
from offchain.keeper.bot import Keeper
from offchain.models.portfolios import ModelStore
from offchain.views import chain as chain_views
from offchain.views import keeper as keeper_views
from offchain.views import proposals as proposal_views

# Session-state keys of the wallet, shared by every page.
WALLET_ACCOUNT = "wallet.account"
WALLET_CHAIN_ID = "wallet.chain_id"


@st.cache_resource(show_spinner=False)
def _platform(rpc_url: str, deployments_file: str) -> Platform:
    return connect(Settings(rpc_url=rpc_url, deployments_file=deployments_file))


def platform() -> Platform:
    """The chain connection for the configured node and deployments file; stops the page
    with the reason if there is none."""
    settings = get_settings()
    try:
        return _platform(settings.rpc_url, str(settings.deployments_file))
    except LightPoolError as exc:
        st.error(f"Cannot reach the LightPool deployment: {exc}")
        st.stop()
        raise


class Head(NamedTuple):
    """The chain's latest block: the cache key of every read. The hash is part of it
    because a reverted chain (anvil snapshots, reorgs) reuses block numbers."""

    number: int
    hash: str


def head(p: Platform) -> Head:
    """The chain's latest block."""
    block = p.w3.eth.get_block("latest")
    return Head(block["number"], block["hash"].hex())


@st.cache_resource(show_spinner=False)
def _keeper(rpc_url: str, deployments_file: str, database_url: str, data_dir: str) -> Keeper:
    return keeper_views.open_keeper()


def keeper(p: Platform) -> Keeper | None:
    """The keeper of this deployment (its database and checks), or None if the deployment
    has no LightPool (then there is no keeper to hand signatures or decisions to)."""
    if "LightPool" not in p.deployments.contracts:
        return None
    settings = get_settings()
    return _keeper(settings.rpc_url, str(settings.deployments_file), settings.database_url,
                   settings.data_dir)


def model_store() -> ModelStore:
    """The IPC's model store under the configured data folder, seeded on first use."""
    store = ModelStore()
    store.ensure_seeded()
    return store


@st.cache_data(show_spinner=False)
def token_states(_p: Platform, key: str, block: Head) -> list[chain_views.TokenState]:
    return chain_views.token_states(_p)


@st.cache_data(show_spinner=False)
def holdings(_p: Platform, key: str, block: Head, address: str) -> list[chain_views.Holding]:
    return chain_views.holdings(_p, address)


@st.cache_data(show_spinner="Running the optimizer…")
def account_view(_p: Platform, key: str, block: Head, address: str, models_url: str,
                 model_versions: str) -> proposal_views.AccountView | None:
    investor = proposal_views.demo_investor(address)
    if investor is None:
        return None
    return proposal_views.account_view(_p, investor, ModelStore(models_url))


@st.cache_data(show_spinner="Running the optimizer on every account…")
def approval_queue(_p: Platform, key: str, block: Head, models_url: str,
                   model_versions: str) -> list[proposal_views.AccountView]:
    return proposal_views.approval_queue(_p, ModelStore(models_url))


def cache_key(p: Platform) -> str:
    """Identifies the deployment in cache keys (platform handles are not hashable)."""
    return f"{p.deployments.chain_id}:{p.deployments.genesis_hash}:{p.w3.provider.endpoint_uri}"


def model_versions_key(store: ModelStore) -> str:
    """Changes whenever the IPC stores a new model version (so proposals are recomputed)."""
    return ",".join(f"{m}@{store.versions(m)[-1]}" for m in store.model_ids())


def money(amount: Decimal) -> str:
    """Cash units with thousands separators and cents."""
    return f"{amount:,.2f}"


def percent(fraction: Decimal | float) -> str:
    return f"{float(fraction) * 100:.2f}%"
