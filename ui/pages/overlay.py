"""Overlay manager: today's approval queue and the bad data that blocks trading."""

from __future__ import annotations

import pandas as pd
import shared
import streamlit as st

from offchain.views import proposals as proposal_views

# Session-state keys of this page.
DECISIONS = "overlay.decisions"  # account -> "approved" | "rejected"

st.title("Overlay manager")
p = shared.platform()
key, block = shared.cache_key(p), shared.head(p)
store = shared.model_store()

st.subheader("Bad data")
flags = proposal_views.data_flags(shared.token_states(p, key, block))
if flags:
    st.warning(f"{len(flags)} instrument(s) need attention before they can be traded.")
    st.dataframe(pd.DataFrame([{"symbol": f.symbol, "problem": f.problem, "detail": f.detail}
                               for f in flags]), hide_index=True, width="stretch")
else:
    st.success("No stale NAV and no unknown instrument.")

st.subheader("Approval queue")
queue = shared.approval_queue(p, key, block, store.url, shared.model_versions_key(store))
decisions = st.session_state.setdefault(DECISIONS, {})
st.dataframe(pd.DataFrame([{
    "investor": v.investor.actor.name,
    "mode": v.mode,
    "model": v.model.model.model_id,
    "trades": len(v.proposal.trades) if v.proposal else 0,
    "tax": float(v.proposal.tax_cost) if v.proposal else None,
    "cost": float(v.proposal.transaction_cost) if v.proposal else None,
    "status": (f"blocked: {v.error.reason}" if v.error else
               decisions.get(v.investor.actor.address,
                             "pending" if v.investor.discretionary else "awaiting investor")),
} for v in queue]), hide_index=True, width="stretch")

for v in queue:
    name = v.investor.actor.name
    with st.expander(f"{name} ({v.mode}, {v.model.model.model_id})",
                     expanded=v.investor.discretionary and v.error is None):
        if v.error is not None:
            st.error(f"{v.error.field}: {v.error.reason}")
            continue
        if not v.proposal.trades:
            st.info("Within bands: no trade today.")
            continue
        st.dataframe(pd.DataFrame([{
            "side": t.side, "symbol": t.symbol, "units": float(t.quantity),
            "value": float(t.value), "why": t.reason} for t in v.proposal.trades]),
            hide_index=True, width="stretch")
        st.caption(f"Tracking error {shared.percent(v.proposal.tracking_error_before)} -> "
                   f"{shared.percent(v.proposal.tracking_error_after)}")
        if not v.investor.discretionary:
            st.caption("Advisory account: the investor approves with their wallet signature.")
            continue
        address = v.investor.actor.address
        left, right = st.columns(2)
        if left.button("Approve", key=f"overlay.approve.{address}"):
            decisions[address] = "approved"
            st.rerun()
        if right.button("Reject", key=f"overlay.reject.{address}"):
            decisions[address] = "rejected"
            st.rerun()
