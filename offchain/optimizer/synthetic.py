"""A seeded, realistic synthetic universe and book of accounts.

Used by the tests, the benchmarks and the demo. Everything is deterministic given ``seed``.

Universe: ``n_instruments`` funds (16 to 40) of which 4 are alternatives (gated, 60-120 bps to
trade); the rest are ETFs (2-6 bps) and mutual funds (5-12 bps) on "indexes". Each index has
a model ETF, and some have a mutual-fund share class of the same index (same wash group:
substantially identical) and a look-alike ETF on a different index (another wash group: the
tax-loss-harvesting partner). A 10-factor model (equity market, rates, credit, international,
emerging, size, value, momentum, real assets, hedge-fund beta) gives the covariance.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from offchain.optimizer.book import AccountBook, exact_decimals
from offchain.optimizer.inputs import (
    Account,
    Customizations,
    HouseholdTrade,
    Instrument,
    InstrumentKind,
    MarketData,
    ModelPortfolio,
    PricePoint,
    RiskModel,
    Screen,
    TaxLot,
    TaxSettings,
)

N_FACTORS = 10
FACTOR_VOL = np.array([0.16, 0.06, 0.05, 0.08, 0.10, 0.06, 0.05, 0.07, 0.10, 0.06])
CLASS_TEMPLATES = {
    # asset class -> mean loadings on the 10 factors
    "us_equity": [1.0, -0.1, 0.1, 0.0, 0.0, 0.2, 0.1, 0.1, 0.0, 0.0],
    "intl_equity": [0.85, -0.1, 0.1, 0.6, 0.2, 0.1, 0.15, 0.05, 0.0, 0.0],
    "bonds": [0.05, 1.0, 0.4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.05, 0.0],
    "real_assets": [0.5, 0.3, 0.1, 0.1, 0.0, 0.1, 0.2, 0.0, 0.9, 0.0],
    "alternatives": [0.3, 0.1, 0.3, 0.05, 0.05, 0.0, 0.0, 0.1, 0.1, 1.0],
}
CLASS_SHARE = {"us_equity": 0.4, "intl_equity": 0.25, "bonds": 0.25, "real_assets": 0.1}


def make_universe(
    seed: int = 0, n_instruments: int = 24, as_of: dt.datetime | None = None
) -> tuple[ModelPortfolio, MarketData]:
    """A model portfolio and its market data. Raises ``ValueError`` unless 16 <= n <= 40."""
    if not 16 <= n_instruments <= 40:
        raise ValueError(f"n_instruments: expected 16..40, got {n_instruments}")
    rng = np.random.default_rng(seed)
    as_of = as_of or dt.datetime(2026, 11, 20, 21, 0, tzinfo=dt.UTC)
    n_liquid = n_instruments - 4
    instruments: list[Instrument] = []
    loadings: dict[str, tuple[float, ...]] = {}
    spec: dict[str, float] = {}
    cost: dict[str, float] = {}
    weights: dict[str, Decimal] = {}
    approved: set[str] = set()
    classes = list(CLASS_SHARE)
    # Indexes: each gets a model ETF plus optional relatives until the liquid count is reached.
    idx = 0
    index_members: list[tuple[str, list[str]]] = []
    while len(instruments) < n_liquid:
        cls = classes[idx % len(classes)] if idx < 4 else rng.choice(
            classes, p=[CLASS_SHARE[c] for c in classes])
        base = np.array(CLASS_TEMPLATES[cls]) + rng.normal(0, 0.08, N_FACTORS)
        group = f"IDX{idx}"
        members: list[str] = []
        kinds = [("E", InstrumentKind.ETF, group, 0.0)]
        if rng.random() < 0.5:
            kinds.append(("M", InstrumentKind.MUTUAL_FUND, group, 0.0))
        if rng.random() < 0.7:
            kinds.append(("P", InstrumentKind.ETF, f"IDX{idx}P", 0.05))
        for tag, kind, wash, jitter in kinds:
            if len(instruments) >= n_liquid:
                break
            sym = f"{cls[:2].upper()}{idx}{tag}"
            esg = float(np.round(rng.uniform(2, 9), 1))
            instruments.append(Instrument(
                symbol=sym, kind=kind, asset_class=cls, wash_group=wash,
                attributes={"esg_score": esg, "fossil_fuels": bool(rng.random() < 0.2)}))
            loadings[sym] = tuple(float(v) for v in base + rng.normal(0, jitter + 0.005, N_FACTORS))
            spec[sym] = float((0.01 + (0.04 if jitter else 0.0)) ** 2 + rng.uniform(0, 2e-4))
            etf = kind is InstrumentKind.ETF
            cost[sym] = float(rng.uniform(2, 6) if etf else rng.uniform(5, 12))
            members.append(sym)
            approved.add(sym)
        index_members.append((cls, members))
        idx += 1
    for k in range(4):
        sym = f"ALT{k}"
        instruments.append(Instrument(
            symbol=sym, kind=InstrumentKind.ALTERNATIVE, asset_class="alternatives",
            wash_group=sym, attributes={"esg_score": float(np.round(rng.uniform(3, 8), 1))}))
        base = np.array(CLASS_TEMPLATES["alternatives"]) + rng.normal(0, 0.15, N_FACTORS)
        loadings[sym] = tuple(float(v) for v in base)
        spec[sym] = float(rng.uniform(0.05, 0.10) ** 2)
        cost[sym] = float(rng.uniform(60, 120))
        approved.add(sym)
    # Model weights: 2% cash, 10% alternatives, the rest by class over the model ETFs.
    alt_w = Decimal("0.10")
    for k in range(4):
        weights[f"ALT{k}"] = alt_w / 4
    per_class: dict[str, list[str]] = {c: [] for c in classes}
    for cls, members in index_members:
        per_class[cls].append(members[0])
    for cls, syms in per_class.items():
        share = Decimal(repr(CLASS_SHARE[cls])) * Decimal("0.88")
        raw = rng.uniform(0.5, 1.5, len(syms))
        raw = raw / raw.sum()
        for sym, r in zip(syms, raw, strict=True):
            weights[sym] = (share * Decimal(repr(float(r)))).quantize(Decimal("0.0001"))
    f_corr = 0.15 * np.ones((N_FACTORS, N_FACTORS)) + 0.85 * np.eye(N_FACTORS)
    f_corr[0, 1] = f_corr[1, 0] = -0.2
    f_cov = np.outer(FACTOR_VOL, FACTOR_VOL) * f_corr
    prices = {
        s: PricePoint(price=Decimal(repr(round(float(rng.uniform(20, 400)), 2))),
                      timestamp=as_of - dt.timedelta(hours=2))
        for s in (i.symbol for i in instruments)
    }
    model = ModelPortfolio(
        model_id=f"growth-{seed}",
        instruments=tuple(instruments),
        security_weights=weights,
        approved=frozenset(approved),
        max_position_weight=Decimal("0.25"),
        asset_class_limits={
            "us_equity": (Decimal("0.25"), Decimal("0.55")),
            "bonds": (Decimal("0.10"), Decimal("0.40")),
            "alternatives": (Decimal(0), Decimal("0.15")),
        },
        drift_band=Decimal("0.03"),
    )
    market = MarketData(
        as_of=as_of,
        prices=prices,
        risk_model=RiskModel(
            factor_covariance=tuple(tuple(float(v) for v in row) for row in f_cov),
            loadings=loadings,
            specific_variance=spec,
        ),
        cost_bps=cost,
        capacity={f"ALT{k}": Decimal(50_000) for k in range(4)},
    )
    return model, market


@dataclass
class _Draws:
    """What ``make_accounts`` draws, before it becomes pydantic objects or Arrow columns: per
    account (id, household, mode, cash rounded to cents as a float) and per lot (account row,
    instrument, number within its holding, quantity rounded to 1e-6 and cost basis rounded to
    1e-4 as floats, age in days)."""

    ids: list[str] = field(default_factory=list)
    households: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    cash: list[float] = field(default_factory=list)
    lot_account: list[int] = field(default_factory=list)
    lot_instrument: list[int] = field(default_factory=list)
    lot_number: list[int] = field(default_factory=list)
    lot_quantity: list[float] = field(default_factory=list)
    lot_basis: list[float] = field(default_factory=list)
    lot_age: list[int] = field(default_factory=list)
    customs: dict[str, Customizations] = field(default_factory=dict)
    trades: list[HouseholdTrade] = field(default_factory=list)


def _draw(model, market, count, seed, customized, drift_sigma) -> _Draws:
    rng = np.random.default_rng(seed)
    as_of = market.as_of.date()
    symbols = [i.symbol for i in model.instruments]
    target = np.array([float(model.security_weights.get(s, 0)) for s in symbols])
    prices = np.array([float(market.prices[s].price) for s in symbols])
    esg = np.array([float(i.attributes.get("esg_score", 5.0)) for i in model.instruments])
    relatives = {s: [o.symbol for o in model.instruments
                     if o.symbol != s and o.asset_class == i.asset_class and o.symbol[:-1] ==
                     s[:-1]] for s, i in zip(symbols, model.instruments, strict=True)}
    out = _Draws()
    household = 0
    left_in_household = 0
    for a in range(count):
        if left_in_household == 0:
            household += 1
            left_in_household = int(rng.integers(1, 4))
        left_in_household -= 1
        acct_id = f"A{seed}-{a:06d}"
        hh = f"H{seed}-{household:05d}"
        value = float(np.exp(rng.normal(np.log(250_000), 1.0)))
        value = min(max(value, 20_000), 5_000_000)
        drift = target * np.exp(rng.normal(0, drift_sigma, target.size))
        # Some money sits in relatives of the model funds (legacy holdings, past harvests).
        for s_i, s in enumerate(symbols):
            if target[s_i] > 0 and relatives[s] and rng.random() < 0.15:
                r = symbols.index(str(rng.choice(relatives[s])))
                moved = drift[s_i] * rng.uniform(0.2, 1.0)
                drift[s_i] -= moved
                drift[r] += moved
        if rng.random() < 0.05:
            drift = np.zeros_like(drift)  # a new account, all cash
        cash_w = float(rng.uniform(0.0, 0.06))
        if drift.sum() > 0:
            drift = drift / drift.sum() * (1 - cash_w)
        else:
            cash_w = 1.0
        for i in np.flatnonzero(drift > 1e-4):
            qty_total = drift[i] * value / prices[i]
            n_lots = int(rng.integers(1, 9))
            split = rng.dirichlet(np.ones(n_lots)) * qty_total
            for k, qty in enumerate(split):
                age = int(rng.integers(1, 5 * 365))
                ret = rng.normal(0.07 * age / 365, 0.18 * np.sqrt(age / 365))
                basis = prices[i] / np.exp(ret)
                out.lot_account.append(a)
                out.lot_instrument.append(int(i))
                out.lot_number.append(k)
                out.lot_quantity.append(round(float(qty), 6))
                out.lot_basis.append(round(float(basis), 4))
                out.lot_age.append(age)
        out.ids.append(acct_id)
        out.households.append(hh)
        out.modes.append("advisory" if rng.random() < 0.3 else "discretionary")
        out.cash.append(round(cash_w * value, 2))
        if rng.random() < customized:
            out.customs[acct_id] = _random_customization(rng, model, symbols, esg, value)
        for _ in range(int(rng.poisson(0.6))):
            sym = str(rng.choice(symbols))
            day = as_of - dt.timedelta(days=int(rng.integers(0, 60)))
            if rng.random() < 0.5:
                out.trades.append(HouseholdTrade(
                    household_id=hh, account_id=acct_id, symbol=sym, side="buy",
                    quantity=Decimal(10), trade_date=day))
            else:
                out.trades.append(HouseholdTrade(
                    household_id=hh, account_id=acct_id, symbol=sym, side="sell",
                    quantity=Decimal(10), trade_date=day,
                    realized_gain=Decimal(repr(round(float(rng.normal(0, 500)), 2)))))
    return out


def make_accounts(
    model: ModelPortfolio,
    market: MarketData,
    count: int,
    seed: int = 1,
    customized: float = 0.6,
    drift_sigma: float = 0.08,
) -> tuple[list[Account], dict[str, Customizations], list[HouseholdTrade]]:
    """``count`` accounts on ``model`` with 1-8 lots per holding, drifted from the model, a mix
    of gains and losses, and (for a ``customized`` share of them) mixed customizations.
    Holdings drift from the model by a lognormal factor of scale ``drift_sigma``.
    Households hold 1-3 accounts; the household trade history covers the last 60 days."""
    d = _draw(model, market, count, seed, customized, drift_sigma)
    as_of = market.as_of.date()
    symbols = [i.symbol for i in model.instruments]
    lots: list[list[TaxLot]] = [[] for _ in range(count)]
    for a, i, k, qty, basis, age in zip(d.lot_account, d.lot_instrument, d.lot_number,
                                        d.lot_quantity, d.lot_basis, d.lot_age, strict=True):
        lots[a].append(TaxLot(
            lot_id=f"{d.ids[a]}-{symbols[i]}-{k}",
            symbol=symbols[i],
            quantity=Decimal(repr(qty)),
            cost_basis=Decimal(repr(basis)),
            acquired=as_of - dt.timedelta(days=age),
        ))
    accounts = [
        Account(account_id=acct_id, household_id=hh, mode=mode, cash=Decimal(repr(cash)),
                lots=tuple(lots[a]))
        for a, (acct_id, hh, mode, cash) in enumerate(
            zip(d.ids, d.households, d.modes, d.cash, strict=True))
    ]
    return accounts, d.customs, d.trades


def make_book(
    model: ModelPortfolio,
    market: MarketData,
    count: int,
    seed: int = 1,
    customized: float = 0.6,
    drift_sigma: float = 0.08,
) -> tuple[AccountBook, list[HouseholdTrade]]:
    """The accounts of ``make_accounts`` (same arguments, same data) as an ``AccountBook``
    whose menus are their customizations, and the household trade history; built in columns,
    with no per-lot Python object."""
    d = _draw(model, market, count, seed, customized, drift_sigma)
    symbols = [i.symbol for i in model.instruments]
    menus = list(d.customs.values())
    menu_of = {a: m for m, a in enumerate(d.customs)}
    menu = [menu_of.get(a) for a in d.ids]
    accounts = pa.table({
        "account_id": pa.array(d.ids, pa.string()),
        "household_id": pa.array(d.households, pa.string()),
        "mode": pa.array(d.modes, pa.string()),
        "cash": exact_decimals(np.array(d.cash), 2),
        "menu": pa.array(menu, pa.int32()),
    })
    lot_account = np.array(d.lot_account, np.int64)
    instrument = np.array(d.lot_instrument, np.int32)
    symbol = pa.DictionaryArray.from_arrays(pa.array(instrument), pa.array(symbols))
    lot_id = pc.binary_join_element_wise(
        pc.take(accounts.column("account_id"), pa.array(lot_account)),
        symbol.cast(pa.string()),
        pa.array(np.array(d.lot_number, np.int64)).cast(pa.string()),
        "-",
    )
    epoch_days = (market.as_of.date() - dt.date(1970, 1, 1)).days
    acquired = pa.array(epoch_days - np.array(d.lot_age, np.int32), pa.int32()).cast(pa.date32())
    lots = pa.table({
        "account": pa.array(lot_account, pa.int32()),
        "symbol": symbol,
        "lot_id": lot_id,
        "quantity": exact_decimals(np.array(d.lot_quantity), 6),
        "cost_basis": exact_decimals(np.array(d.lot_basis), 4),
        "acquired": acquired,
    })
    return AccountBook(accounts, lots, None, menus), d.trades


def _random_customization(rng, model, symbols, esg, value) -> Customizations:
    in_model = [s for s in symbols if s in model.security_weights]
    never_sell = frozenset(rng.choice(symbols, size=1)) if rng.random() < 0.15 else frozenset()
    never_buy = frozenset(rng.choice(symbols, size=1)) if rng.random() < 0.15 else frozenset()
    screens = (Screen(attribute="esg_score", op=">=", value=3.0),) if rng.random() < 0.2 else ()
    subs: dict[str, str] = {}
    if rng.random() < 0.15:
        x = str(rng.choice(in_model))
        partners = [s for s in symbols
                    if s != x and s[:-1] == x[:-1] and s not in model.security_weights]
        if partners:
            subs[x] = str(rng.choice(partners))
    budget = None
    if rng.random() < 0.3:
        budget = Decimal(repr(round(float(rng.uniform(0, 0.01) * value), 2)))
    tax = TaxSettings(
        short_term_rate=float(rng.choice([0.24, 0.32, 0.37, 0.408])),
        long_term_rate=float(rng.choice([0.15, 0.20, 0.238])),
        short_term_gain_budget=budget,
        loss_harvest_threshold=float(rng.choice([0.02, 0.05, 0.10])),
        defer_short_term_days=int(rng.choice([0, 31, 60])),
    )
    withdrawal = Decimal(repr(round(float(rng.uniform(0.01, 0.08) * value), 2))) \
        if rng.random() < 0.1 else Decimal(0)
    min_cash = Decimal(repr(round(float(rng.uniform(0.0, 0.02) * value), 2))) \
        if rng.random() < 0.3 else Decimal(0)
    return Customizations(never_buy=never_buy, never_sell=never_sell, screens=screens,
                          substitutions=subs, tax=tax, withdrawal=withdrawal, min_cash=min_cash)
