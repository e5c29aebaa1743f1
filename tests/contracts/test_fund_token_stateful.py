"""Stateful property test of FundToken against a ghost ledger.

After every step: the sum of balances equals totalSupply and every balance equals the
ghost's; only the issuer mints or burns; a frozen address cannot move units; transfers to
unverified addresses revert; NAV staleness is reported exactly when the NAV is older than
its max age. Steps use web3 on ape's anvil directly (no gas estimation round-trips) so the
default profile's 1,000 examples run in minutes; a refused step is checked with an
``eth_call`` of the same transaction, which executes the same code without committing it.

Profiles: HYPOTHESIS_PROFILE=long runs 10,000 examples.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from web3.exceptions import ContractLogicError

from offchain.universe import DAY, WAD, FundKind

EXAMPLES = {"default": 1_000, "long": 10_000}[os.environ.get("HYPOTHESIS_PROFILE", "default")]
MAX_AGE = DAY


@pytest.fixture(scope="module")
def setup(chain, make_fund, verify, issuer, agent, investor, investor2, accounts):
    third = verify(accounts[18])
    verify(issuer)
    verify(investor)
    verify(investor2)
    token = make_fund(kind=FundKind.ETF, max_age=MAX_AGE)
    w3 = chain.provider.web3
    contract = w3.eth.contract(address=token.address, abi=[a.model_dump(mode="json", by_alias=True)
                                                         for a in token.contract_type.abi])
    holders = [issuer.address, investor.address, investor2.address, third.address]
    outsider = accounts[25].address
    return w3, contract, issuer.address, agent.address, holders, outsider


def test_fund_token_ghost_ledger(setup):
    w3, token, issuer, agent, holders, outsider = setup
    everyone = [*holders, outsider]
    amounts = st.integers(min_value=0, max_value=5_000 * WAD)

    class FundTokenMachine(RuleBasedStateMachine):
        @initialize()
        def start(self):
            self.snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
            self.balances = {a: token.functions.balanceOf(a).call() for a in everyone}
            self.supply = token.functions.totalSupply().call()
            self.frozen = {a: False for a in everyone}
            self.nav_timestamp = token.functions.nav_timestamp().call()

        def teardown(self):
            if hasattr(self, "snapshot"):
                w3.provider.make_request("evm_revert", [self.snapshot])

        def _send(self, fn, sender: str, ok: bool, message: str | None = None) -> None:
            if ok:
                fn.transact({"from": sender, "gas": 500_000})
                return
            with pytest.raises(ContractLogicError) as refused:
                fn.call({"from": sender})
            if message is not None:
                assert message in str(refused.value)

        @rule(sender=st.sampled_from(everyone), to=st.sampled_from(everyone), amount=amounts)
        def mint(self, sender, to, amount):
            ok = sender == issuer and amount > 0 and to != outsider and not self.frozen[to]
            self._send(token.functions.mint(to, amount), sender, ok)
            if ok:
                self.balances[to] += amount
                self.supply += amount
            elif sender != issuer:
                # Only the issuer mints.
                assert token.functions.totalSupply().call() == self.supply

        @rule(sender=st.sampled_from(everyone), amount=amounts)
        def burn(self, sender, amount):
            ok = sender == issuer and 0 < amount <= self.balances[sender]
            self._send(token.functions.burn(amount), sender, ok)
            if ok:
                self.balances[sender] -= amount
                self.supply -= amount

        @rule(sender=st.sampled_from(holders), to=st.sampled_from(everyone), amount=amounts)
        def transfer(self, sender, to, amount):
            frozen = self.frozen[sender] or self.frozen[to]
            ok = not frozen and to != outsider and amount <= self.balances[sender]
            if frozen:
                message = "fundtoken: account frozen"
            elif to == outsider:
                message = "fundtoken: receiver not eligible"
            else:
                message = None
            self._send(token.functions.transfer(to, amount), sender, ok, message)
            if ok:
                self.balances[sender] -= amount
                self.balances[to] += amount

        @rule(who=st.sampled_from(holders), frozen=st.booleans())
        def freeze(self, who, frozen):
            self._send(token.functions.freeze(who, frozen), agent, True)
            self.frozen[who] = frozen

        @rule(seconds=st.integers(min_value=1, max_value=2 * MAX_AGE))
        def time_passes(self, seconds):
            w3.provider.make_request("evm_increaseTime", [seconds])
            w3.provider.make_request("evm_mine", [])

        @rule(back=st.integers(min_value=0, max_value=MAX_AGE))
        def publish_nav(self, back):
            now = w3.eth.get_block("latest")["timestamp"]
            when = now - back
            ok = when > self.nav_timestamp
            self._send(token.functions.publish_nav(101 * WAD, when), issuer, ok,
                       None if ok else "fundtoken: nav older than current")
            if ok:
                self.nav_timestamp = when

        @invariant()
        def supply_is_sum_of_balances(self):
            if not hasattr(self, "balances"):
                return
            onchain = {a: token.functions.balanceOf(a).call() for a in everyone}
            assert onchain == self.balances
            assert token.functions.totalSupply().call() == self.supply == sum(onchain.values())

        @invariant()
        def staleness_is_reported(self):
            if not hasattr(self, "nav_timestamp"):
                return
            now = w3.eth.get_block("latest")["timestamp"]
            expected = now > self.nav_timestamp + MAX_AGE
            assert token.functions.is_nav_stale().call() == expected

    FundTokenMachine.TestCase.settings = settings(
        max_examples=EXAMPLES, stateful_step_count=6, deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    FundTokenMachine.TestCase().runTest()
