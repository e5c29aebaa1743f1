"""Gas per order of LightPool: placement, clearing, settlement and all-in, on anvil.

Starts its own anvil (auto-impersonation, 30M-gas blocks), deploys the platform contracts,
lists 16 fund markets and runs one batch each of 10, 100, 1,000 and 10,000 orders spread
over the 16 markets. Keepers place the orders in bulk under discretionary mandates
(``place_for_many``, one basket of up to 16 legs per investor), anyone clears each market
(``clear`` with the tick hint the keeper rebuilt), and keepers push settlement in bulk
(``settle_many``).

Every market uses the same six ticks (three buy, three sell around NAV) whatever the batch
size, so clearing gas can be compared between sizes. Issuers stand in every market with
creation/redemption quotes outside those ticks (they take part in the computation).

``--funded N`` adds a batch of N orders where every basket's buys are partly funded by its
own sells (LightPool's issuer advance): each investor's free cash covers only part of its
buys, its sells sit at or below the issuer's redemption price (three ticks there), and the
advance is repaid at settlement. Its row shows what basket funding costs per order.

Setup shortcut (not measured): investors' opening escrow balances are written into
LightPool's and the tokens' storage with ``anvil_setStorageAt`` instead of thousands of
mint/approve/deposit transactions; everything measured is a real transaction.

Usage: ``python bench/gas.py [--sizes 10,100,1000,10000] [--funded 1000]``. Prints a table
and writes ``bench/results/gas.json``.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from web3 import Web3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from offchain.chain.contracts import MANIFEST, abi  # noqa: E402
from offchain.chain.lightpool import Basket, Book, Leg  # noqa: E402
from offchain.chain.node import anvil_binary  # noqa: E402
from offchain.universe import DAY, WAD, FundKind, funds, instrument  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "gas.json"
BLOCK_GAS = 30_000_000
BASE_TX_GAS = 21_000
BATCH_SECONDS = 3_600
REVEAL_SECONDS = 60
LEGS_PER_BASKET = 16
BASKETS_PER_PLACE_TX = 40  # 640 orders: ~20M gas, well inside a 30M block
BASKETS_PER_SETTLE_TX = 48
KEEPERS = 4
OFFSETS = (-1, 0, 1)  # ticks around NAV used by every market, on both sides
# Storage slots (vyper -f layout): LightPool.balance_of, FundToken erc20.balanceOf.
POOL_BALANCE_SLOT = 2
TOKEN_BALANCE_SLOT = 1
DISCRETIONARY = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _slot(*keys: Any, base: int) -> int:
    # Vyper HashMap: keccak256(slot ++ key), nested left to right.
    slot = base
    for key in keys:
        kind = "address" if isinstance(key, str) else "uint256"
        encoded = encode([kind], [key])
        slot = int.from_bytes(keccak(encode(["uint256"], [slot]) + encoded), "big")
    return slot


class Chain:
    """web3 over a private anvil with helpers to deploy and transact as anyone."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [str(anvil_binary()), "--port", str(self.port), "--auto-impersonate",
             "--accounts", "20", "--gas-limit", str(BLOCK_GAS), "--code-size-limit", "24576",
             "--silent"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{self.port}",
                                         request_kwargs={"timeout": 120}))
        for _ in range(100):
            try:
                if self.w3.is_connected():
                    break
            except Exception:
                pass
            time.sleep(0.1)
        self.accounts = self.w3.eth.accounts
        self.types = json.loads(MANIFEST.read_text())["contractTypes"]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def deploy(self, name: str, *args: Any, sender: str) -> Any:
        factory = self.w3.eth.contract(abi=abi(name),
                                       bytecode=self.types[name]["deploymentBytecode"]["bytecode"])
        receipt = self.wait(factory.constructor(*args).transact({"from": sender}))
        return self.w3.eth.contract(address=receipt.contractAddress, abi=abi(name))

    def wait(self, tx_hash: bytes) -> Any:
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=300)
        if receipt.status != 1:
            raise RuntimeError(f"transaction {tx_hash.hex()} reverted")
        return receipt

    def send(self, call: Any, sender: str) -> Any:
        try:
            return self.wait(call.transact({"from": sender, "gas": BLOCK_GAS - 1}))
        except RuntimeError:
            call.call({"from": sender, "gas": BLOCK_GAS - 1})  # raises with the reason
            raise

    def set_storage(self, address: str, slot: int, value: int) -> None:
        self.w3.provider.make_request("anvil_setStorageAt", [
            address, "0x" + slot.to_bytes(32, "big").hex(), "0x" + value.to_bytes(32, "big").hex()])

    def warp(self, timestamp: int) -> None:
        self.w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])
        self.w3.provider.make_request("evm_mine", [])

    def now(self) -> int:
        return self.w3.eth.get_block("latest").timestamp


