"""The batched solver: many accounts of one model at once, in numpy.

Every account on a model shares the quadratic form (the factor covariance) and the constraint
matrix (costs, asset classes); only bounds and linear costs differ. So the solver runs

1. ADMM (OSQP-style splitting) on all accounts together over ``v = [buys; net sells]`` per
   instrument, with one factorization shared by the whole batch. The lots of an instrument
   enter only through the proximal step of its sell cost, a convex piecewise-linear function
   (lots sorted by tax-plus-cost per unit: cheapest lots are sold first).
2. A polish on the net trade per instrument: guess from ADMM which instruments sit on a kink
   (a lot boundary, zero, a bound) and which rows bind, solve the equality-constrained KKT
   system exactly (batched), and certify the result with the full optimality conditions.
   Failed certificates update the guess (primal-dual active set) a few times.
3. Accounts that are not certified continue ADMM; what is left after the iteration budget is
   handed to the exact solver, Clarabel called directly (reported in ``SolveStats``).

The short-term gains budget is priced by a multiplier per account, updated by dual ascent in
ADMM and solved exactly in the polish.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from offchain.optimizer.problem import AccountProblem, ProblemBatch, Universe

_TOL = 1e-10  # primal tolerance of the certificate, weight units
_DUAL_TOL = 1e-9  # dual tolerance of the certificate
_KINK_TOL = 1e-7  # how close to a kink ADMM must be to guess "on the kink"
_FREE_BUCKETS = (4, 8, 16)  # KKT systems are solved in groups of accounts by free instruments


@dataclass
class SolveStats:
    """How the batch was solved: ADMM iterations run, accounts certified by the fast path and
    accounts handed to the exact reference solver."""

    iterations: int = 0
    certified: int = 0
    fallback: int = 0
    fallback_ids: list[str] = field(default_factory=list)


@dataclass
class AdmmState:
    """ADMM iterates of a batch (float32) and the short-term gains multipliers: where
    ``BatchSolver.guess`` stopped and ``BatchSolver.solve`` goes on."""

    v: np.ndarray  # (B, 2n)
    w: np.ndarray  # (B, 2n) buys and net sells per instrument, within their bounds
    yg: np.ndarray  # (B, 2n)
    z: np.ndarray  # (B, rows)
    yc: np.ndarray  # (B, rows)
    mu: np.ndarray  # (B,)
    batch: _Batch  # the stacked problem arrays the guess ran on

    @property
    def buys(self) -> np.ndarray:
        """The guess of the buys per instrument (B, n)."""
        return self.w[:, : self.w.shape[1] // 2]


@dataclass
class BatchSolution:
    """The solutions of a batch, in weights: buys per row and instrument, sells per flat lot
    (as in the ``ProblemBatch``). ``solved`` is False for a row with no feasible trade list (or
    no exact solver to settle it); ``certified`` marks rows the fast path proved optimal."""

    buys: np.ndarray  # (B, n)
    sells: np.ndarray  # (L,)
    net: np.ndarray  # (B, n) buys minus sells per instrument (the warm start of a re-solve)
    st_multiplier: np.ndarray  # (B,)
    solved: np.ndarray  # (B,) bool
    certified: np.ndarray  # (B,) bool


class _Batch:
    """Stacked arrays of B accounts; lots padded to L slots per instrument."""

    def __init__(self, universe: Universe, problems: ProblemBatch, mu0=None) -> None:
        n = universe.n
        self.n = n
        b_count = len(problems)
        self.mu = (
            np.zeros(b_count)
            if mu0 is None
            else np.where(np.isfinite(problems.st_budget) & np.isfinite(mu0), mu0, 0.0)
        )
        cell = problems.lot_account * n + problems.lot_instrument
        counts = np.bincount(cell, minlength=b_count * n)
        n_slots = max(1, int(counts.max(initial=0)))
        self.L = n_slots
        # Each instrument's lots cheapest first (cost plus the short-term multiplier), ties in
        # the account's order; padding slots cost more than any lot, so they sort last.
        lot_cost = problems.lot_tax + universe.cost[problems.lot_instrument]
        key = lot_cost + self.mu[problems.lot_account] * problems.lot_st_gain
        # Sorted by (cell, key), ties in the account's order: the key's rank, then one sort of
        # a unique integer (faster than np.lexsort on a large book).
        rank = np.empty(key.size, dtype=np.int64)
        rank[np.argsort(key, kind="stable")] = np.arange(key.size)
        order = np.argsort(cell * max(1, key.size) + rank)
        first = np.cumsum(counts) - counts
        slot = np.arange(order.size) - first[cell[order]]
        acct, inst = problems.lot_account[order], problems.lot_instrument[order]
        shape = (b_count, n, n_slots)
        at = (acct * n + inst) * n_slots + slot  # flat positions: one 1-D scatter per array
        self.lot_w = np.zeros(shape)
        self.lot_c = np.full(shape, 1e3)
        self.lot_st = np.zeros(shape)
        self.lot_idx = np.full(shape, -1, dtype=np.int64)
        self.lot_w.reshape(-1)[at] = problems.lot_weight[order]
        self.lot_c.reshape(-1)[at] = lot_cost[order]
        self.lot_st.reshape(-1)[at] = problems.lot_st_gain[order]
        self.lot_idx.reshape(-1)[at] = order
        self._at, self._order, self._sorted = at, order, False
        self._bounds(problems)

    def _bounds(self, problems: ProblemBatch) -> None:
        self.d0 = problems.holding - problems.model
        self.buy_max = problems.buy_max
        self.sell_min = problems.sell_min
        self.sell_max = np.minimum(problems.sell_max, _sum_last(self.lot_w))
        self.cash_budget = problems.cash_budget
        self.class_lo = problems.class_lo
        self.class_hi = problems.class_hi
        self.st_budget = problems.st_budget

    def refresh(self, problems: ProblemBatch, mu: np.ndarray) -> None:
        """Take ``problems``' lot weights and bounds: the same problems as at construction
        but for bounds (lots, their costs and order unchanged, as after a wash-sale decision),
        and the short-term multipliers ``mu`` (lots re-sorted where they moved)."""
        if self._sorted:
            raise RuntimeError("refresh: the lots were re-sorted since they were laid out")
        self.lot_w.reshape(-1)[self._at] = problems.lot_weight[self._order]
        self._bounds(problems)
        self.mu = np.where(np.isfinite(problems.st_budget) & np.isfinite(mu), mu, 0.0)
        self.sort_lots(np.flatnonzero(self.mu != 0))

    def sort_lots(self, rows: np.ndarray) -> None:
        """Order each instrument's lots by cost plus the short-term multiplier (cheapest first)."""
        if rows.size == 0:
            return
        self._sorted = True
        key = self.lot_c[rows] + self.mu[rows, None, None] * self.lot_st[rows]
        order = np.argsort(key, axis=2, kind="stable")
        for name in ("lot_w", "lot_c", "lot_st", "lot_idx"):
            arr = getattr(self, name)
            arr[rows] = np.take_along_axis(arr[rows], order, axis=2)

    def subset(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The arrays of ``rows`` (views, not copies, when that is every row)."""
        every = rows.size == len(self.mu)
        return {
            name: getattr(self, name) if every else getattr(self, name)[rows]
            for name in (
                "lot_w",
                "lot_c",
                "lot_st",
                "d0",
                "buy_max",
                "sell_min",
                "sell_max",
                "cash_budget",
                "class_lo",
                "class_hi",
                "st_budget",
                "mu",
            )
        }


class BatchSolver:
    """Solves many accounts of one universe; see the module docstring for the method.

    ``rho`` is the ADMM penalty (weights are O(1), so one value serves every account),
    ``max_iter`` the ADMM budget before the exact fallback, ``polish_every`` how often the
    polish is tried. The budget is short on purpose: the few accounts still uncertified after
    100 steps (10 in 2,000 on bench/optimizer.py's book, against 6 after 200) cost less in
    one Clarabel solve each (~3 ms) than in the further ADMM rounds and polishes they need
    (measured: a budget of 200 steps costs ~3 % more engine CPU).
    """

    def __init__(
        self,
        universe: Universe,
        rho: float = 0.4,
        sigma: float = 1e-6,
        alpha: float = 1.6,
        max_iter: int = 100,
        polish_every: int = 20,
        exact_fallback: bool = True,
    ) -> None:
        self.u = universe
        n = universe.n
        self.q_mat = 2.0 * universe.risk_aversion * universe.cov
        t = universe.cost
        g = universe.class_matrix
        self.rows = np.vstack([np.concatenate([1 + t, -(1 - t)]), np.hstack([g, -g])])
        m_full = np.hstack([np.eye(n), -np.eye(n)])
        p_mat = m_full.T @ self.q_mat @ m_full
        self.rho, self.sigma, self.alpha = rho, sigma, alpha
        kkt = p_mat + (sigma + rho) * np.eye(2 * n) + rho * self.rows.T @ self.rows
        self.k_inv = np.linalg.inv(kkt)
        self.k_inv32, self.rows32 = self.k_inv.astype(np.float32), self.rows.astype(np.float32)
        self.max_iter = max_iter
        self.polish_every = polish_every
        self.exact_fallback = exact_fallback

    # ---------------------------------------------------------------- public
    def guess(self, problems: ProblemBatch, steps: int | None = None) -> AdmmState:
        """``steps`` ADMM steps (default ``polish_every``) on every row, no polish: a cheap
        guess of the answer, to take a decision on (the wash-sale groups) before ``solve``
        goes on from it. The guess is ``AdmmState.buys``."""
        n = self.n = self.u.n
        b_count = len(problems)
        batch = _Batch(self.u, problems)
        f32 = np.float32
        v, w, yg = (np.zeros((b_count, 2 * n), f32) for _ in range(3))
        z, yc = (np.zeros((b_count, self.rows.shape[0]), f32) for _ in range(2))
        mu = batch.mu
        consts = self._admm_prepare(batch.subset(np.arange(b_count)), mu)
        for step in range(self.polish_every if steps is None else steps):
            v, w, yg, z, yc = self._admm_step(consts, v, w, yg, z, yc)
            if step % 5 == 4:
                mu = self._st_ascent(consts, w, mu)
        return AdmmState(v, w, yg, z, yc, mu, batch)

    def solve(
        self,
        problems: ProblemBatch,
        x0: np.ndarray | None = None,
        mu0: np.ndarray | None = None,
        state: AdmmState | None = None,
    ) -> tuple[BatchSolution, SolveStats]:
        """Solve every row of ``problems``. ``x0`` (B, n), a guess of the net trades (e.g. the
        answer to a closely related problem), starts ADMM, with ``mu0`` the short-term gains
        multiplier that goes with it; or ``state``, the ADMM iterates of ``guess`` on a problem
        that differs from this one in bounds only (nothing is per lot in it), goes on. Raises
        nothing on purpose: a row that cannot be solved is reported in
        ``BatchSolution.solved``.
        """
        stats = SolveStats()
        b_count = len(problems)
        n = self.n = self.u.n
        if state is None:
            batch = _Batch(self.u, problems, mu0)
        else:
            batch = state.batch
            batch.refresh(problems, state.mu)
        x_final = np.full((b_count, n), np.nan)
        done = np.zeros(b_count, dtype=bool)
        v = np.zeros((b_count, 2 * n))
        w = np.zeros((b_count, 2 * n))
        yg = np.zeros((b_count, 2 * n))
        z = np.zeros((b_count, self.rows.shape[0]))
        yc = np.zeros_like(z)
        active = np.arange(b_count)
        if state is not None:
            v, w, yg, z, yc = (
                arr.astype(float) for arr in (state.v, state.w, state.yg, state.z, state.yc)
            )
        elif x0 is not None and b_count:
            guess = np.nan_to_num(x0)
            w = np.hstack([np.maximum(guess, 0.0), np.maximum(-guess, 0.0)])
            v = w.copy()
        it = 0
        while active.size and it < self.max_iter:
            data = batch.subset(active)
            steps = min(self.polish_every, self.max_iter - it)
            # ADMM only guesses the statuses the polish certifies in float64: float32 halves
            # its memory traffic.
            v_a, w_a, yg_a, z_a, yc_a = (
                arr[active].astype(np.float32) for arr in (v, w, yg, z, yc)
            )
            mu = data["mu"]
            consts = self._admm_prepare(data, mu)
            for step in range(steps):
                v_a, w_a, yg_a, z_a, yc_a = self._admm_step(consts, v_a, w_a, yg_a, z_a, yc_a)
                if step % 5 == 4:
                    mu = self._st_ascent(consts, w_a, mu)
            it += steps
            v[active], w[active], yg[active], z[active], yc[active] = v_a, w_a, yg_a, z_a, yc_a
            moved = np.abs(batch.mu[active] - mu) > 0
            batch.mu[active] = mu
            batch.sort_lots(active[moved])
            data = batch.subset(active)
            x_guess = (w_a[:, :n] - w_a[:, n:]).astype(np.float64)
            ok, x_pol, mu_pol = self._polish(data, x_guess)
            x_final[active[ok]] = x_pol[ok]
            batch.mu[active[ok]] = mu_pol[ok]
            done[active[ok]] = True
            active = active[~ok]
        stats.iterations = it
        stats.certified = int(done.sum())
        buys, sells = self._to_lots(batch, x_final, done, problems.lot_instrument.size)
        solved = done.copy()
        mu_out = np.where(done, batch.mu, np.nan)
        for a in np.flatnonzero(~done):
            stats.fallback += 1
            stats.fallback_ids.append(problems.account_ids[a])
            exact = self._fallback(problems.problem(int(a)))
            if exact is not None:
                lots = slice(int(problems.lot_start[a]), int(problems.lot_start[a + 1]))
                buys[a], sells[lots] = exact
                solved[a] = True
        net = buys - np.bincount(
            problems.lot_account * n + problems.lot_instrument, weights=sells, minlength=b_count * n
        ).reshape(b_count, n)
        return BatchSolution(buys, sells, net, mu_out, solved, done), stats

    def _fallback(self, p: AccountProblem) -> tuple[np.ndarray, np.ndarray] | None:
        """The exact solver (Clarabel) for an account the fast path could not certify; ``None``
        if it is infeasible or Clarabel is not installed."""
        if not self.exact_fallback:
            return None
        try:
            from offchain.optimizer.reference import ReferenceFailed, solve_exact
        except ImportError:
            return None
        try:
            return solve_exact(self.u, p)
        except (ReferenceFailed, ImportError):
            return None

    # ---------------------------------------------------------------- ADMM
    def _admm_prepare(self, d, mu):
        """Per-round constants of the ADMM steps (lot order and multiplier fixed in a round)."""
        qd = d["d0"] @ self.q_mat
        edges = _cumsum_last(d["lot_w"]) - d["lot_w"]
        key = d["lot_c"] + mu[:, None, None] * d["lot_st"]
        b_rows = len(mu)
        f32 = np.float32
        return {
            "q": np.hstack([qd, -qd]).astype(f32),
            "shift": (key / self.rho + edges).astype(f32),
            "edges": edges.astype(f32),
            "lot_w": d["lot_w"].astype(f32),
            "seg": np.empty(d["lot_w"].shape, f32),  # the lots' proximal step, reused
            "lot_st": d["lot_st"].astype(f32),
            "buy_max": d["buy_max"].astype(f32),
            "buy_shift": (self.u.cost / self.rho).astype(f32),
            "sell_min": d["sell_min"].astype(f32),
            "sell_max": d["sell_max"].astype(f32),
            "lo": np.hstack([np.full((b_rows, 1), -np.inf), d["class_lo"]]).astype(f32),
            "hi": np.hstack([d["cash_budget"][:, None], d["class_hi"]]).astype(f32),
            "st_budget": d["st_budget"],
            "st_rows": np.flatnonzero(np.isfinite(d["st_budget"])),
        }

    def _admm_step(self, c, v, w, yg, z, yc):
        """One over-relaxed ADMM step on all rows; returns the new iterates (the old ones may
        be overwritten: temporaries are reused, large arrays are not allocated per step)."""
        n, rho, sig, al = self.n, self.rho, self.sigma, self.alpha
        rhs = (rho * z - yc) @ self.rows32
        rhs += sig * v
        rhs -= c["q"]
        rhs += rho * w
        rhs -= yg
        vt = rhs @ self.k_inv32
        ct = vt @ self.rows32.T
        vt *= al
        wt = (1 - al) * w
        wt += vt
        v *= 1 - al
        v += vt
        a = yg / rho
        a += wt
        w_new = np.empty_like(a)
        buys = np.subtract(a[:, :n], c["buy_shift"], out=w_new[:, :n])
        np.maximum(buys, 0.0, out=buys)
        np.minimum(buys, c["buy_max"], out=buys)
        seg = c["seg"]
        np.subtract(a[:, n:, None], c["shift"], out=seg)
        np.maximum(seg, 0.0, out=seg)
        np.minimum(seg, c["lot_w"], out=seg)
        sells = w_new[:, n:]
        np.einsum("bnj->bn", seg, out=sells)
        np.maximum(sells, c["sell_min"], out=sells)
        np.minimum(sells, c["sell_max"], out=sells)
        wt -= w_new
        wt *= rho
        yg += wt
        zt = al * ct
        zt += (1 - al) * z
        z_new = yc / rho
        z_new += zt
        np.maximum(z_new, c["lo"], out=z_new)
        np.minimum(z_new, c["hi"], out=z_new)
        zt -= z_new
        zt *= rho
        yc += zt
        return v, w_new, yg, z_new, yc

    def _st_ascent(self, c, w, mu):
        """Dual ascent on the short-term gains multiplier of the accounts with a budget."""
        r = c["st_rows"]
        if r.size == 0:
            return mu
        y = w[r, self.n :]
        st = (
            np.minimum(np.maximum(y[:, :, None] - c["edges"][r], 0.0), c["lot_w"][r])
            * c["lot_st"][r]
        ).sum(axis=(1, 2))
        mu = mu.copy()
        mu[r] = np.maximum(0.0, mu[r] + self.rho * (st - c["st_budget"][r]))
        return mu

    # ---------------------------------------------------------------- polish
    def _pieces(self, d):
        """Per account and instrument, the net trade ``x`` as a piecewise-linear function.

        Returns raw knots (B, n, J+1) ascending in x (deepest lot sold first ... first lot, 0,
        most that may be bought), the same knots clipped to the domain, and per interval the
        slopes of the cost and of the short-term gains row. The cash row's slope is 1 - t on
        every sell interval and 1 + t on the buy interval (``_cash_slopes``).
        """
        t = self.u.cost
        bsz, n = d["d0"].shape
        lots = d["lot_w"].shape[2]
        raw = np.empty((bsz, n, lots + 2))
        rev = raw[:, :, lots - 1 :: -1]  # the lots' knots, deepest first
        np.negative(d["lot_w"], out=rev)
        for j in range(1, lots):
            np.add(rev[:, :, j - 1], rev[:, :, j], out=rev[:, :, j])
        raw[:, :, lots] = 0.0
        raw[:, :, lots + 1] = d["buy_max"]
        xlo = -d["sell_max"]
        xhi = np.where(d["sell_min"] > 0, -d["sell_min"], d["buy_max"])
        knots = _clip(raw, xlo[:, :, None], xhi[:, :, None])
        slope = np.empty((bsz, n, lots + 1))
        np.negative(d["lot_c"][:, :, ::-1], out=slope[:, :, :lots])
        slope[:, :, lots] = t
        st = np.empty((bsz, n, lots + 1))
        np.negative(d["lot_st"][:, :, ::-1], out=st[:, :, :lots])
        st[:, :, lots] = 0.0
        return raw, knots, slope, st

    def _cash_slopes(self, iv: np.ndarray, last: int) -> np.ndarray:
        """The cash row's slope of interval ``iv`` (B, n) of each instrument."""
        t = self.u.cost
        return np.where(iv == last, 1 + t, 1 - t)

    def _row_values(self, raw, st_c, x, st_rows):
        """Cash spent and short-term gain realized (relative to trading nothing), per account,
        at net trades x; the gain only for rows ``st_rows`` (those with a budget; 0 elsewhere).

        The sell intervals tile [raw_0, 0] and share the cash slope 1 - t, so the cash needs no
        per-lot work: (1 - t) clip(x, raw_0, 0) + (1 + t) clip(x, 0, buy max).
        """
        t = self.u.cost
        cash = (
            _clip(x, raw[:, :, 0], 0.0) @ (1 - t) + _clip(x, 0.0, raw[:, :, -1]) @ (1 + t)
        )
        st = np.zeros(x.shape[0])
        if st_rows.size:
            rw = raw[st_rows]
            lo, hi = rw[:, :, :-1], rw[:, :, 1:]
            seg = _clip(x[st_rows][:, :, None], lo, hi) - _clip(0.0, lo, hi)
            st[st_rows] = np.einsum("bnj,bnj->b", seg, st_c[st_rows])
        return cash, st

    def _polish(self, d, x_guess):
        """Try to certify each account; returns (ok mask, x, short-term multiplier).

        Statuses (free in an interval, or fixed on a knot; rows active or not) start from the
        ADMM point; each round solves the KKT system of the failing accounts and repairs the
        statuses that broke the certificate.
        """
        bsz, n = x_guess.shape
        t = self.u.cost
        g_mat = self.u.class_matrix
        k = g_mat.shape[0]
        n_rows = 2 + 2 * k
        raw, knots, slope, st_c = self._pieces(d)
        last = knots.shape[2] - 2  # the buy interval
        has_st = np.isfinite(d["st_budget"])
        inside = (x_guess[:, :, None] > knots[:, :, :-1] + _KINK_TOL) & (
            x_guess[:, :, None] < knots[:, :, 1:] - _KINK_TOL
        )
        free = _reduce_last(np.logical_or, inside)
        interval = np.argmax(inside, axis=2)
        kink_pos = np.abs(x_guess[:, :, None] - knots).argmin(axis=2)
        fixed_val = np.take_along_axis(knots, kink_pos[:, :, None], 2)[:, :, 0]
        x0 = np.where(free, x_guess, fixed_val)
        cash_v, st_v = self._row_values(raw, st_c, x0, np.flatnonzero(has_st))
        rhs_row = np.hstack(
            [d["cash_budget"][:, None], d["st_budget"][:, None], d["class_hi"], -d["class_lo"]]
        )
        gx = x0 @ g_mat.T
        row_now = np.hstack([cash_v[:, None], st_v[:, None], gx, -gx])
        act = (row_now > rhs_row - 1e-6) & np.isfinite(rhs_row)
        ok = np.zeros(bsz, dtype=bool)
        x_out = np.zeros((bsz, n))
        mu_out = np.zeros(bsz)
        qd_all = d["d0"] @ self.q_mat
        todo = np.arange(bsz)
        stalled = 0
        for _ in range(10):
            r = todo
            if r.size == 0 or stalled == 2:  # two rounds without a new certificate: give up
                break
            m = r.size
            if m == bsz:  # every account: views, not copies
                kn, rw, sl, sc = knots, raw, slope, st_c
            else:
                kn, rw, sl, sc = knots[r], raw[r], slope[r], st_c[r]
            st_rows = np.flatnonzero(has_st[r])
            fr, iv, fv, ac = free[r], interval[r], fixed_val[r], act[r]
            j3 = iv[:, :, None]
            s_j = np.take_along_axis(sl, j3, 2)[:, :, 0]
            c_j = self._cash_slopes(iv, last)
            e_j = np.take_along_axis(sc, j3, 2)[:, :, 0]
            lo_j = np.take_along_axis(kn, j3, 2)[:, :, 0]
            hi_j = np.take_along_axis(kn, j3 + 1, 2)[:, :, 0]
            coef = np.zeros((m, n_rows, n))
            coef[:, 0] = c_j
            coef[:, 1] = e_j
            if k:
                coef[:, 2 : 2 + k] = g_mat[None]
                coef[:, 2 + k :] = -g_mat[None]
            x_fix = np.where(fr, lo_j, fv)
            cash0, st0 = self._row_values(rw, sc, x_fix, st_rows)
            gx = x_fix @ g_mat.T
            base = np.hstack([cash0[:, None], st0[:, None], gx, -gx])
            coef_free = coef * fr[:, None, :]
            qx_fixed = np.where(fr, 0.0, fv) @ self.q_mat
            rhs_free = -qd_all[r] - s_j - qx_fixed
            rhs_rows = rhs_row[r] - base + (coef_free * x_fix[:, None, :]).sum(axis=2)
            rhs_rows = np.where(ac & np.isfinite(rhs_rows), rhs_rows, 0.0)
            x, lam = self._kkt_solve(fr, fv, ac, coef_free, rhs_free, rhs_rows)
            # The certificate: every optimality condition checked on (x, lam) directly.
            below = fr & (x < lo_j - _TOL)
            above = fr & (x > hi_j + _TOL)
            cv, sv = self._row_values(rw, sc, x, st_rows)
            gx = x @ g_mat.T
            row_v = np.hstack([cv[:, None], sv[:, None], gx, -gx])
            over = row_v > rhs_row[r] + _TOL
            viol_row = over & ~ac
            slack_bad = ac & (over | ((lam > _DUAL_TOL) & (row_v < rhs_row[r] - _TOL)))
            neg_lam = ac & (lam < -_DUAL_TOL)
            cash_nj = np.concatenate(
                [np.repeat((1 - t)[:, None], last, axis=1), (1 + t)[:, None]], axis=1
            )
            comb = sl + lam[:, 0, None, None] * cash_nj + lam[:, 1, None, None] * sc
            grad = (x + d["d0"][r]) @ self.q_mat
            if k:
                grad = grad + (lam[:, 2 : 2 + k] - lam[:, 2 + k :]) @ g_mat
            comb_j = np.take_along_axis(comb, j3, 2)[:, :, 0]
            station_bad = fr & (np.abs(grad + comb_j) > _DUAL_TOL)
            pos = (kn[:, :, 1:] - kn[:, :, :-1]) > 0
            left_of = pos & (kn[:, :, 1:] <= x[:, :, None] + _TOL)
            right_of = pos & (kn[:, :, :-1] >= x[:, :, None] - _TOL)
            # An interval narrower than the tolerance (a sliver of a lot) is on one side only:
            # the side its midpoint is on.
            both = left_of & right_of
            if both.any():
                past_mid = 2 * x[:, :, None] >= kn[:, :, 1:] + kn[:, :, :-1]
                left_of &= ~both | past_mid
                right_of &= ~both | ~past_mid
            left = _masked_reduce(np.maximum, left_of, comb, -np.inf)
            right = _masked_reduce(np.minimum, right_of, comb, np.inf)
            want_left = ~fr & (-grad < left - _DUAL_TOL)
            want_right = ~fr & (-grad > right + _DUAL_TOL)
            # Lots must stay sorted by cost at the solved short-term multiplier.
            order_bad = np.zeros(m, dtype=bool)
            if st_rows.size:
                rs = r[st_rows]
                key = d["lot_c"][rs] + lam[st_rows, 1, None, None] * d["lot_st"][rs]
                key = np.where(d["lot_w"][rs] > 0, key, np.nan)
                diffs = np.nan_to_num(np.diff(key, axis=2), nan=0.0)
                order_bad[st_rows] = (diffs < -1e-12).any(axis=(1, 2))
            fail = (
                (below | above | want_left | want_right | station_bad).any(axis=1)
                | (viol_row | slack_bad | neg_lam).any(axis=1)
                | ~np.isfinite(x).all(axis=1)
            )
            fail |= order_bad
            good = r[~fail]
            ok[good] = True
            x_out[good] = x[~fail]
            mu_out[good] = lam[~fail, 1]
            # Repair the statuses of the failing accounts (primal-dual active set).
            f = fail
            fv2 = np.where(below, lo_j, np.where(above, hi_j, fv))
            fr2 = fr & ~(below | above)
            pos_idx = np.arange(pos.shape[2])[None, None, :]
            left_int = np.where(left_of[f], pos_idx, -1).max(axis=2)
            right_int = np.where(right_of[f], pos_idx, 10**6).min(axis=2)
            go_left = want_left[f] & (left_int >= 0)
            go_right = want_right[f] & (right_int < 10**6)
            iv2 = np.where(go_left, left_int, np.where(go_right, right_int, iv[f]))
            fr2 = fr2[f] | go_left | go_right
            ac2 = (ac & ~neg_lam) | viol_row
            rf = r[f]
            fixed_val[rf], free[rf], interval[rf], act[rf] = fv2[f], fr2, iv2, ac2[f]
            stalled = stalled + 1 if rf.size == m else 0
            todo = rf
        return ok, x_out, mu_out

    def _kkt_solve(self, fr, fv, ac, coef_free, rhs_free, rhs_rows):
        """Net trades ``x`` and row multipliers of the equality-constrained problem given by
        the statuses: free instruments ``fr`` (others fixed at ``fv``), active rows ``ac``.

        The KKT system is gathered over each account's free instruments only (fixed ones are
        known), free ones first, padded with identity rows; accounts are bucketed by how many
        are free so that a few accounts with many do not size everyone's system.
        """
        m, n = fr.shape
        n_rows = ac.shape[1]
        n_free = fr.sum(axis=1)
        x = np.where(fr, 0.0, fv)
        lam = np.zeros((m, n_rows))
        q_flat = self.q_mat.reshape(-1)
        diag_q = np.diag(self.q_mat)
        lower = 0
        buckets = (*_FREE_BUCKETS, n) if m >= 64 else (n,)  # few accounts: one system
        for upper in buckets:
            rows = (
                np.flatnonzero((n_free > lower) & (n_free <= upper))
                if lower
                else np.flatnonzero(n_free <= upper)
            )
            lower = upper
            if rows.size == 0:
                continue
            fr_b = fr[rows]
            width = max(1, int(n_free[rows].max()))
            perm = np.argsort(~fr_b, axis=1, kind="stable")[:, :width]
            valid = np.arange(width)[None, :] < n_free[rows, None]
            # Only the constraint rows active somewhere in this bucket enter its systems
            # (usually the cash row alone): smaller systems, same answer.
            used = np.flatnonzero(ac[rows].any(axis=0))
            ac_b = ac[rows][:, used]
            n_used = used.size
            size = width + n_used
            kkt = np.zeros((rows.size, size, size))
            both = valid[:, :, None] & valid[:, None, :]
            q_ff = q_flat[perm[:, :, None] * n + perm[:, None, :]]
            kkt[:, :width, :width] = np.where(both, q_ff, 0.0)
            widx = np.arange(width)
            kkt[:, widx, widx] = np.where(valid, diag_q[perm], 1.0)
            if n_used:
                rows_on = (
                    np.take_along_axis(
                        coef_free[rows][:, used] * ac_b[:, :, None], perm[:, None, :], axis=2
                    )
                    * valid[:, None, :]
                )
                kkt[:, :width, width:] = np.swapaxes(rows_on, 1, 2)
                kkt[:, width:, :width] = rows_on
                ridx = width + np.arange(n_used)
                kkt[:, ridx, ridx] = np.where(ac_b, -1e-14, 1.0)
            rhs = np.empty((rows.size, size))
            rhs[:, :width] = np.where(valid, np.take_along_axis(rhs_free[rows], perm, axis=1), 0.0)
            rhs[:, width:] = rhs_rows[rows][:, used]
            with np.errstate(all="ignore"):
                try:
                    sol = np.linalg.solve(kkt, rhs[:, :, None])[:, :, 0]
                except np.linalg.LinAlgError:
                    sol = np.stack([_safe_solve(kkt[i], rhs[i]) for i in range(rows.size)])
            x_b = x[rows]
            np.put_along_axis(
                x_b,
                perm,
                np.where(valid, sol[:, :width], np.take_along_axis(x_b, perm, axis=1)),
                axis=1,
            )
            x[rows] = x_b
            lam_b = np.zeros((rows.size, n_rows))
            lam_b[:, used] = np.where(ac_b, sol[:, width:], 0.0)
            lam[rows] = lam_b
        return x, lam

    # ---------------------------------------------------------------- lots
    @staticmethod
    def _to_lots(batch: _Batch, x: np.ndarray, done: np.ndarray, n_lots: int):
        """Net trades per instrument to buys and sells per lot (cheapest lots first)."""
        xd = np.where(done[:, None], x, 0.0)
        buys = _clip(xd, 0.0, batch.buy_max)
        sold = np.maximum(-xd, 0.0)
        edges = _cumsum_last(batch.lot_w) - batch.lot_w
        take = _clip(sold[:, :, None] - edges, 0.0, batch.lot_w)
        sells = np.zeros(n_lots)
        m = batch.lot_idx >= 0
        sells[batch.lot_idx[m]] = take[m]
        return buys, sells


# Reductions over the last, short axis (lots of an instrument) are several times faster as a
# few operations on whole (B, n) slices than as numpy reductions along that axis.
def _sum_last(x: np.ndarray) -> np.ndarray:
    return np.einsum("...j->...", x)


def _reduce_last(ufunc, x: np.ndarray) -> np.ndarray:
    out = x[..., 0].copy()
    for k in range(1, x.shape[-1]):
        ufunc(out, x[..., k], out=out)
    return out


def _masked_reduce(ufunc, mask: np.ndarray, x: np.ndarray, fill: float) -> np.ndarray:
    """``ufunc.reduce(np.where(mask, x, fill), axis=-1)``."""
    out = np.where(mask[..., 0], x[..., 0], fill)
    for k in range(1, x.shape[-1]):
        ufunc(out, np.where(mask[..., k], x[..., k], fill), out=out)
    return out


def _cumsum_last(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    out[..., 0] = x[..., 0]
    for k in range(1, x.shape[-1]):
        np.add(out[..., k - 1], x[..., k], out=out[..., k])
    return out


def _clip(x, lo, hi):
    """``np.clip`` without its overhead (several times faster on small arrays)."""
    return np.minimum(np.maximum(x, lo), hi)


def _safe_solve(mat: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(mat, rhs)
    except np.linalg.LinAlgError:
        return np.full(rhs.shape, np.nan)
