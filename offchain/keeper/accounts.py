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
        investors = [i for i in sorted({e["args"]["investor"] for e in granted})
                     if i in directory]
        now = platform.w3.eth.get_block("latest")["timestamp"]
        mandates = []
        for start in range(0, len(investors), 500):
            with platform.w3.batch_requests() as batch:
                for investor in investors[start:start + 500]:
                    batch.add(registry.functions.mandate_of(investor, keeper))
                mandates.extend(batch.execute())
        accounts = []
        for investor, mandate in zip(investors, mandates, strict=True):
            mode, deviation_bps, expiry = mandate[0], mandate[3], mandate[5]
            if expiry <= now:
                continue  # revoked (expiry 0) or expired
            category, household = directory[investor]
            accounts.append(ManagedAccount(
                address=investor, mode="discretionary" if mode == DISCRETIONARY else "advisory",
                risk_category=category, household=household,
                max_deviation_bps=deviation_bps))
        return accounts

    return _list