class Platform:
    """Registry, cash, 16 listed fund markets and LightPool, with keepers and investors."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        acc = chain.accounts
        self.admin, self.attester, self.issuer = acc[0], acc[1], acc[2]
        self.keepers = list(acc[10:10 + KEEPERS])
        self.registry = chain.deploy("ProfileRegistry", sender=self.admin)
        chain.send(self.registry.functions.set_attester(self.attester, True), self.admin)
        self.cash = chain.deploy("FundToken", "LightPool USD", "USDL", int(FundKind.CASH), "cash",
                                 self.issuer, self.registry.address, WAD, 92 * DAY,
                                 sender=self.admin)
        math = chain.deploy("ClearingMath", sender=self.admin)
        self.pool = chain.deploy("LightPool", self.cash.address, self.registry.address,
                                 math.address, BATCH_SECONDS, REVEAL_SECONDS, sender=self.admin)
        chain.send(self.cash.functions.set_allowlisted(self.pool.address, True), self.issuer)
        self.markets: list[Any] = []
        self.navs: dict[str, int] = {}
        self.spacing: dict[str, int] = {}
        self.fee_bps: dict[str, int] = {}
        self.gated: set[str] = set()  # alternatives: their sells cannot fund buys
        for item in funds():
            spacing = item.nav_wad // 1_000  # 10 bps of NAV
            nav = item.nav_wad - item.nav_wad % spacing  # NAV on the grid for exact ticks
            token = chain.deploy("FundToken", item.name, item.symbol, int(item.kind),
                                 item.asset_class, self.issuer, self.registry.address,
                                 nav, 31 * DAY, sender=self.admin)
            chain.send(token.functions.set_allowlisted(self.pool.address, True), self.issuer)
            chain.send(token.functions.set_minter(self.pool.address, True), self.issuer)
            chain.send(self.pool.functions.list_market(token.address, spacing, WAD // 100, 500),
                       self.admin)
            fee_bps = max(instrument(item.symbol).issuer_fee_bps, 50)
            chain.send(self.pool.functions.set_issuer_liquidity(
                token.address, fee_bps, 1_000 * WAD, 1_000 * WAD), self.issuer)
            self.fee_bps[token.address] = fee_bps
            if item.kind == FundKind.ALTERNATIVE:
                self.gated.add(token.address)
            self.markets.append(token)
            self.navs[token.address] = nav
            self.spacing[token.address] = spacing
        self.investors: list[str] = []
        self._escrow: dict[str, int] = {}
        self._fund_escrow(self.issuer, 10**12 * WAD, 0)  # the issuers' redemption reserve

    def _fund_escrow(self, owner: str, cash_amount: int, units: int) -> None:
        tokens = [(self.cash, cash_amount)] + [(token, units) for token in self.markets]
        for token, amount in tokens:
            if not amount:
                continue
            self.chain.set_storage(self.pool.address,
                                   _slot(token.address, owner, base=POOL_BALANCE_SLOT), amount)
            held = self._escrow.get(token.address, 0) + amount
            self._escrow[token.address] = held
            self.chain.set_storage(token.address,
                                   _slot(self.pool.address, base=TOKEN_BALANCE_SLOT), held)

    def set_cash(self, owner: str, amount: int) -> None:
        """Set an owner's free cash escrow (and LightPool's cash holdings to match)."""
        slot = _slot(self.cash.address, owner, base=POOL_BALANCE_SLOT)
        before = self.chain.w3.eth.get_storage_at(self.pool.address, slot)
        held = self._escrow[self.cash.address] - int.from_bytes(before, "big") + amount
        self._escrow[self.cash.address] = held
        self.chain.set_storage(self.pool.address, slot, amount)
        self.chain.set_storage(self.cash.address,
                               _slot(self.pool.address, base=TOKEN_BALANCE_SLOT), held)

    def ensure_investors(self, count: int) -> None:
        """Investors with escrow in cash and every fund and a mandate to one keeper."""
        expiry = self.chain.now() + 365 * DAY
        instruments = [token.address for token in self.markets]
        while len(self.investors) < count:
            investor = to_checksum_address((0x10_0000 + len(self.investors)).to_bytes(20, "big"))
            self.chain.w3.provider.make_request("anvil_setBalance", [investor, hex(10**21)])
            self._fund_escrow(investor, 10**9 * WAD, 10**6 * WAD)
            keeper = self.keepers[len(self.investors) % KEEPERS]
            self.chain.send(self.registry.functions.grant_mandate(
                keeper, DISCRETIONARY, instruments, 10**30, 365 * DAY, 1_000, 0, expiry),
                investor)
            self.investors.append(investor)

    def refresh_navs(self) -> None:
        for token in self.markets:
            self.chain.send(token.functions.publish_nav(self.navs[token.address],
                                                        self.chain.now()), self.issuer)


def _orders(platform: Platform, n: int, funded: bool = False) -> dict[str, list[Leg]]:
    """n orders over 16 markets: per investor one basket of up to 16 legs, one per market;
    sides alternate and prices cycle over the same three ticks around NAV in every market
    (``funded``: sells over the three ticks at and below the issuer's redemption price)."""
    per_investor: dict[str, list[Leg]] = {}
    markets = platform.markets
    for j in range(n):
        investor = platform.investors[j // LEGS_PER_BASKET]
        token = markets[j % len(markets)]
        k = j // len(markets)  # the k-th order of this market
        spacing = platform.spacing[token.address]
        nav = platform.navs[token.address]
        # Funded: each basket mixes buys and sells (they alternate across its markets).
        is_buy = (k + j) % 2 == 0 if funded else k % 2 == 0
        price = nav + OFFSETS[(k // 2) % 3] * spacing
        if funded and not is_buy:
            redeem = nav * (10_000 - platform.fee_bps[token.address]) // 10_000
            price = (redeem // spacing + OFFSETS[(k // 2) % 3] - 1) * spacing
        quantity = WAD * (1 + (j * 7919) % 50)  # 1 .. 50 units
        per_investor.setdefault(investor, []).append(
            Leg(market=token.address, is_buy=is_buy, quantity=quantity, limit_price=price))
    if funded:  # sells that can fund buys first: LightPool allocates the advance in leg order
        for legs in per_investor.values():
            legs.sort(key=lambda leg: leg.is_buy or leg.market in platform.gated)
    return per_investor


def _fund_partly(platform: Platform, orders: dict[str, list[Leg]]) -> None:
    """Give each investor free cash for only part of its buys, so that the rest (at least
    half, at most what its sells bring) is advanced against its sells."""
    for investor, legs in orders.items():
        need = sum(leg.lock() for leg in legs if leg.is_buy)
        proceeds = sum(leg.quantity * leg.limit_price // WAD for leg in legs
                       if not leg.is_buy and leg.market not in platform.gated)
        platform.set_cash(investor, max(need - proceeds, need - need // 2))


def run_batch(platform: Platform, n: int, funded: bool = False) -> dict[str, Any]:
    chain, pool = platform.chain, platform.pool
    platform.ensure_investors(-(-n // LEGS_PER_BASKET))
    # Start of a fresh batch, with fresh NAVs.
    batch = pool.functions.current_batch().call() + 1
    chain.warp(pool.functions.batch_close(batch - 1).call() + 1)
    platform.refresh_navs()
    orders = _orders(platform, n, funded)
    if funded:
        _fund_partly(platform, orders)

    # Placement: each keeper sends its investors' baskets in bulk.
    by_keeper: dict[str, list[tuple[str, list[Leg]]]] = {}
    for investor, legs in orders.items():
        keeper = platform.keepers[platform.investors.index(investor) % KEEPERS]
        by_keeper.setdefault(keeper, []).append((investor, legs))
    placement_gas = 0
    max_place = 0
    txs = 0
    placed: list[tuple[int, Basket]] = []
    books = {t.address: Book(platform.spacing[t.address]) for t in platform.markets}
    for keeper, entries in by_keeper.items():
        for start in range(0, len(entries), BASKETS_PER_PLACE_TX):
            chunk = entries[start:start + BASKETS_PER_PLACE_TX]
            first_id = pool.functions.basket_count().call()
            receipt = chain.send(pool.functions.place_for_many(
                [(inv, [leg.as_tuple() for leg in legs]) for inv, legs in chunk]), keeper)
            assert receipt.gasUsed <= BLOCK_GAS
            placement_gas += receipt.gasUsed - BASE_TX_GAS
            max_place = max(max_place, receipt.gasUsed)
            txs += 1
            for offset, (inv, legs) in enumerate(chunk):
                placed.append((first_id + offset,
                               Basket(owner=inv, batch=batch, legs=tuple(legs))))
                for leg in legs:
                    books[leg.market].add(leg)

    advanced = sum(pool.functions.basket_advance(i).call() > 0 for i, _ in placed)
    if funded:
        assert advanced == len(placed), "every basket of the funded batch takes an advance"

    # Clearing: one transaction per market, after the reveal window.
    chain.warp(pool.functions.batch_close(batch).call() + REVEAL_SECONDS)
    clearing: list[int] = []
    ticks_used: list[int] = []
    for token in platform.markets:
        book = books[token.address]
        if not book.buys and not book.sells:
            continue
        buys, sells = book.hint()
        receipt = chain.send(pool.functions.clear(token.address, batch, buys, sells),
                             platform.keepers[0])
        clearing.append(receipt.gasUsed - BASE_TX_GAS)
        ticks_used.append(len(buys) + len(sells))
        txs += 1
    max_clear = max(clearing) + BASE_TX_GAS

    # Settlement: keepers push in bulk.
    settlement_gas = 0
    max_settle = 0
    for start in range(0, len(placed), BASKETS_PER_SETTLE_TX):
        chunk = placed[start:start + BASKETS_PER_SETTLE_TX]
        receipt = chain.send(pool.functions.settle_many(
            [(i, b.as_tuple()) for i, b in chunk]), platform.keepers[0])
        settlement_gas += receipt.gasUsed - BASE_TX_GAS
        max_settle = max(max_settle, receipt.gasUsed)
        txs += 1
    for basket_id, _ in placed:
        assert pool.functions.basket_hash(basket_id).call() == b"\x00" * 32
        assert pool.functions.basket_advance(basket_id).call() == 0
    if funded:  # back to ample cash for later batches
        for investor in orders:
            platform.set_cash(investor, 10**9 * WAD)

    clearing_per_market = sum(clearing) / len(clearing)
    placement = placement_gas / n
    settlement = settlement_gas / n
    base = BASE_TX_GAS * txs / n
    all_in = placement + sum(clearing) / n + settlement + base
    return {
        "orders": n,
        "funded": funded,
        "baskets_with_advance": advanced,
        "placement_gas_per_order": round(placement),
        "clearing_gas_per_market": round(clearing_per_market),
        "settlement_gas_per_order": round(settlement),
        "all_in_gas_per_order": round(all_in),
        "markets_cleared": len(clearing),
        "ticks_per_market": round(sum(ticks_used) / len(ticks_used), 2),
        "transactions": txs,
        "base_gas_per_order": round(base),
        "max_place_tx_gas": max_place,
        "max_clear_tx_gas": max_clear,
        "max_settle_tx_gas": max_settle,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,10000",
                        help="comma-separated batch sizes (orders)")
    parser.add_argument("--funded", type=int, default=1000,
                        help="orders in the extra batch whose buys are funded by their sells "
                             "(0: none)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    chain = Chain()
    try:
        platform = Platform(chain)
        rows = [run_batch(platform, n) for n in sizes]
        if args.funded:
            rows.append(run_batch(platform, args.funded, funded=True))
    finally:
        chain.close()
    header = (f"{'orders':>7} {'funded':>6} {'place/order':>12} {'clear/market':>13} "
              f"{'settle/order':>13} {'base/order':>11} {'all-in/order':>13} {'ticks':>6} "
              f"{'max tx gas':>11}")
    print(header)
    for row in rows:
        max_tx = max(row[k] for k in ("max_place_tx_gas", "max_clear_tx_gas",
                                      "max_settle_tx_gas"))
        print(f"{row['orders']:>7} {'yes' if row['funded'] else 'no':>6} "
              f"{row['placement_gas_per_order']:>12,} "
              f"{row['clearing_gas_per_market']:>13,} {row['settlement_gas_per_order']:>13,} "
              f"{row['base_gas_per_order']:>11,} {row['all_in_gas_per_order']:>13,} "
              f"{row['ticks_per_market']:>6} "
              f"{max_tx:>11,}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"batches": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
