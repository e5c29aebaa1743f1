"""The keeper: optimize -> propose/approve -> submit -> clear -> settle -> record.

One pass (``Keeper.run_once``) does, for the batch open now:

1. **plan** — accounts that are due (never planned, planned on an earlier day, or whose model
   changed) get a proposal from the optimizer, computed from chain state (escrow balances in
   LightPool, NAVs) and the lots in the ledger. Discretionary accounts go to the overlay
   manager's queue unless the auto-approve rule passes; advisory accounts wait for the
   investor's EIP-712 signatures of each leg (``SignedOrder``, deterministic nonces).
2. **submit** — approved and signed legs go on chain: discretionary baskets in bulk with
   ``place_for_many`` (checked there against the mandate), signed legs with ``place_signed``.
3. **finish** — batches that closed: clear each market we have orders in (the tick hint is
   rebuilt from events), settle our baskets in bulk, and record fills for the ledger.

Idempotency: every leg has the key ``account:batch:leg``. Before sending, the keeper
reconciles with the chain (``OrderPlaced`` events of the batch, used nonces, basket hashes,
clearing records), so a crash, a restart, a dropped transaction or a restarted node never
loses an order nor sends one twice: a leg is sent again only if the chain shows it is not
there.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from web3.exceptions import TransactionNotFound

from offchain.chain.contracts import Platform
from offchain.chain.lightpool import (
    MAX_BASKETS,
    Basket,
    Book,
    Leg,
    SignedOrder,
    advance_allocation,
    basket_advance,
    can_fund,
    typed_data,
)
from offchain.chain.tx import Sender, TransactionReverted
from offchain.errors import InvalidInput
from offchain.keeper.db import Cursor, FillRow, ModelSeen, OrderRow, ProposalRow
from offchain.ledger.lots import Fill, TaxLedger
from offchain.models.portfolios import ModelStore, with_held
from offchain.optimizer.engine import optimize_accounts
from offchain.optimizer.inputs import (
    Account,
    Customizations,
    MarketData,
    PricePoint,
    Proposal,
    TaxLot,
)
from offchain.universe import BY_SYMBOL, CASH_SYMBOL, WAD, FundKind

log = logging.getLogger("lightpool.keeper")

MAX_BPS = 10_000
# Lens call sizes (contracts/Lens.vy bounds).
LENS_OWNERS = 256
LENS_IDS = 1024
STATUS_OPEN = 0
# Limit prices sit this far from NAV (bps) unless the mandate or market band is tighter:
# wide enough to meet the issuer's creation/redemption quotes, narrow enough to be fair.
DEFAULT_LIMIT_BPS = 100


@dataclass(frozen=True)
class ManagedAccount:
    """An account the keeper manages: whose, how, and on which model category."""

    address: str
    mode: str  # "advisory" | "discretionary"
    risk_category: int
    household: str
    customizations: Customizations = Customizations()
    # The mandate's max distance of a limit price from NAV (bps); None: no limit known.
    max_deviation_bps: int | None = None


@dataclass(frozen=True)
class AutoApprove:
    """The overlay manager's standing rule: approve without review when the proposal's
    turnover, realized short-term gain and tax cost are all within these limits (cash)."""

    max_turnover: Decimal = Decimal("250000")
    max_short_term_gain: Decimal = Decimal("1000")
    max_tax_cost: Decimal = Decimal("2500")

    def passes(self, proposal: Proposal) -> bool:
        turnover = sum((t.value for t in proposal.trades), Decimal(0))
        return (turnover <= self.max_turnover
                and proposal.realized_short_term <= self.max_short_term_gain
                and proposal.tax_cost <= self.max_tax_cost)


@dataclass
class PassReport:
    """What one pass did (also logged as one structured line)."""

    batch: int
    planned: int = 0
    pending_approval: int = 0
    awaiting_signature: int = 0
    sent_baskets: int = 0
    reconciled: int = 0
    cleared_markets: int = 0
    settled_baskets: int = 0
    fills_recorded: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def add_time(self, stage: str, started: float) -> None:
        """Add the time since ``started`` (``time.perf_counter``) to ``stage``."""
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started


class Keeper:
    """The keeper bot for one deployment. See the module docstring for the pass."""

    def __init__(self, platform: Platform, sessions: sessionmaker, models: ModelStore,
                 sender: Sender, accounts: Callable[[], Sequence[ManagedAccount]],
                 auto_approve: AutoApprove | None = AutoApprove(), wait_s: float = 30.0,
                 progress: Callable[[str, int], Any] | None = None) -> None:
        self.platform = platform
        self.w3 = platform.w3
        self.pool = platform.contract("LightPool")
        self.lens = platform.contract("Lens")
        self.sessions = sessions
        self.models = models
        self.sender = sender
        self.accounts = accounts
        self.auto_approve = auto_approve
        self.wait_s = wait_s
        self.progress = progress
        self.symbol_of = {addr.lower(): sym for sym, addr in platform.deployments.tokens.items()}
        self.deploy_block = platform.deployments.block

    # -- the pass ---------------------------------------------------------------------

    def run_once(self) -> PassReport:
        """One idempotent pass: plan, submit, finish. Safe to call at any time, repeatedly."""
        batch = self.pool.functions.current_batch().call()
        report = PassReport(batch=batch)
        with self.sessions() as session:
            self._sync_deposits(session)
            self._expire_stale(session, batch)
            self.plan(session, batch, report)
            started = time.perf_counter()
            self.submit(session, batch, report)
            report.add_time("submit", started)
            self.finish(session, batch, report)
        log.info(json.dumps({"event": "keeper_pass", **report.__dict__}))
        return report

    # -- plan -------------------------------------------------------------------------

    def plan(self, session: Session, batch: int, report: PassReport) -> None:
        """Propose for every due account (grouped by model, one optimizer run per model)."""
        today = self._chain_time().date()
        versions: dict[int, Any] = {}
        due_by_model: dict[int, list[ManagedAccount]] = {}
        for account in self.accounts():
            if account.risk_category not in versions:
                versions[account.risk_category] = self.models.for_category(account.risk_category)
            if self._is_due(session, account, batch, today, versions[account.risk_category]):
                due_by_model.setdefault(account.risk_category, []).append(account)
        if not due_by_model:
            return
        states = self._market_state()
        escrow = self._escrow_many([a.address for accs in due_by_model.values() for a in accs],
                                   states)
        # Issuers' cash reserves, drawn down by the advances this pass's baskets will take.
        reserves = self._reserves(states)
        for category, accounts in due_by_model.items():
            version = versions[category]
            started = time.perf_counter()
            proposals = self._optimize(session, version.model.to_optimizer(), accounts, states,
                                       escrow)
            report.add_time("optimize", started)
            started = time.perf_counter()
            for account in accounts:
                proposal = proposals.get(account.address)
                if proposal is None:
                    continue
                self._record_proposal(session, account, batch, version, proposal, states,
                                      escrow[account.address], today, report, reserves)
            report.add_time("propose_approve", started)
        session.commit()

    def _is_due(self, session: Session, account: ManagedAccount, batch: int,
                today: dt.date, version: Any) -> bool:
        exists = session.scalar(select(ProposalRow.id).where(
            ProposalRow.account == account.address, ProposalRow.batch == batch))
        if exists:
            return False
        open_ = session.scalar(select(ProposalRow.id).where(
            ProposalRow.account == account.address,
            ProposalRow.status.in_(("pending_approval", "awaiting_signature", "approved",
                                    "submitted"))))
        if open_:
            return False
        seen = session.get(ModelSeen, account.address)
        return (seen is None or seen.planned_on < today or seen.model_id != version.model.model_id
                or seen.model_version != version.version)

    def _market_state(self) -> dict[str, dict[str, Any]]:
        states: dict[str, dict[str, Any]] = {}
        for symbol in self.platform.deployments.tokens:
            token = self.platform.token(symbol)
            market = (self.pool.functions.market_of(token.address).call()
                      if symbol != CASH_SYMBOL else None)
            states[symbol] = {
                "address": token.address,
                "nav": token.functions.nav().call(),
                "nav_time": token.functions.nav_timestamp().call(),
                "stale": token.functions.is_nav_stale().call(),
                "tick": market[0] if market else 0,
                "min_quantity": market[1] if market else 0,
                "band_bps": market[2] if market else 0,
                "fee_bps": market[3] if market else 0,
                "redemption_capacity": market[5] if market else 0,
                "alternative": BY_SYMBOL[symbol].kind == FundKind.ALTERNATIVE,
                "issuer": token.functions.issuer().call(),
            }
        return states

    def _reserves(self, states: dict[str, dict[str, Any]]) -> dict[str, int]:
        """Each issuer's free cash in LightPool: what it can advance to baskets."""
        cash = states[CASH_SYMBOL]["address"]
        issuers = {st["issuer"] for symbol, st in states.items() if symbol != CASH_SYMBOL}
        return {issuer: self.pool.functions.balance_of(cash, issuer).call()
                for issuer in issuers}

    def _optimize(self, session: Session, model: Any, accounts: list[ManagedAccount],
                  states: dict[str, dict[str, Any]], escrow: dict[str, dict[str, int]]
                  ) -> dict[str, Proposal]:
        from offchain.views.proposals import risk_model

        now = self._chain_time()
        prices = {s: PricePoint(price=Decimal(st["nav"]) / WAD,
                                timestamp=dt.datetime.fromtimestamp(st["nav_time"], dt.UTC))
                  for s, st in states.items() if s != CASH_SYMBOL and not st["stale"]}
        market = MarketData(as_of=now, prices=prices, risk_model=risk_model(),
                            cost_bps={s: float(i.cost_bps) for s, i in BY_SYMBOL.items()
                                      if i.kind != FundKind.CASH},
                            max_price_age=dt.timedelta(days=92))
        inputs: list[Account] = []
        held: set[str] = set()
        for account in accounts:
            balances = escrow[account.address]
            lots = self._lots(session, account.address, balances, now.date())
            inputs.append(Account(account_id=account.address, household_id=account.household,
                                  mode=account.mode,  # type: ignore[arg-type]
                                  cash=Decimal(balances.get(CASH_SYMBOL, 0)) / WAD, lots=lots))
            held.update(balances)
        model = with_held(model, held)
        customs = {a.address: a.customizations for a in accounts}
        result = optimize_accounts(model, inputs, market, customs, as_of=now.date())
        for error in result.errors:
            log.warning(json.dumps({"event": "account_skipped", "account": error.account_id,
                                    "field": error.field, "reason": error.reason}))
        return {p.account_id: p for p in result.proposals}

    def _escrow_many(self, owners: Sequence[str],
                     states: dict[str, dict[str, Any]]) -> dict[str, dict[str, int]]:
        """Free escrow balances per owner per symbol, through the Lens (one call per 256
        owners instead of one per owner and token)."""
        symbols = list(states)
        tokens = [states[s]["address"] for s in symbols]
        result: dict[str, dict[str, int]] = {}
        for start in range(0, len(owners), LENS_OWNERS):
            chunk = list(owners[start:start + LENS_OWNERS])
            cells = self.lens.functions.escrow_balances(self.pool.address, tokens, chunk).call()
            for i, owner in enumerate(chunk):
                row = cells[i * len(tokens):(i + 1) * len(tokens)]
                result[owner] = {s: v for s, v in zip(symbols, row, strict=True) if v}
        return result

    def _lots(self, session: Session, owner: str, balances: dict[str, int],
              today: dt.date) -> tuple[TaxLot, ...]:
        """Lots from recorded fills; units not explained by fills form an opening lot at
        the universe's opening NAV (positions brought into the pool before the keeper)."""
        ledger = self.ledger(session, owner)
        lots: list[TaxLot] = []
        for symbol, units in balances.items():
            if symbol == CASH_SYMBOL:
                continue
            # Newest lots first: units that left the pool (withdrawals) left the oldest.
            left = units
            for lot in sorted((lot for lot in ledger.open_lots(owner) if lot.symbol == symbol),
                              key=lambda lot: lot.acquired, reverse=True):
                take = min(lot.units, left)
                left -= take
                if take:
                    lots.append(TaxLot(lot_id=lot.lot_id, symbol=symbol,
                                       quantity=Decimal(take) / WAD,
                                       cost_basis=lot.cost_per_unit, acquired=lot.acquired))
            if left > 0:
                lots.append(TaxLot(lot_id=f"{symbol}-opening", symbol=symbol,
                                   quantity=Decimal(left) / WAD,
                                   cost_basis=BY_SYMBOL[symbol].nav,
                                   acquired=self._deploy_date()))
        return tuple(lots)

    def _sync_deposits(self, session: Session) -> None:
        """Record fund units deposited into escrow as acquisitions at the NAV in force at
        that block (the chain does not know the investor's older basis; the deposit is where
        the platform's ledger starts). Idempotent: refs are unique, a cursor bounds the scan."""
        # Seeding deposits happen during deployment, so the first scan starts at genesis.
        cursor = session.get(Cursor, "deposits") or Cursor(name="deposits", block=-1)
        head = self.w3.eth.block_number
        if head <= cursor.block:
            return
        logs = self.pool.events.Deposited().get_logs(from_block=cursor.block + 1, to_block=head)
        navs: dict[str, list[tuple[int, int]]] = {}
        for entry in logs:
            args = entry["args"]
            symbol = self.symbol_of.get(args["token"].lower())
            if symbol is None or symbol == CASH_SYMBOL:
                continue
            ref = f"deposit:{entry['transactionHash'].hex()}:{entry['logIndex']}"
            if session.get(FillRow, ref) is not None:
                continue
            if symbol not in navs:
                navs[symbol] = self._nav_history(symbol)
            nav = next(n for b, n in reversed(navs[symbol]) if b <= entry["blockNumber"])
            block = self.w3.eth.get_block(entry["blockNumber"])
            session.add(FillRow(ref=ref, account=args["owner"], symbol=symbol, side="buy",
                                units=str(args["amount"]),
                                cash=str(args["amount"] * nav // WAD), batch=-1,
                                block_time=dt.datetime.fromtimestamp(block["timestamp"],
                                                                     dt.UTC)))
        cursor.block = head
        session.add(cursor)
        session.commit()

    def _nav_history(self, symbol: str) -> list[tuple[int, int]]:
        """(block, NAV) of every NavPublished of a token, oldest first."""
        token = self.platform.token(symbol)
        logs = token.events.NavPublished().get_logs(from_block=0)
        return [(e["blockNumber"], e["args"]["nav"]) for e in logs]

    def ledger(self, session: Session, owner: str | None = None) -> TaxLedger:
        """The tax ledger rebuilt from recorded fills (of one owner, or all)."""
        query = select(FillRow).order_by(FillRow.block_time, FillRow.ref)
        if owner is not None:
            query = query.where(FillRow.account == owner)
        ledger = TaxLedger()
        for row in session.scalars(query):
            units, cash = int(row.units), int(row.cash)
            if units == 0:
                continue
            order = session.get(OrderRow, row.order_key) if row.order_key else None
            ledger.apply(Fill(row.account, row.symbol, row.side, units, cash,
                              row.block_time.date(), row.ref,
                              tuple(order.lot_ids) if order and order.lot_ids else ()))
        return ledger

    def _record_proposal(self, session: Session, account: ManagedAccount, batch: int,
                         version: Any, proposal: Proposal, states: dict[str, dict[str, Any]],
                         balances: dict[str, int], today: dt.date, report: PassReport,
                         reserves: dict[str, int]) -> None:
        legs = self._legs(account, proposal, states, balances.get(CASH_SYMBOL, 0), reserves)
        seen = session.get(ModelSeen, account.address) or ModelSeen(account=account.address)
        seen.model_id, seen.model_version, seen.planned_on = (
            version.model.model_id, version.version, today)
        session.add(seen)
        if not legs:
            status = "no_trade"
        elif account.mode == "advisory":
            status = "awaiting_signature"
        elif self.auto_approve is not None and self.auto_approve.passes(proposal):
            status = "approved"
        else:
            status = "pending_approval"
        row = ProposalRow(account=account.address, batch=batch, mode=account.mode,
                          model_id=version.model.model_id, model_version=version.version,
                          status=status, explanation=json.loads(proposal.model_dump_json()),
                          decided_by="auto-approve" if status == "approved" else None)
        session.add(row)
        session.flush()
        for index, (symbol, leg, lot_ids) in enumerate(legs):
            session.add(OrderRow(
                key=f"{account.address}:{batch}:{index}", proposal_id=row.id,
                account=account.address, batch=batch, leg=index, symbol=symbol,
                market=leg.market, is_buy=leg.is_buy, quantity=str(leg.quantity),
                limit_price=str(leg.limit_price), lot_ids=list(lot_ids),
                nonce=str(batch * 64 + index) if account.mode == "advisory" else None,
            ))
        report.planned += 1
        report.pending_approval += status == "pending_approval"
        report.awaiting_signature += status == "awaiting_signature"

    def _legs(self, account: ManagedAccount, proposal: Proposal,
              states: dict[str, dict[str, Any]], free_cash: int, reserves: dict[str, int]
              ) -> list[tuple[str, Leg, tuple[str, ...]]]:
        """Proposal trades -> one leg per (instrument, side): sells first, those that can
        fund buys ahead of the others, then buys. Limits sit ``DEFAULT_LIMIT_BPS`` (or the
        tighter market band / mandate deviation) from NAV on the tick grid.

        Buys are scaled to what the basket can pay in this batch: the free cash plus what
        its fundable sells bring at their limits (LightPool's basket funding: the sold
        fund's issuer advances it), as far as each issuer's reserve reaches. The advance
        taken is drawn from ``reserves`` so later baskets of the pass do not count on it."""
        mandate_bps = account.max_deviation_bps
        sells: dict[str, list] = {}
        buys: dict[str, Decimal] = {}
        for trade in proposal.trades:
            if trade.side == "sell":
                entry = sells.setdefault(trade.symbol, [Decimal(0), []])
                entry[0] += trade.quantity
                if trade.lot_id:
                    entry[1].append(trade.lot_id)
            else:
                buys[trade.symbol] = buys.get(trade.symbol, Decimal(0)) + trade.quantity
        legs: list[tuple[str, Leg, tuple[str, ...]]] = []
        for symbol, (quantity, lot_ids) in sorted(sells.items()):
            leg = self._leg(symbol, False, quantity, states, mandate_bps)
            if leg is not None:
                legs.append((symbol, leg, tuple(lot_ids)))

        def fundable(symbol: str, leg: Leg) -> bool:
            state = states[symbol]
            return can_fund(leg, state["nav"], state["fee_bps"], state["redemption_capacity"],
                            state["alternative"])

        legs.sort(key=lambda item: not fundable(item[0], item[1]))  # stable
        # The largest advance LightPool's in-order allocation can take without asking an
        # issuer for more than its reserve. Advisory legs are relayed one signed order per
        # basket, so their sells fund nothing.
        available = dict(reserves)
        credit = 0
        for symbol, leg, _ in legs if account.mode == "discretionary" else ():
            if not fundable(symbol, leg):
                break
            issuer = states[symbol]["issuer"]
            proceeds = leg.quantity * leg.limit_price // WAD
            if available.get(issuer, 0) < proceeds:
                credit += available.get(issuer, 0)
                break
            available[issuer] -= proceeds
            credit += proceeds
        budget = free_cash + credit
        spent = 0
        for symbol, quantity in sorted(buys.items()):
            leg = self._leg(symbol, True, quantity, states, mandate_bps)
            if leg is None:
                continue
            lock = leg.lock()
            if spent + lock > budget:
                affordable = (budget - spent) * WAD // leg.limit_price
                if affordable < states[symbol]["min_quantity"]:
                    continue
                leg = leg.model_copy(update={"quantity": affordable})
                lock = leg.lock()
            spent += lock
            legs.append((symbol, leg, ()))
        placed = [leg for _, leg, _ in legs]
        advance = basket_advance(placed, free_cash)
        for (symbol, _, _), amount in zip(legs, advance_allocation(placed, advance), strict=True):
            if amount:
                reserves[states[symbol]["issuer"]] -= amount
        return legs

    def _leg(self, symbol: str, is_buy: bool, quantity: Decimal,
             states: dict[str, dict[str, Any]], mandate_bps: int | None) -> Leg | None:
        state = states[symbol]
        if state["stale"] or not state["tick"]:
            return None
        units = int((quantity * WAD).to_integral_value(rounding=ROUND_DOWN))
        if units < state["min_quantity"]:
            return None
        bps = min(DEFAULT_LIMIT_BPS, state["band_bps"], mandate_bps or MAX_BPS)
        nav, tick = state["nav"], state["tick"]
        # Round towards NAV so the limit stays inside the band and the mandate's deviation.
        if is_buy:
            limit = nav * (MAX_BPS + bps) // MAX_BPS // tick * tick
        else:
            limit = -(-(nav * (MAX_BPS - bps)) // (MAX_BPS * tick)) * tick
        if limit <= 0:
            return None
        return Leg(market=state["address"], is_buy=is_buy, quantity=units, limit_price=limit)

    # -- approvals and signatures (called by the UI / CLI) -------------------------------

    def approve(self, proposal_id: int, approver: str, approved: bool = True) -> ProposalRow:
        """The overlay manager's decision on a pending discretionary proposal."""
        with self.sessions() as session:
            row = session.get(ProposalRow, proposal_id)
            if row is None or row.status != "pending_approval":
                raise InvalidInput("proposal_id", "a proposal pending approval", proposal_id)
            row.status = "approved" if approved else "rejected"
            row.decided_by = approver
            session.commit()
            return row

    def signing_requests(self, proposal_id: int) -> list[dict[str, Any]]:
        """The ``eth_signTypedData_v4`` payloads of an advisory proposal, one per leg."""
        with self.sessions() as session:
            row = session.get(ProposalRow, proposal_id)
            if row is None or row.status != "awaiting_signature":
                raise InvalidInput("proposal_id", "a proposal awaiting signature", proposal_id)
            expiry = self.pool.functions.batch_close(row.batch).call()
            return [typed_data(self._signed_order(order, expiry), self.w3.eth.chain_id,
                               self.pool.address) for order in row.orders]

    def record_signatures(self, proposal_id: int, signatures: Sequence[str]) -> None:
        """Store the investor's signatures (one per leg, in order); the next pass relays
        them. Raises ``InvalidInput`` if a signature is not the account owner's."""
        from eth_account import Account as EthAccount
        from eth_account.messages import encode_typed_data

        with self.sessions() as session:
            row = session.get(ProposalRow, proposal_id)
            if row is None or row.status != "awaiting_signature":
                raise InvalidInput("proposal_id", "a proposal awaiting signature", proposal_id)
            if len(signatures) != len(row.orders):
                raise InvalidInput("signatures", f"{len(row.orders)} signatures",
                                   len(signatures))
            expiry = self.pool.functions.batch_close(row.batch).call()
            for index, (order, signature) in enumerate(zip(row.orders, signatures, strict=True)):
                message = typed_data(self._signed_order(order, expiry), self.w3.eth.chain_id,
                                     self.pool.address)
                signer = EthAccount.recover_message(encode_typed_data(full_message=message),
                                                    signature=signature)
                if signer.lower() != row.account.lower():
                    raise InvalidInput(f"signatures[{index}]", f"signed by {row.account}",
                                       signer)
                order.signature = signature
            row.status = "approved"
            row.decided_by = "investor-signature"
            session.commit()

    def _signed_order(self, order: OrderRow, expiry: int) -> SignedOrder:
        return SignedOrder(owner=order.account, market=order.market, is_buy=order.is_buy,
                           quantity=int(order.quantity), limit_price=int(order.limit_price),
                           nonce=int(order.nonce or 0), expiry=expiry)

    # -- submit -----------------------------------------------------------------------

    def submit(self, session: Session, batch: int, report: PassReport) -> None:
        """Send approved legs of this batch that the chain does not have yet."""
        report.reconciled += self._reconcile_placed(session, batch)
        approved = session.scalars(select(ProposalRow).where(
            ProposalRow.batch == batch, ProposalRow.status == "approved")).all()
        mandate_baskets: list[ProposalRow] = []
        for row in approved:
            if all(o.status == "placed" for o in row.orders):
                row.status = "submitted"
                continue
            if row.mode == "discretionary":
                mandate_baskets.append(row)
            else:
                self._relay_signed(session, row, report)
        for start in range(0, len(mandate_baskets), MAX_BASKETS):
            chunk = mandate_baskets[start:start + MAX_BASKETS]
            payload = [(row.account, [self._leg_of(o).as_tuple() for o in row.orders])
                       for row in chunk]
            try:
                sent = self.sender.send(self.pool.functions.place_for_many(payload),
                                        wait_s=self.wait_s)
            except TransactionReverted as exc:
                report.errors.append(f"place_for_many: {exc.reason}")
                for row in chunk:
                    self._isolate(session, row, report)
                continue
            for row in chunk:
                for order in row.orders:
                    order.status, order.tx_hash = "sent", sent.tx_hash
            session.commit()
            report.sent_baskets += len(chunk)
            if sent.mined:
                self._mark_placed_from_receipt(session, sent.receipt)
        session.commit()

    def _isolate(self, session: Session, row: ProposalRow, report: PassReport) -> None:
        """A bulk call reverted: try this basket alone so one bad basket blocks no other."""
        payload = [(row.account, [self._leg_of(o).as_tuple() for o in row.orders])]
        try:
            sent = self.sender.send(self.pool.functions.place_for_many(payload),
                                    wait_s=self.wait_s)
        except TransactionReverted as exc:
            row.status = "rejected"
            row.decided_by = f"chain: {exc.reason}"
            report.errors.append(f"{row.account}: {exc.reason}")
            return
        for order in row.orders:
            order.status, order.tx_hash = "sent", sent.tx_hash
        report.sent_baskets += 1
        if sent.mined:
            self._mark_placed_from_receipt(session, sent.receipt)

    def _relay_signed(self, session: Session, row: ProposalRow, report: PassReport) -> None:
        expiry = self.pool.functions.batch_close(row.batch).call()
        for order in row.orders:
            if order.status == "placed" or not order.signature:
                continue
            if self.pool.functions.is_nonce_used(order.account, int(order.nonce)).call():
                continue  # already on chain; reconciliation picks up its basket id
            signed = self._signed_order(order, expiry)
            try:
                sent = self.sender.send(self.pool.functions.place_signed(
                    signed.as_tuple(), bytes.fromhex(order.signature.removeprefix("0x"))),
                    wait_s=self.wait_s)
            except TransactionReverted as exc:
                report.errors.append(f"{order.key}: {exc.reason}")
                continue
            order.status, order.tx_hash = "sent", sent.tx_hash
            session.commit()
            report.sent_baskets += 1
            if sent.mined:
                self._mark_placed_from_receipt(session, sent.receipt)

    def _leg_of(self, order: OrderRow) -> Leg:
        return Leg(market=order.market, is_buy=order.is_buy, quantity=int(order.quantity),
                   limit_price=int(order.limit_price))

    def _mark_placed_from_receipt(self, session: Session, receipt: Any) -> None:
        events = self.pool.events.OrderPlaced().process_receipt(receipt)
        self._apply_placed(session, [e["args"] for e in events])
        session.commit()

    def _reconcile_placed(self, session: Session, batch: int) -> int:
        """Mark legs placed from the chain's OrderPlaced events (after a crash or a drop)."""
        unsure = session.scalars(select(OrderRow).where(
            OrderRow.batch == batch, OrderRow.status.in_(("planned", "sent")))).all()
        if not unsure:
            return 0
        owners = sorted({o.account for o in unsure})
        logs = self.pool.events.OrderPlaced().get_logs(
            from_block=self.deploy_block, argument_filters={"owner": owners})
        before = sum(o.status == "placed" for o in unsure)
        self._apply_placed(session, [e["args"] for e in logs if e["args"]["batch"] >= batch])
        session.commit()
        return sum(o.status == "placed" for o in unsure) - before

    def _apply_placed(self, session: Session, events: Iterable[Any]) -> None:
        for ev in events:
            # The chain says which batch a leg joined (a transaction mined just after a
            # batch boundary joins the next one): match on everything else, then adopt it.
            candidates = session.scalars(select(OrderRow).where(
                OrderRow.account == ev["owner"], OrderRow.batch <= ev["batch"],
                OrderRow.market == ev["market"], OrderRow.is_buy == ev["is_buy"],
                OrderRow.quantity == str(ev["quantity"]),
                OrderRow.limit_price == str(ev["limit_price"]))).all()
            if any(order.basket_id == ev["basket_id"] for order in candidates):
                continue
            for order in candidates:
                if order.status in ("planned", "sent") and order.basket_id is None:
                    order.status = "placed"
                    order.batch = ev["batch"]
                    order.basket_id = ev["basket_id"]
                    order.basket_index = ev["index"]
                    break

    def _expire_stale(self, session: Session, batch: int) -> None:
        """Proposals of a closed batch that never reached the chain are expired; their
        accounts are planned again in the open batch."""
        old = session.scalars(select(ProposalRow).where(
            ProposalRow.batch < batch,
            ProposalRow.status.in_(("pending_approval", "awaiting_signature", "approved")))).all()
        for row in old:
            self._reconcile_placed(session, row.batch)
            if any(o.status == "placed" for o in row.orders):
                row.status = "submitted"
            else:
                row.status = "expired"
                seen = session.get(ModelSeen, row.account)
                if seen is not None:
                    session.delete(seen)
        session.commit()

    # -- finish: clear, settle, record ------------------------------------------------------

    def finish(self, session: Session, batch: int, report: PassReport) -> None:
        """Clear, settle and record every closed batch the keeper has orders in."""
        now = self._chain_time().timestamp()
        reveal = self.pool.functions.reveal_period().call()
        batches = sorted(set(session.scalars(select(OrderRow.batch).where(
            OrderRow.batch < batch, OrderRow.status == "placed")).all()))
        for closed in batches:
            if now < self.pool.functions.batch_close(closed).call() + reveal:
                continue
            orders = session.scalars(select(OrderRow).where(
                OrderRow.batch == closed, OrderRow.status == "placed")).all()
            started = time.perf_counter()
            for market in sorted({o.market for o in orders}):
                self._clear(market, closed, report)
            report.add_time("clear", started)
            started = time.perf_counter()
            self._settle(session, orders, report)
            report.add_time("settle", started)
            started = time.perf_counter()
            report.fills_recorded += self._record_fills(session, closed, orders)
            report.add_time("record", started)
            for row in session.scalars(select(ProposalRow).where(
                    ProposalRow.batch == closed, ProposalRow.status == "submitted")):
                if all(o.status in ("settled", "void") for o in row.orders):
                    row.status = "settled"
            session.commit()

    def _clear(self, market: str, batch: int, report: PassReport) -> None:
        record = self.pool.functions.clearing_of(market, batch).call()
        if record[0] != STATUS_OPEN:
            return
        tick = self.pool.functions.market_of(market).call()[0]
        placed = self.pool.events.OrderPlaced().get_logs(
            from_block=self.deploy_block, argument_filters={"market": market})
        cancelled = self.pool.events.OrderCancelled().get_logs(
            from_block=self.deploy_block, argument_filters={"market": market})
        book = Book.from_events(
            tick, [_Ev(e["args"]) for e in placed if e["args"]["batch"] == batch],
            [_Ev(e["args"]) for e in cancelled if e["args"]["batch"] == batch])
        buys, sells = book.hint()
        try:
            self.sender.send(self.pool.functions.clear(market, batch, buys, sells),
                             wait_s=self.wait_s)
            report.cleared_markets += 1
        except TransactionReverted as exc:
            # Someone else may have cleared it meanwhile: only a still-open record is an error.
            if self.pool.functions.clearing_of(market, batch).call()[0] == STATUS_OPEN:
                report.errors.append(f"clear {self.symbol_of[market.lower()]}/{batch}: "
                                     f"{exc.reason}")

    def _settle(self, session: Session, orders: Sequence[OrderRow], report: PassReport) -> None:
        baskets: dict[int, list[OrderRow]] = {}
        for order in orders:
            if order.basket_id is not None:
                baskets.setdefault(order.basket_id, []).append(order)
        pending = []
        ids = sorted(baskets)
        open_ids: set[int] = set()
        for start in range(0, len(ids), LENS_IDS):
            chunk = ids[start:start + LENS_IDS]
            flags = self.lens.functions.unsettled(self.pool.address, chunk).call()
            open_ids.update(i for i, flag in zip(chunk, flags, strict=True) if flag)
        for basket_id, legs in sorted(baskets.items()):
            if basket_id not in open_ids:
                continue  # settled already (by its owner, by anyone, or by us before a crash)
            legs.sort(key=lambda o: o.basket_index or 0)
            pending.append((basket_id, Basket(owner=legs[0].account, batch=legs[0].batch,
                                              legs=tuple(self._leg_of(o) for o in legs))))
        for start in range(0, len(pending), MAX_BASKETS):
            chunk = pending[start:start + MAX_BASKETS]
            try:
                self.sender.send(self.pool.functions.settle_many(
                    [(i, b.as_tuple()) for i, b in chunk]), wait_s=self.wait_s)
                report.settled_baskets += len(chunk)
            except TransactionReverted as exc:
                report.errors.append(f"settle_many: {exc.reason}")

    def _record_fills(self, session: Session, batch: int, orders: Sequence[OrderRow]) -> int:
        by_basket = {(o.basket_id, o.basket_index): o for o in orders}
        logs = self.pool.events.Filled().get_logs(from_block=self._first_block(orders))
        recorded = 0
        for entry in logs:
            args = entry["args"]
            order = by_basket.get((args["basket_id"], args["index"]))
            if args["batch"] != batch or order is None:
                continue
            ref = f"{entry['transactionHash'].hex()}:{entry['logIndex']}"
            if session.get(FillRow, ref) is None:
                block = self.w3.eth.get_block(entry["blockNumber"])
                session.add(FillRow(
                    ref=ref, account=args["owner"], symbol=order.symbol,
                    side="buy" if args["is_buy"] else "sell", units=str(args["filled"]),
                    cash=str(args["cash"]), batch=batch,
                    block_time=dt.datetime.fromtimestamp(block["timestamp"], dt.UTC),
                    order_key=order.key))
                recorded += 1
            order.status = "settled" if args["filled"] > 0 else "void"
        return recorded + self._record_advance_repayments(session, batch, by_basket, orders)

    def _record_advance_repayments(self, session: Session, batch: int,
                                   by_basket: dict[tuple[Any, Any], OrderRow],
                                   orders: Sequence[OrderRow]) -> int:
        """Units a funding sell handed its issuer at settlement are a sale to the issuer,
        for the part of the advance the sale's cash did not repay (``AdvanceRepaid``)."""
        first = self._first_block(orders)
        advanced = {(e["args"]["basket_id"], e["args"]["index"]): e["args"]["amount"]
                    for e in self.pool.events.Advanced().get_logs(from_block=first)}
        recorded = 0
        for entry in self.pool.events.AdvanceRepaid().get_logs(from_block=first):
            args = entry["args"]
            key = (args["basket_id"], args["index"])
            order = by_basket.get(key)
            if order is None or args["units"] == 0:
                continue
            ref = f"{entry['transactionHash'].hex()}:{entry['logIndex']}"
            if session.get(FillRow, ref) is None:
                block = self.w3.eth.get_block(entry["blockNumber"])
                session.add(FillRow(
                    ref=ref, account=order.account, symbol=order.symbol, side="sell",
                    units=str(args["units"]), cash=str(advanced[key] - args["cash"]),
                    batch=batch, block_time=dt.datetime.fromtimestamp(block["timestamp"], dt.UTC),
                    order_key=order.key))
                recorded += 1
        return recorded

    # -- helpers ------------------------------------------------------------------------

    def _first_block(self, orders: Sequence[OrderRow]) -> int:
        """The earliest block that can hold events of these orders: where the first of
        their placement transactions was mined (else the deployment block)."""
        blocks = []
        for tx_hash in {o.tx_hash for o in orders if o.tx_hash}:
            try:
                blocks.append(self.w3.eth.get_transaction_receipt(tx_hash)["blockNumber"])
            except TransactionNotFound:
                continue  # dropped: the legs were placed by a later transaction
        return min(blocks, default=self.deploy_block)

    def _chain_time(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.w3.eth.get_block("latest")["timestamp"], dt.UTC)

    def _deploy_date(self) -> dt.date:
        block = self.w3.eth.get_block(self.deploy_block)
        return dt.datetime.fromtimestamp(block["timestamp"], dt.UTC).date()


class _Ev:
    """Attribute access over a web3 event's args (what ``Book.from_events`` reads)."""

    def __init__(self, args: Any) -> None:
        self.market = args["market"]
        self.is_buy = args["is_buy"]
        self.quantity = args["quantity"]
        self.limit_price = args["limit_price"]
