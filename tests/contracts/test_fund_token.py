"""FundToken: one test that each external function works, one that it refuses what it must."""

from __future__ import annotations

import ape
import pytest
from eth_account import Account

from offchain.universe import DAY, WAD, FundKind

UNITS = 1_000 * WAD


@pytest.fixture
def funded(fund, issuer, investor):
    fund.mint(investor, UNITS, sender=issuer)
    return fund


def test_deploy_sets_fields(fund, issuer, registry):
    assert fund.name() == "Meridian US Large Cap ETF"
    assert fund.symbol() == "LCAP"
    assert fund.decimals() == 18
    assert fund.kind() == FundKind.ETF
    assert fund.asset_class() == "us_equity_large"
    assert fund.issuer() == issuer
    assert fund.registry() == registry
    assert fund.nav() == 100 * WAD
    assert not fund.is_nav_stale()


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("kind", 3, "fundtoken: bad kind"),
        ("nav", 0, "fundtoken: zero nav"),
        ("max_age", 0, "fundtoken: bad nav max age"),
        ("max_age", 93 * DAY, "fundtoken: bad nav max age"),
    ],
)
def test_deploy_refuses_bad_fields(project, admin, issuer, registry, field, value, message):
    args = {"kind": int(FundKind.ETF), "nav": WAD, "max_age": DAY} | {field: value}
    with ape.reverts(message):
        admin.deploy(project.FundToken, "X", "X", args["kind"], "x", issuer, registry,
                     args["nav"], args["max_age"])


def test_mint_by_issuer(fund, issuer, investor):
    tx = fund.mint(investor, UNITS, sender=issuer)
    assert fund.balanceOf(investor) == UNITS
    assert fund.totalSupply() == UNITS
    [log] = tx.decode_logs(fund.Transfer)
    assert log.receiver == investor and log.value == UNITS


def test_mint_refuses_outsiders_and_unverified(fund, issuer, investor, outsider):
    with ape.reverts("fundtoken: access is denied"):
        fund.mint(investor, UNITS, sender=investor)
    with ape.reverts("fundtoken: receiver not eligible"):
        fund.mint(outsider, UNITS, sender=issuer)
    with ape.reverts("fundtoken: zero amount"):
        fund.mint(investor, 0, sender=issuer)


def test_minter_can_mint_and_burn(fund, issuer, keeper):
    fund.set_minter(keeper, True, sender=issuer)
    fund.set_allowlisted(keeper, True, sender=issuer)
    fund.mint(keeper, UNITS, sender=keeper)
    tx = fund.burn(UNITS // 2, sender=keeper)
    assert fund.totalSupply() == UNITS // 2
    [log] = tx.decode_logs(fund.Redeemed)
    assert log.owner == keeper and log.amount == UNITS // 2


def test_burn_refuses_holders_and_excess(funded, issuer, investor):
    with ape.reverts("fundtoken: access is denied"):
        funded.burn(1, sender=investor)
    with ape.reverts("erc20: burn amount exceeds balance"):
        funded.burn(1, sender=issuer)


def test_transfer_between_verified(funded, investor, investor2):
    tx = funded.transfer(investor2, WAD, sender=investor)
    assert funded.balanceOf(investor2) == WAD
    [log] = tx.decode_logs(funded.Transfer)
    assert log.sender == investor and log.receiver == investor2


def test_transfer_refuses_unverified_and_expired(funded, investor, outsider, registry,
                                                  attester, investor2):
    with ape.reverts("fundtoken: receiver not eligible"):
        funded.transfer(outsider, WAD, sender=investor)
    registry.revoke_attestation(investor2, sender=attester)
    with ape.reverts("fundtoken: receiver not eligible"):
        funded.transfer(investor2, WAD, sender=investor)


def test_transfer_from_with_allowance(funded, investor, investor2, keeper):
    funded.approve(keeper, WAD, sender=investor)
    funded.transferFrom(investor, investor2, WAD, sender=keeper)
    assert funded.balanceOf(investor2) == WAD
    assert funded.allowance(investor, keeper) == 0


def test_transfer_from_refuses_without_allowance(funded, investor, investor2, keeper):
    with ape.reverts("erc20: insufficient allowance"):
        funded.transferFrom(investor, investor2, WAD, sender=keeper)


def test_allowlisted_contract_holds_without_attestation(funded, issuer, investor, outsider):
    tx = funded.set_allowlisted(outsider, True, sender=issuer)
    assert tx.decode_logs(funded.AllowlistSet)[0].allowed
    funded.transfer(outsider, WAD, sender=investor)
    assert funded.balanceOf(outsider) == WAD


def test_set_allowlisted_and_minter_issuer_only(fund, investor, outsider):
    with ape.reverts("ownable: caller is not the owner"):
        fund.set_allowlisted(outsider, True, sender=investor)
    with ape.reverts("ownable: caller is not the owner"):
        fund.set_minter(outsider, True, sender=investor)


def _permit_signature(token, owner, spender, value, deadline, chain_id):
    message = {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"},
                             {"name": "version", "type": "string"},
                             {"name": "chainId", "type": "uint256"},
                             {"name": "verifyingContract", "type": "address"}],
            "Permit": [{"name": "owner", "type": "address"}, {"name": "spender", "type": "address"},
                       {"name": "value", "type": "uint256"}, {"name": "nonce", "type": "uint256"},
                       {"name": "deadline", "type": "uint256"}],
        },
        "primaryType": "Permit",
        "domain": {"name": token.name(), "version": "1", "chainId": chain_id,
                   "verifyingContract": token.address},
        "message": {"owner": owner.address, "spender": spender.address, "value": value,
                    "nonce": token.nonces(owner), "deadline": deadline},
    }
    signed = Account.sign_typed_data(owner.private_key, full_message=message)
    return signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")


