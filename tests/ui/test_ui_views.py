"""The UI's view models on the live demo chain: holdings, proposals, flags, signing, issuer."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from offchain.chain.actors import AUDITOR, INVESTORS, dev_account
from offchain.chain.contracts import connect
from offchain.chain.seed import DEMO_INVESTORS, units_for_value
from offchain.config import Settings
from offchain.errors import ChainStateError, InvalidInput
from offchain.models.portfolios import ModelStore
from offchain.views import chain as chain_views
from offchain.views import issuer as issuer_views
from offchain.views import proposals, signing


@pytest.fixture
def platform(demo_chain):
    return connect(Settings(rpc_url=demo_chain.rpc_url,
                            deployments_file=demo_chain.deployments_file))


@pytest.fixture
def store(tmp_path):
    return ModelStore(str(tmp_path / "models"))


def test_holdings_are_the_seeded_positions_at_chain_nav(platform):
    alice = DEMO_INVESTORS[0]
    positions = {h.symbol: h for h in chain_views.holdings(platform, alice.actor.address)}
    assert set(positions) == set(alice.opening_values)
    for symbol, value in alice.opening_values.items():
        assert positions[symbol].units == chain_views.from_wad(units_for_value(symbol, value))
        assert abs(positions[symbol].value - value) < Decimal("0.01")
        assert positions[symbol].wallet_units + positions[symbol].escrow_units == \
            positions[symbol].units
    weights = chain_views.weights_by_asset_class(list(positions.values()))
    assert abs(sum(weights.values()) - 1) < Decimal("1e-18")


def test_holdings_refuse_a_malformed_address(platform):
    with pytest.raises(ValueError, match="address"):
        chain_views.holdings(platform, "0x1234")


def test_every_demo_account_gets_a_proposal_on_its_category_model(platform, store):
    queue = proposals.approval_queue(platform, store)
    assert [v.investor.discretionary for v in queue] == sorted(
        (i.discretionary for i in DEMO_INVESTORS), reverse=True)
    for view in queue:
        assert view.error is None
        assert view.model.model.risk_category == view.investor.risk_category
        proposal = view.proposal
        assert proposal.trades, "the seeded portfolios are drifted on purpose"
        assert proposal.tracking_error_after < proposal.tracking_error_before
        assert proposal.needs_approval is (not view.investor.discretionary)
        assert proposal.transaction_cost > 0


def test_stale_nav_blocks_the_account_and_is_flagged(demo_chain, platform, store, snapshot):
    demo_chain.rpc("evm_increaseTime", 3 * 86_400)
    demo_chain.rpc("evm_mine")
    flags = proposals.data_flags(chain_views.token_states(platform))
    stale = {f.symbol for f in flags if f.problem == "stale NAV"}
    assert {"LCAP", "AGGB", "EMEQ"} <= stale  # daily NAVs
    assert "PEQ" not in stale  # monthly NAV, 31-day max age
    view = proposals.account_view(platform, DEMO_INVESTORS[0], store)
    assert view.proposal is None and view.error is not None


def test_a_token_outside_the_universe_is_flagged_unknown(demo_chain, platform, tmp_path):
    tokens = {**platform.deployments.tokens, "XYZ": platform.deployments.token("LCAP")}
    deployments = platform.deployments.model_copy(update={"tokens": tokens})
    path = tmp_path / "deployments.json"
    path.write_text(deployments.model_dump_json())
    other = connect(Settings(rpc_url=demo_chain.rpc_url, deployments_file=path))
    flags = proposals.data_flags(chain_views.token_states(other))
    assert [(f.symbol, f.problem) for f in flags] == [("XYZ", "unknown instrument")]
    view = proposals.account_view(other, DEMO_INVESTORS[0], ModelStore(str(tmp_path / "m")))
    assert view.proposal is None
    assert view.error.field == "holdings" and "XYZ" in view.error.reason


def test_approval_signature_recovers_to_the_signer_and_binds_the_chain(platform, store):
    view = proposals.account_view(platform, DEMO_INVESTORS[0], store)
    address = INVESTORS[0].address
    now = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)
    typed = signing.approval_typed_data(view.proposal, address, 31337, now)
    assert typed["message"]["proposalHash"] == signing.proposal_hash(view.proposal)
    assert typed["message"]["tradeCount"] == len(view.proposal.trades)
    signature = Account.sign_message(encode_typed_data(full_message=typed),
                                     dev_account(INVESTORS[0].index).key).signature.hex()
    assert signing.recover_signer(typed, signature) == address
    other_chain = signing.approval_typed_data(view.proposal, address, 1, now)
    assert signing.recover_signer(other_chain, signature) != address
    with pytest.raises(InvalidInput, match="signature"):
        signing.recover_signer(typed, "0x1234")
    with pytest.raises(InvalidInput, match="chain_id"):
        signing.approval_typed_data(view.proposal, address, 0, now)


def test_issuer_publishes_nav_mints_and_burns(platform, snapshot):
    token = platform.token("TIPS")
    issuer = issuer_views.issuer_of("TIPS").address
    issuer_views.publish_nav(platform, "TIPS", Decimal("108.25"))
    assert token.functions.nav().call() == 108_250_000_000_000_000_000
    before = token.functions.totalSupply().call()
    issuer_views.mint(platform, "TIPS", issuer, Decimal(5))
    issuer_views.burn(platform, "TIPS", Decimal(2))
    assert token.functions.totalSupply().call() == before + 3 * 10**18
    assert token.functions.balanceOf(issuer).call() == 3 * 10**18


def test_issuer_actions_refuse_what_the_contract_refuses(platform):
    with pytest.raises(ChainStateError, match="fundtoken: receiver not eligible"):
        issuer_views.mint(platform, "TIPS", AUDITOR.address, Decimal(1))
    with pytest.raises(ChainStateError, match="transaction refused"):
        issuer_views.burn(platform, "TIPS", Decimal(1000000))
    with pytest.raises(InvalidInput, match="nav"):
        issuer_views.publish_nav(platform, "TIPS", Decimal(0))
    with pytest.raises(InvalidInput, match="receiver"):
        issuer_views.mint(platform, "TIPS", "bob", Decimal(1))


def test_wallet_payloads_carry_wei_amounts_as_strings_and_anvil_signs_them(demo_chain, platform):
    from offchain.chain.lightpool import SignedOrder, typed_data

    owner = INVESTORS[0].address
    order = SignedOrder(owner=owner, market=platform.deployments.token("AGGB"), is_buy=False,
                        quantity=214_757_310_550_000_000_000,
                        limit_price=97_630_000_000_000_000_000, nonce=7, expiry=1_900_000_000)
    typed = typed_data(order, 31337, platform.deployments.contract("LightPool"))
    payload = signing.for_wallet(typed)
    assert payload["message"]["quantity"] == "214757310550000000000"
    assert payload["message"]["nonce"] == 7 and payload["message"]["is_buy"] is False
    signature = demo_chain.rpc("eth_signTypedData_v4", owner, json.dumps(payload))
    assert signing.recover_signer(typed, signature) == owner
