"""Auditor: every token's supply and NAV, and the event history, read from chain."""

from __future__ import annotations

import pandas as pd
import shared
import streamlit as st

from offchain.views import chain as chain_views

# Session-state keys of this page.
SYMBOL = "auditor.symbol"

st.title("Auditor")
p = shared.platform()
key, block = shared.cache_key(p), shared.head(p)
st.caption(f"Chain id {p.deployments.chain_id}, block {block.number}; deployment finished at block "
           f"{p.deployments.block}. Everything below is read from chain.")

states = shared.token_states(p, key, block)
st.subheader("Fund tokens")
st.dataframe(pd.DataFrame([{
    "symbol": s.symbol, "name": s.name, "kind": s.kind, "asset class": s.asset_class,
    "NAV": float(s.nav), "NAV struck (UTC)": s.nav_time.strftime("%Y-%m-%d %H:%M:%S"),
    "NAV stale": s.nav_stale, "supply": float(s.supply), "market value": float(s.supply * s.nav),
    "issuer": s.issuer, "address": s.address,
} for s in states]), hide_index=True, width="stretch")

st.subheader("Token events")
symbol = st.selectbox("Token", [s.symbol for s in states], key=SYMBOL)
events = chain_views.token_events(p, symbol)
counts = pd.Series([e.event for e in events]).value_counts()
st.caption(", ".join(f"{n} {name}" for name, n in counts.items()) or "no events")
st.dataframe(pd.DataFrame([{"block": e.block, "event": e.event, "tx": e.tx_hash, **e.detail}
                           for e in events]), hide_index=True, width="stretch")

st.subheader("LightPool batches and fills")
if "LightPool" not in p.deployments.contracts:
    st.info("LightPool is not part of this deployment, so there are no batches or fills yet.")
else:
    pool_events = chain_views.contract_events(p, "LightPool")
    if not pool_events:
        st.info("LightPool is deployed; no batch has been cleared yet.")
    st.dataframe(pd.DataFrame([{"block": e.block, "event": e.event, "tx": e.tx_hash, **e.detail}
                               for e in pool_events]), hide_index=True, width="stretch")
