"""Overlay manager: today's approval queue and the bad data that blocks trading."""

from __future__ import annotations

import pandas as pd
import shared
import streamlit as st

from offchain.chain.actors import OVERLAY_MANAGER
from offchain.chain.seed import DEMO_INVESTORS
from offchain.errors import InvalidInput
from offchain.views import keeper as keeper_views
from offchain.views import proposals as proposal_views

# Session-state keys of this page.
RESULT = "overlay.result"  # the last decision's outcome, shown once

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
keeper = shared.keeper(p)
if keeper is None:
    st.info("LightPool is not part of this deployment, so no keeper hands proposals over for "
            "approval; below is what the optimizer proposes from chain state now.")
else:
    if RESULT in st.session_state:
        kind, message = st.session_state.pop(RESULT)
        (st.success if kind == "ok" else st.error)(message)
    names = {i.actor.address.lower(): i.actor.name for i in DEMO_INVESTORS}
    kept = keeper_views.proposals(keeper)
    if not kept:
        st.info("The keeper has not proposed anything yet (it plans on its next pass).")
    else:
        st.dataframe(pd.DataFrame([{
            "proposal": k.proposal_id, "investor": names.get(k.account.lower(), k.account),
            "mode": k.mode, "batch": k.batch, "model": f"{k.model_id} v{k.model_version}",
            "legs": len(k.legs), "status": k.status.replace("_", " "),
            "decided by": k.decided_by or "",
        } for k in kept]), hide_index=True, width="stretch")
    for k in kept:
        if k.status != "pending_approval":
            continue
        name = names.get(k.account.lower(), k.account)
        st.markdown(f"**Proposal #{k.proposal_id}** — {name}, batch {k.batch}")
        st.dataframe(pd.DataFrame([{
            "side": leg.side, "symbol": leg.symbol, "units": float(leg.quantity),
            "limit price": float(leg.limit_price)} for leg in k.legs]),
            hide_index=True, width="stretch")
        left, right = st.columns(2)
        for column, label, approved in ((left, "Approve", True), (right, "Reject", False)):
            outcome = "approved" if approved else "rejected"
            if column.button(f"{label} #{k.proposal_id}", key=f"overlay.{label}.{k.proposal_id}"):
                try:
                    keeper_views.decide(keeper, k.proposal_id, OVERLAY_MANAGER.name, approved)
                except InvalidInput as exc:
                    st.session_state[RESULT] = ("error", f"Not recorded: {exc}")
                else:
                    st.session_state[RESULT] = (
                        "ok", f"Proposal #{k.proposal_id} {outcome} for {name}.")
                st.rerun()

st.subheader("Optimizer proposals from chain state now")
queue = shared.approval_queue(p, key, block, store.url, shared.model_versions_key(store))
st.dataframe(pd.DataFrame([{
    "investor": v.investor.actor.name,
    "mode": v.mode,
    "model": v.model.model.model_id,
    "trades": len(v.proposal.trades) if v.proposal else 0,
    "tax": float(v.proposal.tax_cost) if v.proposal else None,
    "cost": float(v.proposal.transaction_cost) if v.proposal else None,
    "tracking error before": shared.percent(v.proposal.tracking_error_before) if v.proposal else "",
    "tracking error after": shared.percent(v.proposal.tracking_error_after) if v.proposal else "",
    "status": f"blocked: {v.error.reason}" if v.error else "tradeable",
} for v in queue]), hide_index=True, width="stretch")
for v in queue:
    if v.proposal is None or not v.proposal.trades:
        continue
    with st.expander(f"{v.investor.actor.name} ({v.mode}, {v.model.model.model_id}): "
                     f"{len(v.proposal.trades)} trades"):
        st.dataframe(pd.DataFrame([{
            "side": t.side, "symbol": t.symbol, "units": float(t.quantity),
            "value": float(t.value), "why": t.reason} for t in v.proposal.trades]),
            hide_index=True, width="stretch")
