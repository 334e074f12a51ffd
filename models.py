"""The database: the readings table, engine tuning and the queries that read it."""
import heapq
import itertools
import os
import sqlite3

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Reading(db.Model):
    """One temperature or humidity reading from one device."""

    __tablename__ = "readings"

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), primary_key=True
    )
    device_uuid: Mapped[str] = mapped_column(sa.String(64))
    type: Mapped[str] = mapped_column(sa.String(16))
    value: Mapped[int] = mapped_column(sa.Integer())
    date_created: Mapped[int] = mapped_column(sa.BigInteger())

    __table_args__ = (
        # TimescaleDB requires the partitioning column in every unique key of a hypertable.
        sa.UniqueConstraint("date_created", "id", name="uq_readings_date_created_id").ddl_if(
            dialect="postgresql"
        ),
        # One covering index serves listings, time windows and statistics. A second one in
        # value order would make whole-history statistics about twice as fast, but it would
        # double the index work of every insert, and ingest is the hot path.
        sa.Index("ix_readings_device_type_time_value", "device_uuid", "type", "date_created", "value"),
    )


# On SQLite a lone INTEGER PRIMARY KEY is the rowid; elsewhere the unique key above identifies rows.
Reading.__table__.primary_key.ddl_if(dialect="sqlite")

READING_COLUMNS = (Reading.date_created, Reading.device_uuid, Reading.type, Reading.value)
READING_KEYS = tuple(column.key for column in READING_COLUMNS)


def configure_engine(engine, busy_timeout_ms):
    """Tune a SQLite engine for many concurrent writers; leave other databases alone."""
    if engine.dialect.name != "sqlite":
        return

    path = engine.url.database

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, record):
        # Let SQLAlchemy's begin event, not the driver, decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()
        record.info["file"] = file_identity(path)

    @sa.event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, proxy):
        # Test harnesses delete and recreate the database file; a pooled connection would go on
        # reading and writing the deleted one.
        if record.info.get("file") != file_identity(path):
            raise sa.exc.DisconnectionError("the database file was replaced")

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection):
        # Writers take the write lock up front, so they queue on busy_timeout instead of failing.
        statement = "BEGIN IMMEDIATE" if connection.get_execution_options().get("write", False) else "BEGIN"
        try:
            connection.connection.driver_connection.execute(statement)
        except sqlite3.Error as error:  # e.g. locked beyond busy_timeout: the app answers it as for any statement
            raise sa.exc.DBAPIError.instance(statement, None, error, sqlite3.Error, dialect=engine.dialect) from error


def file_identity(path):
    """Return what identifies the file at path (device and inode), or None if there is none."""
    try:
        status = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    return status.st_dev, status.st_ino


def stream_readings(device_uuid, chunk_rows, type=None, start=None, end=None, limit=None, order="asc"):
    """Yield lists of up to chunk_rows matching readings in date order, ties in arrival order.

    Each type is read in date order through the (device, type, date) index and the streams are
    merged, so ingest has no (device, date) index to keep up to date. Each stream reads keyset
    pages, each in a short transaction of its own: a slow reader holds no snapshot that would
    keep SQLite from checkpointing its WAL. The first next() reads the first pages and yields None.
    """
    descending, engine, arrival = order == "desc", db.engine, arrival_order()
    with engine.connect() as connection:
        types = [type] if type is not None else device_types(connection, device_uuid)
    query = matching(sa.select(*READING_COLUMNS, arrival), device_uuid, start=start, end=end)
    streams = [_keyset_pages(engine, query, reading_type, arrival, descending, limit, chunk_rows * PAGE_CHUNKS)
               for reading_type in types]
    firsts = [list(itertools.islice(stream, 1)) for stream in streams]  # runs each first query now
    yield None
    merged = heapq.merge(*(itertools.chain(first, stream) for first, stream in zip(firsts, streams)),
                         key=lambda row: (row[0], row[4]), reverse=descending)
    rows = itertools.islice(merged, limit)
    while chunk := list(itertools.islice(rows, chunk_rows)):
        yield [row[:4] for row in chunk]


PAGE_CHUNKS = 10  # rows a keyset page reads, in chunks: enough to make each query's cost negligible


def _keyset_pages(engine, query, reading_type, arrival, descending, limit, page_rows):
    """Yield one type's rows of a query, with their arrival order, a page per short transaction."""
    keys = [Reading.date_created, arrival]
    base = (
        query.where(Reading.type.is_(None) if reading_type is None else Reading.type == reading_type)
        .order_by(*(key.desc() if descending else key for key in keys))
    )
    last, remaining = None, limit
    while remaining is None or remaining > 0:
        size = page_rows if remaining is None else min(page_rows, remaining)
        statement = base if last is None else base.where(_after(keys, last, descending))
        with engine.connect() as connection:
            rows = connection.execute(statement.limit(size)).all()
        yield from rows
        if len(rows) < size:
            return
        last = (rows[-1][0], rows[-1][4])
        remaining = None if remaining is None else remaining - len(rows)


def _after(keys, last, descending):
    """Return the condition for rows past `last` in (date, arrival) order, as an index range on date."""
    (date, arrival), (last_date, last_arrival) = keys, last
    if descending:
        return sa.and_(date <= last_date, sa.or_(date < last_date, arrival < last_arrival))
    return sa.and_(date >= last_date, sa.or_(date > last_date, arrival > last_arrival))


def device_types(connection, device_uuid):
    """Return the types among a device's readings, None included, with one index seek per type."""
    types, last = [], None
    while True:
        statement = sa.select(sa.func.min(Reading.type)).where(Reading.device_uuid == device_uuid)
        if last is not None:
            statement = statement.where(Reading.type > last)
        last = connection.execute(statement).scalar()
        if last is None:
            break
        types.append(last)
    untyped = sa.select(sa.literal(1)).where(Reading.device_uuid == device_uuid, Reading.type.is_(None))
    if connection.execute(untyped.limit(1)).first():
        types.append(None)
    return types


def arrival_order():
    """Return the column that orders readings as they were stored."""
    if db.engine.dialect.name == "sqlite":
        # rowid exists on every SQLite table, including four-column tables made by other tools.
        return sa.literal_column("readings.rowid")
    return Reading.id


def matching(statement, device_uuid, type=None, start=None, end=None):
    """Restrict a statement to one device's readings within the optional filters."""
    statement = statement.where(Reading.device_uuid == device_uuid)
    if type is not None:
        statement = statement.where(Reading.type == type)
    if start is not None:
        statement = statement.where(Reading.date_created >= start)
    if end is not None:
        statement = statement.where(Reading.date_created <= end)
    return statement


def check_readings_table():
    """Read at most one row of the readings table: proof that it can be queried, without a scan."""
    db.session.execute(sa.select(sa.literal(1)).select_from(Reading.__table__).limit(1)).all()


def is_missing_table(error):
    """Tell whether a database error says that a table does not exist."""
    orig = getattr(error, "orig", None)
    return getattr(orig, "sqlstate", None) == "42P01" or str(orig).startswith("no such table")


def is_storage_full(error):
    """Tell whether a database error says that its disk is full."""
    orig = getattr(error, "orig", None)
    return (getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            or getattr(orig, "sqlstate", None) == "53100")


def is_unavailable(error):
    """Tell whether a database error is about the database's state (down, locked, full), not the request."""
    return isinstance(error, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)) or bool(
        getattr(error, "connection_invalidated", False))
