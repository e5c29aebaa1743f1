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


def solve_exact(universe: Universe, p: AccountProblem) -> tuple[np.ndarray, np.ndarray]:
    """The same problem as ``solve_reference``, handed to Clarabel directly (no modelling
    layer, which costs ten times the solve): the engine's fallback for an account its fast
    path did not certify. Returns ``(buys (n,), sells per lot (L,))`` in weights.

    Variables are buys ``b``, sells per lot ``s`` and the net trade ``y = b - A s``; the
    objective is ``k (d + y)' S (d + y)`` up to a constant. Raises ``ReferenceFailed`` if
    Clarabel does not reach an optimal (or almost optimal) status, ``ImportError`` if it is
    not installed.
    """
    import clarabel
    from scipy import sparse

    n, n_lots = universe.n, p.lot_instrument.size
    cost, g_rows = universe.cost, universe.class_matrix
    k = g_rows.shape[0]
    a_map = np.zeros((n, n_lots))
    a_map[p.lot_instrument, np.arange(n_lots)] = 1.0
    s_mat = 2.0 * universe.risk_aversion * universe.cov
    width = 2 * n + n_lots
    p_mat = np.zeros((width, width))
    p_mat[n + n_lots :, n + n_lots :] = np.triu(s_mat)
    q = np.concatenate([cost, p.lot_tax + cost[p.lot_instrument], s_mat @ (p.holding - p.model)])
    b_cols, s_cols, y_cols = slice(0, n), slice(n, n + n_lots), slice(n + n_lots, width)
    eye_n, eye_l = np.eye(n), np.eye(n_lots)
    # Rows: y - b + A s = 0 (zero cone), then G x <= h (nonnegative cone).
    blocks: list[tuple[list[tuple[slice, np.ndarray]], np.ndarray]] = [
        ([(b_cols, -eye_n), (s_cols, a_map), (y_cols, eye_n)], np.zeros(n)),
        ([(b_cols, -eye_n)], np.zeros(n)),
        ([(b_cols, eye_n)], p.buy_max),
        ([(s_cols, -eye_l)], np.zeros(n_lots)),
        ([(s_cols, eye_l)], p.lot_weight),
        ([(s_cols, -a_map)], -p.sell_min),
        ([(s_cols, a_map)], p.sell_max),
        (
            [(b_cols, (1 + cost)[None, :]), (s_cols, -((1 - cost) @ a_map)[None, :])],
            np.array([p.cash_budget]),
        ),
    ]
    if k:
        blocks += [
            ([(b_cols, g_rows), (s_cols, -(g_rows @ a_map))], p.class_hi),
            ([(b_cols, -g_rows), (s_cols, g_rows @ a_map)], -p.class_lo),
        ]
    if np.isfinite(p.st_budget) and n_lots:
        blocks.append(([(s_cols, p.lot_st_gain[None, :])], np.array([p.st_budget])))
    b_vec = np.concatenate([rhs for _, rhs in blocks])
    a_mat = np.zeros((b_vec.size, width))
    row = 0
    for parts, rhs in blocks:
        for cols, values in parts:
            a_mat[row : row + rhs.size, cols] = values
        row += rhs.size
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = 1e-12
    cones = [clarabel.ZeroConeT(n), clarabel.NonnegativeConeT(b_vec.size - n)]
    solution = clarabel.DefaultSolver(
        sparse.csc_matrix(p_mat), q, sparse.csc_matrix(a_mat), b_vec, cones, settings
    ).solve()
    if str(solution.status) not in ("Solved", "AlmostSolved"):
        raise ReferenceFailed(f"account {p.account_id}: {solution.status}")
    x = np.asarray(solution.x)
    return np.clip(x[:n], 0.0, p.buy_max), np.clip(x[n : n + n_lots], 0.0, p.lot_weight)


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
