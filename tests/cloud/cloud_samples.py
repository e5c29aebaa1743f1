"""Sample data of the MyFinancialCloud tests: a valid profile and wallet keys.

A module of its own (not ``conftest``): several test folders have a ``conftest`` module, so
``from conftest import ...`` would depend on which folder pytest imported last.
"""

from __future__ import annotations

from typing import Any

# anvil's first two dev keys: public test keys, never used for value.
OWNER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
OWNER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
GRANTEE_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
OTHER_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"

VALID_PROFILE: dict[str, Any] = {
    "schema": "lightpool.profile/1",
    "investor": OWNER,
    "as_of": "2026-01-01",
    "investable_assets": "500000",
    "risk": {"capacity": 4, "tolerance": 3, "horizon_years": 20},
    "goals": [
        {"name": "retire", "amount": "1500000", "target_date": "2046-01-01",
         "priority": "essential"},
        {"name": "house", "amount": "120000", "target_date": "2031-06-30",
         "priority": "important"},
    ],
    "explicit": {"exclusions": ["structured_products"], "themes": ["green_energy"]},
    "tax": {"account_type": "taxable", "income_rate": "0.32", "long_term_gains_rate": "0.15",
            "state_rate": "0.05"},
    "liquidity": {"emergency_reserve": "20000", "annual_withdrawals": "0",
                  "max_illiquid_fraction": "0.15"},
    "service_mode": "advisory",
}
