"""MyPortfolio: holistic tax-aware rebalancing of many accounts.

Public API::

    from offchain.optimizer import optimize_accounts
    result = optimize_accounts(model, accounts, market, customizations_by_account,
                               household_trades, as_of)
    result.proposals  # one Proposal per account that could be optimized
    result.errors     # one AccountError per skipped account, with the reason

Inputs and outputs are the pydantic models of ``offchain.optimizer.inputs``; a large book of
accounts may instead be given in columns, as an ``AccountBook`` (``offchain.optimizer.book``).
The exact reference solver (cvxpy + Clarabel, test dependency) is ``offchain.optimizer.reference``.
"""

from offchain.optimizer.book import AccountBook
from offchain.optimizer.engine import optimize_accounts
from offchain.optimizer.inputs import (
    Account,
    AccountError,
    Customizations,
    HouseholdTrade,
    Instrument,
    InstrumentKind,
    MarketData,
    ModelPortfolio,
    PricePoint,
    Proposal,
    RiskModel,
    Screen,
    TaxLot,
    TaxSettings,
    Trade,
)
from offchain.optimizer.output import BatchResult

__all__ = [
    "Account",
    "AccountBook",
    "AccountError",
    "BatchResult",
    "Customizations",
    "HouseholdTrade",
    "Instrument",
    "InstrumentKind",
    "MarketData",
    "ModelPortfolio",
    "PricePoint",
    "Proposal",
    "RiskModel",
    "Screen",
    "TaxLot",
    "TaxSettings",
    "Trade",
    "optimize_accounts",
]
