"""The batched paths of the engine against their one-account meaning.

Problems are built for a whole model at once (``ProblemBuilder.build_batch``), solved in
chunks, re-solved for wash-sale harvesting from a warm start, split over worker processes, and
turned into units in bulk. Each of these must give every account exactly what it would get
alone.
"""

from __future__ import annotations

import dataclasses
from decimal import ROUND_DOWN, Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optimizer_helpers import AS_OF, make_account, make_market, make_model
from test_exact import PRICES, account_gap
from test_exact import accounts as random_account

from offchain.optimizer import engine
from offchain.optimizer.engine import FEASIBILITY_TOL, run_engine
from offchain.optimizer.inputs import (
    Account,
    Customizations,
    TaxLot,
    TaxSettings,
)
from offchain.optimizer.problem import ProblemBuilder, build_universe, objective, violations
from offchain.optimizer.reference import relative_gap, solve_exact, solve_reference
from offchain.optimizer.solver import BatchSolver
from offchain.optimizer.synthetic import make_accounts, make_universe
from offchain.optimizer.trades import QUANTITY_STEP, units_down


@pytest.fixture(scope="module")
def book():
    """A customized synthetic book: 24 instruments, 60 accounts, household trade history."""
    model, market = make_universe(5, 24)
    accounts, customs, trades = make_accounts(model, market, 60, seed=21)
    return model, market, accounts, customs, trades


def _same_problem(a, b) -> None:
    """Equal problems (floats to the last bits that BLAS blocking may change with batch size)."""
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) and x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-15, err_msg=f.name)
        elif isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=f.name)
        else:
            assert x == pytest.approx(y, rel=1e-12) if isinstance(x, float) else x == y, f.name


def _proposal_key(p):
    """What an account is told: every field but the floats, which must agree to 1e-12."""
    data = p.model_dump()
    floats = {
        k: data.pop(k)
        for k in (
            "tracking_error_before",
            "tracking_error_after",
            "objective_no_trade",
            "objective",
        )
    }
    return data, floats


