"""The keeper's state: proposals, orders with their idempotency keys, fills. SQLAlchemy.

SQLite by default (``LIGHTPOOL_DATABASE_URL``); any SQLAlchemy URL works. The chain stays
the source of truth: every row here can be rebuilt or corrected from events, and the
keeper reads chain state before it sends anything, so the database only remembers intent.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker


class Base(DeclarativeBase):
    pass


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ProposalRow(Base):
    """One optimizer proposal for one account, bound to one batch.

    status: ``pending_approval`` (discretionary, waits for the overlay manager),
    ``awaiting_signature`` (advisory, waits for the investor's wallet), ``approved``,
    ``rejected``, ``submitted``, ``settled``, ``no_trade``, ``expired`` (its batch closed
    before it could be placed; the account is planned again).
    """

    __tablename__ = "proposals"
    __table_args__ = (UniqueConstraint("account", "batch", name="one_proposal_per_batch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account: Mapped[str] = mapped_column(String(42), index=True)
    batch: Mapped[int] = mapped_column(BigInteger, index=True)
    mode: Mapped[str] = mapped_column(String(16))
    model_id: Mapped[str] = mapped_column(String(32))
    model_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(24), index=True)
    explanation: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    orders: Mapped[list[OrderRow]] = relationship(back_populates="proposal",
                                                  order_by="OrderRow.leg")


class OrderRow(Base):
    """One leg of a proposal. ``key`` = ``account:batch:leg`` is the idempotency key.

    status: ``planned`` -> ``sent`` (a transaction carrying it was broadcast) -> ``placed``
    (its OrderPlaced event was seen; ``basket_id`` known) -> ``settled`` (its Filled event
    was recorded) or ``void`` (the market-batch did not clear).
    """

    __tablename__ = "orders"

    key: Mapped[str] = mapped_column(String(96), primary_key=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposals.id"), index=True)
    account: Mapped[str] = mapped_column(String(42), index=True)
    batch: Mapped[int] = mapped_column(BigInteger, index=True)
    leg: Mapped[int] = mapped_column(Integer)
    symbol: Mapped[str] = mapped_column(String(8))
    market: Mapped[str] = mapped_column(String(42))
    is_buy: Mapped[bool]
    quantity: Mapped[str] = mapped_column(String(80))  # wei, as text: exceeds 64 bits
    limit_price: Mapped[str] = mapped_column(String(80))
    lot_ids: Mapped[list] = mapped_column(JSON, default=list)
    nonce: Mapped[str | None] = mapped_column(String(80), nullable=True)
    signature: Mapped[str | None] = mapped_column(String(132), nullable=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default="planned")
    basket_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    basket_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    proposal: Mapped[ProposalRow] = relationship(back_populates="orders")


class FillRow(Base):
    """A fill read from a ``Filled`` event; ``ref`` = ``txhash:logindex`` (unique)."""

    __tablename__ = "fills"

    ref: Mapped[str] = mapped_column(String(80), primary_key=True)
    account: Mapped[str] = mapped_column(String(42), index=True)
    symbol: Mapped[str] = mapped_column(String(8))
    side: Mapped[str] = mapped_column(String(4))
    units: Mapped[str] = mapped_column(String(80))
    cash: Mapped[str] = mapped_column(String(80))
    batch: Mapped[int] = mapped_column(BigInteger)
    block_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    order_key: Mapped[str | None] = mapped_column(String(96), nullable=True)


class ModelSeen(Base):
    """The model version each account was last planned against (a change makes it due)."""

    __tablename__ = "model_seen"

    account: Mapped[str] = mapped_column(String(42), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(32))
    model_version: Mapped[int] = mapped_column(Integer)
    planned_on: Mapped[dt.date]


class Cursor(Base):
    """How far (block number) an event scan has got, by scan name."""

    __tablename__ = "cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    block: Mapped[int] = mapped_column(BigInteger)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; creates the SQLite folder and the tables if missing."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(connection, _record):  # noqa: ANN001 - SQLAlchemy hook signature
            cursor = connection.cursor()
            # WAL lets the UI read while the keeper writes; foreign keys are off by default.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
    Base.metadata.create_all(engine)
    return engine


def make_sessions(url: str) -> sessionmaker:
    """A session factory bound to a fresh engine for ``url``."""
    return sessionmaker(make_engine(url), expire_on_commit=False)
