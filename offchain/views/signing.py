"""The investor's EIP-712 approval of a rebalance proposal.

Until LightPool's order typed data exists, the investor signs a ``RebalanceApproval``: the
keccak-256 hash of the proposal's canonical JSON, the account, the model and a deadline, in
a domain bound to the chain id, so a signature for one chain or one proposal is worthless
for any other.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from web3 import Web3

from offchain.cloud.profile import canonical_json
from offchain.errors import InvalidInput
from offchain.optimizer.inputs import Proposal

DOMAIN_NAME = "LightPool"
DOMAIN_VERSION = "1"
# How long an approval stays valid after it is requested.
APPROVAL_LIFETIME = dt.timedelta(hours=24)

APPROVAL_TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
    ],
    "RebalanceApproval": [
        {"name": "account", "type": "address"},
        {"name": "modelId", "type": "string"},
        {"name": "asOf", "type": "string"},
        {"name": "proposalHash", "type": "bytes32"},
        {"name": "tradeCount", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
}


def proposal_hash(proposal: Proposal) -> str:
    """``0x``-prefixed keccak-256 of the proposal's canonical JSON (sorted keys, no floats:
    floats are written as their repr strings)."""
    document = _no_floats(proposal.model_dump(mode="json"))
    return "0x" + Web3.keccak(canonical_json(document)).hex().removeprefix("0x")


def approval_typed_data(proposal: Proposal, account: str, chain_id: int,
                        now: dt.datetime) -> dict[str, Any]:
    """The ``eth_signTypedData_v4`` payload approving ``proposal`` for ``account``.

    Raises ``InvalidInput`` for a malformed account or a chain id <= 0.
    """
    if not Web3.is_address(account):
        raise InvalidInput("account", "a 0x-prefixed address", account)
    if chain_id <= 0:
        raise InvalidInput("chain_id", "a chain id > 0", chain_id)
    return {
        "types": APPROVAL_TYPES,
        "primaryType": "RebalanceApproval",
        "domain": {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id},
        "message": {
            "account": Web3.to_checksum_address(account),
            "modelId": proposal.model_id,
            "asOf": proposal.as_of.isoformat(),
            "proposalHash": proposal_hash(proposal),
            "tradeCount": len(proposal.trades),
            "deadline": int((now + APPROVAL_LIFETIME).timestamp()),
        },
    }


def recover_signer(typed_data: dict[str, Any], signature: str) -> str:
    """The checksummed address that produced ``signature`` over ``typed_data``.

    Raises ``InvalidInput`` if the signature is malformed.
    """
    try:
        return Account.recover_message(encode_typed_data(full_message=typed_data),
                                       signature=signature)
    except Exception as exc:
        raise InvalidInput("signature", "a 65-byte hex EIP-712 signature", signature) from exc


def _no_floats(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {k: _no_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_floats(v) for v in value]
    return value


# Largest integer a JavaScript number (and so a wallet parsing JSON) holds exactly.
MAX_SAFE_JSON_INTEGER = 2**53 - 1


def for_wallet(typed_data: dict[str, Any]) -> dict[str, Any]:
    """``typed_data`` as a wallet must receive it: integers in the message beyond what a
    JavaScript number holds exactly (token amounts in wei) become decimal strings, which
    ``eth_signTypedData_v4`` accepts for ``uint256``; the signed digest is unchanged."""
    message = {key: str(value) if isinstance(value, int) and not isinstance(value, bool)
               and abs(value) > MAX_SAFE_JSON_INTEGER else value
               for key, value in typed_data["message"].items()}
    return {**typed_data, "message": message}
