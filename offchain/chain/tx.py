"""Send transactions signed with a local key over web3, and wait for them with a limit.

The keeper, the issuer views and the benchmarks send through here: one place that builds,
signs (a real secp256k1 signature), broadcasts and waits. A transaction that is not mined
within the wait is reported as ``Pending`` (the caller decides from chain state whether
to send again); a revert raises ``TransactionReverted`` with the contract's reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractLogicError, TimeExhausted

from offchain.errors import LightPoolError


class TransactionReverted(LightPoolError):
    """The transaction (or its gas estimate) reverted; ``reason`` is the revert string."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Sent:
    """A broadcast transaction: its hash and, if it was mined in time, its receipt."""

    tx_hash: str
    receipt: Any | None

    @property
    def mined(self) -> bool:
        return self.receipt is not None


class Sender:
    """Builds, signs and sends transactions from one local key."""

    def __init__(self, w3: Web3, private_key: bytes | str, gas_headroom: float = 1.2) -> None:
        self.w3 = w3
        self.account = Account.from_key(private_key)
        self.gas_headroom = gas_headroom

    @property
    def address(self) -> str:
        return self.account.address

    def send(self, call: Any, wait_s: float = 30.0, gas: int | None = None) -> Sent:
        """Sign and broadcast ``call`` (a web3 ContractFunction); wait up to ``wait_s``.

        Raises ``TransactionReverted`` if the call reverts in estimation or on chain.
        """
        params: dict[str, Any] = {
            "from": self.address,
            "nonce": self.w3.eth.get_transaction_count(self.address, "pending"),
            "chainId": self.w3.eth.chain_id,
        }
        try:
            params["gas"] = gas or int(call.estimate_gas({"from": self.address}) *
                                       self.gas_headroom)
        except ContractLogicError as exc:
            raise TransactionReverted(_reason(exc)) from None
        tx = call.build_transaction(params)
        signed = self.account.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        try:
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=wait_s,
                                                               poll_latency=0.05)
        except TimeExhausted:
            return Sent(tx_hash.hex(), None)
        if receipt["status"] != 1:
            raise TransactionReverted(f"transaction {tx_hash.hex()} reverted")
        return Sent(tx_hash.hex(), receipt)


def _reason(exc: ContractLogicError) -> str:
    message = str(exc.message if hasattr(exc, "message") else exc)
    return message.removeprefix("execution reverted: ")
