"""The wallet component: a static HTML/JS Streamlit component that talks to the browser's
EIP-1193 provider (``window.ethereum``) and returns what it answered to Python.

``wallet_button(...)`` renders one button inside the component's iframe. Clicking it either
connects (``eth_requestAccounts`` then ``eth_chainId``) or signs the given EIP-712 payload
(``eth_signTypedData_v4``, once per payload: a LightPool proposal is one order per leg).
The value returned to Python is a dict with ``kind`` (``connected``, ``signed`` with
``signatures`` in payload order, or ``error``), the ``request`` id it answers and the
wallet's answer; ``None`` until the user clicks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import streamlit.components.v1 as components

_component = components.declare_component(
    "lightpool_wallet", path=str(Path(__file__).with_name("frontend"))
)


def wallet_button(action: str, label: str, request: str, key: str,
                  account: str | None = None,
                  typed_data: Sequence[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """Render the wallet button for ``action`` (``connect`` or ``sign``).

    ``request`` identifies what is asked (the answer carries it back, so a stale answer to
    an earlier request can be told apart); ``typed_data`` are the EIP-712 payloads to sign
    with ``account``, in order. Raises ``ValueError`` for an unknown action or a sign
    without payloads.
    """
    if action not in ("connect", "sign"):
        raise ValueError(f"action: expected 'connect' or 'sign', got {action!r}")
    if action == "sign" and (not typed_data or account is None):
        raise ValueError("sign: expected typed_data payloads and account")
    payloads = [json.dumps(t) for t in typed_data] if typed_data else None
    return _component(action=action, label=label, request=request, account=account,
                      payloads=payloads, key=key, default=None)
