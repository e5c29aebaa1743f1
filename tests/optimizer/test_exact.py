"""The engine against the exact solver (cvxpy + Clarabel), and properties over random accounts.

The relative gap of an account is ``(f - f*) / (f0 - f*)`` with ``f`` the engine's objective,
``f*`` the exact optimum and ``f0`` the objective of trading nothing (0 when f0 = f* = f).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from optimizer_helpers import AS_OF, make_market, make_model

from offchain.optimizer.engine import FEASIBILITY_TOL, run_engine
from offchain.optimizer.inputs import (
    Account,
    Customizations,
    HouseholdTrade,
    Screen,
    TaxLot,
    TaxSettings,
)
from offchain.optimizer.problem import objective, violations
from offchain.optimizer.reference import relative_gap, solve_reference
from offchain.optimizer.synthetic import make_accounts, make_universe

GAP_LIMIT = 1e-4


def account_gap(universe, solved) -> float:
    """The engine's relative gap on one account (see the module docstring)."""
    p = solved.problem
    buys, sells, f_star_solver = solve_reference(universe, p)
    f_star = objective(universe, p, buys, sells)
    assert f_star == pytest.approx(f_star_solver, abs=1e-7)
    f = objective(universe, p, solved.buys, solved.sells)
    f0 = objective(universe, p, np.zeros(universe.n), np.zeros(p.lot_instrument.size))
    return relative_gap(f, f_star, f0)


def test_relative_gap_definition():
    assert relative_gap(1.0, 0.0, 2.0) == 0.5
    assert relative_gap(0.0, 0.0, 0.0) == 0.0  # already optimal, no trade
    assert relative_gap(1e-3, 0.0, 0.0) == 1.0  # already optimal, engine traded anyway
    assert relative_gap(0.5, 0.5, 0.1) == 0.0  # trading nothing infeasible (f0 < f*)
    assert relative_gap(0.6, 0.5, 0.1) == 1.0


@pytest.mark.parametrize(("seed", "n_instruments"), [(0, 16), (1, 28), (2, 40)])
def test_engine_matches_the_exact_solver(seed, n_instruments):
    model, market = make_universe(seed, n_instruments)
    accounts, customs, trades = make_accounts(model, market, 40, seed=seed + 10)
    run = run_engine(model, accounts, market, customs, trades)
    assert len(run.solved) + len(run.result.errors) == 40
    assert len(run.solved) >= 35
    gaps = []
    for solved in run.solved.values():
        worst = max(violations(run.universe, solved.problem, solved.buys, solved.sells).values())
        assert worst <= FEASIBILITY_TOL
        gaps.append(account_gap(run.universe, solved))
    assert max(gaps) <= GAP_LIMIT
    assert run.stats.certified >= 0.9 * len(run.solved)


def test_certified_solutions_need_no_fallback_on_a_plain_book():
    model, market = make_universe(3, 24)
    accounts, _, _ = make_accounts(model, market, 60, seed=3, customized=0.0)
    run = run_engine(model, accounts, market)
    assert run.stats.fallback <= 1
    assert all(s.certified for s in run.solved.values()) or run.stats.fallback == 1


# ------------------------------------------------------------------- Hypothesis properties
SYMBOLS = ["USA", "USB", "USC", "INTL", "BND", "ALT1"]
PRICES = {"USA": "100", "USB": "100", "USC": "80", "INTL": "55", "BND": "101", "ALT1": "250"}

lot_strategy = st.tuples(
    st.sampled_from(SYMBOLS),
    st.decimals(min_value=Decimal("0.5"), max_value=Decimal(500), places=3),
    st.decimals(min_value=Decimal(20), max_value=Decimal(250), places=2),
    st.integers(min_value=0, max_value=2000),
)


