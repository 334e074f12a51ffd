"""Writes to the readings table: schema creation, the writers' queue, batches and single readings."""
import fcntl
import os
import threading
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.schema import CreateIndex, CreateTable

from auth import Token
from ingest import CommitGroup, database_file
from models import Reading, db

_INSERT = sa.insert(Reading.__table__)
_lock_files = threading.local()
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
    path = database_file(engine)
    if path is None:
        yield
        return
    descriptor = _lock_file(path + "-writers")
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
    """Store one reading, sharing its INSERT and commit with those of concurrent requests."""
    engine = db.engine
    if database_file(engine) is None and engine.dialect.name == "sqlite":
        insert_readings([reading])  # an in-memory database lives on its pooled connection only
        return
    CommitGroup.for_engine(engine).submit(reading)
