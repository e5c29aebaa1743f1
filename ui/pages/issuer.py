"""Fund issuer: publish NAV, mint and burn units of the funds it issues."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import shared
import streamlit as st

from offchain.chain.actors import INVESTORS
from offchain.errors import LightPoolError
from offchain.views import chain as chain_views
from offchain.views import issuer as issuer_views

# Session-state keys of this page.
SYMBOL = "issuer.symbol"
RESULT = "issuer.result"

st.title("Issuer")
p = shared.platform()
key, block = shared.cache_key(p), shared.head(p)
states = {s.symbol: s for s in shared.token_states(p, key, block)}
issuable = [s for s, state in states.items() if state.known]
symbol = st.selectbox("Fund", issuable, key=SYMBOL,
                      format_func=lambda s: f"{s} — {states[s].name}")
state = states[symbol]
actor = issuer_views.issuer_of(symbol)
issuer_units = next((h.units for h in shared.holdings(p, key, block, actor.address)
                     if h.symbol == symbol), Decimal(0))

st.caption(f"Issued by {actor.name} (`{actor.address}`), signing with its dev account.")
cols = st.columns(4)
cols[0].metric("NAV", f"{state.nav:,.4f}")
cols[1].metric("NAV struck (UTC)", f"{state.nav_time:%Y-%m-%d %H:%M}")
cols[2].metric("Supply (units)", f"{state.supply:,.4f}")
cols[3].metric("Held by issuer", f"{issuer_units:,.4f}")
if state.nav_stale:
    st.warning("The NAV is stale: LightPool will not trade this fund until a new NAV is published.")

if RESULT in st.session_state:
    kind, message = st.session_state.pop(RESULT)
    (st.success if kind == "ok" else st.error)(message)


def run(action: str, send) -> None:
    try:
        tx = send()
    except LightPoolError as exc:
        st.session_state[RESULT] = ("error", f"{action} refused: {exc}")
    else:
        st.session_state[RESULT] = ("ok", f"{action}: mined in block {tx.block} ({tx.tx_hash})")
    st.rerun()


nav_tab, mint_tab, burn_tab = st.tabs(["Publish NAV", "Mint", "Burn"])
with nav_tab, st.form("issuer.nav"):
    nav = st.number_input("NAV per unit (USDL)", min_value=0.0001, value=float(state.nav),
                          step=0.01, format="%.4f", key="issuer.nav_value")
    if st.form_submit_button("Publish NAV"):
        run(f"Published NAV {nav:.4f} for {symbol}",
            lambda: issuer_views.publish_nav(p, symbol, Decimal(str(nav))))
with mint_tab, st.form("issuer.mint"):
    receivers = {f"{a.name} ({a.address[:10]}…)": a.address for a in INVESTORS}
    receivers[f"{actor.name} — issuer inventory"] = actor.address
    receiver = st.selectbox("Receiver", list(receivers), key="issuer.mint_receiver")
    units = st.number_input("Units", min_value=0.0, value=10.0, step=1.0, key="issuer.mint_units")
    if st.form_submit_button("Mint"):
        run(f"Minted {units} {symbol}",
            lambda: issuer_views.mint(p, symbol, receivers[receiver], Decimal(str(units))))
with burn_tab, st.form("issuer.burn"):
    units = st.number_input("Units to redeem from the issuer's inventory", min_value=0.0,
                            value=0.0, step=1.0, key="issuer.burn_units")
    if st.form_submit_button("Burn"):
        run(f"Burned {units} {symbol}",
            lambda: issuer_views.burn(p, symbol, Decimal(str(units))))

st.subheader("Recent events")
events = chain_views.token_events(p, symbol, from_block=max(0, block.number - 200))
st.dataframe(pd.DataFrame([{"block": e.block, "event": e.event, **e.detail}
                           for e in reversed(events)]), hide_index=True, width="stretch")
