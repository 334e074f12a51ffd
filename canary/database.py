"""The database engine: SQLite tuned for many writers, the transactions that write, and what its errors mean."""
import fcntl
import os
import sqlite3
import threading
from contextlib import contextmanager, nullcontext

import sqlalchemy as sa

_lock_files = threading.local()
_migration_locks = threading.local()


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


def database_file(engine):
    """Return the path of a SQLite engine's database file; None in memory or on another database."""
    path = engine.url.database
    if engine.dialect.name != "sqlite" or path in (None, "", ":memory:") or path.startswith("file:"):
        return None  # a file: URI may name a shared in-memory database, which has no file to lock
    return path


def writers_lock_path(path):
    """Return the lock file that the SQLite writers of the database at `path` take in turn."""
    return path + "-writers"


@contextmanager
def writers_queue(engine):
    """Hold an exclusive lock that SQLite writers to this database take in turn.

    SQLite's busy handler sleeps for milliseconds between tries; a blocking flock wakes the next
    writer the moment the last one commits.
    """
    path = database_file(engine)
    if path is None:
        yield
        return
    descriptor = _lock_file(writers_lock_path(path))
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)


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
def migration_lock(engine):
    """Hold a lock that one process at a time takes to migrate the schema: the writers' queue on SQLite,
    an advisory lock on PostgreSQL, held on a connection of its own. A thread that holds it may take it again.
    """
    held = _migration_locks.__dict__.setdefault("held", set())
    if id(engine) in held:
        yield
        return
    held.add(id(engine))
    try:
        if engine.dialect.name != "postgresql":
            with writers_queue(engine):
                yield
            return
        with engine.connect() as connection:
            connection.execute(sa.select(sa.func.pg_advisory_lock(MIGRATION_LOCK_ID)))
            try:
                yield
            finally:
                connection.execute(sa.select(sa.func.pg_advisory_unlock(MIGRATION_LOCK_ID)))
                connection.commit()
    finally:
        held.discard(id(engine))


MIGRATION_LOCK_ID = 0x43616E617279  # any constant shared by every process that migrates the schema


@contextmanager
def read_snapshot(engine):
    """Yield a connection in a read transaction whose statements all see one snapshot of the database.

    SQLite's read transactions do; PostgreSQL's need REPEATABLE READ, since each statement of a READ
    COMMITTED transaction sees the commits made before it began. Rollups minus raw edges must come
    from one snapshot, or a reading committed between the two would be taken off without being added.
    """
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            yield connection


@contextmanager
def write_transaction(engine, queued=False):
    """Yield a connection inside a transaction that holds the write lock, committing on exit.

    `queued` says the caller already holds writers_queue, which a second flock of the thread would release.
    """
    with nullcontext() if queued else writers_queue(engine), engine.connect() as connection:
        connection.execution_options(write=True)
        with connection.begin():
            yield connection


def stream_rows(connection, statement, parameters, chunk_rows):
    """Yield the rows of a text statement a chunk at a time, as the driver gives them (plain tuples).

    sqlite3's own cursor yields rows for a fraction of SQLAlchemy's per-row cost; PostgreSQL's rows
    come from a server-side cursor, through SQLAlchemy.
    """
    if connection.dialect.name != "sqlite":
        yield from connection.execution_options(yield_per=chunk_rows).execute(sa.text(statement), parameters)
        return
    cursor = connection.connection.cursor()
    try:
        cursor.execute(statement, parameters)
        while rows := cursor.fetchmany(chunk_rows):
            yield from rows
    finally:
        cursor.close()


def is_missing_table(error):
    """Tell whether a database error says that a table does not exist."""
    orig = getattr(error, "orig", None)
    return getattr(orig, "sqlstate", None) == "42P01" or str(orig).startswith("no such table")


def is_storage_full(error):
    """Tell whether a database error says that its disk is full."""
    orig = getattr(error, "orig", None)
    return (getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            or getattr(orig, "sqlstate", None) == "53100")


def is_busy(error):
    """Tell whether a database error says that the database was too busy: SQLite's lock, or no pooled connection."""
    orig = getattr(error, "orig", None)
    return isinstance(error, sa.exc.TimeoutError) or getattr(orig, "sqlite_errorcode", None) in (
        sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def is_unavailable(error):
    """Tell whether a database error is about the database's state (down, locked, full), not the request."""
    return isinstance(error, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)) or bool(
        getattr(error, "connection_invalidated", False))
