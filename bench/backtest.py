"""Five-year backtest: the MyPortfolio optimizer against a plain drift-band rebalancer.

Simulated market (seeded, documented in ``PARAMS``): the 24-instrument synthetic universe of
``offchain.optimizer.synthetic`` (10-factor model, 4 gated alternatives). Daily returns are
``mu/252 + B f + e`` with factor shocks ``f`` multivariate Student-t (4 degrees of freedom,
fat tails) scaled to the model's factor covariance and specific shocks ``e`` Student-t scaled
to the specific variances; expected returns by asset class are in ``PARAMS``. Price returns only
(no dividends); trading costs are the model's per-instrument bps.

Accounts: 500, funded with cash on different start days during the first two years, each with
its own tax rates, a 5 % loss-harvest threshold, some with an ESG screen. Both strategies trade
the same accounts on the same price paths:

- ``engine``: ``optimize_accounts`` (tax-aware, lot by lot, wash sales across the account's own
  history), every trading day on every live account (``--every 1``, the default: one batch a
  day, the day's accounts read as an ``AccountBook`` built from the simulation's lot arrays).
  With ``--every k`` > 1 an account is optimized every k trading days (staggered) and on any
  day a daily check sees a position more than half its band away from target or a lot down
  more than the harvest threshold (at most once per 5 days per account).
- ``drift_band``: every day, if any position is more than 20 % (relative) away from its target
  weight or cash is above 5 %, sell and buy back to the target; lots sold first-in-first-out.

Taxes: realized gains are taxed at the account's short-/long-term rates when realized; net
losses are credited at the same rates (assumed usable against other income or gains). Taxes are
kept in a side ledger, so "after-tax value" is the pre-liquidation value minus taxes paid.

Results (``bench/results/backtest.json``), per strategy, averaged over accounts: annualized
pre-tax and after-tax return (also after liquidating every lot at the end, which taxes the gains
that harvesting only deferred), tax drag, tracking error to the account's model (annualized
std of daily return differences), annual turnover (one-way traded value / average value) and
the dispersion (cross-account std) of returns over the last two years, when every account is
live. ``tax_alpha_bps`` is the engine's after-tax return minus the drift-band rebalancer's, per
year, in basis points, with its distribution over accounts.

Usage: ``python bench/backtest.py [--accounts 500] [--years 5] [--every 1]``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from decimal import Decimal
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: threads only cost

import click
import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from offchain.optimizer import optimize_accounts
from offchain.optimizer.book import AccountBook, exact_decimals
from offchain.optimizer.inputs import (
    Account,
    Customizations,
    HouseholdTrade,
    MarketData,
    PricePoint,
    Screen,
    TaxSettings,
)
from offchain.optimizer.problem import ProblemBuilder, build_universe
from offchain.optimizer.synthetic import make_universe

RESULTS = Path(__file__).resolve().parent / "results" / "backtest.json"
PARAMS = {
    "seed": 11,
    "instruments": 24,
    "trading_days_per_year": 252,
    "student_t_df": 4,
    "expected_return_by_class": {"us_equity": 0.07, "intl_equity": 0.06, "bonds": 0.03,
                                 "real_assets": 0.05, "alternatives": 0.06},
    "start": "2021-01-04",
    "start_spread_years": 2,
    "initial_value_range": [100_000, 1_000_000],
    "band_relative": 0.20,
    "band_cash": 0.05,
    "harvest_threshold": 0.05,
}


def simulate_prices(model, market, years: int, rng) -> tuple[list[dt.date], np.ndarray]:
    """Daily prices (days+1, n) from the factor model with Student-t shocks."""
    symbols = [i.symbol for i in model.instruments]
    days = years * PARAMS["trading_days_per_year"]
    df = PARAMS["student_t_df"]
    rm = market.risk_model
    f_cov = np.asarray(rm.factor_covariance) / 252
    loadings = np.array([rm.loadings[s] for s in symbols])
    spec = np.sqrt(np.array([rm.specific_variance[s] for s in symbols]) / 252)
    mu = np.array([PARAMS["expected_return_by_class"][i.asset_class] for i in model.instruments])
    scale = np.sqrt((df - 2) / df)  # unit-variance Student-t
    f_chol = np.linalg.cholesky(f_cov)
    f = (rng.standard_t(df, size=(days, f_cov.shape[0])) * scale) @ f_chol.T
    e = rng.standard_t(df, size=(days, len(symbols))) * scale * spec
    returns = np.clip(mu / 252 + f @ loadings.T + e, -0.5, 0.5)
    start = np.array([float(market.prices[s].price) for s in symbols])
    prices = np.vstack([start, start * np.cumprod(1 + returns, axis=0)])
    first = dt.date.fromisoformat(PARAMS["start"])
    dates = [d.astype(object) for d in np.busday_offset(np.datetime64(first), np.arange(days + 1),
                                                        roll="forward")]
    return dates, prices


class Book:
    """One account under one strategy: lots as arrays, cash, and its tax and trade ledgers."""

    def __init__(self, n: int, cash: float) -> None:
        self.sym = np.zeros(0, dtype=np.int64)
        self.qty = np.zeros(0)
        self.basis = np.zeros(0)
        self.acq = np.zeros(0, dtype=np.int64)
        self.cash = cash
        self.tax = 0.0
        self.traded = 0.0
        self.history: list[tuple[int, int, str, float]] = []  # (day ordinal, sym, side, gain)
        self.n = n
        self.funding = cash

    def value(self, px: np.ndarray) -> float:
        return self.cash + float(self.qty @ px[self.sym]) if self.qty.size else self.cash

    def weights(self, px: np.ndarray) -> np.ndarray:
        held = np.bincount(self.sym, weights=self.qty * px[self.sym], minlength=self.n)
        return held / self.value(px)

    def buy(self, i: int, qty: float, price: float, cost_bps: float, day: int) -> None:
        if qty <= 0:
            return
        value = qty * price
        self.cash -= value * (1 + cost_bps / 1e4)
        self.traded += value
        self.sym = np.append(self.sym, i)
        self.qty = np.append(self.qty, qty)
        self.basis = np.append(self.basis, price)
        self.acq = np.append(self.acq, day)
        self.history.append((day, i, "buy", 0.0))

    def sell_lot(self, k: int, qty: float, price: float, cost_bps: float, day: int,
                 rates: tuple[float, float], long_cutoff: int) -> None:
        qty = min(qty, self.qty[k])
        if qty <= 0:
            return
        value = qty * price
        self.cash += value * (1 - cost_bps / 1e4)
        self.traded += value
        gain = qty * (price - self.basis[k])
        long = self.acq[k] <= long_cutoff
        self.tax += gain * (rates[1] if long else rates[0])
        self.qty[k] -= qty
        self.history.append((day, int(self.sym[k]), "sell", gain))

    def compact(self) -> None:
        keep = self.qty > 1e-9
        self.sym, self.qty, self.basis, self.acq = (self.sym[keep], self.qty[keep],
                                                    self.basis[keep], self.acq[keep])


def long_cutoff(day: dt.date) -> int:
    """Lots acquired on or before this ordinal are long-term on ``day``."""
    try:
        return day.replace(year=day.year - 1).toordinal() - 1
    except ValueError:
        return day.replace(year=day.year - 1, day=28).toordinal() - 1


def run(accounts: int, years: int, every: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    model, market0 = make_universe(seed, PARAMS["instruments"])
    symbols = [i.symbol for i in model.instruments]
    n = len(symbols)
    dates, prices = simulate_prices(model, market0, years, rng)
    cost = np.array([market0.cost_bps[s] for s in symbols])
    universe = build_universe(model, market0)
    builder = ProblemBuilder(universe, model, market0, [], dates[0])
    spread = PARAMS["start_spread_years"] * PARAMS["trading_days_per_year"]
    starts = np.sort(rng.integers(0, spread, size=accounts))
    customs, targets, rates = [], [], []
    for _ in range(accounts):
        st_rate = float(rng.choice([0.32, 0.35, 0.37, 0.408]))
        lt_rate = float(rng.choice([0.15, 0.20, 0.238]))
        screens = (Screen(attribute="esg_score", op=">=", value=3.0),) if rng.random() < 0.15 \
            else ()
        custom = Customizations(screens=screens, tax=TaxSettings(
            short_term_rate=st_rate, long_term_rate=lt_rate,
            loss_harvest_threshold=PARAMS["harvest_threshold"], defer_short_term_days=31))
        customs.append(custom)
        rates.append((st_rate, lt_rate))
        probe = builder.build(Account(account_id="probe", household_id="p", cash=Decimal(1000)),
                              custom)
        targets.append(probe.model)
    init = rng.uniform(*PARAMS["initial_value_range"], size=accounts)
    books = {s: [Book(n, float(init[a])) for a in range(accounts)] for s in ("engine", "band")}
    daily = {s: np.full((accounts, len(dates)), np.nan) for s in books}  # pre-tax value
    taxes = {s: np.full((accounts, len(dates)), np.nan) for s in books}  # taxes paid so far
    model_ret = np.full((accounts, len(dates)), np.nan)
    last_opt = np.full(accounts, -10**6)
    engine_calls = 0
    t0 = time.perf_counter()
    with Progress(transient=True) as progress:
        task = progress.add_task("simulating", total=len(dates))
        for t, day in enumerate(dates):
            px = prices[t]
            ordinal = day.toordinal()
            cutoff = long_cutoff(day)
            live = np.flatnonzero(starts <= t)
            # Book-keeping of returns (before today's trades, after today's prices).
            if t > 0:
                r = prices[t] / prices[t - 1] - 1
                for a in live:
                    if starts[a] < t:
                        model_ret[a, t] = float(targets[a] @ r)
            due = []
            for a in live:
                book = books["engine"][a]
                if starts[a] == t or (t - starts[a]) % every == 0:
                    due.append(a)
                    continue
                if t - last_opt[a] < 5:
                    continue
                w = book.weights(px)
                drift = np.abs(w - targets[a]) > 0.5 * PARAMS["band_relative"] * targets[a] + 1e-3
                losses = (px[book.sym] < book.basis * (1 - PARAMS["harvest_threshold"])).any()
                if drift.any() or losses:
                    due.append(a)
            if due:
                engine_calls += len(due)
                last_opt[due] = t
                _engine_day(model, market0, symbols, books["engine"], customs, rates, due,
                            day, px, cost, cutoff)
            for a in live:
                _band_day(books["band"][a], targets[a], px, cost, ordinal, rates[a], cutoff)
            for s in books:
                for a in live:
                    if starts[a] == t:
                        books[s][a].traded = 0.0  # the initial investment is not turnover
                    daily[s][a, t] = books[s][a].value(px)
                    taxes[s][a, t] = books[s][a].tax
            progress.advance(task)
    elapsed = time.perf_counter() - t0
    # Liquidation at the end: tax on every unrealized gain at the lot's rate.
    last, cutoff = prices[-1], long_cutoff(dates[-1])
    liquidation = {}
    for s, book_list in books.items():
        liquidation[s] = np.array([
            float(((last[b.sym] - b.basis) * b.qty
                   * np.where(b.acq <= cutoff, rates[a][1], rates[a][0])).sum())
            for a, b in enumerate(book_list)])
    return _summarize(books, daily, taxes, model_ret, starts, dates, engine_calls, elapsed,
                      accounts, years, every, liquidation)


def _engine_day(model, market0, symbols, books, customs, rates, due, day, px, cost, cutoff):
    now = dt.datetime.combine(day, dt.time(21, 0), tzinfo=dt.UTC)
    market = MarketData(
        as_of=now,
        prices={s: PricePoint(price=Decimal(f"{px[i]:.6f}"), timestamp=now)
                for i, s in enumerate(symbols)},
        risk_model=market0.risk_model, cost_bps=market0.cost_bps, capacity=market0.capacity)
    ordinal = day.toordinal()
    book = _day_book(symbols, books, customs, due)
    history = []
    for a in due:
        for d, i, side, gain in books[a].history:
            if ordinal - d <= 31:
                history.append(HouseholdTrade(
                    household_id=str(a), account_id=str(a), symbol=symbols[i], side=side,
                    quantity=Decimal(1), trade_date=dt.date.fromordinal(d),
                    realized_gain=Decimal(f"{gain:.2f}") if side == "sell" else None))
    trades = optimize_accounts(model, book, market, None, history, day).trades
    if trades.num_rows == 0:
        return
    index = {s: i for i, s in enumerate(symbols)}
    columns = trades.select(["account_id", "symbol", "side", "lot_id", "quantity"]).to_pydict()
    rows = list(zip(*columns.values(), strict=True))
    for account_id, symbol, side, lot_id, qty in rows:  # sells first: they fund the buys
        if side == "sell":
            a, i = int(account_id), index[symbol]
            books[a].sell_lot(int(lot_id), float(qty), px[i], cost[i], ordinal, rates[a], cutoff)
    for account_id, symbol, side, _, qty in rows:
        if side == "buy":
            a, i = int(account_id), index[symbol]
            books[a].buy(i, float(qty), px[i], cost[i], ordinal)


def _day_book(symbols, books, customs, due) -> AccountBook:
    """The ``due`` accounts as an ``AccountBook`` built in columns from the simulation's lot
    arrays (quantities to 1e-8 units, cost bases to 1e-6, cash to the cent); a lot's id is its
    position in the account's arrays; account ``a``'s menu is ``customs[a]``."""
    for a in due:
        books[a].compact()
    sizes = np.array([books[a].qty.size for a in due], dtype=np.int64)
    cat = (lambda name: np.concatenate([getattr(books[a], name) for a in due])) if due else None
    epoch = dt.date(1970, 1, 1).toordinal()
    position = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    ids = pa.array([str(a) for a in due], pa.string())
    accounts = pa.table({
        "account_id": ids,
        "household_id": ids,
        "cash": exact_decimals(np.round([max(books[a].cash, 0.0) for a in due], 2), 2),
        "menu": pa.array(due, pa.int32()),
    })
    lots = pa.table({
        "account": pa.array(np.repeat(np.arange(len(due)), sizes), pa.int32()),
        "symbol": pa.DictionaryArray.from_arrays(pa.array(cat("sym").astype(np.int32)),
                                                 pa.array(symbols)),
        "lot_id": pa.array(position).cast(pa.string()),
        "quantity": exact_decimals(np.round(cat("qty"), 8), 8),
        "cost_basis": exact_decimals(np.round(cat("basis"), 6), 6),
        "acquired": pa.array((cat("acq") - epoch).astype(np.int32)).cast(pa.date32()),
    })
    return AccountBook(accounts, lots, None, customs)


def _band_day(book: Book, target, px, cost, ordinal, rates, cutoff) -> None:
    value = book.value(px)
    w = book.weights(px)
    cash_w = book.cash / value
    off = np.abs(w - target) > PARAMS["band_relative"] * target + 1e-12
    if not off.any() and cash_w <= PARAMS["band_cash"] and book.qty.size:
        return
    want = target * value
    held = w * value
    for i in np.flatnonzero(held > want + 1e-6):
        excess = (held[i] - want[i]) / px[i]
        for k in np.flatnonzero(book.sym == i)[np.argsort(book.acq[book.sym == i],
                                                          kind="stable")]:
            if excess <= 1e-12:
                break
            take = min(excess, book.qty[k])
            book.sell_lot(int(k), take, px[i], cost[i], ordinal, rates, cutoff)
            excess -= take
    book.compact()
    for i in np.flatnonzero(held < want - 1e-6):
        spend = min(want[i] - held[i], max(0.0, book.cash) / (1 + cost[i] / 1e4))
        book.buy(int(i), spend / px[i], px[i], cost[i], ordinal)


def _summarize(books, daily, taxes, model_ret, starts, dates, engine_calls, elapsed,
               accounts, years, every, liquidation):
    tdy = PARAMS["trading_days_per_year"]
    end = len(dates) - 1
    window = end - 2 * tdy
    out: dict = {"params": {**PARAMS, "accounts": accounts, "years": years,
                            "engine_every_days": every},
                 "engine_optimizations": engine_calls, "runtime_s": round(elapsed, 1)}
    after, liquidated = {}, {}
    for s, table in books.items():
        pre_ret, aft_ret, liq_ret, te, turnover, last2 = [], [], [], [], [], []
        for a in range(accounts):
            t0 = starts[a]
            span = (end - t0) / tdy
            funding = table[a].funding
            pre = daily[s][a]
            post = pre - taxes[s][a]
            pre_ret.append((pre[end] / funding) ** (1 / span) - 1)
            aft_ret.append((post[end] / funding) ** (1 / span) - 1)
            liq_ret.append(((post[end] - liquidation[s][a]) / funding) ** (1 / span) - 1)
            r = pre[t0 + 1:] / pre[t0:-1] - 1
            te.append(float(np.std(r - model_ret[a, t0 + 1:]) * np.sqrt(tdy)))
            turnover.append(table[a].traded / 2 / float(np.mean(pre[t0:])) / span)
            last2.append(post[end] / post[window] - 1)
        after[s] = np.array(aft_ret)
        liquidated[s] = np.array(liq_ret)
        out[s] = {
            "pre_tax_return": float(np.mean(pre_ret)),
            "after_tax_return": float(np.mean(aft_ret)),
            "after_tax_liquidated_return": float(np.mean(liq_ret)),
            "tax_drag_bps": float((np.mean(pre_ret) - np.mean(aft_ret)) * 1e4),
            "tracking_error": float(np.mean(te)),
            "turnover_per_year": float(np.mean(turnover)),
            "dispersion_last_2y": float(np.std(last2)),
        }
    alpha = (after["engine"] - after["band"]) * 1e4
    out["tax_alpha_bps"] = {
        "mean": float(alpha.mean()), "median": float(np.median(alpha)),
        "p10": float(np.percentile(alpha, 10)), "p90": float(np.percentile(alpha, 90)),
    }
    liq = (liquidated["engine"] - liquidated["band"]) * 1e4
    out["tax_alpha_liquidated_bps"] = {"mean": float(liq.mean()), "median": float(np.median(liq))}
    return out


@click.command()
@click.option("--accounts", type=int, default=500, show_default=True)
@click.option("--years", type=int, default=5, show_default=True)
@click.option("--every", type=int, default=1, show_default=True,
              help="Trading days between scheduled optimizations of an account (1: daily).")
@click.option("--seed", type=int, default=PARAMS["seed"], show_default=True)
def main(accounts: int, years: int, every: int, seed: int) -> None:
    """Run the backtest and write bench/results/backtest.json."""
    console = Console()
    out = run(accounts, years, every, seed)
    table = Table(title=f"Backtest: {accounts} accounts, {years} years")
    for col in ("strategy", "pre-tax %/yr", "after-tax %/yr", "tax drag bp", "TE %",
                "turnover %/yr", "dispersion %"):
        table.add_column(col, justify="right")
    for s in ("engine", "band"):
        r = out[s]
        table.add_row(s, f"{r['pre_tax_return'] * 100:.2f}", f"{r['after_tax_return'] * 100:.2f}",
                      f"{r['tax_drag_bps']:.0f}", f"{r['tracking_error'] * 100:.2f}",
                      f"{r['turnover_per_year'] * 100:.1f}", f"{r['dispersion_last_2y'] * 100:.2f}")
    console.print(table)
    alpha = out["tax_alpha_bps"]
    console.print(f"tax alpha (after-tax, engine - drift band): mean {alpha['mean']:.0f} bp/yr, "
                  f"median {alpha['median']:.0f}, p10 {alpha['p10']:.0f}, p90 {alpha['p90']:.0f}"
                  f"; after liquidation {out['tax_alpha_liquidated_bps']['mean']:.0f} bp/yr"
                  f"; runtime {out['runtime_s']} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
