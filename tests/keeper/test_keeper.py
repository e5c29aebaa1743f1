"""The keeper on anvil: full rebalances, advisory signatures, and every way to crash it.

Nothing lost, nothing sent twice: each test counts the OrderPlaced events on chain per
(owner, batch) against the legs the keeper planned.
"""

from __future__ import annotations

from collections import Counter

from eth_account import Account
from sqlalchemy import func, select

from offchain.chain.actors import INVESTORS
from offchain.chain.seed import DEMO_INVESTORS
from offchain.chain.tx import Sender
from offchain.keeper.bot import PassReport
from offchain.keeper.db import FillRow, OrderRow, ProposalRow
from offchain.universe import BY_SYMBOL, WAD, FundKind

DISCRETIONARY = {i.actor.address for i in DEMO_INVESTORS if i.discretionary}
ADVISORY = {i.actor.address for i in DEMO_INVESTORS if not i.discretionary}
KEYS = {i.address: i.private_key for i in INVESTORS}


def placed_on_chain(platform, batch: int) -> Counter:
    pool = platform.contract("LightPool")
    logs = pool.events.OrderPlaced().get_logs(from_block=0)
    return Counter(e["args"]["owner"] for e in logs if e["args"]["batch"] == batch)


def keeper_symbol(platform, address: str) -> str:
    """The symbol of a deployed token address."""
    return next(s for s in platform.deployments.tokens
                if platform.token(s).address == address)


def planned_legs(keeper, batch: int) -> Counter:
    with keeper.sessions() as session:
        rows = session.execute(select(OrderRow.account, func.count()).where(
            OrderRow.batch == batch).group_by(OrderRow.account)).all()
    return Counter(dict(rows))


def test_discretionary_accounts_rebalance_end_to_end(make_keeper, platform, close_batch):
    keeper = make_keeper()
    first = keeper.run_once()
    batch = first.batch
    assert first.planned == len(DEMO_INVESTORS)
    on_chain = placed_on_chain(platform, batch)
    assert set(on_chain) == DISCRETIONARY  # advisory ones wait for their owner's signature
    assert on_chain == Counter({a: n for a, n in planned_legs(keeper, batch).items()
                                if a in DISCRETIONARY})

    close_batch(batch)
    second = keeper.run_once()
    assert second.cleared_markets > 0 and second.settled_baskets == len(DISCRETIONARY)
    assert second.fills_recorded == sum(on_chain.values())
    with keeper.sessions() as session:
        statuses = set(session.scalars(select(ProposalRow.status).where(
            ProposalRow.batch == batch, ProposalRow.mode == "discretionary")))
        assert statuses == {"settled"}
        fills = session.scalars(select(FillRow)).all()
        assert any(int(f.units) > 0 for f in fills)
        ledger = keeper.ledger(session)
    # Every buy that filled opened a lot at its exact cost.
    bought = [f for f in fills if f.side == "buy" and int(f.units) > 0]
    for fill in bought:
        assert any(lot.lot_id == fill.ref for lot in ledger.open_lots(fill.account))


def test_advisory_proposal_is_signed_by_the_investor_and_relayed(make_keeper, platform,
                                                                  close_batch):
    keeper = make_keeper()
    batch = keeper.run_once().batch
    with keeper.sessions() as session:
        waiting = session.scalars(select(ProposalRow).where(
            ProposalRow.batch == batch, ProposalRow.status == "awaiting_signature")).all()
    assert {row.account for row in waiting} == ADVISORY
    for row in waiting:
        requests = keeper.signing_requests(row.id)
        signatures = ["0x" + Account.sign_typed_data(KEYS[row.account], full_message=r)
                      .signature.hex().removeprefix("0x") for r in requests]
        keeper.record_signatures(row.id, signatures)
    keeper.run_once()
    assert placed_on_chain(platform, batch) == planned_legs(keeper, batch)
    close_batch(batch)
    report = keeper.run_once()
    assert report.fills_recorded == sum(planned_legs(keeper, batch).values())


def test_a_signature_from_another_key_is_refused(make_keeper):
    keeper = make_keeper()
    keeper.run_once()
    with keeper.sessions() as session:
        row = session.scalars(select(ProposalRow).where(
            ProposalRow.status == "awaiting_signature")).first()
    requests = keeper.signing_requests(row.id)
    stranger = Account.create()
    signatures = [Account.sign_typed_data(stranger.key, full_message=r).signature.hex()
                  for r in requests]
    try:
        keeper.record_signatures(row.id, signatures)
    except Exception as exc:  # noqa: BLE001 - asserting the type below
        assert "signatures[0]: expected signed by" in str(exc)
    else:
        raise AssertionError("a stranger's signature was accepted")


