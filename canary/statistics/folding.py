"""Folding pending readings into the rollups, and the read snapshots in which none is pending.

Storing a reading counts it in no rollup, so that an insert costs what it would without them: it
is pending until a fold adds it to its hour, day and week histograms. On SQLite the pending
readings are the rows past rollup_state.folded_rowid; on PostgreSQL, the rows of rollup_log.
Each process's builder thread folds them in the background. An answer whose snapshot finds some
pending folds what is left while writers are held off (SQLite's writers' lock; on PostgreSQL,
FOLD_LOCK, which every write trigger holds shared), and takes a new snapshot before they go on:
the rollups it reads then count every reading it sees. Only a writer the app cannot hold off
(another program, on SQLite) may slip a reading in between; the answer sees it pending and reads
the raw readings instead.
"""
import functools
from contextlib import ExitStack, contextmanager

import sqlalchemy as sa

from canary.database import read_snapshot, write_transaction, writers_queue
from canary.statistics import rollups, triggers
from models import RollupState

FOLD_ROWS = 5_000  # readings a fold takes in one transaction, a few MB; past it an answer reads raw readings


def pending(connection):
    """Tell whether any reading waits to be folded into the rollups."""
    try:
        return bool(connection.execute(_pending_statement(connection.dialect.name)).scalar())
    except sa.exc.DBAPIError:
        return False  # no rollups' tables (a schema not yet migrated): nothing to fold


@functools.cache
def _pending_statement(dialect):
    return sa.select(rollups.pending_sql(dialect)).where(RollupState.id == 1)


def fold(connection, limit=FOLD_ROWS):
    """Add up to `limit` pending readings to the rollups inside the caller's write transaction; return how many."""
    if connection.dialect.name == "postgresql":
        return connection.execute(_FOLD_POSTGRESQL, {"limit": limit}).scalar()
    folded = connection.execute(sa.select(RollupState.folded_rowid).where(RollupState.id == 1)).scalar()
    if folded is None:
        return 0
    taken, last = connection.execute(_PENDING_SQLITE, {"folded": folded, "limit": limit}).one()
    if taken:
        counts = connection.execute(_PENDING_COUNTS_SQLITE, {"folded": folded, "last": last}).all()
        rollups.add_counts(connection, counts)
        connection.execute(sa.update(RollupState).where(RollupState.id == 1).values(folded_rowid=last))
    return taken


def fold_all(connection):
    """Fold every pending reading inside the caller's write transaction, as a rebuild's step needs."""
    while fold(connection) == FOLD_ROWS:
        pass


_PENDING_SQLITE = sa.text(
    "SELECT count(*), max(rowid) FROM (SELECT rowid FROM readings WHERE rowid > :folded ORDER BY rowid LIMIT :limit)")
# Counted by the database per finest bucket and value: Python then adds a few hundred counts, not each reading.
# NOT INDEXED: the rowid range is the few pending rows, but with the rollable test's bounds on
# date_created the planner would rather skip-scan the whole time index.
_PENDING_COUNTS_SQLITE = sa.text(
    f"SELECT device_uuid, type, value, {triggers.finest_bucket_sql('readings')} AS bucket, count(*) "
    "FROM readings NOT INDEXED "
    f"WHERE rowid > :folded AND rowid <= :last AND {triggers.rollable_sql('readings')} "
    "GROUP BY device_uuid, type, value, bucket")
# Rows go by ctid, which names them without a key; the count is of the readings taken off the log.
_FOLD_POSTGRESQL = sa.text(
    "WITH moved AS (DELETE FROM rollup_log WHERE ctid = ANY(ARRAY(SELECT ctid FROM rollup_log LIMIT :limit)) "
    "RETURNING device_uuid, type, value, date_created), "
    f"added AS ({triggers.pg_apply('moved', 1).strip().rstrip(';')}) "
    "SELECT count(*) FROM moved")


@contextmanager
def snapshot(engine, filters=None):
    """Yield (connection, status) in a read snapshot where no reading is pending, unless folding failed or fell behind.

    `status` is canary.statistics.rollups.status(connection, filters), the snapshot's first statement:
    when nothing is pending, as is usual, the answer needs no other connection or statement to start.
    """
    with ExitStack() as reading:
        connection, current = _begin(reading, engine, filters)
        if current is not None and current.pending:
            reading.close()
            with ExitStack() as writers:
                try:
                    writers.enter_context(_writers_held_off(engine))
                    with write_transaction(engine, queued=True) as folder:
                        fold(folder)
                except sa.exc.DBAPIError:  # a database busy past its timeout, or read-only: answers read raw readings
                    writers.close()
                connection, current = _begin(reading, engine, filters)  # before the writers go on
        yield connection, current


def _begin(stack, engine, filters):
    """Begin a read snapshot on the stack with the rollups' status; a fresh one without it if that failed.

    A failed statement leaves a PostgreSQL transaction unusable, and it fails only on a schema not yet migrated.
    """
    connection = stack.enter_context(read_snapshot(engine))
    current = rollups.status(connection, filters)
    if current is None:
        stack.close()
        connection = stack.enter_context(read_snapshot(engine))
    return connection, current


@contextmanager
def _writers_held_off(engine):
    """Hold the app's writers off: SQLite's writers' lock, or FOLD_LOCK exclusively on a PostgreSQL session."""
    if engine.dialect.name != "postgresql":
        with writers_queue(engine):
            yield
        return
    with engine.connect() as connection:
        connection.execute(sa.select(sa.func.pg_advisory_lock(triggers.FOLD_LOCK)))
        connection.commit()
        try:
            yield
        finally:
            try:
                connection.execute(sa.select(sa.func.pg_advisory_unlock(triggers.FOLD_LOCK)))
                connection.commit()
            except sa.exc.DBAPIError:
                connection.invalidate()  # closing the session lets the lock go; the pool must not keep it held
                raise
