"""LightPool off-chain package: profile store, optimizer, keeper, ledger and auditor."""

__version__ = "0.1.0"
