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
from offchain.keeper.bot import PassReport
from offchain.keeper.db import FillRow, OrderRow, ProposalRow

DISCRETIONARY = {i.actor.address for i in DEMO_INVESTORS if i.discretionary}
ADVISORY = {i.actor.address for i in DEMO_INVESTORS if not i.discretionary}
KEYS = {i.address: i.private_key for i in INVESTORS}


def placed_on_chain(platform, batch: int) -> Counter:
    pool = platform.contract("LightPool")
    logs = pool.events.OrderPlaced().get_logs(from_block=0)
    return Counter(e["args"]["owner"] for e in logs if e["args"]["batch"] == batch)


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