@st.composite
def accounts(draw, account_id: str = "h", household_id: str = "hh"):
    lots = draw(st.lists(lot_strategy, min_size=0, max_size=14))
    cash = draw(st.decimals(min_value=Decimal(0), max_value=Decimal(60_000), places=2))
    if not lots and cash < 1000:
        cash = Decimal(1000)
    account = Account(
        account_id=account_id,
        household_id=household_id,
        cash=cash,
        lots=tuple(
            TaxLot(
                lot_id=f"{account_id}-L{k}",
                symbol=s,
                quantity=q,
                cost_basis=b,
                acquired=AS_OF - dt.timedelta(days=d),
            )
            for k, (s, q, b, d) in enumerate(lots)
        ),
    )
    value = float(cash) + sum(float(q) * float(PRICES[s]) for s, q, _, _ in lots)
    custom = Customizations(
        never_buy=frozenset(draw(st.sets(st.sampled_from(SYMBOLS), max_size=2))),
        never_sell=frozenset(draw(st.sets(st.sampled_from(SYMBOLS), max_size=1))),
        screens=(Screen(attribute="esg_score", op=">=", value=3.0),) if draw(st.booleans()) else (),
        substitutions={"USA": "USC"} if draw(st.booleans()) else {},
        tax=TaxSettings(
            short_term_rate=draw(st.sampled_from([0.0, 0.24, 0.37])),
            long_term_rate=draw(st.sampled_from([0.0, 0.15, 0.2])),
            short_term_gain_budget=draw(
                st.one_of(st.none(), st.decimals(min_value=0, max_value=5000, places=2))
            ),
            loss_harvest_threshold=draw(st.sampled_from([0.0, 0.05, 0.2])),
            defer_short_term_days=draw(st.sampled_from([0, 31])),
        ),
        withdrawal=Decimal(repr(round(draw(st.floats(0, 0.12)) * value, 2))),
        min_cash=Decimal(repr(round(draw(st.floats(0, 0.03)) * value, 2))),
    )
    trades = [
        HouseholdTrade(
            household_id=household_id,
            account_id="other",
            symbol=s,
            side=side,
            quantity=Decimal(1),
            trade_date=AS_OF - dt.timedelta(days=d),
            realized_gain=Decimal(g) if side == "sell" else None,
        )
        for s, side, d, g in draw(
            st.lists(
                st.tuples(
                    st.sampled_from(SYMBOLS),
                    st.sampled_from(["buy", "sell"]),
                    st.integers(0, 45),
                    st.sampled_from(["-50", "50"]),
                ),
                max_size=3,
            )
        )
    ]
    return account, custom, trades


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=accounts())
def test_random_accounts_are_feasible_exact_and_safe(case):
    account, custom, trades = case
    model, market = make_model(), make_market(PRICES)
    run = run_engine(model, [account], market, {"h": custom}, trades)
    if run.result.errors:
        # Only a cash need that cannot be met may stop an account of valid data.
        assert run.result.errors[0].field in {"withdrawal", "constraints"}
        event("skipped: cash need cannot be met")
        return
    event("optimized with trades" if run.result.proposals[0].trades else "optimized, no trade")
    solved = run.solved["h"]
    p = solved.problem
    assert max(violations(run.universe, p, solved.buys, solved.sells).values()) <= FEASIBILITY_TOL
    assert account_gap(run.universe, solved) <= GAP_LIMIT
    proposal = run.result.proposals[0]
    held = {lot.lot_id: lot for lot in account.lots}
    for trade in proposal.trades:
        assert trade.quantity > 0
        if trade.side == "sell":
            assert trade.quantity <= held[trade.lot_id].quantity
            assert trade.symbol not in custom.never_sell
        else:
            assert trade.symbol not in custom.never_buy
            assert trade.symbol != "INTL" or not custom.screens  # INTL fails the ESG screen
            assert trade.symbol != "USB"  # not approved
            assert trade.symbol != "USA" or "USA" not in custom.substitutions
    assert proposal.cash_after >= custom.min_cash
    bought_groups = {
        "SP500" if t.symbol in ("USA", "USB") else t.symbol
        for t in proposal.trades
        if t.side == "buy"
    }
    for trade in proposal.trades:
        if trade.side == "sell" and trade.realized_gain < 0:
            group = "SP500" if trade.symbol in ("USA", "USB") else trade.symbol
            assert group not in bought_groups  # no purchase of a group sold at a loss today