def test_restart_in_the_middle_of_a_batch_sends_nothing_twice(make_keeper, platform, close_batch):
    keeper = make_keeper()
    batch = keeper.run_once().batch
    placed = placed_on_chain(platform, batch)
    # A new process on the same database, same batch: plans nothing new, sends nothing.
    again = make_keeper().run_once()
    assert again.planned == 0 and again.sent_baskets == 0
    assert placed_on_chain(platform, batch) == placed
    close_batch(batch)
    make_keeper().run_once()
    assert placed_on_chain(platform, batch) == placed


def test_crash_after_broadcast_before_bookkeeping(make_keeper, platform):
    """The transaction went out, the keeper died before writing it down: on restart the
    chain's OrderPlaced events tell it the legs are there."""
    keeper = make_keeper()
    batch = keeper.pool.functions.current_batch().call()
    with keeper.sessions() as session:
        keeper.plan(session, batch, PassReport(batch))
        approved = session.scalars(select(ProposalRow).where(
            ProposalRow.status == "approved")).all()
        payload = [(row.account, [keeper._leg_of(o).as_tuple() for o in row.orders])
                   for row in approved]
    keeper.sender.send(keeper.pool.functions.place_for_many(payload))  # the lost broadcast
    before = placed_on_chain(platform, batch)
    report = make_keeper().run_once()
    assert report.sent_baskets == 0 and report.reconciled == sum(before.values())
    assert placed_on_chain(platform, batch) == before


def test_dropped_transaction_is_sent_again_once(make_keeper, platform):
    w3 = platform.w3
    keeper = make_keeper(wait_s=0.5)
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        first = keeper.run_once()
        assert first.sent_baskets > 0
        w3.provider.make_request("anvil_dropAllTransactions", [])
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
    assert placed_on_chain(platform, first.batch) == Counter()
    second = make_keeper().run_once()
    assert second.sent_baskets == first.sent_baskets
    assert placed_on_chain(platform, first.batch) == Counter(
        {a: n for a, n in planned_legs(keeper, first.batch).items() if a in DISCRETIONARY})


def test_buys_are_funded_by_the_same_baskets_sells(make_keeper, platform, close_batch):
    """An account with no free cash still rebalances in one batch: its buys are funded by
    its own sells (the sold funds' issuers advance the proceeds, repaid at settlement)."""
    investor = next(i.actor for i in DEMO_INVESTORS if i.discretionary)
    pool = platform.contract("LightPool")
    cash = platform.token("USDL").address
    free = pool.functions.balance_of(cash, investor.address).call()
    Sender(platform.w3, investor.private_key).send(pool.functions.withdraw(cash, free))
    keeper = make_keeper()
    batch = keeper.run_once().batch
    placed = [e["args"] for e in pool.events.OrderPlaced().get_logs(from_block=0)
              if e["args"]["owner"] == investor.address and e["args"]["batch"] == batch]
    buys = [a for a in placed if a["is_buy"]]
    assert buys and any(not a["is_buy"] for a in placed)
    [basket_id] = {a["basket_id"] for a in placed}
    locked = sum(-(-a["quantity"] * a["limit_price"] // WAD) for a in buys)
    advanced = [e["args"] for e in pool.events.Advanced().get_logs(from_block=0)
                if e["args"]["basket_id"] == basket_id]
    # Every cash unit the buys lock is advanced against the basket's sells.
    assert sum(a["amount"] for a in advanced) == locked == pool.functions.basket_advance(
        basket_id).call()

    close_batch(batch)
    report = keeper.run_once()
    repaid = [e["args"] for e in pool.events.AdvanceRepaid().get_logs(from_block=0)
              if e["args"]["basket_id"] == basket_id]
    assert sorted(r["index"] for r in repaid) == sorted(a["index"] for a in advanced)
    assert pool.functions.basket_advance(basket_id).call() == 0
    assert report.settled_baskets > 0
    with keeper.sessions() as session:
        fills = session.scalars(select(FillRow).where(FillRow.account == investor.address,
                                                      FillRow.batch == batch)).all()
        status = session.scalar(select(ProposalRow.status).where(
            ProposalRow.account == investor.address, ProposalRow.batch == batch))
    assert status == "settled"
    # The buys filled (issuers create ETF and mutual-fund units; a gated alternative fills
    # only if another investor sells it): the investor holds what its sells paid for.
    bought = {keeper_symbol(platform, a["market"]) for a in buys}
    filled = {f.symbol for f in fills if f.side == "buy" and int(f.units) > 0}
    assert {s for s in bought if BY_SYMBOL[s].kind != FundKind.ALTERNATIVE} <= filled <= bought
