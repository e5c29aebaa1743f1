"""Who is who on the local chain: named roles mapped to anvil's deterministic dev accounts.

anvil and ape's test accounts derive from the same public test mnemonic, so the demo, the
keeper and the tests agree on every role's address and key without any secret leaving
this machine. These keys are public: they are for a local chain only.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account

from offchain.universe import ISSUERS

# anvil's (and ape's) default test mnemonic: public, for local chains only.
TEST_MNEMONIC = "test test test test test test test test test test test junk"
# How many dev accounts the demo's anvil creates (roles below use the first ones).
DEV_ACCOUNT_COUNT = 30

Account.enable_unaudited_hdwallet_features()


@dataclass(frozen=True)
class Actor:
    """A named participant and its dev account index."""

    role: str
    name: str
    index: int

    @property
    def address(self) -> str:
        return dev_account(self.index).address

    @property
    def private_key(self) -> bytes:
        return bytes(dev_account(self.index).key)


def dev_account(index: int):  # -> LocalAccount
    """The ``index``-th account of the test mnemonic (m/44'/60'/0'/0/index)."""
    if not 0 <= index < DEV_ACCOUNT_COUNT:
        raise ValueError(f"index: expected 0..{DEV_ACCOUNT_COUNT - 1}, got {index}")
    return _cache.setdefault(
        index, Account.from_mnemonic(TEST_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    )


_cache: dict[int, object] = {}

ADMIN = Actor("admin", "Platform admin", 0)
ATTESTER = Actor("attester", "KYC attester", 1)
ISSUER_ACTORS: dict[str, Actor] = {
    name: Actor("issuer", name, 2 + i) for i, name in enumerate(ISSUERS)
}  # indices 2..8
ISSUER_AGENT = Actor("agent", "Transfer agent", 9)
KEEPER = Actor("keeper", "LightPool keeper", 10)
OVERLAY_MANAGER = Actor("overlay", "Overlay manager", 11)
AUDITOR = Actor("auditor", "Auditor", 12)
IPC = Actor("ipc", "Investment committee", 13)

# Demo investors: index, display name, jurisdiction (ISO 3166-1 numeric), mode.
INVESTORS: tuple[Actor, ...] = (
    Actor("investor", "Alice Moreau", 14),
    Actor("investor", "Bao Nguyen", 15),
    Actor("investor", "Carmen Ruiz", 16),
    Actor("investor", "Dev Patel", 17),
)
