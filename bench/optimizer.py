"""Benchmark of the MyPortfolio optimizer against per-account cvxpy + Clarabel.

A seeded, realistic book: four model portfolios on universes of 16, 24, 32 and 40 instruments
(each with 4 gated alternatives, a 10-factor risk model), accounts with 1 to 8 lots per holding,
drifted from their model, and mixed customizations (restrictions, ESG screens, substitutions,
short-term gain budgets, withdrawals, minimum cash, household wash-sale history); see
``offchain.optimizer.synthetic``. Each model's accounts come as an ``AccountBook`` (Arrow
columns, exact decimals: the form a books-and-records export has), made before the timing.

For each book size (1,000 and 10,000 accounts) it measures:

- ``accounts_per_s``: accounts optimized per second of wall time by ``optimize_accounts`` (all
  four models, ``--workers`` processes), proposals with lot-level trades included;
- ``accounts_per_cpu_s``: accounts per CPU-second (this process and its workers), a figure
  that does not depend on the number of workers or on what else the machine is running;
- ``p50_ms`` / ``p99_ms``: latency of optimizing one account alone (an on-demand re-optimize),
  over the sample;
- ``mean_rel_gap`` / ``max_rel_gap``: ``(f - f*) / (f0 - f*)`` against the exact optimum of
  cvxpy + Clarabel, over a sample of ``--sample`` accounts (spread over the four models);
- ``speedup_vs_reference``: like with like, in CPU time of one process: the reference's CPU
  time per account (building the cvxpy problem and solving it with Clarabel, one account after
  another) divided by the engine's CPU time per account in the batch (every process counted,
  problem building and proposals included);
- ``speedup_wall_vs_reference``: wall time with the same number of worker processes on both
  sides: the sample's reference problems solved by ``--workers`` processes, per account,
  divided by the engine's wall time per account;
- ``render_all_proposals_cpu_ms_per_account``: the result is an exact Arrow trade table and
  summary; ``Proposal`` objects with their reason texts are rendered when read. This is the
  CPU of reading every one of them (not in the timings above), and
  ``speedup_with_every_proposal_rendered`` the speedup if it were;
- ``peak_mem_mib``: peak memory of this process and its workers, the larger of (a) the
  highest sum of their proportional set sizes (PSS, shared pages split between the processes
  that share them), sampled every 0.1 s, and (b) this process's peak RSS plus what each worker
  added on top of the pages it inherited. It includes the generated book
  (``input_data_mib``).

Timings are the median of ``--repeat`` runs of the engine on the same book (memory: the
highest); the load average at the end is recorded in ``meta``.

Usage: ``python bench/optimizer.py [--sizes 1000 10000] [--sample 200] [--workers 1]
[--repeat 3]``.
Writes ``bench/results/optimizer.json``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import threading
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
from offchain.optimizer.synthetic import make_book, make_universe

RESULTS = Path(__file__).resolve().parent / "results" / "optimizer.json"
UNIVERSE_SIZES = (16, 24, 32, 40)


def _book(n_accounts: int, seed: int):
    """Four models and their accounts (n_accounts in total), each model's accounts as an
    ``AccountBook`` (columns, as a firm's books-and-records export is) with their menus."""
    books = []
    for k, n_inst in enumerate(UNIVERSE_SIZES):
        model, market = make_universe(seed + k, n_inst)
        count = n_accounts // len(UNIVERSE_SIZES) + (k < n_accounts % len(UNIVERSE_SIZES))
        book, trades = make_book(model, market, count, seed=seed * 100 + k)
        books.append((model, market, book, None, trades))
    return books


def _rss_mib() -> float:
    """Current resident memory of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def _pss_mib(pid: int | str) -> float:
    """Proportional set size of one process (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _children() -> list[str]:
    pids: list[str] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += (task / "children").read_text().split()
        except OSError:
            continue
    return pids


class _MemorySampler(threading.Thread):
    """Samples the PSS of this process plus its children every ``interval`` s; keeps the peak
    and its own CPU time (which is not the engine's and is subtracted from it)."""

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak, self.cpu = interval, 0.0, 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        start = time.thread_time()
        while not self._stop_event.is_set():
            total = _pss_mib("self") + sum(_pss_mib(pid) for pid in _children())
            self.peak = max(self.peak, total)
            self._stop_event.wait(self.interval)
        self.cpu = time.thread_time() - start

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _peak_rss_mib(rss_at_fork: float, workers: int) -> float:
    """Peak RSS of this process plus what each forked worker added on top of the pages it
    shares with this process (a worker's RSS counts the inherited pages too)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return own + (workers * max(0.0, child - rss_at_fork) if workers > 1 else 0.0)


_REFERENCE_JOBS: list = []


def _reference_job(k: int) -> None:
    universe, problem = _REFERENCE_JOBS[k]
    solve_reference(universe, problem)


def _reference_wall(jobs: list, workers: int) -> float:
    """Wall time of solving ``jobs`` (universe, problem) with cvxpy + Clarabel on ``workers``
    forked processes (the engine's parallelism, given to the reference too)."""
    global _REFERENCE_JOBS
    _REFERENCE_JOBS = jobs
    try:
        start = time.perf_counter()
        if workers > 1:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                pool.map(_reference_job, range(len(jobs)), chunksize=4)
        else:
            for k in range(len(jobs)):
                _reference_job(k)
        return time.perf_counter() - start
    finally:
        _REFERENCE_JOBS = []


def _sample_check(books, sample: int, rng: np.random.Generator):
    """Gaps, feasibility, reference CPU time and single-account latency over a sample; also
    the sample's problems, for the reference's wall time with workers."""
    gaps, ref_cpu, latencies, jobs, worst = [], [], [], [], 0.0
    per_book = -(-sample // len(books))
    # Warm up both sides (imports, caches) outside the timings: cvxpy's import alone costs
    # about a second, which would inflate the reference's per-account time.
    model, market, book, customs, trades = books[0]
    warm = run_engine(model, book.take([0]), market, customs, trades)
    for solved in warm.solved.values():
        solve_reference(warm.universe, solved.problem)
    for model, market, book, customs, trades in books:
        picks = rng.choice(len(book), size=min(per_book, len(book)), replace=False)
        for idx in picks:
            one = book.take([int(idx)])
            start = time.perf_counter()
            run = run_engine(model, one, market, customs, trades)
            latencies.append(time.perf_counter() - start)
            solved = run.solved.get(one.account_ids[0])
            if solved is None:
                continue
            p, u = solved.problem, run.universe
            worst = max(worst, max(violations(u, p, solved.buys, solved.sells).values()))
            start = time.process_time()
            buys, sells, _ = solve_reference(u, p)
            ref_cpu.append(time.process_time() - start)
            jobs.append((u, p))
            f_star = objective(u, p, buys, sells)
            f = objective(u, p, solved.buys, solved.sells)
            f0 = objective(u, p, np.zeros(u.n), np.zeros(p.lot_instrument.size))
            gaps.append(relative_gap(f, f_star, f0))
    return np.array(gaps), np.array(ref_cpu), np.array(latencies), jobs, worst


def _timed_run(books, workers: int, rss_at_fork: float) -> tuple[float, float, float, int, int]:
    """One engine run over the book: (wall s, CPU s, peak MiB, skipped accounts, trades)."""
    sampler = _MemorySampler()
    sampler.start()
    cpu0, children0 = time.process_time(), os.times()
    start = time.perf_counter()
    errors = trades = 0
    for model, market, book, customs, history in books:
        result = optimize_accounts(model, book, market, customs, history, workers=workers)
        errors += len(result.errors)
        trades += result.trades.num_rows  # counted on the table: no Proposal is rendered
    elapsed = time.perf_counter() - start
    children1 = os.times()
    sampler.stop()
    cpu = (
        time.process_time()
        - cpu0
        - sampler.cpu
        + children1.children_user
        - children0.children_user
        + children1.children_system
        - children0.children_system
    )
    return elapsed, cpu, max(sampler.peak, _peak_rss_mib(rss_at_fork, workers)), errors, trades


def _render_cpu(books, workers: int) -> float:
    """CPU seconds to render every ``Proposal`` (texts and pydantic objects) of one run, on top
    of the run: what a reader of all proposals pays beyond the trade table."""
    results = [
        optimize_accounts(model, book, market, customs, history, workers=workers)
        for model, market, book, customs, history in books
    ]
    start = time.process_time()
    for result in results:
        for proposal in result.proposals:
            assert proposal.account_id
    return time.process_time() - start


def run_size(n_accounts: int, sample: int, workers: int, seed: int, repeat: int = 1) -> dict:
    """One row of the results table; timings are the median of ``repeat`` runs of the engine,
    memory the highest."""
    books = _book(n_accounts, seed)
    rss_at_fork = _rss_mib()
    runs = [_timed_run(books, workers, rss_at_fork) for _ in range(repeat)]
    elapsed = float(np.median([r[0] for r in runs]))
    cpu = float(np.median([r[1] for r in runs]))
    peak = max(r[2] for r in runs)
    errors, trades = runs[0][3], runs[0][4]
    render = _render_cpu(books, workers)
    gaps, ref_cpu, latencies, jobs, worst = _sample_check(
        books, sample, np.random.default_rng(seed)
    )
    ref_wall = _reference_wall(jobs, workers) / len(jobs)
    engine_cpu, engine_wall = cpu / n_accounts, elapsed / n_accounts
    return {
        "accounts": n_accounts,
        "accounts_per_s": round(n_accounts / elapsed, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1e3, 2),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 2),
        "mean_rel_gap": float(gaps.mean()),
        "max_rel_gap": float(gaps.max()),
        "speedup_vs_reference": round(float(ref_cpu.mean()) / engine_cpu, 1),
        "peak_mem_mib": round(peak, 1),
        "accounts_per_cpu_s": round(n_accounts / cpu, 1),
        "speedup_wall_vs_reference": round(ref_wall / engine_wall, 1),
        "engine_cpu_ms_per_account": round(engine_cpu * 1e3, 3),
        "reference_cpu_ms_per_account": round(float(ref_cpu.mean()) * 1e3, 2),
        "reference_wall_ms_per_account": round(ref_wall * 1e3, 2),
        "input_data_mib": round(rss_at_fork, 1),
        "sample": int(gaps.size),
        "max_violation": worst,
        "feasible": bool(worst <= FEASIBILITY_TOL),
        "skipped_accounts": errors,
        "trades_per_account": round(trades / max(1, n_accounts - errors), 1),
        "render_all_proposals_cpu_ms_per_account": round(render * 1e3 / n_accounts, 3),
        "speedup_with_every_proposal_rendered": round(
            float(ref_cpu.mean()) / (engine_cpu + render / n_accounts), 1
        ),
        "workers": workers,
        "wall_s": round(elapsed, 2),
        "repeats": repeat,
        "accounts_per_s_each": [round(n_accounts / r[0], 1) for r in runs],
        "accounts_per_cpu_s_each": [round(n_accounts / r[1], 1) for r in runs],
    }


@click.command()
@click.option("--sizes", multiple=True, type=int, default=(1000, 10000), show_default=True)
@click.option("--sample", type=int, default=200, show_default=True)
@click.option(
    "--workers",
    type=int,
    default=1,
    show_default=True,
    help="Worker processes of the engine (and of the reference's wall-time run).",
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--repeat",
    type=int,
    default=3,
    show_default=True,
    help="Engine runs per size; timings are their median.",
)
def main(sizes: tuple[int, ...], sample: int, workers: int, seed: int, repeat: int) -> None:
    """Run the optimizer benchmark and write bench/results/optimizer.json."""
    console = Console(width=170)
    runs = []
    for n in sizes:
        console.print(f"[bold]{n} accounts[/bold] ...")
        runs.append(run_size(n, sample, workers, seed, repeat))
    table = Table(title="MyPortfolio optimizer vs per-account cvxpy + Clarabel")
    columns = [
        "accounts",
        "accounts_per_s",
        "accounts_per_cpu_s",
        "p50_ms",
        "p99_ms",
        "mean_rel_gap",
        "max_rel_gap",
        "speedup_vs_reference",
        "speedup_wall_vs_reference",
        "peak_mem_mib",
        "sample",
        "max_violation",
    ]
    for col in columns:
        table.add_column(col, justify="right")
    for row in runs:
        table.add_row(
            *[f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        )
    console.print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine_cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "universe_sizes": list(UNIVERSE_SIZES),
        "seed": seed,
        "speedup_vs_reference": "reference CPU time per account (cvxpy problem built and "
        "solved by Clarabel, one account after another, one process) / engine CPU time per "
        "account (all processes, building and proposals included)",
        "speedup_wall_vs_reference": "reference wall time per account with the same number of "
        "worker processes / engine wall time per account",
    }
    RESULTS.write_text(json.dumps({"runs": runs, "meta": meta}, indent=2) + "\n")
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
