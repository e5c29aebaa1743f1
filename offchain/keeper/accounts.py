"""Which accounts the keeper manages: the active mandates granted to it on chain.

The mandate's mode says advisory or discretionary; the model category, household and
customizations come from the investor's profile as the investor shared it with the keeper
(``granted_profiles``: decrypted with the keeper's key, only with on-chain consent, only if
it matches the commitment on chain). Benchmarks pass a directory of their own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from offchain.chain.contracts import Platform
from offchain.cloud.store import ProfileStore
from offchain.errors import LightPoolError
from offchain.keeper.bot import ManagedAccount
from offchain.models.menu import account_setup
from offchain.models.portfolios import ModelStore
from offchain.optimizer.inputs import Customizations

log = logging.getLogger("lightpool.keeper")

ADVISORY, DISCRETIONARY = 1, 2


Directory = Callable[[str], "tuple[int, str, Customizations] | None"]


def granted_profiles(platform: Platform, keeper_key: bytes | str, store: ProfileStore,
                     models: ModelStore) -> Directory:
    """Investor -> (category, household, customizations) from the profile the investor
    shared with the keeper, through the advisor's menu. None when there is no grant, no
    on-chain consent, or the decrypted profile does not match the on-chain commitment (the
    keeper then does not manage the account, and logs why). Decrypts once per version."""
    registry = platform.contract("ProfileRegistry")
    cache: dict[tuple[str, int], tuple[int, str, Customizations] | None] = {}

    def consent(investor: str, grantee: str, scope: bytes) -> bool:
        return registry.functions.has_consent(investor, grantee, scope).call()

    def _describe(investor: str) -> tuple[int, str, Customizations] | None:
        commitment, version, _ = registry.functions.profile_of(investor).call()
        if (investor, version) in cache:
            return cache[(investor, version)]
        try:
            revealed = store.open_shared(investor, keeper_key, consent=consent)
            if revealed.commitment != commitment:
                raise LightPoolError(f"profile v{revealed.version} does not match the "
                                     "commitment on chain")
            setup = account_setup(revealed.profile, models)
            described = (setup.risk_category, revealed.profile.investor,
                         setup.customizations)
        except LightPoolError as exc:
            log.warning(json.dumps({"event": "profile_unavailable", "investor": investor,
                                    "reason": str(exc)}))
            described = None
        cache[(investor, version)] = described
        return described

    return _describe


def mandated_accounts(platform: Platform, keeper: str, directory: Directory
                      ) -> Callable[[], list[ManagedAccount]]:
    """A callable listing accounts with an active mandate to ``keeper`` that the directory
    describes (an account without a shared profile cannot be planned)."""
    registry = platform.contract("ProfileRegistry")

    def _list() -> list[ManagedAccount]:
        granted = registry.events.MandateGranted().get_logs(
            from_block=0, argument_filters={"keeper": keeper})
        investors = sorted({e["args"]["investor"] for e in granted})
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
            described = directory(investor)
            if described is None:
                continue
            category, household, customizations = described
            accounts.append(ManagedAccount(
                address=investor, mode="discretionary" if mode == DISCRETIONARY else "advisory",
                risk_category=category, household=household, customizations=customizations,
                max_deviation_bps=deviation_bps))
        return accounts

    return _list