def test_permit_sets_allowance(funded, investor, keeper, chain):
    deadline = chain.pending_timestamp + 3600
    v, r, s = _permit_signature(funded, investor, keeper, WAD, deadline, chain.chain_id)
    funded.permit(investor, keeper, WAD, deadline, v, r, s, sender=keeper)
    assert funded.allowance(investor, keeper) == WAD
    assert funded.nonces(investor) == 1


def test_permit_refuses_replay(funded, investor, keeper, chain):
    deadline = chain.pending_timestamp + 3600
    v, r, s = _permit_signature(funded, investor, keeper, WAD, deadline, chain.chain_id)
    funded.permit(investor, keeper, WAD, deadline, v, r, s, sender=keeper)
    with ape.reverts("erc20: invalid signature"):
        funded.permit(investor, keeper, WAD, deadline, v, r, s, sender=keeper)


def test_publish_nav(fund, issuer, chain):
    chain.pending_timestamp += 60
    chain.mine()
    when = chain.blocks.head.timestamp - 10
    tx = fund.publish_nav(101 * WAD, when, sender=issuer)
    assert fund.nav() == 101 * WAD and fund.nav_timestamp() == when
    [log] = tx.decode_logs(fund.NavPublished)
    assert log.nav == 101 * WAD and log["timestamp"] == when  # `.timestamp` is the block's


def test_publish_nav_refuses(fund, issuer, investor, chain):
    now = chain.pending_timestamp
    with ape.reverts("ownable: caller is not the owner"):
        fund.publish_nav(WAD, now, sender=investor)
    with ape.reverts("fundtoken: zero nav"):
        fund.publish_nav(0, now, sender=issuer)
    with ape.reverts("fundtoken: nav from the future"):
        fund.publish_nav(WAD, now + 1000, sender=issuer)
    with ape.reverts("fundtoken: nav older than current"):
        fund.publish_nav(WAD, fund.nav_timestamp(), sender=issuer)


def test_nav_goes_stale_after_max_age(fund, issuer, chain):
    chain.pending_timestamp += DAY + 1
    chain.mine()
    assert fund.is_nav_stale()
    fund.publish_nav(WAD, chain.pending_timestamp, sender=issuer)
    assert not fund.is_nav_stale()


def test_set_nav_max_age(fund, issuer, investor):
    tx = fund.set_nav_max_age(7 * DAY, sender=issuer)
    assert fund.nav_max_age() == 7 * DAY
    assert tx.decode_logs(fund.NavMaxAgeSet)[0].max_age == 7 * DAY
    with ape.reverts("fundtoken: bad nav max age"):
        fund.set_nav_max_age(0, sender=issuer)
    with ape.reverts("ownable: caller is not the owner"):
        fund.set_nav_max_age(DAY, sender=investor)


