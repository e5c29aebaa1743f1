"""Which accounts the keeper manages: the active mandates granted to it on chain.

The mandate's mode says advisory or discretionary; the model category and household come
from the investor's profile as shared with the provider. The demo investors' categories
are in ``offchain.chain.seed``; other accounts (benchmarks) pass their own directory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from offchain.chain.contracts import Platform
from offchain.chain.seed import DEMO_INVESTORS
from offchain.keeper.bot import ManagedAccount

ADVISORY, DISCRETIONARY = 1, 2


def demo_directory() -> dict[str, tuple[int, str]]:
    """Demo investor address -> (risk category, household)."""
    return {i.actor.address: (i.risk_category, i.actor.name) for i in DEMO_INVESTORS}


def mandated_accounts(platform: Platform, keeper: str,
                      directory: Mapping[str, tuple[int, str]]
                      ) -> Callable[[], list[ManagedAccount]]:
    """A callable listing accounts with an active mandate to ``keeper`` that the directory
    knows (an account without a shared profile cannot be planned)."""
    registry = platform.contract("ProfileRegistry")

    def _list() -> list[ManagedAccount]:
        granted = registry.events.MandateGranted().get_logs(
            from_block=0, argument_filters={"keeper": keeper})
        accounts = []
        for investor in sorted({e["args"]["investor"] for e in granted}):
            if investor not in directory:
                continue
            if not registry.functions.is_mandate_active(investor, keeper).call():
                continue
            mode = registry.functions.mandate_of(investor, keeper).call()[0]
            category, household = directory[investor]
            accounts.append(ManagedAccount(
                address=investor, mode="discretionary" if mode == DISCRETIONARY else "advisory",
                risk_category=category, household=household))
        return accounts

    return _list
