"""Investor: connect a wallet, see on-chain holdings against the model, sign the proposal."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
import shared
import streamlit as st
from wallet import wallet_button

from offchain.errors import InvalidInput
from offchain.optimizer.inputs import Proposal
from offchain.views import chain as chain_views
from offchain.views import keeper as keeper_views
from offchain.views import signing

# Session-state keys of this page.
LAST_ANSWER = "investor.last_wallet_answer"
APPROVALS = "investor.approvals"  # proposal hash -> {"signature", "signer"}
PAYLOADS = "investor.payloads"  # proposal hash -> typed data asked for (fixed deadline)
SIGNED_ORDERS = "investor.signed_orders"  # the keeper's confirmation, shown once

st.title("Investor")
p = shared.platform()
expected_chain = p.deployments.chain_id

answer = wallet_button("connect", "Connect wallet", request="connect", key="investor.connect")
if answer and answer != st.session_state.get(LAST_ANSWER):
    st.session_state[LAST_ANSWER] = answer
    if answer["kind"] == "connected":
        st.session_state[shared.WALLET_ACCOUNT] = answer["account"]
        st.session_state[shared.WALLET_CHAIN_ID] = int(answer["chainId"], 16)
    elif answer["kind"] == "error":
        st.error(f"Wallet: {answer['message']}")

account = st.session_state.get(shared.WALLET_ACCOUNT)
if account is None:
    st.info("Connect your wallet to see your holdings and your pending rebalance.")
    st.stop()

wallet_chain = st.session_state.get(shared.WALLET_CHAIN_ID)
if wallet_chain != expected_chain:
    st.error(f"Wrong network: your wallet is on chain id {wallet_chain}, but LightPool is "
             f"deployed on chain id {expected_chain}. Switch networks in your wallet and "
             "connect again.")
    st.stop()
st.success(f"Connected: `{account}` on chain id {wallet_chain}")
if SIGNED_ORDERS in st.session_state:
    st.success(st.session_state.pop(SIGNED_ORDERS))

key, block = shared.cache_key(p), shared.head(p)
positions = shared.holdings(p, key, block, account)
store = shared.model_store()
view = shared.account_view(p, key, block, account, store.url, shared.model_versions_key(store))

st.subheader("Holdings (read from chain)")
if not positions:
    st.info("This address holds no LightPool fund units.")
else:
    total = sum((h.value for h in positions), Decimal(0))
    st.metric("Portfolio value (USDL)", shared.money(total))
    st.dataframe(pd.DataFrame([{
        "symbol": h.symbol, "asset class": h.asset_class, "units": float(h.units),
        "in wallet": float(h.wallet_units), "in LightPool escrow": float(h.escrow_units),
        "NAV": float(h.nav), "value": float(h.value),
        "weight": shared.percent(h.value / total), "NAV stale": h.nav_stale,
    } for h in positions]), hide_index=True, width="stretch")

if view is None:
    st.info("This address has no advisory or discretionary account on LightPool, so there is "
            "no model portfolio or proposal to show.")
    st.stop()

model = view.model.model
st.subheader(f"Model {model.model_id}: {model.name}")
st.caption(f"Risk category {model.risk_category}, version {view.model.version} by "
           f"{view.model.author} ({view.model.edited_at:%Y-%m-%d %H:%M} UTC); "
           f"{view.mode} account")
current = chain_views.weights_by_asset_class(positions)
classes = sorted(set(current) | set(model.asset_class_targets))
chart = pd.DataFrame({
    "current": [float(current.get(c, 0)) * 100 for c in classes],
    "target": [float(model.asset_class_targets.get(c, 0)) * 100 for c in classes],
}, index=pd.Index(classes, name="asset class"))
st.bar_chart(chart, stack=False, y_label="weight (%)", horizontal=True)

st.subheader("Pending rebalance proposal")
keeper = shared.keeper(p)
keeper_proposal = None
if keeper is not None:
    mine = keeper_views.proposals(keeper, account)
    keeper_proposal = mine[0] if mine else None
if keeper_proposal is not None:
    # The keeper's proposal is what will trade; show its explanation, not a fresh run.
    proposal = Proposal.model_validate(keeper_proposal.explanation)
    st.caption(f"Keeper proposal #{keeper_proposal.proposal_id} for LightPool batch "
               f"{keeper_proposal.batch} (model {keeper_proposal.model_id} "
               f"v{keeper_proposal.model_version}): {keeper_proposal.status.replace('_', ' ')}")
elif view.error is not None:
    st.warning(f"No proposal today: {view.error.field}: {view.error.reason}")
    st.stop()
else:
    proposal = view.proposal
if not proposal.trades:
    st.info("Your portfolio is within its model's bands: no trade is worth its cost today.")
    st.stop()

cols = st.columns(4)
cols[0].metric("Trades", len(proposal.trades))
cols[1].metric("Estimated tax (USDL)", shared.money(proposal.tax_cost))
cols[2].metric("Transaction cost (USDL)", shared.money(proposal.transaction_cost))
te_change = (proposal.tracking_error_after - proposal.tracking_error_before) * 100
cols[3].metric("Tracking error", shared.percent(proposal.tracking_error_after),
               delta=f"{te_change:.2f} pp", delta_color="inverse")
st.dataframe(pd.DataFrame([{
    "side": t.side, "symbol": t.symbol, "units": float(t.quantity), "value": float(t.value),
    "cost": float(t.cost), "realized gain": float(t.realized_gain or 0), "term": t.term or "",
    "why": t.reason,
} for t in proposal.trades]), hide_index=True, width="stretch")
st.caption(f"Realized short-term {shared.money(proposal.realized_short_term)}, long-term "
           f"{shared.money(proposal.realized_long_term)}; cash after "
           f"{shared.money(proposal.cash_after)} USDL. " + " ".join(proposal.notes))

if keeper_proposal is not None:
    st.subheader("LightPool orders")
    st.dataframe(pd.DataFrame([{
        "side": leg.side, "symbol": leg.symbol, "units": float(leg.quantity),
        "limit price": float(leg.limit_price), "status": leg.status, "signed": leg.signed,
    } for leg in keeper_proposal.legs]), hide_index=True, width="stretch")
    if keeper_proposal.status != "awaiting_signature":
        st.info(f"Status: {keeper_proposal.status.replace('_', ' ')}"
                + (f" (by {keeper_proposal.decided_by})" if keeper_proposal.decided_by else "")
                + ". Nothing to sign.")
        st.stop()
    requests = keeper_views.signing_requests(keeper, keeper_proposal.proposal_id)
    with st.expander(f"What you sign ({len(requests)} EIP-712 LightPool orders)"):
        st.json(requests)
    request_id = f"keeper:{keeper_proposal.proposal_id}"
    signed = wallet_button("sign", "Sign with wallet", request=request_id, key="investor.sign",
                           account=account, typed_data=[signing.for_wallet(r) for r in requests])
    if (signed and signed.get("request") == request_id
            and signed != st.session_state.get(LAST_ANSWER)):
        st.session_state[LAST_ANSWER] = signed
        if signed["kind"] == "signed":
            try:
                keeper_views.record_signatures(keeper, keeper_proposal.proposal_id,
                                               signed["signatures"])
            except InvalidInput as exc:
                st.error(f"The keeper refused the signatures: {exc}")
            else:
                st.session_state[SIGNED_ORDERS] = (
                    f"Status: signed. {len(requests)} orders signed by `{account}` and "
                    f"verified by the keeper; it relays them in LightPool batch "
                    f"{keeper_proposal.batch}.")
                st.rerun()
        elif signed["kind"] == "error":
            st.error(f"Not signed: {signed['message']}")
    st.info("Status: awaiting your signature.")
    st.stop()

digest = signing.proposal_hash(proposal)
payloads = st.session_state.setdefault(PAYLOADS, {})
if digest not in payloads:
    payloads[digest] = signing.approval_typed_data(
        proposal, account, expected_chain, dt.datetime.now(dt.UTC))
typed_data = payloads[digest]
approvals = st.session_state.setdefault(APPROVALS, {})

with st.expander("What you sign (EIP-712 RebalanceApproval)"):
    st.json(typed_data)

signed = wallet_button("sign", "Sign with wallet", request=digest, key="investor.sign",
                       account=account, typed_data=[typed_data])
if signed and signed.get("request") == digest and signed != st.session_state.get(LAST_ANSWER):
    st.session_state[LAST_ANSWER] = signed
    if signed["kind"] == "signed":
        signature = signed["signatures"][0]
        signer = signing.recover_signer(typed_data, signature)
        approvals[digest] = {"signature": signature, "signer": signer}
    elif signed["kind"] == "error":
        st.error(f"Not signed: {signed['message']}")

approval = approvals.get(digest)
if approval is None:
    st.info("Status: awaiting your signature.")
elif approval["signer"].lower() == account.lower():
    st.success(f"Status: approved. Signature by `{approval['signer']}` verified "
               f"for proposal `{digest[:18]}…`; the keeper can now submit the orders.")
    st.code(approval["signature"], language=None)
else:
    st.error(f"Status: the signature was made by `{approval['signer']}`, not by the connected "
             f"account `{account}`; the proposal is not approved.")