@pytest.fixture
def alternative(make_fund, issuer, investor):
    token = make_fund(kind=FundKind.ALTERNATIVE, symbol="PEQ", name="Summit Private Equity Fd",
                      asset_class="private_equity", max_age=31 * DAY)
    token.set_liquidity_terms(91 * DAY, 500, sender=issuer)
    token.mint(issuer, 10_000 * WAD, sender=issuer)
    return token


def test_set_liquidity_terms_and_gate(alternative, issuer, chain):
    assert alternative.redemption_window() == 91 * DAY
    assert alternative.gate_bps() == 500
    assert alternative.gate_remaining() == 500 * WAD  # 5% of 10,000 units
    alternative.burn(200 * WAD, sender=issuer)
    assert alternative.gate_remaining() == 300 * WAD
    with ape.reverts("fundtoken: gate exceeded"):
        alternative.burn(301 * WAD, sender=issuer)
    # The next window re-opens the gate on the supply at that time.
    chain.pending_timestamp += 91 * DAY
    chain.mine()
    assert alternative.gate_remaining() == 9_800 * WAD * 500 // 10_000


def test_set_liquidity_terms_refuses(fund, alternative, issuer, investor):
    with ape.reverts("fundtoken: not an alternative"):
        fund.set_liquidity_terms(91 * DAY, 500, sender=issuer)
    with ape.reverts("fundtoken: bad gate"):
        alternative.set_liquidity_terms(91 * DAY, 0, sender=issuer)
    with ape.reverts("fundtoken: bad redemption window"):
        alternative.set_liquidity_terms(60, 500, sender=issuer)
    with ape.reverts("ownable: caller is not the owner"):
        alternative.set_liquidity_terms(91 * DAY, 500, sender=investor)


def test_gate_is_unbounded_for_etfs(fund):
    assert fund.gate_remaining() == 2**256 - 1


def test_set_agent(fund, issuer, keeper, investor):
    tx = fund.set_agent(keeper, sender=issuer)
    assert fund.agent() == keeper
    assert tx.decode_logs(fund.AgentSet)[0].agent == keeper
    with ape.reverts("ownable: caller is not the owner"):
        fund.set_agent(investor, sender=investor)


def test_freeze_blocks_both_directions(funded, agent, investor, investor2):
    tx = funded.freeze(investor, True, sender=agent)
    assert funded.is_frozen(investor)
    assert tx.decode_logs(funded.Frozen)[0].frozen
    with ape.reverts("fundtoken: account frozen"):
        funded.transfer(investor2, WAD, sender=investor)
    with ape.reverts("fundtoken: account frozen"):
        funded.transfer(investor, WAD, sender=investor2)
    funded.freeze(investor, False, sender=agent)
    funded.transfer(investor2, WAD, sender=investor)


def test_freeze_refuses_non_agent(fund, investor):
    with ape.reverts("fundtoken: access is denied"):
        fund.freeze(investor, True, sender=investor)


def test_recover_moves_frozen_position(funded, agent, investor, accounts, verify):
    new_wallet = verify(accounts[26])
    before = funded.balanceOf(new_wallet)
    position = funded.balanceOf(investor)
    assert position >= UNITS
    funded.freeze(investor, True, sender=agent)
    tx = funded.recover(investor, new_wallet, sender=agent)
    assert funded.balanceOf(investor) == 0
    assert funded.balanceOf(new_wallet) == before + position
    [log] = tx.decode_logs(funded.Recovered)
    assert log.lost == investor and log.new_owner == new_wallet and log.amount == position


def test_recover_refuses(funded, agent, investor, investor2, outsider):
    with ape.reverts("fundtoken: account not frozen"):
        funded.recover(investor, investor2, sender=agent)
    funded.freeze(investor, True, sender=agent)
    with ape.reverts("fundtoken: receiver not eligible"):
        funded.recover(investor, outsider, sender=agent)
    with ape.reverts("fundtoken: access is denied"):
        funded.recover(investor, investor2, sender=investor2)
    with ape.reverts("fundtoken: same account"):
        funded.recover(investor, investor, sender=agent)


def test_is_eligible(fund, investor, outsider, agent):
    assert fund.is_eligible(investor)
    assert not fund.is_eligible(outsider)
    fund.freeze(investor, True, sender=agent)
    assert not fund.is_eligible(investor)
