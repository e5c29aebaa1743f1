"""End to end in a real headless Chromium: the investor connects an EIP-1193 wallet, sees
on-chain holdings and the keeper's proposal, signs its orders with the wallet, and, once the
keeper has relayed them and the batch has cleared and settled, sees it settled.

The wallet is a provider injected into every frame (components run in iframes) that answers
accounts itself and forwards ``eth_chainId`` and ``eth_signTypedData_v4`` to anvil, whose
unlocked dev accounts sign. Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from offchain.chain.actors import INVESTORS
from offchain.config import PROJECT_ROOT

sync_api = pytest.importorskip("playwright.sync_api")

ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
WAIT_MS = 90_000

PROVIDER = """
(() => {
  const RPC = %(rpc)s, ACCOUNT = %(account)s, CHAIN = %(chain)s;
  async function forward(method, params) {
    const response = await fetch(RPC, { method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: method, params: params || [] }) });
    const answer = await response.json();
    if (answer.error) throw new Error(answer.error.message);
    return answer.result;
  }
  window.ethereum = {
    async request({ method, params }) {
      if (method === "eth_requestAccounts" || method === "eth_accounts") return [ACCOUNT];
      if (method === "eth_chainId") return CHAIN === null ? forward(method) : CHAIN;
      if (method === "eth_signTypedData_v4") return forward(method, params);
      throw new Error("unsupported method " + method);
    },
    on() {}, removeListener() {},
  };
})();
"""


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def open_app(browser, url: str, rpc: str, account: str, chain: str | None):
    context = browser.new_context(viewport={"width": 1400, "height": 3000})
    context.add_init_script(PROVIDER % {"rpc": json.dumps(rpc), "account": json.dumps(account),
                                        "chain": json.dumps(chain)})
    page = context.new_page()
    page.goto(url)
    return context, page


def wallet_button(page, label: str):
    """The button labelled ``label`` inside one of the wallet component's iframes."""
    frames = page.locator("iframe")
    frames.first.wait_for(timeout=WAIT_MS)
    for _ in range(2):
        for i in range(frames.count()):
            button = frames.nth(i).content_frame.get_by_role("button", name=label)
            try:
                button.wait_for(timeout=5_000)
                return button
            except sync_api.TimeoutError:
                continue
    raise AssertionError(f"no wallet button {label!r}")


def test_investor_connects_signs_and_sees_it_settled(browser, ui_url, demo_chain, monkeypatch):
    for name, value in demo_chain.env().items():
        monkeypatch.setenv(name, value)
    from offchain.views import keeper as keeper_views

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    investor = INVESTORS[0]
    keeper = keeper_views.open_keeper()
    # The test chain runs hour-long batches (conftest), so the orders signed here are still
    # in their batch when the keeper relays them; the test then moves time to the close.
    pool = keeper.pool
    proposal = keeper_views.proposals(keeper, investor.address)[0]
    assert proposal.status == "awaiting_signature"
    n_legs = len(proposal.legs)

    context, page = open_app(browser, ui_url, demo_chain.rpc_url, investor.address, None)
    try:
        expect = sync_api.expect
        expect(page.get_by_text("Connect your wallet")).to_be_visible(timeout=WAIT_MS)
        wallet_button(page, "Connect wallet").click()
        expect(page.get_by_text(f"Connected: {investor.address}")).to_be_visible(
            timeout=WAIT_MS)
        expect(page.get_by_text("Holdings (read from chain)")).to_be_visible(timeout=WAIT_MS)
        expect(page.get_by_text(f"Keeper proposal #{proposal.proposal_id}")).to_be_visible(
            timeout=WAIT_MS)
        expect(page.get_by_text("Status: awaiting your signature.")).to_be_visible(
            timeout=WAIT_MS)
        page.screenshot(path=str(ARTIFACTS / "investor-connected.png"), full_page=True)

        wallet_button(page, "Sign with wallet").click()
        signed = page.get_by_text("Status: signed.")
        expect(signed).to_be_visible(timeout=WAIT_MS)
        assert f"{n_legs} orders signed by {investor.address}" in signed.inner_text()
        expect(page.get_by_text("Nothing to sign")).to_be_visible(timeout=WAIT_MS)
        page.screenshot(path=str(ARTIFACTS / "investor-signed.png"), full_page=True)
    finally:
        context.close()

    after = keeper_views.proposals(keeper, investor.address)[0]
    assert after.proposal_id == proposal.proposal_id
    assert after.status != "awaiting_signature"
    assert all(leg.signed for leg in after.legs) and len(after.legs) == n_legs

    # The keeper relays the signed orders, the batch closes, the keeper clears and settles.
    from offchain.keeper.cli import build_keeper

    runner = build_keeper(wait_s=30)
    relayed = runner.run_once()
    assert not relayed.errors, relayed.errors
    close = (pool.functions.batch_close(proposal.batch).call()
             + pool.functions.reveal_period().call() + 1)
    demo_chain.rpc("evm_setNextBlockTimestamp", close)
    demo_chain.rpc("evm_mine")
    report = runner.run_once()
    assert report.settled_baskets >= n_legs and not report.errors
    settled = keeper_views.proposals(keeper, investor.address)[0]
    assert settled.proposal_id == proposal.proposal_id and settled.status == "settled"

    context, page = open_app(browser, ui_url, demo_chain.rpc_url, investor.address, None)
    try:
        wallet_button(page, "Connect wallet").click()
        sync_api.expect(page.get_by_text("Status: settled")).to_be_visible(timeout=WAIT_MS)
        # Tables and charts draw on canvases after the text: let them paint for the picture.
        sync_api.expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible(
            timeout=WAIT_MS)
        page.wait_for_timeout(3_000)
        page.screenshot(path=str(ARTIFACTS / "investor-settled.png"), full_page=True)
    finally:
        context.close()


def test_wallet_on_another_chain_is_refused(browser, ui_url, demo_chain):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context, page = open_app(browser, ui_url, demo_chain.rpc_url, INVESTORS[0].address, "0x1")
    try:
        wallet_button(page, "Connect wallet").click()
        wrong = page.get_by_text("Wrong network")
        sync_api.expect(wrong).to_be_visible(timeout=WAIT_MS)
        assert "chain id 1," in wrong.inner_text() and "chain id 31337" in wrong.inner_text()
        sync_api.expect(page.get_by_text("Holdings (read from chain)")).to_have_count(0)
        page.screenshot(path=str(ARTIFACTS / "investor-wrong-chain.png"), full_page=True)
    finally:
        context.close()
