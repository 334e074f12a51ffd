"""Writes to the readings table: schema creation, the writers' queue and the single-reading path."""
import fcntl
import functools
import os
import threading
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.schema import CreateIndex, CreateTable

from auth import Token
from models import READING_KEYS, Reading, db, file_identity

_INSERT = sa.insert(Reading.__table__)
_lock_files = threading.local()
_inherited_connections = []
_SCHEMA_LOCK_ID = 0x43616E617279  # any constant shared by every process that creates the schema


def create_schema():
    """Create the readings and tokens tables and any missing index; safe to run from many processes at once."""
    with write_transaction() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK_ID)))
        for table in (Reading.__table__, Token.__table__):
            connection.execute(CreateTable(table, if_not_exists=True))
            for index in table.indexes:
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
    files = _lock_files.__dict__.setdefault("files", {})
    key = (os.getpid(), path)
    if key not in files:
        files[key] = _LockFile(path)
    return files[key].descriptor


class _LockFile:
    """An open lock file, closed with the thread that opened it, as per-request threads need."""

    def __init__(self, path):
        self.descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def __del__(self):
        os.close(self.descriptor)


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
        self.file = file_identity(self.path) if self.path else None
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
        return self.path is None or self.file == file_identity(self.path)

    def __del__(self):
        # A thread's connection goes with the thread, as servers that start one per request need.
        self.discard()

    def discard(self):
        """Close the connection, whatever state it is in, so that the next use opens a new one."""
        if getattr(self._local, "current", None) is self:
            self._local.current = None
        if self.pid != os.getpid():
            # Closing a SQLite connection inherited through fork may checkpoint and delete the WAL
            # that the parent is still using, so a forked child only lets go of it.
            _inherited_connections.append(self)
            return
        try:
            self.connection.close()
        except Exception:  # a broken connection may fail to close; it is dropped either way
            pass


@functools.cache
def _compiled_insert(dialect):
    """Return the SQL of the single-reading INSERT for a dialect, and its positional parameter order."""
    compiled = _INSERT.inline().compile(dialect=dialect, column_keys=list(READING_KEYS))
    return compiled.string, compiled.positiontup
