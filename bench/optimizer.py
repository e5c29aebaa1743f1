"""Benchmark of the MyPortfolio optimizer against per-account cvxpy + Clarabel.

A seeded, realistic book: four model portfolios on universes of 16, 24, 32 and 40 instruments
(each with 4 gated alternatives, a 10-factor risk model), accounts with 1 to 8 lots per holding,
drifted from their model, and mixed customizations (restrictions, ESG screens, substitutions,
short-term gain budgets, withdrawals, minimum cash, household wash-sale history); see
``offchain.optimizer.synthetic``.

For each book size (1,000 and 10,000 accounts) it measures:

- ``accounts_per_s``: accounts optimized per second of wall time by ``optimize_accounts`` (all
  four models, ``--workers`` processes), proposals with lot-level trades included;
- ``p50_ms`` / ``p99_ms``: latency of optimizing one account alone (an on-demand re-optimize),
  over the sample;
- ``mean_rel_gap`` / ``max_rel_gap``: ``(f - f*) / (f0 - f*)`` against the exact optimum of
  cvxpy + Clarabel, over a sample of ``--sample`` accounts (spread over the four models);
- ``speedup_vs_reference``: per-account time of cvxpy + Clarabel (problem construction and
  solve, over the sample) divided by the engine's per-account time in the batch;
- ``peak_mem_mib``: peak resident memory of this process (which also holds the generated
  book, ``input_data_mib``) plus what each worker process added;
- ``accounts_per_cpu_s``: accounts per CPU-second (this process and its workers), a figure
  that does not depend on what else the machine is running.

Usage: ``python bench/optimizer.py [--sizes 1000 10000] [--sample 200] [--workers 2]``.
Writes ``bench/results/optimizer.json``.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one BLAS thread per process: we fork

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from offchain.optimizer import optimize_accounts
from offchain.optimizer.engine import FEASIBILITY_TOL, run_engine
from offchain.optimizer.problem import objective, violations
from offchain.optimizer.reference import relative_gap, solve_reference
from offchain.optimizer.synthetic import make_accounts, make_universe

RESULTS = Path(__file__).resolve().parent / "results" / "optimizer.json"
UNIVERSE_SIZES = (16, 24, 32, 40)


def _book(n_accounts: int, seed: int):
    """Four models and their accounts (n_accounts in total)."""
    books = []
    for k, n_inst in enumerate(UNIVERSE_SIZES):
        model, market = make_universe(seed + k, n_inst)
        count = n_accounts // len(UNIVERSE_SIZES) + (k < n_accounts % len(UNIVERSE_SIZES))
        accounts, customs, trades = make_accounts(model, market, count, seed=seed * 100 + k)
        books.append((model, market, accounts, customs, trades))
    return books


def _rss_mib() -> float:
    """Current resident memory of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def _peak_mib(rss_at_fork: float, workers: int) -> float:
    """Peak of this process plus what each forked worker added on top of the pages it shares
    with this process (a worker's RSS counts the inherited pages too)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return own + (workers * max(0.0, child - rss_at_fork) if workers > 1 else 0.0)


def _sample_check(books, sample: int, rng: np.random.Generator):
    """Gaps, feasibility, reference time and single-account latency over a sample."""
    gaps, ref_times, latencies, worst = [], [], [], 0.0
    per_book = -(-sample // len(books))
    for model, market, accounts, customs, trades in books:
        picks = rng.choice(len(accounts), size=min(per_book, len(accounts)), replace=False)
        for idx in picks:
            account = accounts[int(idx)]
            start = time.perf_counter()
            run = run_engine(model, [account], market, customs, trades)
            latencies.append(time.perf_counter() - start)
            solved = run.solved.get(account.account_id)
            if solved is None:
                continue
            p, u = solved.problem, run.universe
            worst = max(worst, max(violations(u, p, solved.buys, solved.sells).values()))
            start = time.perf_counter()
            buys, sells, _ = solve_reference(u, p)
            ref_times.append(time.perf_counter() - start)
            f_star = objective(u, p, buys, sells)
            f = objective(u, p, solved.buys, solved.sells)
            f0 = objective(u, p, np.zeros(u.n), np.zeros(p.lot_instrument.size))
            gaps.append(relative_gap(f, f_star, f0))
    return np.array(gaps), np.array(ref_times), np.array(latencies), worst


def run_size(n_accounts: int, sample: int, workers: int, seed: int) -> dict:
    """One row of the results table."""
    books = _book(n_accounts, seed)
    rss_at_fork = _rss_mib()
    cpu0, children0 = time.process_time(), os.times()
    start = time.perf_counter()
    errors = trades = 0
    for model, market, accounts, customs, history in books:
        result = optimize_accounts(model, accounts, market, customs, history, workers=workers)
        errors += len(result.errors)
        trades += sum(len(p.trades) for p in result.proposals)
    elapsed = time.perf_counter() - start
    children1 = os.times()
    cpu = (time.process_time() - cpu0 + children1.children_user - children0.children_user
           + children1.children_system - children0.children_system)
    peak = _peak_mib(rss_at_fork, workers)
    gaps, ref_times, latencies, worst = _sample_check(books, sample, np.random.default_rng(seed))
    per_account = elapsed / n_accounts
    return {
        "accounts": n_accounts,
        "accounts_per_s": round(n_accounts / elapsed, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1e3, 2),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 2),
        "mean_rel_gap": float(gaps.mean()),
        "max_rel_gap": float(gaps.max()),
        "speedup_vs_reference": round(float(ref_times.mean()) / per_account, 1),
        "peak_mem_mib": round(peak, 1),
        "accounts_per_cpu_s": round(n_accounts / cpu, 1),
        "input_data_mib": round(rss_at_fork, 1),
        "sample": int(gaps.size),
        "max_violation": worst,
        "feasible": bool(worst <= FEASIBILITY_TOL),
        "reference_ms_per_account": round(float(ref_times.mean()) * 1e3, 2),
        "skipped_accounts": errors,
        "trades_per_account": round(trades / max(1, n_accounts - errors), 1),
        "workers": workers,
        "wall_s": round(elapsed, 2),
    }


@click.command()
@click.option("--sizes", multiple=True, type=int, default=(1000, 10000), show_default=True)
@click.option("--sample", type=int, default=200, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
def main(sizes: tuple[int, ...], sample: int, workers: int, seed: int) -> None:
    """Run the optimizer benchmark and write bench/results/optimizer.json."""
    console = Console(width=170)
    runs = []
    for n in sizes:
        console.print(f"[bold]{n} accounts[/bold] ...")
        runs.append(run_size(n, sample, workers, seed))
    table = Table(title="MyPortfolio optimizer vs per-account cvxpy + Clarabel")
    columns = ["accounts", "accounts_per_s", "accounts_per_cpu_s", "p50_ms", "p99_ms",
               "mean_rel_gap", "max_rel_gap", "speedup_vs_reference", "peak_mem_mib", "sample",
               "max_violation"]
    for col in columns:
        table.add_column(col, justify="right")
    for row in runs:
        table.add_row(*[f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c])
                        for c in columns])
    console.print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine_cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
            "universe_sizes": list(UNIVERSE_SIZES), "seed": seed}
    RESULTS.write_text(json.dumps({"runs": runs, "meta": meta}, indent=2) + "\n")
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
