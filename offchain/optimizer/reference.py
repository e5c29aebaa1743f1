"""The exact reference: one account's problem solved by cvxpy with Clarabel.

Used by the tests and the benchmark to measure the engine's optimality gap, and by the engine
as a fallback for the rare account its fast path cannot certify. Buys per instrument and sells
per lot are separate variables here, exactly as stated in ``offchain.optimizer.problem``.
"""

from __future__ import annotations

import numpy as np

from offchain.optimizer.problem import AccountProblem, Universe


class ReferenceFailed(RuntimeError):
    """The exact solver did not report an optimal solution (status in the message)."""


def solve_reference(universe: Universe, p: AccountProblem) -> tuple[np.ndarray, np.ndarray, float]:
    """Solve one account exactly; return ``(buys (n,), sells per lot (L,), objective)``.

    Weights are fractions of ``p.value``. Raises ``ReferenceFailed`` if Clarabel does not reach
    an optimal (or almost optimal) status, e.g. for an infeasible account.
    """
    import cvxpy as cp

    n = universe.n
    n_lots = p.lot_instrument.size
    b = cp.Variable(n)
    s = cp.Variable(n_lots) if n_lots else None
    a_map = np.zeros((n, n_lots))
    a_map[p.lot_instrument, np.arange(n_lots)] = 1.0
    sold = a_map @ s if s is not None else cp.Constant(np.zeros(n))
    d = p.holding - p.model + b - sold
    chol = np.linalg.cholesky(universe.cov + 1e-14 * np.eye(n))
    risk = universe.risk_aversion * cp.sum_squares(chol.T @ d)
    lot_cost = p.lot_tax + universe.cost[p.lot_instrument]
    obj = risk + universe.cost @ b + (lot_cost @ s if n_lots else 0)
    cons = [
        b >= 0,
        b <= p.buy_max,
        sold >= p.sell_min,
        sold <= p.sell_max,
        (1 + universe.cost) @ b - (1 - universe.cost) @ sold <= p.cash_budget,
    ]
    if s is not None:
        cons += [s >= 0, s <= p.lot_weight]
        if np.isfinite(p.st_budget):
            cons.append(p.lot_st_gain @ s <= p.st_budget)
    if universe.class_matrix.shape[0]:
        change = universe.class_matrix @ (b - sold)
        cons += [change >= p.class_lo, change <= p.class_hi]
    problem = cp.Problem(cp.Minimize(obj), cons)
    problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    if problem.status not in ("optimal", "optimal_inaccurate"):
        raise ReferenceFailed(f"account {p.account_id}: {problem.status}")
    buys = np.clip(np.asarray(b.value, dtype=float), 0.0, p.buy_max)
    sells = np.zeros(0)
    if s is not None:
        sells = np.clip(np.asarray(s.value, dtype=float), 0.0, p.lot_weight)
    return buys, sells, float(problem.value)


EQUAL_TOL = 1e-9  # objectives within this (fraction of account value) count as equal


def relative_gap(f: float, f_star: float, f_none: float) -> float:
    """The relative optimality gap ``(f - f*) / (f0 - f*)`` of an account.

    ``f`` is the engine's objective, ``f_star`` the exact optimum, ``f_none`` the objective of
    trading nothing. When trading nothing is (within ``EQUAL_TOL``) already optimal, or is not
    even feasible (a withdrawal or a limit forces trades, so ``f0`` may be below ``f*``), the
    account counts as 0 if ``f`` equals ``f*`` within ``EQUAL_TOL``, else as 1.
    """
    if f_none - f_star > EQUAL_TOL:
        return max(0.0, (f - f_star) / (f_none - f_star))
    return 0.0 if f - f_star <= EQUAL_TOL else 1.0
