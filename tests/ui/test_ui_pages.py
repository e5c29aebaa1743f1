"""Every page of the app, run with Streamlit's AppTest against the live demo chain."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from streamlit.testing.v1 import AppTest

from offchain.chain.actors import AUDITOR, INVESTORS
from offchain.chain.contracts import connect
from offchain.chain.seed import DEMO_INVESTORS
from offchain.config import PROJECT_ROOT, Settings
from offchain.models.portfolios import ModelStore
from offchain.views import chain as chain_views

TIMEOUT = 120
UI_APP = str(PROJECT_ROOT / "ui" / "app.py")


def page(name: str, **state) -> AppTest:
    at = AppTest.from_file(UI_APP, default_timeout=TIMEOUT)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if name != "investor":
        at.switch_page(f"pages/{name}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def connected(address: str, chain_id: int = 31337) -> dict:
    return {"wallet.account": address, "wallet.chain_id": chain_id}


def texts(elements) -> list[str]:
    return [e.value for e in elements]


@pytest.fixture
def platform(ui_env):
    return connect(Settings(rpc_url=ui_env.rpc_url, deployments_file=ui_env.deployments_file))


def test_navigation_has_one_page_per_role(ui_env):
    at = page("investor")
    assert texts(at.title) == ["Investor"]
    for name, title in [("overlay", "Overlay manager"), ("committee", "Investment committee"),
                        ("issuer", "Issuer"), ("auditor", "Auditor")]:
        assert texts(page(name).title) == [title]


def test_investor_without_a_wallet_is_asked_to_connect(ui_env):
    at = page("investor")
    assert any("Connect your wallet" in t for t in texts(at.info))
    assert not at.dataframe


def test_investor_on_another_chain_is_told_to_switch(ui_env):
    at = page("investor", **connected(INVESTORS[0].address, chain_id=1))
    assert len(at.error) == 1
    message = at.error[0].value
    assert "chain id 1" in message and "chain id 31337" in message
    assert not at.dataframe


def test_investor_sees_chain_holdings_model_and_proposal(ui_env, platform):
    alice = DEMO_INVESTORS[0]
    at = page("investor", **connected(alice.actor.address))
    assert any(alice.actor.address in t for t in texts(at.success))
    holdings = at.dataframe[0].value
    chain = {h.symbol: h for h in chain_views.holdings(platform, alice.actor.address)}
    assert list(holdings["symbol"]) == list(chain)
    for _, row in holdings.iterrows():
        assert row["units"] == pytest.approx(float(chain[row["symbol"]].units))
        assert row["NAV"] == pytest.approx(float(chain[row["symbol"]].nav))
    total = sum(h.value for h in chain.values())
    assert at.metric[0].value == f"{total:,.2f}"
    assert any(f"Model LP-{alice.risk_category}" in t for t in texts(at.subheader))
    trades = at.dataframe[1].value
    assert len(trades) > 0 and set(trades["side"]) <= {"buy", "sell"}
    assert at.metric[1].label == "Trades" and at.metric[1].value == str(len(trades))
    assert any("awaiting your signature" in t for t in texts(at.info))
    typed = at.json[0].value
    payload = json.loads(typed) if isinstance(typed, str) else typed
    assert payload["primaryType"] == "RebalanceApproval"
    assert payload["domain"]["chainId"] == 31337
    assert payload["message"]["account"] == alice.actor.address


def test_investor_without_an_account_sees_no_proposal(ui_env):
    at = page("investor", **connected(AUDITOR.address))
    assert any("no advisory or discretionary account" in t for t in texts(at.info))
    assert not any("Pending rebalance" in t for t in texts(at.subheader))


def test_overlay_shows_optimizer_proposals_before_the_keeper_plans(ui_env):
    at = page("overlay")
    assert any("No stale NAV" in t for t in texts(at.success))
    assert any("not proposed anything yet" in t for t in texts(at.info))
    preview = at.dataframe[0].value
    ordered = sorted(DEMO_INVESTORS, key=lambda i: not i.discretionary)
    assert list(preview["investor"]) == [i.actor.name for i in ordered]
    assert set(preview["status"]) == {"tradeable"} and (preview["trades"] > 0).all()
    assert not [b for b in at.button if b.label.startswith("Approve")]


def test_overlay_approves_and_rejects_keeper_proposals(planned_keeper):
    from offchain.views import keeper as keeper_views

    pending = [k for k in keeper_views.proposals(planned_keeper) if k.status == "pending_approval"]
    discretionary = [i for i in DEMO_INVESTORS if i.discretionary]
    assert {k.account for k in pending} == {i.actor.address for i in discretionary}
    at = page("overlay")
    queue = at.dataframe[0].value
    assert set(queue["proposal"]) == {k.proposal_id for k in
                                      keeper_views.proposals(planned_keeper)}
    first, second = sorted(k.proposal_id for k in pending)
    at.button(key=f"overlay.Approve.{first}").click().run()
    assert any(f"Proposal #{first} approved" in t for t in texts(at.success))
    at.button(key=f"overlay.Reject.{second}").click().run()
    assert any(f"Proposal #{second} rejected" in t for t in texts(at.success))
    status = {k.proposal_id: (k.status, k.decided_by)
              for k in keeper_views.proposals(planned_keeper)}
    assert status[first] == ("approved", "Overlay manager")
    assert status[second] == ("rejected", "Overlay manager")
    assert not [b for b in at.button if b.label.startswith("Approve")]


def test_investor_sees_the_keepers_orders_to_sign(planned_keeper, platform):
    from offchain.views import keeper as keeper_views

    alice = DEMO_INVESTORS[0]
    assert not alice.discretionary
    mine = keeper_views.proposals(planned_keeper, alice.actor.address)[0]
    assert mine.status == "awaiting_signature"
    at = page("investor", **connected(alice.actor.address))
    assert any("LightPool orders" in t for t in texts(at.subheader))
    assert any(f"Keeper proposal #{mine.proposal_id}" in t for t in texts(at.caption))
    legs = at.dataframe[-1].value
    assert list(legs["symbol"]) == [leg.symbol for leg in mine.legs]
    assert not legs["signed"].any()
    payloads = at.json[0].value
    payloads = json.loads(payloads) if isinstance(payloads, str) else payloads
    assert len(payloads) == len(mine.legs)
    assert {p["primaryType"] for p in payloads} == {"Order"}
    assert {p["domain"]["verifyingContract"] for p in payloads} == {
        platform.deployments.contract("LightPool")}
    assert any("awaiting your signature" in t for t in texts(at.info))


def test_discretionary_investor_has_nothing_to_sign(planned_keeper):
    bao = next(i for i in DEMO_INVESTORS if i.discretionary)
    at = page("investor", **connected(bao.actor.address))
    assert any("pending approval" in t and "Nothing to sign" in t for t in texts(at.info))
    assert not at.json


def test_overlay_flags_stale_navs(ui_env, snapshot):
    ui_env.rpc("evm_increaseTime", 3 * 86_400)
    ui_env.rpc("evm_mine")
    at = page("overlay")
    flags = at.dataframe[0].value
    assert "LCAP" in set(flags["symbol"]) and set(flags["problem"]) == {"stale NAV"}
    statuses = list(at.dataframe[1].value["status"])  # the optimizer's view of each account
    assert all(s.startswith("blocked:") for s in statuses)


def test_committee_edits_a_model_as_a_new_version(ui_env):
    store = ModelStore()
    at = page("committee")
    at.selectbox(key="committee.model").select("LP-3").run()
    before = store.versions("LP-3")
    document = json.loads(at.text_area[0].value)
    document["name"] = "Balanced Growth (reviewed)"
    at.text_area[0].set_value(json.dumps(document))
    at.text_input(key="committee.author").set_value("Ines (IPC chair)")
    at.text_input(key="committee.note").set_value("annual review")
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert store.versions("LP-3") == before + [before[-1] + 1]
    latest = store.get("LP-3")
    assert latest.author == "Ines (IPC chair)" and latest.model.name == document["name"]
    assert any("version" in t and "Ines" in t for t in texts(at.success))
    assert at.dataframe[2].value["author"].iloc[0] == "Ines (IPC chair)"


def test_committee_refuses_an_invalid_model_and_writes_nothing(ui_env):
    store = ModelStore()
    at = page("committee")
    before = store.versions("LP-1")
    document = json.loads(at.text_area[0].value)
    document["asset_class_targets"]["cash"] = "0.5"
    at.text_area[0].set_value(json.dumps(document))
    at.text_input(key="committee.author").set_value("Ines")
    at.button[0].click().run()
    assert len(at.error) == 1 and "asset_class_targets" in at.error[0].value
    assert store.versions("LP-1") == before


def test_issuer_publishes_nav_and_mints(ui_env, platform, snapshot):
    at = page("issuer")
    at.selectbox(key="issuer.symbol").select("TIPS").run()
    at.number_input(key="issuer.nav_value").set_value(109.5)
    at.button[0].click().run()
    assert any("Published NAV 109.5000 for TIPS" in t for t in texts(at.success)), texts(at.error)
    assert platform.token("TIPS").functions.nav().call() == 109_500_000_000_000_000_000
    assert at.metric[0].value == "109.5000"

    alice = INVESTORS[0].address
    before = platform.token("TIPS").functions.balanceOf(alice).call()
    at.number_input(key="issuer.mint_units").set_value(4.0)
    at.button[1].click().run()
    assert any("Minted 4.0 TIPS" in t for t in texts(at.success)), texts(at.error)
    assert platform.token("TIPS").functions.balanceOf(alice).call() == before + 4 * 10**18


def test_issuer_sees_why_a_burn_is_refused(ui_env):
    at = page("issuer")
    at.selectbox(key="issuer.symbol").select("PEQ").run()
    at.number_input(key="issuer.burn_units").set_value(1.0)
    at.button[2].click().run()
    assert len(at.error) == 1 and "Burned 1.0 PEQ refused" in at.error[0].value


def test_auditor_reads_supply_nav_and_events_from_chain(ui_env, platform):
    at = page("auditor")
    tokens = at.dataframe[0].value
    assert len(tokens) == len(platform.deployments.tokens)
    lcap = tokens[tokens["symbol"] == "LCAP"].iloc[0]
    supply = chain_views.from_wad(platform.token("LCAP").functions.totalSupply().call())
    assert lcap["supply"] == pytest.approx(float(supply))
    at.selectbox(key="auditor.symbol").select("LCAP").run()
    events = at.dataframe[1].value
    transfers = events[events["event"] == "Transfer"]
    minted = sum(Decimal(v) for v in transfers["value"])
    assert minted >= supply and "NavPublished" in set(events["event"])
    assert any("LightPool" in t for t in texts(at.subheader))