def _assert_same_proposals(left, right) -> None:
    assert [p.account_id for p in left] == [p.account_id for p in right]
    for p, q in zip(left, right, strict=True):
        (data_p, floats_p), (data_q, floats_q) = _proposal_key(p), _proposal_key(q)
        assert data_p == data_q
        for name, value in floats_p.items():
            assert floats_q[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_batch_rows_are_the_single_account_problems(book):
    model, market, accounts, customs, trades = book
    universe = build_universe(model, market)
    builder = ProblemBuilder(universe, model, market, trades, AS_OF)
    menus = [customs.get(a.account_id, Customizations()) for a in accounts]
    batch, errors = builder.build_batch(accounts, menus)
    assert not errors and len(batch) == len(accounts)
    assert batch.lot_start[-1] == batch.lot_account.size
    for row, (account, menu) in enumerate(zip(accounts, menus, strict=True)):
        alone = ProblemBuilder(universe, model, market, trades, AS_OF).build(account, menu)
        _same_problem(batch.problem(row), alone)


def test_bad_accounts_in_a_batch_get_the_single_account_error(model, market):
    good = make_account(
        {"USA": [("400", "90", 800)], "BND": [("250", "100", 800)]}, account_id="good-1"
    )
    bad = [
        make_account({"XYZ": [("1", "1", 10)]}, account_id="unknown"),
        make_account({"USA": [("-1", "1", 10)]}, account_id="negative"),
        make_account({"USA": [("1", "-1", 10)]}, account_id="basis"),
        make_account({"USA": [("1", "1", -3)]}, account_id="future"),
        Account(
            account_id="dup-lots",
            household_id="h",
            lots=(
                TaxLot(
                    lot_id="L",
                    symbol="USA",
                    quantity=Decimal(1),
                    cost_basis=Decimal(1),
                    acquired=AS_OF,
                ),
                TaxLot(
                    lot_id="L",
                    symbol="BND",
                    quantity=Decimal(1),
                    cost_basis=Decimal(1),
                    acquired=AS_OF,
                ),
            ),
        ),
        Account(
            account_id="mismatch",
            household_id="h",
            holdings={"USA": Decimal(3)},
            lots=(
                TaxLot(
                    lot_id="M",
                    symbol="USA",
                    quantity=Decimal(2),
                    cost_basis=Decimal(1),
                    acquired=AS_OF,
                ),
            ),
        ),
        make_account({"USA": [("10", "100", 400)]}, cash="0", account_id="too-much"),
        make_account({"USA": [("10", "100", 400)]}, account_id="budget"),
        make_account({"USA": [("10", "100", 400)]}, account_id="subst"),
        make_account({"USA": [("1", "1", 10)]}, cash="-1", account_id="cash"),
    ]
    menus = {
        "too-much": Customizations(withdrawal=Decimal(5_000)),
        "budget": Customizations(tax=TaxSettings(short_term_gain_budget=Decimal(-1))),
        "subst": Customizations(substitutions={"USA": "NOPE"}),
    }
    accounts = [good, *bad, make_account({"INTL": [("100", "120", 20)]}, account_id="good-2")]
    universe = build_universe(model, market)
    builder = ProblemBuilder(universe, model, market, [], AS_OF)
    batch, errors = builder.build_batch(
        accounts, [menus.get(a.account_id, Customizations()) for a in accounts]
    )
    assert batch.account_ids == ["good-1", "good-2"]
    assert [k for k, _ in errors] == list(range(1, len(bad) + 1))
    for k, exc in errors:
        account = accounts[k]
        with pytest.raises(type(exc)) as alone:
            ProblemBuilder(universe, model, market, [], AS_OF).build(
                account, menus.get(account.account_id, Customizations())
            )
        assert (alone.value.field, str(alone.value)) == (exc.field, str(exc))
    fields = {accounts[k].account_id: exc.field for k, exc in errors}
    assert fields == {
        "unknown": "lots[0].symbol",
        "negative": "lots[0].quantity",
        "basis": "lots[0].cost_basis",
        "future": "lots[0].acquired",
        "dup-lots": "lots",
        "mismatch": "holdings[USA]",
        "too-much": "withdrawal",
        "budget": "tax.short_term_gain_budget",
        "subst": "substitutions[NOPE]",
        "cash": "cash",
    }


def test_a_batch_proposes_what_each_account_gets_alone(book):
    model, market, accounts, customs, trades = book
    together = run_engine(model, accounts[:30], market, customs, trades).result
    alone = [
        p
        for a in accounts[:30]
        for p in run_engine(model, [a], market, customs, trades).result.proposals
    ]
    assert len(together.proposals) >= 28
    _assert_same_proposals(together.proposals, alone)


def test_chunks_and_worker_processes_change_nothing(book, monkeypatch):
    model, market, accounts, customs, trades = book
    bad = make_account({"XYZ": [("1", "1", 1)]}, account_id="bad")
    # Across the split into two workers: a bad account early, duplicates of early accounts late.
    accounts = [accounts[0], bad, *accounts[1:], accounts[0], bad]
    whole = engine.optimize_accounts(model, accounts, market, customs, trades)
    monkeypatch.setattr(engine, "CHUNK", 16)  # 62 accounts: 4 chunks
    monkeypatch.setattr(engine, "PARALLEL_MIN", 10)
    chunked = engine.optimize_accounts(model, accounts, market, customs, trades)
    forked = engine.optimize_accounts(model, accounts, market, customs, trades, workers=2)
    _assert_same_proposals(whole.proposals, chunked.proposals)
    _assert_same_proposals(whole.proposals, forked.proposals)
    assert whole.errors == chunked.errors == forked.errors
    assert [(e.account_id, e.field) for e in whole.errors][:3] == [
        ("bad", "lots[0].symbol"),
        (accounts[0].account_id, "account_id"),
        ("bad", "account_id"),
    ]


@st.composite
def random_batch(draw):
    """2 to 6 random accounts (``test_exact``'s strategy) in 1 to 3 households."""
    size = draw(st.integers(2, 6))
    cases = [
        draw(random_account(account_id=f"h{k}", household_id=f"hh{k % 3}")) for k in range(size)
    ]
    return (
        [c[0] for c in cases],
        {c[0].account_id: c[1] for c in cases},
        [t for c in cases for t in c[2]],
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=random_batch())
def test_random_batches_are_exact_and_as_good_as_each_account_alone(batch):
    """Random accounts may have many optimal trade lists (zero tax rates, lots alike), so a
    batch need not pick the same one as the account alone: it must be as good."""
    accounts, customs, trades = batch
    model, market = make_model(), make_market(PRICES)
    run = run_engine(model, accounts, market, customs, trades)
    assert len(run.solved) + len(run.result.errors) == len(accounts)
    for account_id, solved in run.solved.items():
        p = solved.problem
        worst = max(violations(run.universe, p, solved.buys, solved.sells).values())
        assert worst <= FEASIBILITY_TOL, account_id
        assert account_gap(run.universe, solved) <= 1e-4, account_id
        alone = run_engine(
            model, [a for a in accounts if a.account_id == account_id][0:1], market, customs, trades
        ).solved[account_id]
        f = objective(run.universe, p, solved.buys, solved.sells)
        f_alone = objective(run.universe, alone.problem, alone.buys, alone.sells)
        assert f == pytest.approx(f_alone, abs=1e-9), account_id


def test_duplicate_account_ids_are_reported_in_input_order(model, market):
    a = make_account({"USA": [("400", "100", 800)]}, account_id="a")
    b = make_account({"XYZ": [("1", "1", 1)]}, account_id="b")
    result = engine.optimize_accounts(model, [a, b, a], market)
    assert [(e.account_id, e.field) for e in result.errors] == [
        ("b", "lots[0].symbol"),
        ("a", "account_id"),
    ]
    assert [p.account_id for p in result.proposals] == ["a"]


def test_the_exact_fallback_alone_solves_every_account(book):
    model, market, accounts, customs, trades = book
    universe = build_universe(model, market)
    no_fast_path = BatchSolver(universe, max_iter=0)
    run = run_engine(model, accounts[:12], market, customs, trades, solver=no_fast_path)
    assert run.stats.certified == 0 and run.stats.fallback >= len(run.solved) > 0
    for solved in run.solved.values():
        p = solved.problem
        assert not solved.certified
        assert (
            max(violations(run.universe, p, solved.buys, solved.sells).values()) <= FEASIBILITY_TOL
        )
        buys, sells, _ = solve_reference(run.universe, p)
        f_star = objective(run.universe, p, buys, sells)
        f = objective(run.universe, p, solved.buys, solved.sells)
        f0 = objective(run.universe, p, np.zeros(universe.n), np.zeros(p.lot_instrument.size))
        assert relative_gap(f, f_star, f0) <= 1e-6


def test_solve_exact_agrees_with_the_cvxpy_reference(book):
    model, market, accounts, customs, trades = book
    run = run_engine(model, accounts[30:45], market, customs, trades)
    for solved in run.solved.values():
        p, u = solved.problem, run.universe
        buys, sells = solve_exact(u, p)
        ref_buys, ref_sells, _ = solve_reference(u, p)
        assert max(violations(u, p, buys, sells).values()) <= FEASIBILITY_TOL
        assert objective(u, p, buys, sells) == pytest.approx(
            objective(u, p, ref_buys, ref_sells), abs=1e-10
        )


@settings(max_examples=200, deadline=None)
@given(
    weight=st.floats(1e-9, 0.5),
    value=st.floats(1_000, 5e6),
    price=st.decimals(min_value=Decimal("0.5"), max_value=Decimal(2_000), places=4),
    exact_steps=st.booleans(),
)
def test_units_are_rounded_down_exactly(weight, value, price, exact_steps):
    if exact_steps:  # a weight that is (up to float rounding) a whole number of 1e-8 units
        units = (Decimal(repr(weight * value)) / price).quantize(QUANTITY_STEP)
        weight = float(units * price / Decimal(repr(value)))
    if weight <= 0:
        return
    steps = units_down(
        np.array([weight]), np.array([value]), np.array([0]), np.array([float(price)]), [price]
    )
    expected = (Decimal(repr(weight)) * Decimal(repr(value)) / price).quantize(
        QUANTITY_STEP, rounding=ROUND_DOWN
    )
    assert Decimal(int(steps[0])).scaleb(-8) == expected


def test_harvest_pass_is_warm_started_and_still_exact():
    """A loss lot whose group the first pass does not buy is harvested in the second pass."""
    model, market = make_model(), make_market()
    account = make_account(
        {
            "USA": [("300", "130", 400), ("200", "90", 900)],
            "INTL": [("250", "100", 800)],
            "BND": [("250", "100", 800)],
            "ALT1": [("80", "100", 800)],
        },
        cash="12000",
    )
    run = run_engine(model, [account], market)
    solved = run.solved["acct-1"]
    assert solved.certified
    assert any(note.startswith("wash sales: not buying SP500") for note in solved.problem.notes)
    sold_loss = [
        t for t in run.result.proposals[0].trades if t.side == "sell" and t.realized_gain < 0
    ]
    assert sold_loss and all(t.symbol == "USA" for t in sold_loss)
    assert not any(
        t.side == "buy" and t.symbol in ("USA", "USB") for t in run.result.proposals[0].trades
    )
    p = solved.problem
    buys, sells, _ = solve_reference(run.universe, p)
    f_star = objective(run.universe, p, buys, sells)
    assert objective(run.universe, p, solved.buys, solved.sells) == pytest.approx(f_star, abs=1e-10)


def test_a_sliver_of_a_lot_does_not_stop_the_certificate():
    """An account at its model with a lot sliver (1e-9 units, 1e-12 of the account: what
    partial sales leave behind) needs no trade, and the fast path proves it without the
    exact fallback (a sliver narrower than the tolerance is on one side of the no-trade point,
    not on both)."""
    model, market = make_model(), make_market()
    account = make_account(
        {
            "USA": [("400", "90", 800), ("0.000000001", "100", 800)],
            "INTL": [("250", "100", 800)],
            "BND": [("250", "100", 800)],
            "ALT1": [("80", "100", 800)],
        },
        cash="2000",
    )
    run = run_engine(model, [account], market)
    assert run.stats.fallback == 0
    assert run.solved["acct-1"].certified
    assert run.result.proposals[0].trades == ()
