"""The database: the readings table, engine tuning, schema creation and query helpers."""
import fcntl
import functools
import heapq
import itertools
import os
import threading
from contextlib import contextmanager

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.schema import CreateIndex, CreateTable


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
_INSERT = sa.insert(Reading.__table__)
_lock_files = threading.local()
_SCHEMA_LOCK_ID = 0x43616E617279  # any constant shared by every process that creates the schema


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
        record.info["file"] = _file_identity(path)

    @sa.event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, proxy):
        # Test harnesses delete and recreate the database file; a pooled connection would go on
        # reading and writing the deleted one.
        if record.info.get("file") != _file_identity(path):
            raise sa.exc.DisconnectionError("the database file was replaced")

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection):
        # Writers take the write lock up front, so they queue on busy_timeout instead of failing.
        immediate = connection.get_execution_options().get("write", False)
        connection.connection.driver_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _file_identity(path):
    """Return what identifies the file at path (device and inode), or None if there is none."""
    try:
        status = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    return status.st_dev, status.st_ino


def create_schema():
    """Create the readings table and any missing index; safe to run from many processes at once."""
    with write_transaction() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK_ID)))
        connection.execute(CreateTable(Reading.__table__, if_not_exists=True))
        for index in Reading.__table__.indexes:
            connection.execute(CreateIndex(index, if_not_exists=True))


@contextmanager
def _writers_queue(engine):
    """Hold an exclusive lock that SQLite writers to this database take in turn.

    SQLite's busy handler sleeps for milliseconds between tries; a blocking flock wakes the next
    writer the moment the last one commits.
    """
    path = _database_file(engine)
    if path is None:
        yield
        return
    descriptor = _lock_file(path + "-writers")
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)


def _database_file(engine):
    """Return the path of a SQLite engine's database file; None in memory or on another database."""
    path = engine.url.database
    if engine.dialect.name != "sqlite" or path in (None, "", ":memory:") or path.startswith("file:"):
        return None  # a file: URI may name a shared in-memory database, which has no file to lock
    return path


def _lock_file(path):
    """Return this thread's descriptor for a lock file, opened once per process and thread.

    flock excludes open file descriptions, so threads and forked workers each need their own.
    """
    descriptors = _lock_files.__dict__.setdefault("descriptors", {})
    key = (os.getpid(), path)
    if key not in descriptors:
        descriptors[key] = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    return descriptors[key]


@contextmanager
def write_transaction():
    """Yield a connection inside a transaction that holds the write lock, committing on exit."""
    engine = db.engine
    with _writers_queue(engine), engine.connect() as connection:
        connection.execution_options(write=True)
        with connection.begin():
            yield connection


def insert_readings(readings):
    """Store readings (dicts with the four reading keys) in one transaction."""
    with write_transaction() as connection:
        connection.execute(_INSERT, readings)


def insert_reading(reading):
    """Store one reading: one compiled INSERT and its commit, on this thread's own connection.

    This is the hot path of ingest, so it skips the per-statement work of a Core execution and
    the pool's checkout and reset. On SQLite the lone INSERT runs in autocommit: its implicit
    transaction takes the write lock as it starts, as BEGIN IMMEDIATE would.
    """
    engine = db.engine
    if engine.dialect.name == "sqlite" and _database_file(engine) is None:
        insert_readings([reading])  # an in-memory database lives on its pooled connection only
        return
    ingest = _IngestConnection.for_engine(engine)
    parameters = [reading[key] for key in ingest.positions] if ingest.positions else reading
    if ingest.lock is not None:
        fcntl.flock(ingest.lock, fcntl.LOCK_EX)
    try:
        ingest.dbapi.cursor().execute(ingest.sql, parameters)
        ingest.dbapi.commit()
    except BaseException:
        ingest.discard()  # whatever went wrong, the next reading starts on a fresh connection
        raise
    finally:
        if ingest.lock is not None:
            fcntl.flock(ingest.lock, fcntl.LOCK_UN)


class _IngestConnection:
    """A DBAPI connection that one thread keeps outside the pool for single-reading inserts."""

    _local = threading.local()

    @classmethod
    def for_engine(cls, engine):
        """Return this thread's connection to the engine's database, opening one if needed."""
        current = getattr(cls._local, "current", None)
        if current is None or not current.serves(engine):
            if current is not None:
                current.discard()
            cls._local.current = current = cls(engine)
        return current

    def __init__(self, engine):
        self.pool, self.pid, self.path = engine.pool, os.getpid(), _database_file(engine)
        self.file = _file_identity(self.path) if self.path else None
        self.lock = _lock_file(self.path + "-writers") if self.path else None
        self.sql, self.positions = _compiled_insert(engine.dialect)
        # Detached, the connection keeps the pool's connect-time set-up but skips its checkout,
        # reset and checkin on every reading.
        self.connection = engine.raw_connection()
        self.connection.detach()
        self.dbapi = self.connection.dbapi_connection

    def serves(self, engine):
        """Tell whether this connection still reaches the engine's database from this process."""
        # engine.dispose() makes a new pool; a forked worker must not share its parent's connection.
        if self.pool is not engine.pool or self.pid != os.getpid():
            return False
        return self.path is None or self.file == _file_identity(self.path)

    def discard(self):
        """Close the connection, whatever state it is in, so that the next use opens a new one."""
        if getattr(self._local, "current", None) is self:
            self._local.current = None
        try:
            self.connection.close()
        except Exception:  # a broken connection may fail to close; it is dropped either way
            pass


@functools.cache
def _compiled_insert(dialect):
    """Return the SQL of the single-reading INSERT for a dialect, and its positional parameter order."""
    compiled = _INSERT.inline().compile(dialect=dialect, column_keys=list(READING_KEYS))
    return compiled.string, compiled.positiontup


def stream_readings(device_uuid, chunk_rows, type=None, start=None, end=None, limit=None, order="asc"):
    """Yield lists of up to chunk_rows matching readings in date order, ties in arrival order.

    Each type is read in date order through the (device, type, date) index and the streams are
    merged, so ingest has no (device, date) index to keep up to date. The first next() runs the
    queries and yields None; the connection closes with the generator.
    """
    descending = order == "desc"
    arrival = arrival_order()
    sort_keys = [Reading.date_created, arrival]
    with db.engine.connect() as connection:
        connection.execution_options(yield_per=chunk_rows)
        streams = []
        for reading_type in [type] if type is not None else device_types(connection, device_uuid):
            statement = (
                matching(sa.select(*READING_COLUMNS, arrival), device_uuid, start=start, end=end)
                .where(Reading.type.is_(None) if reading_type is None else Reading.type == reading_type)
                .order_by(*(key.desc() if descending else key for key in sort_keys))
                .limit(limit)
            )
            streams.append(connection.execute(statement))
        try:
            yield None
            merged = heapq.merge(*streams, key=lambda row: (row[0], row[4]), reverse=descending)
            rows = itertools.islice(merged, limit)
            while chunk := list(itertools.islice(rows, chunk_rows)):
                yield [row[:4] for row in chunk]
        finally:
            for stream in streams:  # a limit or a gone client leaves streams unread
                stream.close()


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


def ping():
    """Make a trivial round trip to the database."""
    db.session.execute(sa.select(1)).scalar_one()
